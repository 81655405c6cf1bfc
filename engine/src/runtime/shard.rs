//! A shard: one pinned OS thread running every stage of a job for its share of the data.
//! It is built from a `Send` [`ShardBuilder`] moved onto its thread; sources (with their own
//! io_uring), operators, state and sinks are created there and never leave it.
//!
//! HOT PATH: the shard loop. Per round it steps every stage once (consumers first); it takes
//! no locks (relaxed atomic loads of the abort and cancel flags per round), allocates nothing per
//! record and logs nothing. An idle shard spins, then yields, then parks briefly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::EngineError;
use crate::operator::Output;
use crate::record::{Batch, SchemaRef};
use crate::runtime::checkpoint::{
    CheckpointControl, ShardCheckpoint, ShardEvent, ShardState, StagePart, SHARED_DIR,
};
use crate::runtime::exchange::{ExchangeReceiver, ExchangeSender};
use crate::runtime::output::StageOutput;
use crate::runtime::stage::{LateOutput, SourceSplit, Stage, StageCounters, StageInput};
use crate::sink::{BlackholeSink, CollectSink, Collector, FileSink, Sink, StdoutSink, TcpSink};
use crate::source::{
    DeadLetter, DeadLetters, FileSource, NexmarkSource, Source, TcpSource, ValuesSource,
};
use crate::spec::job::{part_path, SinkSpec, SourceSpec, StateBackend};
use crate::spec::plan::{build_join, build_ops, InputPlan, Plan};
use crate::state::RocksEnv;
use crate::sys::thread_cpu_time;
use crate::time::WatermarkGenerator;

/// Empty rounds spun before yielding the core.
const IDLE_SPINS_MAX: u32 = 64;
/// Empty rounds yielded before parking briefly.
const IDLE_YIELDS_MAX: u32 = 64;
/// How long an idle shard parks before looking again.
const IDLE_PARK: Duration = Duration::from_micros(200);

/// What one shard did.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    /// Shard index.
    pub shard: usize,
    /// Counters.
    pub counters: StageCounters,
    /// Malformed input records.
    pub dead_letters: u64,
    /// Some of them, for the report.
    pub dead_letter_samples: Vec<DeadLetter>,
    /// CPU time the shard thread used (user + system).
    pub cpu_time: Duration,
    /// Whether the thread was pinned to a core.
    pub pinned: bool,
}

/// Everything a shard needs, movable onto its thread.
pub struct ShardBuilder {
    /// Shard index.
    pub shard: usize,
    /// The job plan.
    pub plan: Arc<Plan>,
    /// Per exchange edge, senders to every shard.
    pub senders: Vec<Vec<Box<dyn ExchangeSender>>>,
    /// Per exchange edge, receivers from every shard.
    pub receivers: Vec<Vec<Box<dyn ExchangeReceiver>>>,
    /// Where `collect` sinks send.
    pub collect: Collector,
    /// Set by any shard that fails, so the others stop.
    pub abort: Arc<AtomicBool>,
    /// Set by the caller to cancel the job (see [`crate::runtime::JobControl`]).
    pub cancel: Arc<AtomicBool>,
    /// Core to pin to.
    pub core: Option<core_affinity::CoreId>,
    /// Checkpointing, when the job takes checkpoints.
    pub checkpoints: Option<ShardCheckpoints>,
}

/// A shard's link to its job's checkpoint coordinator.
pub struct ShardCheckpoints {
    /// Triggers and completions.
    pub control: Arc<CheckpointControl>,
    /// Where the shard sends its parts.
    pub events: crossbeam_channel::Sender<ShardEvent>,
    /// The state to resume from, if the job restores a checkpoint.
    pub restore: Option<ShardState>,
    /// The job's checkpoint storage and its prefix there (for state kept in RocksDB, whose
    /// files operators store and read themselves).
    pub storage: (sluice_storage::blob::SharedBlobStore, String),
}

/// A shard's scratch directory of RocksDB state, removed when the shard ends.
struct StateScratch(std::path::PathBuf);

impl Drop for StateScratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove state scratch");
            }
        }
    }
}

