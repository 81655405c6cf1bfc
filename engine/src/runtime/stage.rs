//! One stage on one shard: its input (the shard's source splits, or the exchange from the
//! previous stage), its fused operators, and its output.
//!
//! A watermark is passed through the join and the operators in order. An operator whose
//! firing fills an output batch ([`Emit::More`]) is called again while the stage's output
//! takes more; when the output is full the stage stops there ([`Paused`]), reads no input,
//! and goes on from the same operator in a later step, so a window firing for many keys moves
//! in bounded batches under backpressure. The watermark is passed on only after everything it
//! fired.
//!
//! HOT PATH: batches pass through all operators of the stage in one call chain, each into its
//! reused output buffers. No per-record allocation, no locks, no logging.

use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::operator::{
    output_limit, Emit, Operator, Output, TwoInputOperator, OUTPUT_RECORDS_PER_CALL_MAX,
};
use crate::record::Batch;
use crate::runtime::checkpoint::{StagePart, StageState};
use crate::runtime::exchange::{ExchangeReceiver, Message};
use crate::runtime::output::StageOutput;
use crate::sink::Sink;
use crate::source::{DeadLetters, Source, SourceStatus};
use crate::time::{WatermarkCombiner, WatermarkGenerator, WATERMARK_END};

/// Messages taken from one input ring per step, so one busy input cannot starve the others.
pub const MESSAGES_PER_INPUT_STEP_MAX: usize = 4;

/// One source split with its watermark generator.
pub struct SourceSplit {
    /// The split.
    pub source: Box<dyn Source>,
    /// Its watermark generator.
    pub generator: WatermarkGenerator,
    /// Whether it is exhausted.
    pub ended: bool,
}

/// Where a stage reads.
pub enum StageInput {
    /// The shard's source splits (first stage).
    Sources {
        /// The splits.
        splits: Vec<SourceSplit>,
        /// Event-time column in the source schema.
        time_column: Option<usize>,
        /// Reused batch the sources fill.
        scratch: Batch,
        /// In processing time, a reused copy of `scratch` with the `proc_time` column added.
        stamped: Option<Batch>,
    },
    /// One receiver per upstream shard.
    Exchange {
        /// The receivers.
        receivers: Vec<Box<dyn ExchangeReceiver>>,
        /// Which upstream shards have ended.
        ended: Vec<bool>,
        /// Inputs held back because they delivered the barrier being aligned.
        blocked: Vec<bool>,
        /// The checkpoint being aligned and when its first barrier arrived.
        aligning: Option<(u64, Instant)>,
    },
}

impl StageInput {
    /// An exchange input reading `receivers`.
    pub fn exchange(receivers: Vec<Box<dyn ExchangeReceiver>>) -> Self {
        let n = receivers.len();
        Self::Exchange {
            receivers,
            ended: vec![false; n],
            blocked: vec![false; n],
            aligning: None,
        }
    }
}

/// Counters of one shard.
#[derive(Clone, Debug, Default)]
pub struct StageCounters {
    /// Records read from sources.
    pub records_in: u64,
    /// Records written to sinks.
    pub records_out: u64,
    /// Records too late for their windows.
    pub late_records: u64,
    /// Steps in which a stage could not read because a ring was full.
    pub backpressure_waits: u64,
}

/// The late side output of a shard.
pub struct LateOutput {
    /// Optional sink for late records.
    pub sink: Option<Box<dyn Sink>>,
}

/// The join at the head of a join stage.
pub struct JoinState {
    op: Box<dyn TwoInputOperator>,
    /// Receivers `0..left_inputs` carry the left input, the rest the right.
    left_inputs: usize,
    out: Batch,
}

/// A stage on one shard.
pub struct Stage {
    /// The join reading both inputs, for a join stage.
    pub join: Option<JoinState>,
    /// The operators.
    pub ops: Vec<Box<dyn Operator>>,
    /// One output per operator.
    pub outs: Vec<Output>,
    /// The input.
    pub input: StageInput,
    /// The output.
    pub output: StageOutput,
    /// Combined watermark of the inputs.
    pub combiner: WatermarkCombiner,
    /// Whether the input ended and the end was passed on.
    pub input_done: bool,
    /// Whether an idle marker was passed on since the last data.
    idle_sent: bool,
    /// Where an advance of event time stopped because the output was full.
    paused: Option<Paused>,
    /// Checkpoint parts taken and not yet collected by the shard.
    pub parts: Vec<(u64, StagePart)>,
    /// Checkpoints whose alignment was given up (a later barrier overtook them).
    pub abandoned: Vec<u64>,
}

