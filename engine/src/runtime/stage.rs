//! One stage on one shard: its input (the shard's source splits, or the exchange from the
//! previous stage), its fused operators, and its output.
//!
//! HOT PATH: batches pass through all operators of the stage in one call chain, each into its
//! reused output buffers. No per-record allocation, no locks, no logging.

use std::time::Instant;

use crate::error::EngineError;
use crate::operator::{Operator, Output, TwoInputOperator};
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
    if !out.late.is_empty() {
        ctx.late(&out.late)?;
    }
    if out.main.is_empty() {
        return Ok(());
    }
    feed(ops_rest, outs_rest, &out.main, ctx)
}

fn advance(
    ops: &mut [Box<dyn Operator>],
    outs: &mut [Output],
    watermark: i64,
    ctx: &mut Ctx<'_>,
) -> Result<(), EngineError> {
    for i in 0..ops.len() {
        let (ops_head, ops_rest) = ops.split_at_mut(i + 1);
        let (outs_head, outs_rest) = outs.split_at_mut(i + 1);
        let out = &mut outs_head[i];
        out.clear();
        ops_head[i].on_watermark(watermark, out)?;
        if !out.late.is_empty() {
            ctx.late(&out.late)?;
        }
        if !out.main.is_empty() {
            feed(ops_rest, outs_rest, &out.main, ctx)?;
        }
    }
    ctx.output.broadcast(|| Message::Watermark(watermark));
    Ok(())
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

/// Advances the join (if any), feeds what it emits, then advances the operators.
fn advance_all(
    join: &mut Option<JoinState>,
    ops: &mut [Box<dyn Operator>],
    outs: &mut [Output],
    watermark: i64,
    ctx: &mut Ctx<'_>,
) -> Result<(), EngineError> {
    if let Some(j) = join {
        j.out.clear();
        j.op.on_watermark(watermark, &mut j.out)?;
        if !j.out.is_empty() {
            feed(ops, outs, &j.out, ctx)?;
        }
    }
    advance(ops, outs, watermark, ctx)
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
            ..
        } = self;
        let mut ctx = Ctx {
            output,
            late,
            counters,
        };
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
                        advance_all(join, ops, outs, w, &mut ctx)?;
                    }
                }
                let all_idle = splits.iter().all(|s| s.ended || s.generator.is_idle(now));
                self.input_done = splits.iter().all(|s| s.ended);
                if all_idle && !self.input_done && !self.idle_sent {
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
                            advance_all(join, ops, outs, w, &mut ctx)?;
                        }
                        if !ctx.output.flush() {
                            break 'inputs;
                        }
                    }
                }
                self.input_done = ended.iter().all(|e| *e);
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