/// The scratch directory of RocksDB state of one shard of one run of a job: unique, so that
/// two runs (or two processes of a split job) on one machine never share files.
fn shard_scratch_dir(spec: &crate::spec::JobSpec, shard: usize) -> std::path::PathBuf {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name: String = spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_root(spec).join(format!(
        "{name}-shard{shard}-{}-{nanos:x}-{run}",
        std::process::id()
    ))
}

/// Where shards keep RocksDB scratch: the spec's `state_dir`, or the system's temporary
/// directory.
fn state_root(spec: &crate::spec::JobSpec) -> std::path::PathBuf {
    spec.state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("sluice-state"))
}

/// Removes the RocksDB scratch that shards of processes no longer running left behind in
/// the job's state directory (a SIGKILLed run cannot clean up after itself); returns how
/// many directories went.
pub(crate) fn remove_stale_scratch(spec: &crate::spec::JobSpec) -> usize {
    let root = state_root(spec);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // `{job}-shard{n}-{pid}-{nanos}-{run}`: the pid is third from the end.
        let mut fields = name.rsplit('-');
        let (Some(_run), Some(_nanos), Some(pid)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let shard_field = fields.next().is_some_and(|f| f.starts_with("shard"));
        if !shard_field || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(dir = %entry.path().display(), error = %e,
                "cannot remove the state scratch of an ended process"),
        }
    }
    removed
}

/// How a sink is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SinkMode {
    /// As always: files truncated.
    Plain,
    /// In a job that takes checkpoints: files are exactly-once.
    Transactional,
    /// At-least-once outputs of a resuming job: files appended to.
    Appending,
}

/// The shard's side of checkpointing while it runs.
struct Checkpointing {
    control: Arc<CheckpointControl>,
    events: crossbeam_channel::Sender<ShardEvent>,
    /// Per stage, the latest checkpoint injected (source stages).
    injected: Vec<u64>,
    /// The latest completion the sinks were told of.
    committed: u64,
    /// Parts of checkpoints some stage has not passed yet.
    assembling: BTreeMap<u64, Vec<Option<StagePart>>>,
    /// Whether the shard told the coordinator it will take no more checkpoints.
    finished: bool,
}

impl Checkpointing {
    fn decline(&mut self, id: u64, shard: usize, reason: String, finished: bool) {
        // The coordinator may be gone at the end of the job: nothing is waiting then.
        let _ = self.events.send(ShardEvent::Declined {
            id,
            shard,
            reason,
            finished,
        });
    }

    /// One round's checkpoint work, before the stages step: inject requested barriers at
    /// the source stages and tell sinks of completions.
    fn before_round(&mut self, shard: usize, stages: &mut [Stage]) -> Result<(), EngineError> {
        let completed = self.control.completed();
        if completed > self.committed {
            for stage in stages.iter_mut() {
                stage.commit(completed)?;
            }
            self.committed = completed;
        }
        let requested = self.control.requested();
        if self.finished {
            return Ok(());
        }
        for (k, stage) in stages.iter_mut().enumerate() {
            if !stage.is_source_stage() || self.injected[k] >= requested {
                continue;
            }
            if stage.input_done {
                tracing::debug!(
                    shard,
                    stage = k,
                    checkpoint = requested,
                    "sources ended: declined"
                );
                self.finished = true;
                let reason = "its sources ended".to_owned();
                self.decline(requested, shard, reason, true);
                return Ok(());
            }
            if stage.inject_barrier(requested)? {
                tracing::debug!(shard, stage = k, checkpoint = requested, "barrier injected");
                self.injected[k] = requested;
            }
        }
        Ok(())
    }