/// Where an advance of event time stopped: the step still emitting (0 is the join, `i + 1`
/// operator `i`) and the watermark being passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paused {
    step: usize,
    watermark: i64,
}

struct Ctx<'a> {
    output: &'a mut StageOutput,
    late: &'a mut LateOutput,
    counters: &'a mut StageCounters,
}

impl Ctx<'_> {
    fn emit(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.counters.records_out += self.output.emit(batch)?;
        Ok(())
    }

    fn late(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.counters.late_records += batch.len() as u64;
        match &mut self.late.sink {
            Some(sink) => sink.write(batch),
            None => Ok(()),
        }
    }
}

fn feed(
    ops: &mut [Box<dyn Operator>],
    outs: &mut [Output],
    input: &Batch,
    ctx: &mut Ctx<'_>,
) -> Result<(), EngineError> {
    let (Some((op, ops_rest)), Some((out, outs_rest))) =
        (ops.split_first_mut(), outs.split_first_mut())
    else {
        return ctx.emit(input);
    };
    out.clear();
    op.process(input, out)?;
    if out.main.len() > OUTPUT_RECORDS_PER_CALL_MAX {
        return Err(output_limit(op.name()));
    }
    if !out.late.is_empty() {
        ctx.late(&out.late)?;
    }
    if out.main.is_empty() {
        return Ok(());
    }
    feed(ops_rest, outs_rest, &out.main, ctx)
}

