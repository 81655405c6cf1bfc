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

use std::time::Instant;

use crate::error::EngineError;
use crate::operator::{
    output_limit, Emit, Operator, Output, TwoInputOperator, OUTPUT_RECORDS_PER_CALL_MAX,
};
use crate::record::Batch;
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
    },
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
        }
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
            StageInput::Exchange { receivers, ended } => {
                'inputs: for (i, rx) in receivers.iter_mut().enumerate() {
                    for _ in 0..MESSAGES_PER_INPUT_STEP_MAX {
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
                self.input_done = paused.is_none() && ended.iter().all(|e| *e);
            }
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