    /// After the stages stepped: gather their parts; send a shard's whole part.
    fn after_round(&mut self, shard: usize, stages: &mut [Stage]) {
        let n = stages.len();
        for (k, stage) in stages.iter_mut().enumerate() {
            for id in stage.abandoned.drain(..) {
                self.assembling.remove(&id);
                let reason = format!("checkpoint {id} was overtaken by a later one");
                let _ = self.events.send(ShardEvent::Declined {
                    id,
                    shard,
                    reason,
                    finished: false,
                });
            }
            for (id, part) in stage.parts.drain(..) {
                let slots = self
                    .assembling
                    .entry(id)
                    .or_insert_with(|| (0..n).map(|_| None).collect());
                slots[k] = Some(part);
            }
        }
        let ready: Vec<u64> = self
            .assembling
            .iter()
            .filter(|(_, slots)| slots.iter().all(Option::is_some))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            // Older checkpoints still assembling can no longer complete in order.
            let older: Vec<u64> = self.assembling.range(..id).map(|(i, _)| *i).collect();
            for old in older {
                self.assembling.remove(&old);
            }
            if let Some(slots) = self.assembling.remove(&id) {
                let stages = slots.into_iter().flatten().collect();
                let _ = self
                    .events
                    .send(ShardEvent::Taken(ShardCheckpoint { id, shard, stages }));
            }
        }
        // A stage that ended never passes the barriers still missing from it.
        if !self.finished && !self.assembling.is_empty() {
            let ended = stages.iter().enumerate().any(|(k, s)| {
                s.input_done && self.assembling.values().any(|slots| slots[k].is_none())
            });
            if ended {
                self.finished = true;
                let ids: Vec<u64> = std::mem::take(&mut self.assembling).into_keys().collect();
                for id in ids {
                    self.decline(id, shard, "a stage's input ended".into(), true);
                }
            }
        }
    }
}

fn build_source(
    plan: &Plan,
    i: usize,
    schema: &SchemaRef,
    shard: usize,
    shards: usize,
) -> Result<Box<dyn Source>, EngineError> {
    Ok(match &plan.sources[i] {
        SourceSpec::Nexmark(c) => Box::new(NexmarkSource::new(c.clone(), shard, shards)?),
        SourceSpec::File {
            path,
            format,
            header,
            ..
        } => Box::new(FileSource::open(
            path,
            *format,
            schema.clone(),
            *header,
            shard,
            shards,
        )?),
        SourceSpec::Tcp {
            addr,
            format,
            connections,
            ..
        } => {
            let addr = addr
                .parse()
                .map_err(|_| EngineError::Plan(format!("bad tcp addr `{addr}`")))?;
            Box::new(TcpSource::bind(
                addr,
                *format,
                schema.clone(),
                *connections,
                shard,
            )?)
        }
        SourceSpec::Values { .. } => {
            let rows = plan.values[i]
                .clone()
                .ok_or_else(|| EngineError::Plan("values source without rows".into()))?;
            Box::new(ValuesSource::new(rows, shard, shards)?)
        }
        SourceSpec::Custom(c) => (c.factory)(shard, shards)?,
    })
}

fn build_sink(
    spec: &SinkSpec,
    shard: usize,
    shards: usize,
    collect: &Collector,
    mode: SinkMode,
) -> Result<Box<dyn Sink>, EngineError> {
    Ok(match spec {
        SinkSpec::File { path, format } => {
            let path = part_path(path, shard, shards);
            Box::new(match mode {
                SinkMode::Plain => FileSink::create(&path, *format)?,
                SinkMode::Transactional => FileSink::exactly_once(&path, *format)?,
                SinkMode::Appending => FileSink::appending(&path, *format)?,
            })
        }
        SinkSpec::Stdout { format } => Box::new(StdoutSink::new(*format)),
        SinkSpec::Tcp { addr, format } => Box::new(TcpSink::connect(addr, *format)?),
        SinkSpec::Blackhole => Box::new(BlackholeSink::default()),
        SinkSpec::Collect => Box::new(CollectSink::new(collect.clone())),
        SinkSpec::Custom(c) => (c.factory)(shard, shards)?,
    })
}