/// Advances event time to `watermark` from step `from` on (0: the join, if any; `i + 1`:
/// operator `i`), feeding what each step emits to the steps after it. A step with more to
/// emit is called again while the output takes more; returns where it stopped when the
/// output is full, or `None` once every step is done and the watermark is passed on.
fn advance_from(
    join: &mut Option<JoinState>,
    ops: &mut [Box<dyn Operator>],
    outs: &mut [Output],
    from: Paused,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Paused>, EngineError> {
    let watermark = from.watermark;
    let paused = |step| Ok(Some(Paused { step, watermark }));
    if from.step == 0 {
        if let Some(j) = join {
            loop {
                j.out.clear();
                let emit = j.op.on_watermark(watermark, &mut j.out)?;
                if !j.out.is_empty() {
                    feed(ops, outs, &j.out, ctx)?;
                }
                if emit == Emit::Done {
                    break;
                }
                if !ctx.output.flush() {
                    return paused(0);
                }
            }
        }
    }
    for i in from.step.saturating_sub(1)..ops.len() {
        loop {
            let (ops_head, ops_rest) = ops.split_at_mut(i + 1);
            let (outs_head, outs_rest) = outs.split_at_mut(i + 1);
            let out = &mut outs_head[i];
            out.clear();
            let emit = ops_head[i].on_watermark(watermark, out)?;
            if !out.late.is_empty() {
                ctx.late(&out.late)?;
            }
            if !out.main.is_empty() {
                feed(ops_rest, outs_rest, &out.main, ctx)?;
            }
            if emit == Emit::Done {
                break;
            }
            if !ctx.output.flush() {
                return paused(i + 1);
            }
        }
    }
    ctx.output.broadcast(|| Message::Watermark(watermark));
    Ok(None)
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Copies `raw` into `stamped` and fills its last column (`proc_time`) with `now_ms`.
fn stamp(raw: &Batch, now_ms: i64, stamped: &mut Batch) {
    stamped.clear();
    let columns = stamped.columns_mut();
    for (c, column) in raw.columns().iter().enumerate() {
        columns[c].extend_from(column);
    }
    if let Some(crate::record::Column::Timestamp(times)) = columns.last_mut() {
        times.resize(raw.len(), now_ms);
    }
    stamped.commit_rows(raw.len());
}

impl Stage {
    /// Creates a stage.
    pub fn new(
        ops: Vec<Box<dyn Operator>>,
        outs: Vec<Output>,
        input: StageInput,
        output: StageOutput,
        join: Option<(Box<dyn TwoInputOperator>, usize)>,
    ) -> Self {
        let inputs = match &input {
            StageInput::Sources { splits, .. } => splits.len(),
            StageInput::Exchange { receivers, .. } => receivers.len(),
        };
        let join = join.map(|(op, left_inputs)| {
            let out = Batch::new(op.output_schema().clone());
            JoinState {
                op,
                left_inputs,
                out,
            }
        });
        Self {
            join,
            ops,
            outs,
            input,
            output,
            combiner: WatermarkCombiner::new(inputs),
            input_done: false,
            idle_sent: false,
            paused: None,
            parts: Vec::new(),
            abandoned: Vec::new(),
        }
    }

    /// Whether the stage reads the shard's sources.
    pub fn is_source_stage(&self) -> bool {
        matches!(self.input, StageInput::Sources { .. })
    }

    /// Whether the stage stands where a checkpoint can be taken: not in the middle of a
    /// firing that filled its output.
    pub fn can_checkpoint(&self) -> bool {
        self.paused.is_none() && !self.input_done
    }

    /// Freezes the stage's state for checkpoint `id`: source positions, watermarks, the
    /// join's and the operators' state, and the sinks' pre-commits.
    fn freeze(&mut self, id: u64, alignment: Duration) -> Result<StagePart, EngineError> {
        let started = Instant::now();
        let (sources, max_seen) = match &self.input {
            StageInput::Sources { splits, .. } => (
                splits.iter().map(|s| s.source.position()).collect(),
                splits.iter().map(|s| s.generator.max_seen()).collect(),
            ),
            StageInput::Exchange { .. } => (Vec::new(), Vec::new()),
        };
        let join = match &mut self.join {
            Some(j) => j.op.snapshot()?,
            None => None,
        };
        let ops = self
            .ops
            .iter_mut()
            .map(|op| op.snapshot())
            .collect::<Result<Vec<_>, _>>()?;
        let (sinks, unsynced) = match &mut self.output {
            StageOutput::Sinks(sinks) => (
                sinks
                    .iter_mut()
                    .map(|sink| sink.pre_commit(id))
                    .collect::<Result<Vec<_>, _>>()?,
                sinks.iter().flat_map(|sink| sink.unsynced()).collect(),
            ),
            StageOutput::Exchange { .. } => (Vec::new(), Vec::new()),
        };
        Ok(StagePart {
            op_names: self.ops.iter().map(|op| op.name().to_owned()).collect(),
            sources,
            max_seen,
            inputs: self.combiner.input_watermarks(),
            join,
            ops,
            sinks,
            unsynced,
            alignment,
            pause: started.elapsed(),
        })
    }

    /// At a source stage: takes checkpoint `id` now and sends its barrier downstream.
    /// Returns false (and takes nothing) while the stage cannot checkpoint.
    pub fn inject_barrier(&mut self, id: u64) -> Result<bool, EngineError> {
        if !self.can_checkpoint() || !self.is_source_stage() {
            return Ok(false);
        }
        let part = self.freeze(id, Duration::ZERO)?;
        self.parts.push((id, part));
        self.output.broadcast(|| Message::Barrier(id));
        Ok(true)
    }

    /// Checkpoint `id` completed: sinks publish what it covers.
    pub fn commit(&mut self, id: u64) -> Result<(), EngineError> {
        if let StageOutput::Sinks(sinks) = &mut self.output {
            for sink in sinks.iter_mut() {
                sink.commit(id)?;
            }
        }
        Ok(())
    }

    /// Prepares the sinks: a fresh start, or a resume from their checkpointed states.
    pub fn begin_sinks(&mut self, restored: Option<&[Vec<u8>]>) -> Result<(), EngineError> {
        if let StageOutput::Sinks(sinks) = &mut self.output {
            if let Some(states) = restored {
                if states.len() != sinks.len() {
                    return Err(EngineError::Checkpoint(format!(
                        "the checkpoint has {} sink states for {} sinks",
                        states.len(),
                        sinks.len()
                    )));
                }
            }
            for (i, sink) in sinks.iter_mut().enumerate() {
                sink.begin(restored.map(|s| s[i].as_slice()))?;
            }
        }
        Ok(())
    }

    /// Restores the stage from a checkpoint (before its first step; sinks separately, by
    /// [`Stage::begin_sinks`]).
    pub fn restore(&mut self, state: &StageState) -> Result<(), EngineError> {
        let names: Vec<&str> = self.ops.iter().map(|op| op.name()).collect();
        if state.op_names.len() != names.len()
            || state.op_names.iter().zip(&names).any(|(a, b)| a != b)
        {
            return Err(EngineError::Checkpoint(format!(
                "the checkpoint's operators {:?} are not this stage's {names:?} (a checkpoint \
                 of another plan?)",
                state.op_names
            )));
        }
        if let StageInput::Sources { splits, .. } = &mut self.input {
            if state.sources.len() != splits.len() || state.max_seen.len() != splits.len() {
                return Err(EngineError::Checkpoint(format!(
                    "the checkpoint has {} source positions for {} sources",
                    state.sources.len(),
                    splits.len()
                )));
            }
            for ((split, position), max_seen) in
                splits.iter_mut().zip(&state.sources).zip(&state.max_seen)
            {
                if let Some(position) = position {
                    split.source.seek(position)?;
                }
                split.generator.restore_max_seen(*max_seen);
            }
        }
        self.combiner
            .restore_inputs(&state.inputs)
            .map_err(|e| EngineError::Checkpoint(format!("stage watermarks: {e}")))?;
        match (&mut self.join, &state.join) {
            (Some(j), Some(bytes)) => j.op.restore(bytes)?,
            (None, None) => {}
            _ => {
                return Err(EngineError::Checkpoint(
                    "the checkpoint and the plan disagree on a join".into(),
                ))
            }
        }
        for (op, bytes) in self.ops.iter_mut().zip(&state.ops) {
            op.restore(bytes)?;
        }
        Ok(())
    }

    /// Returns whether the stage has finished and delivered everything.
    pub fn is_done(&mut self) -> bool {
        self.input_done && self.output.flush()
    }

    /// Does one round of work; returns whether anything happened.
    pub fn step(
        &mut self,
        dead: &mut DeadLetters,
        late: &mut LateOutput,
        counters: &mut StageCounters,
    ) -> Result<bool, EngineError> {
        if self.input_done {
            // Deliver what is still queued (the end marker among it) while the shard's other
            // stages run: a stage downstream may wait for this end to finish aligning a
            // checkpoint barrier, while holding back an input of one of those stages.
            self.output.flush();
            return Ok(false);
        }
        if !self.output.flush() {
            counters.backpressure_waits += 1;
            return Ok(false);
        }
        let Self {
            ops,
            outs,
            input,
            output,
            combiner,
            join,
            paused,
            ..
        } = self;
        let mut ctx = Ctx {
            output,
            late,
            counters,
        };
        if let Some(from) = paused.take() {
            // Finish the firing that filled the output before reading more input.
            *paused = advance_from(join, ops, outs, from, &mut ctx)?;
            if paused.is_some() {
                return Ok(true);
            }
        }
        let mut progress = false;
        let mut data = false;
        let mut take = None;
        match input {
            StageInput::Sources {
                splits,
                time_column,
                scratch,
                stamped,
            } => {
                let now = Instant::now();
                let now_ms = if stamped.is_some() {
                    wall_clock_ms()
                } else {
                    0
                };
                for (i, split) in splits.iter_mut().enumerate() {
                    if split.ended {
                        continue;
                    }
                    scratch.clear();
                    let status = split.source.poll(scratch, dead)?;
                    if !scratch.is_empty() {
                        progress = true;
                        data = true;
                        ctx.counters.records_in += scratch.len() as u64;
                        let batch = match stamped.as_mut() {
                            Some(stamped) => {
                                stamp(scratch, now_ms, stamped);
                                &*stamped
                            }
                            None => &*scratch,
                        };
                        if let Some(t) = *time_column {
                            let col = batch.column(t);
                            split
                                .generator
                                .observe((0..col.len()).filter_map(|r| col.get_i64(r)), now);
                        }
                        feed(ops, outs, batch, &mut ctx)?;
                    }
                    if stamped.is_some() {
                        split.generator.advance_to(now_ms);
                    }
                    if status == SourceStatus::Exhausted {
                        split.ended = true;
                        split.generator.end();
                        progress = true;
                    }
                    let advanced = if split.generator.is_idle(now) {
                        combiner.set_idle(i)
                    } else {
                        combiner.update(i, split.generator.watermark())
                    };
                    if let Some(w) = advanced {
                        let from = Paused {
                            step: 0,
                            watermark: w,
                        };
                        *paused = advance_from(join, ops, outs, from, &mut ctx)?;
                        if paused.is_some() {
                            progress = true;
                            break;
                        }
                    }
                }
                let all_idle = splits.iter().all(|s| s.ended || s.generator.is_idle(now));
                self.input_done = paused.is_none() && splits.iter().all(|s| s.ended);
                if all_idle && paused.is_none() && !self.input_done && !self.idle_sent {
                    ctx.output.broadcast(|| Message::Idle);
                    self.idle_sent = true;
                }
            }
            StageInput::Exchange {
                receivers,
                ended,
                blocked,
                aligning,
            } => {
                let mut aligned = None;
                'inputs: for (i, rx) in receivers.iter_mut().enumerate() {
                    for _ in 0..MESSAGES_PER_INPUT_STEP_MAX {
                        if blocked[i] {
                            break;
                        }
                        let Some(msg) = rx.try_recv() else { break };
                        progress = true;
                        let advanced = match msg {
                            Message::Data(batch) => {
                                data = true;
                                match join.as_mut() {
                                    Some(j) => {
                                        j.out.clear();
                                        if i < j.left_inputs {
                                            j.op.process_left(&batch, &mut j.out)?;
                                        } else {
                                            j.op.process_right(&batch, &mut j.out)?;
                                        }
                                        if j.out.len() > OUTPUT_RECORDS_PER_CALL_MAX {
                                            return Err(output_limit(j.op.name()));
                                        }
                                        if !j.out.is_empty() {
                                            feed(ops, outs, &j.out, &mut ctx)?;
                                        }
                                    }
                                    None => feed(ops, outs, &batch, &mut ctx)?,
                                }
                                rx.recycle(batch);
                                None
                            }
                            Message::Watermark(w) => combiner.update(i, w),
                            Message::Idle => combiner.set_idle(i),
                            Message::End => {
                                ended[i] = true;
                                combiner.update(i, WATERMARK_END)
                            }
                            Message::Barrier(id) => {
                                tracing::debug!(input = i, checkpoint = id, aligning = ?aligning.map(|a| a.0), "barrier");
                                match *aligning {
                                    Some((current, _)) if id < current => {
                                        // A barrier of a checkpoint given up: nothing to do.
                                    }
                                    Some((current, _)) if id == current => blocked[i] = true,
                                    other => {
                                        if let Some((current, _)) = other {
                                            // A later checkpoint overtook this one.
                                            self.abandoned.push(current);
                                            blocked.iter_mut().for_each(|b| *b = false);
                                        }
                                        *aligning = Some((id, Instant::now()));
                                        blocked[i] = true;
                                    }
                                }
                                if let Some((current, since)) = *aligning {
                                    if blocked.iter().zip(ended.iter()).all(|(b, e)| *b || *e) {
                                        aligned = Some((current, since.elapsed()));
                                        break 'inputs;
                                    }
                                }
                                None
                            }
                        };
                        if let Some(w) = advanced {
                            let from = Paused {
                                step: 0,
                                watermark: w,
                            };
                            *paused = advance_from(join, ops, outs, from, &mut ctx)?;
                            if paused.is_some() {
                                break 'inputs;
                            }
                        }
                        if !ctx.output.flush() {
                            break 'inputs;
                        }
                    }
                }
                // An input that ended while the others are aligned completes the alignment.
                if let (None, Some((id, since))) = (aligned, *aligning) {
                    if blocked.iter().zip(ended.iter()).all(|(b, e)| *b || *e)
                        && !ended.iter().all(|e| *e)
                    {
                        aligned = Some((id, since.elapsed()));
                    }
                }
                if aligned.is_some() {
                    blocked.iter_mut().for_each(|b| *b = false);
                    *aligning = None;
                    progress = true;
                }
                take = aligned;
                self.input_done = paused.is_none() && ended.iter().all(|e| *e);
            }
        }
        if let Some((id, alignment)) = take {
            tracing::debug!(checkpoint = id, ?alignment, "aligned");
            let part = self.freeze(id, alignment)?;
            self.parts.push((id, part));
            self.output.broadcast(|| Message::Barrier(id));
        }
        if data {
            self.idle_sent = false;
        }
        if self.input_done {
            if let Some(j) = &self.join {
                counters.late_records += j.op.late_records();
            }
            // Every input ended, so the combined watermark reached the end and all windows
            // fired; pass the end on.
            self.output.broadcast(|| Message::End);
            self.output.finish()?;
            progress = true;
        }
        Ok(progress)
    }
}