/// Restores the stages from a checkpoint (or prepares their sinks for a fresh start).
fn start_checkpointing(
    shard: usize,
    shards: usize,
    c: ShardCheckpoints,
    stages: &mut [Stage],
) -> Result<Checkpointing, EngineError> {
    let mut resumed = 0;
    match &c.restore {
        Some(state) => {
            let what = format!("checkpoint {} of shard {shard}", state.checkpoint);
            if state.shard as usize != shard || state.shards as usize != shards {
                return Err(EngineError::Checkpoint(format!(
                    "{what}: it is shard {} of {}, this job has {shards} shards",
                    state.shard, state.shards
                )));
            }
            if state.stages.len() != stages.len() {
                return Err(EngineError::Checkpoint(format!(
                    "{what}: {} stages, the plan has {}",
                    state.stages.len(),
                    stages.len()
                )));
            }
            for (k, (stage, st)) in stages.iter_mut().zip(&state.stages).enumerate() {
                let wrap =
                    |e: EngineError| EngineError::Checkpoint(format!("{what}, stage {k}: {e}"));
                stage.restore(st).map_err(wrap)?;
                stage.begin_sinks(Some(&st.sinks)).map_err(wrap)?;
            }
            resumed = state.checkpoint;
        }
        None => {
            for stage in stages.iter_mut() {
                stage.begin_sinks(None)?;
            }
        }
    }
    Ok(Checkpointing {
        control: c.control,
        events: c.events,
        injected: vec![resumed; stages.len()],
        committed: resumed,
        assembling: BTreeMap::new(),
        finished: false,
    })
}

impl ShardBuilder {
    /// Runs the shard to completion on the calling thread.
    pub fn run(self) -> Result<ShardReport, EngineError> {
        let Self {
            shard,
            plan,
            senders,
            receivers,
            collect,
            abort,
            cancel,
            core,
            checkpoints,
        } = self;
        let pinned = core.is_some_and(core_affinity::set_for_current);
        if !pinned {
            // Not fatal: the shard runs unpinned where a core id is missing or refused.
            tracing::debug!(shard, ?core, "shard thread not pinned");
        }
        let spec = &plan.spec;
        let shards = spec.parallelism;
        let dead_path = spec
            .dead_letter
            .as_deref()
            .map(|p| part_path(p, shard, shards));
        let resuming = checkpoints.as_ref().is_some_and(|c| c.restore.is_some());
        let mut dead = if resuming {
            DeadLetters::appending(dead_path.as_deref())?
        } else {
            DeadLetters::new(dead_path.as_deref())?
        };
        let (late_mode, sink_mode) = match &checkpoints {
            None => (SinkMode::Plain, SinkMode::Plain),
            Some(_) if resuming => (SinkMode::Appending, SinkMode::Transactional),
            Some(_) => (SinkMode::Plain, SinkMode::Transactional),
        };
        let mut late = LateOutput {
            sink: spec
                .late_sink
                .as_ref()
                .map(|s| build_sink(s, shard, shards, &collect, late_mode))
                .transpose()?,
        };
        let now = std::time::Instant::now();
        let mut senders: Vec<_> = senders.into_iter().map(Some).collect();
        let mut receivers: Vec<_> = receivers.into_iter().map(Some).collect();
        let missing = || EngineError::Plan("an exchange edge is missing or used twice".into());
        // Declared before the stages: removed after their databases closed.
        let scratch = (spec.state_backend == StateBackend::Rocksdb)
            .then(|| StateScratch(shard_scratch_dir(spec, shard)));
        let mut stages = Vec::with_capacity(plan.stages.len());
        for (k, stage_plan) in plan.stages.iter().enumerate() {
            let rocks = scratch.as_ref().map(|dir| RocksEnv {
                dir: dir.0.join(format!("stage-{k}")),
                cache_keys: spec.state_cache_keys,
                key_groups: spec.max_parallelism,
                storage: checkpoints.as_ref().map(|c| {
                    let (store, prefix) = &c.storage;
                    (
                        store.clone(),
                        format!("{prefix}/{SHARED_DIR}/shard-{shard}/stage-{k}"),
                    )
                }),
            });
            let ops = build_ops(stage_plan, rocks.as_ref())?;
            let mut schema = stage_plan.input_schema.clone();
            let mut outs = Vec::with_capacity(ops.len());
            for op in &ops {
                outs.push(Output::new(op.output_schema().clone(), schema.clone()));
                schema = op.output_schema().clone();
            }
            let mut join = None;
            let stage_input = match &stage_plan.input {
                InputPlan::Sources {
                    sources,
                    watermark: wm,
                    time_column,
                    raw_schema,
                } => {
                    // Processing time never holds back or idles: the wall clock drives it.
                    let (lag, idle) = if wm.processing_time {
                        (0, 0)
                    } else {
                        (wm.out_of_orderness_ms, wm.idle_timeout_ms)
                    };
                    let splits = sources
                        .iter()
                        .map(|i| {
                            Ok(SourceSplit {
                                source: build_source(&plan, *i, raw_schema, shard, shards)?,
                                generator: WatermarkGenerator::new(lag, idle, now),
                                ended: false,
                            })
                        })
                        .collect::<Result<Vec<_>, EngineError>>()?;
                    StageInput::Sources {
                        splits,
                        time_column: *time_column,
                        scratch: Batch::new(raw_schema.clone()),
                        stamped: wm
                            .processing_time
                            .then(|| Batch::new(stage_plan.input_schema.clone())),
                    }
                }
                InputPlan::Edge(e) => {
                    let rx = receivers
                        .get_mut(*e)
                        .and_then(Option::take)
                        .ok_or_else(missing)?;
                    StageInput::exchange(rx)
                }
                InputPlan::Join {
                    left,
                    right,
                    join: join_plan,
                } => {
                    let mut rx = receivers
                        .get_mut(*left)
                        .and_then(Option::take)
                        .ok_or_else(missing)?;
                    let left_inputs = rx.len();
                    rx.extend(
                        receivers
                            .get_mut(*right)
                            .and_then(Option::take)
                            .ok_or_else(missing)?,
                    );
                    join = Some((build_join(join_plan, rocks.as_ref())?, left_inputs));
                    StageInput::exchange(rx)
                }
            };
            let output = match stage_plan.output {
                Some((e, route)) => {
                    let tx = senders
                        .get_mut(e)
                        .and_then(Option::take)
                        .ok_or_else(missing)?;
                    StageOutput::exchange(route, tx, schema, spec.max_parallelism)
                }
                None => {
                    let sinks = spec
                        .sinks
                        .iter()
                        .map(|k| build_sink(k, shard, shards, &collect, sink_mode));
                    StageOutput::Sinks(sinks.collect::<Result<Vec<_>, _>>()?)
                }
            };
            stages.push(Stage::new(ops, outs, stage_input, output, join));
        }
        let mut checkpointing = match checkpoints {
            Some(c) => Some(start_checkpointing(shard, shards, c, &mut stages)?),
            None => None,
        };
        let mut counters = StageCounters::default();
        let mut idle_rounds = 0u32;
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(EngineError::Shard {
                    shard,
                    message: "stopped: another shard failed".into(),
                });
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            if let Some(c) = &mut checkpointing {
                c.before_round(shard, &mut stages)?;
            }
            let mut progress = false;
            // Later stages first, so that rings drain before earlier stages refill them.
            for stage in stages.iter_mut().rev() {
                progress |= stage.step(&mut dead, &mut late, &mut counters)?;
            }
            if let Some(c) = &mut checkpointing {
                c.after_round(shard, &mut stages);
            }
            if stages.iter_mut().all(Stage::is_done) {
                break;
            }
            if progress {
                idle_rounds = 0;
            } else {
                idle_rounds = idle_rounds.saturating_add(1);
                if idle_rounds < IDLE_SPINS_MAX {
                    std::hint::spin_loop();
                } else if idle_rounds < IDLE_SPINS_MAX + IDLE_YIELDS_MAX {
                    std::thread::yield_now();
                } else {
                    std::thread::park_timeout(IDLE_PARK);
                }
            }
        }
        if let Some(sink) = &mut late.sink {
            sink.finish()?;
        }
        Ok(ShardReport {
            shard,
            counters,
            dead_letters: dead.count(),
            dead_letter_samples: dead.into_samples(),
            cpu_time: thread_cpu_time().unwrap_or_default(),
            pinned,
        })
    }
}
