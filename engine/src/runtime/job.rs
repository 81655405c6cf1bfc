//! Running a planned job: builds the exchange meshes, starts one pinned thread per shard,
//! waits for all of them, and gathers their reports. A failing or panicking shard stops the
//! others and fails the job; a [`JobControl`] cancelled by the caller stops them all and the
//! job returns [`EngineError::Cancelled`].

use std::net::TcpListener;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::record::Batch;
use crate::runtime::checkpoint::{CheckpointControl, ShardEvent};
use crate::runtime::control::{JobControl, ThreadStart};
use crate::runtime::coordinator::{CheckpointReport, CheckpointSettings, Coordinator, PeerLink};
use crate::runtime::exchange::{local_channel, ExchangeReceiver, ExchangeSender};
use crate::runtime::remote::frame::Hello;
use crate::runtime::remote::peer::{start_peer, IoShared, PeerCheckpoints, PeerIo, PeerPlan};
use crate::runtime::remote::{connect_peers_cancellable, plan_fingerprint, RemoteExchangeConfig};
use crate::runtime::restore::{find_checkpoint, find_exact_checkpoint};
use crate::runtime::shard::{ShardBuilder, ShardCheckpoints, ShardReport};
use crate::sink::{Collector, COLLECT_CHANNEL_BATCHES_MAX, COLLECT_RECORDS_MAX};
use crate::source::DeadLetter;
use crate::spec::plan::Plan;

/// What a job did.
#[derive(Clone, Debug, Default)]
pub struct JobReport {
    /// Checkpoints: the one resumed from, those taken and failed.
    pub checkpoints: CheckpointReport,
    /// Job name.
    pub name: String,
    /// Records read from sources.
    pub records_in: u64,
    /// Records written to sinks (counted once, however many sinks there are).
    pub records_out: u64,
    /// Records too late for their windows (sent to the late sink if there is one).
    pub late_records: u64,
    /// Malformed input records (written to the dead-letter file if there is one).
    pub dead_letters: u64,
    /// Some malformed records with their positions.
    pub dead_letter_samples: Vec<DeadLetter>,
    /// Steps in which a stage waited for a full ring.
    pub backpressure_waits: u64,
    /// Output of `collect` sinks, in arrival order per shard.
    pub collected: Vec<Batch>,
    /// Per-shard reports.
    pub shards: Vec<ShardReport>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// Sets the abort flag if the shard ends without reporting success (error or panic).
struct AbortOnDrop {
    abort: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.abort.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs a planned job to completion on `plan.spec.parallelism` shard threads.
pub fn run_plan(plan: Plan) -> Result<JobReport, EngineError> {
    run_placed(plan, None, &JobControl::new())
}

/// Like [`run_plan`], stopping early with [`EngineError::Cancelled`] once `control` is
/// cancelled.
pub fn run_plan_with(plan: Plan, control: &JobControl) -> Result<JobReport, EngineError> {
    run_placed(plan, None, control)
}

/// Runs this process's share of a job split across processes: the shards
/// `config.local_shards`, exchanging records with the peers' shards over TCP. `listener`
/// (bound by the caller, e.g. on port 0 in tests) replaces binding `config.listen`. The
/// report covers this process's shards.
pub fn run_plan_remote(
    plan: Plan,
    config: RemoteExchangeConfig,
    listener: Option<TcpListener>,
) -> Result<JobReport, EngineError> {
    run_placed(plan, Some((config, listener)), &JobControl::new())
}

/// Like [`run_plan_remote`], stopping early with [`EngineError::Cancelled`] once `control`
/// is cancelled (also while still waiting for peers to connect). Cancelling closes the
/// connections, so peers that are not cancelled themselves fail with an error naming this
/// process.
pub fn run_plan_remote_with(
    plan: Plan,
    config: RemoteExchangeConfig,
    listener: Option<TcpListener>,
    control: &JobControl,
) -> Result<JobReport, EngineError> {
    run_placed(plan, Some((config, listener)), control)
}

type SenderSlots = Vec<Vec<Vec<Option<Box<dyn ExchangeSender>>>>>;
type ReceiverSlots = Vec<Vec<Vec<Option<Box<dyn ExchangeReceiver>>>>>;

/// The remote side of a run: the peers' I/O threads and what they share.
struct RemoteIo {
    peers: Vec<PeerIo>,
    shared: Arc<IoShared>,
    /// The checkpoint links to the peers' coordinators (taken by this process's).
    links: Vec<PeerLink>,
}

impl RemoteIo {
    /// Closes every connection if the job failed, then waits for the I/O threads; returns
    /// the first I/O failure.
    fn finish(self, failed: bool) -> Option<EngineError> {
        if failed {
            self.shared.abort.store(true, Ordering::Relaxed);
            for p in &self.peers {
                p.close();
            }
        }
        let mut first = None;
        for p in self.peers {
            if let Err(e) = p.join() {
                first.get_or_insert(e);
            }
        }
        let recorded = self.shared.error.lock().ok().and_then(|mut e| e.take());
        recorded.or(first)
    }
}

/// Connects to the peers and fills the remote slots of the mesh.
fn connect_remote(
    plan: &Plan,
    config: &RemoteExchangeConfig,
    listener: Option<TcpListener>,
    shared: Arc<IoShared>,
    local: &Range<usize>,
    (senders, receivers): (&mut SenderSlots, &mut ReceiverSlots),
    checkpoint_events: Option<&crossbeam_channel::Sender<ShardEvent>>,
) -> Result<RemoteIo, EngineError> {
    let capacity = plan.spec.ring_capacity_batches;
    if capacity > u32::MAX as usize {
        return Err(EngineError::Plan(format!(
            "ring_capacity_batches {capacity} is too large for a remote exchange"
        )));
    }
    let shards = u32::try_from(plan.spec.parallelism)
        .map_err(|_| EngineError::Plan("too many shards".into()))?;
    let hello = Hello {
        fingerprint: plan_fingerprint(plan),
        shards,
        local: config.local_shards.clone(),
    };
    let needs_listener = config
        .peers
        .iter()
        .any(|(r, _)| r.start < config.local_shards.start);
    let listener = match listener {
        Some(l) => Some(l),
        None if needs_listener => Some(
            TcpListener::bind(config.listen)
                .map_err(|e| EngineError::io(config.listen.to_string(), e))?,
        ),
        None => None,
    };
    let connected = connect_peers_cancellable(config, listener.as_ref(), &hello, &shared.cancel)?;
    let mut io = RemoteIo {
        peers: Vec::with_capacity(connected.len()),
        shared: shared.clone(),
        links: Vec::new(),
    };
    for peer in connected {
        let link = checkpoint_events.map(|inbox| {
            let (tx, outbox) = crossbeam_channel::unbounded();
            let ends = PeerCheckpoints {
                outbox,
                inbox: inbox.clone(),
            };
            (tx, ends)
        });
        let (link_tx, checkpoints) = match link {
            Some((tx, ends)) => (Some(tx), Some(ends)),
            None => (None, None),
        };
        let peer_shards = peer.shards.start as usize..peer.shards.end as usize;
        let started = start_peer(
            PeerPlan {
                addr: peer.addr,
                link: peer.link,
                local: config.local_shards.clone(),
                remote: peer.shards,
                edge_schemas: &plan.edge_schemas,
                capacity,
                checkpoints,
            },
            shared.clone(),
        );
        let (peer_io, ends) = match started {
            Ok(x) => x,
            Err(e) => {
                let _ = io.finish(true);
                return Err(e);
            }
        };
        if let Some(tx) = link_tx {
            io.links.push(PeerLink {
                shards: peer_shards,
                tx,
                writer: peer_io.writer(),
            });
        }
        io.peers.push(peer_io);
        for (id, tx) in ends.senders {
            let from = id.from as usize - local.start;
            senders[from][id.edge as usize][id.to as usize] = Some(Box::new(tx));
        }
        for (id, rx) in ends.receivers {
            let to = id.to as usize - local.start;
            receivers[to][id.edge as usize][id.from as usize] = Some(Box::new(rx));
        }
    }
    Ok(io)
}

/// Returns the channels of one shard if every slot is filled.
fn complete<T: ?Sized>(slots: Vec<Vec<Option<Box<T>>>>) -> Option<Vec<Vec<Box<T>>>> {
    slots
        .into_iter()
        .map(|row| row.into_iter().collect::<Option<Vec<_>>>())
        .collect()
}

/// The channel of a coordinator's events: the shards' and the peers' side, and its own.
type CheckpointEvents = (
    crossbeam_channel::Sender<ShardEvent>,
    crossbeam_channel::Receiver<ShardEvent>,
);

/// A job's checkpointing before its shards start: the coordinator not yet running.
struct CheckpointSetup {
    control: Arc<CheckpointControl>,
    events: crossbeam_channel::Sender<ShardEvent>,
    coordinator: Option<Coordinator>,
    restored: (Option<u64>, Vec<String>),
    /// The checkpoint storage and the job's prefix there.
    storage: (sluice_storage::blob::SharedBlobStore, String),
}

/// A running coordinator: its stop flag, its thread, and what the restore found.
type RunningCoordinator = (
    Arc<AtomicBool>,
    std::thread::JoinHandle<(CheckpointReport, Option<EngineError>)>,
    (Option<u64>, Vec<String>),
);

impl CheckpointSetup {
    /// Opens the job's checkpoint storage and finds the checkpoint to resume from; `None`
    /// for a job without checkpoints. Returns each shard's state to resume from (by shard).
    /// The coordinator runs this process's shards `local`, takes the shards' (and the peers')
    /// events from `events`, and reaches the other processes' coordinators through `peers`.
    #[allow(clippy::type_complexity)]
    fn prepare(
        plan: &Plan,
        abort: &Arc<AtomicBool>,
        hooks: Option<Arc<crate::runtime::control::CheckpointHooks>>,
        local: Range<usize>,
        events: CheckpointEvents,
        peers: Vec<PeerLink>,
    ) -> Result<Option<(Self, Vec<Option<crate::runtime::checkpoint::ShardState>>)>, EngineError>
    {
        let spec = &plan.spec;
        let Some(interval) = spec.checkpoint_interval()? else {
            return Ok(None);
        };
        let url = spec.checkpoint_storage.as_deref().unwrap_or_default();
        let storage =
            sluice_storage::blob::open(url).map_err(|e| EngineError::Checkpoint(e.to_string()))?;
        let shape = (spec.parallelism, spec.max_parallelism);
        let (prefix, found) = match &hooks {
            None => {
                let prefix = spec.name.clone();
                let found = find_checkpoint(storage.as_ref(), &prefix, &spec.name, shape)?;
                (prefix, found)
            }
            Some(h) => {
                let prefix = h.prefix.clone();
                let mut found = match h.restore_from {
                    Some(id) => {
                        find_exact_checkpoint(storage.as_ref(), &prefix, &spec.name, shape, id)?
                    }
                    // The masters know of no checkpoint for this run: start afresh, with ids
                    // above anything in the store.
                    None => {
                        let mut f = find_checkpoint(storage.as_ref(), &prefix, &spec.name, shape)?;
                        f.resume = None;
                        f.skipped.clear();
                        f
                    }
                };
                found.next_id = found.next_id.max(h.last_completed.map_or(1, |id| id + 1));
                (prefix, found)
            }
        };
        let restored_from = found.resume.as_ref().map(|r| r.id);
        match restored_from {
            Some(id) => tracing::info!(job = %spec.name, checkpoint = id, storage = url,
                skipped = found.skipped.len(), "resuming from checkpoint"),
            None if !found.skipped.is_empty() => tracing::warn!(job = %spec.name,
                skipped = found.skipped.len(), "no usable checkpoint: starting afresh"),
            None => {}
        }
        let resume = match found.resume {
            Some(r) => r.shards.into_iter().map(Some).collect(),
            None => Vec::new(),
        };
        let control = Arc::new(CheckpointControl::new());
        let (events, rx) = events;
        let coordinator = Coordinator {
            settings: CheckpointSettings {
                interval,
                storage,
                prefix,
                retained: spec.checkpoints_retained,
                timeout: Duration::from_millis(spec.checkpoint_timeout_ms.max(1)),
                failures_tolerated: spec.checkpoint_failures_tolerated,
            },
            job: spec.name.clone(),
            shards: spec.parallelism,
            local,
            peers,
            key_groups: spec.max_parallelism,
            control: control.clone(),
            events: rx,
            next_id: found.next_id,
            stop: Arc::new(AtomicBool::new(false)),
            abort: abort.clone(),
            report: CheckpointReport::default(),
            hooks,
        };
        let storage = (
            coordinator.settings.storage.clone(),
            coordinator.settings.prefix.clone(),
        );
        let setup = Self {
            control,
            events,
            coordinator: Some(coordinator),
            restored: (restored_from, found.skipped),
            storage,
        };
        Ok(Some((setup, resume)))
    }

    /// Starts the coordinator's thread (dropping this side's event sender), running
    /// `thread_start` there first: if it fails, the coordinator stops the job.
    fn start(&mut self, thread_start: Option<ThreadStart>) -> Option<RunningCoordinator> {
        let coordinator = self.coordinator.take()?;
        let (unused, _) = crossbeam_channel::unbounded();
        drop(std::mem::replace(&mut self.events, unused));
        let stop = coordinator.stop.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-checkpoints".into())
            .spawn(move || {
                if let Some(Err(e)) = thread_start.as_ref().map(ThreadStart::run) {
                    coordinator.abort.store(true, Ordering::Relaxed);
                    let e = EngineError::Checkpoint(format!(
                        "the checkpoint coordinator cannot start: {e}"
                    ));
                    return (CheckpointReport::default(), Some(e));
                }
                coordinator.run()
            });
        match handle {
            Ok(h) => Some((stop, h, std::mem::take(&mut self.restored))),
            Err(e) => {
                tracing::error!(error = %e,
                    "cannot start the checkpoint coordinator: the job runs without checkpoints");
                None
            }
        }
    }
}

fn run_placed(
    plan: Plan,
    remote: Option<(RemoteExchangeConfig, Option<TcpListener>)>,
    control: &JobControl,
) -> Result<JobReport, EngineError> {
    let started = Instant::now();
    let cancel = control.flag();
    if cancel.load(Ordering::Acquire) {
        return Err(EngineError::Cancelled);
    }
    let plan = Arc::new(plan);
    let shards = plan.spec.parallelism;
    let local = match &remote {
        Some((config, _)) => {
            config.validate(shards)?;
            config.local_shards.start as usize..config.local_shards.end as usize
        }
        None => 0..shards,
    };
    tracing::info!(
        job = %plan.spec.name,
        shards,
        local_shards = ?local,
        stages = plan.stages.len(),
        "starting job"
    );
    if plan.spec.state_backend == crate::spec::StateBackend::Rocksdb {
        let removed = crate::runtime::shard::remove_stale_scratch(&plan.spec);
        if removed > 0 {
            tracing::info!(job = %plan.spec.name, removed,
                "removed RocksDB scratch left by processes that ended");
        }
    }
    let capacity = plan.spec.ring_capacity_batches;
    let mut senders: SenderSlots = local
        .clone()
        .map(|_| {
            (0..plan.edges)
                .map(|_| (0..shards).map(|_| None).collect())
                .collect()
        })
        .collect();
    let mut receivers: ReceiverSlots = local
        .clone()
        .map(|_| {
            (0..plan.edges)
                .map(|_| (0..shards).map(|_| None).collect())
                .collect()
        })
        .collect();
    for edge in 0..plan.edges {
        for from in local.clone() {
            for to in local.clone() {
                let (tx, rx) = local_channel(capacity);
                senders[from - local.start][edge][to] = Some(Box::new(tx));
                receivers[to - local.start][edge][from] = Some(Box::new(rx));
            }
        }
    }
    let abort = Arc::new(AtomicBool::new(false));
    // A job taking checkpoints: the coordinator's events, which the peers' readers feed too.
    let checkpoint_events: Option<CheckpointEvents> = plan
        .spec
        .checkpoint_interval()?
        .map(|_| crossbeam_channel::unbounded());
    let mut remote_io = match remote {
        Some((config, listener)) => Some(connect_remote(
            &plan,
            &config,
            listener,
            Arc::new(IoShared {
                abort: abort.clone(),
                cancel: cancel.clone(),
                error: Mutex::new(None),
            }),
            &local,
            (&mut senders, &mut receivers),
            checkpoint_events.as_ref().map(|(tx, _)| tx),
        )?),
        None => None,
    };
    let mut mesh = Vec::with_capacity(local.len());
    for (tx, rx) in senders.into_iter().zip(receivers) {
        match (complete(tx), complete(rx)) {
            (Some(tx), Some(rx)) => mesh.push((tx, rx)),
            _ => {
                if let Some(io) = remote_io {
                    let _ = io.finish(true);
                }
                return Err(EngineError::Plan(
                    "the exchange mesh is missing a channel".into(),
                ));
            }
        }
    }
    let cores = if plan.spec.pin_cores {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let checkpointing = match checkpoint_events {
        None => None,
        Some(events) => {
            let peers = remote_io
                .as_mut()
                .map(|io| std::mem::take(&mut io.links))
                .unwrap_or_default();
            let hooks = control.checkpoint_hooks();
            match CheckpointSetup::prepare(&plan, &abort, hooks, local.clone(), events, peers) {
                Ok(c) => c,
                Err(e) => {
                    if let Some(io) = remote_io {
                        let _ = io.finish(true);
                    }
                    return Err(e);
                }
            }
        }
    };
    let (mut checkpointing, mut resume) = match checkpointing {
        Some((setup, resume)) => (Some(setup), resume),
        None => (None, Vec::new()),
    };
    let (collector, collect_rx) = Collector::new(COLLECT_CHANNEL_BATCHES_MAX, COLLECT_RECORDS_MAX);
    let mut handles = Vec::with_capacity(local.len());
    for (i, (tx, rx)) in mesh.into_iter().enumerate() {
        let shard = local.start + i;
        let checkpoints = checkpointing.as_ref().map(|c| ShardCheckpoints {
            control: c.control.clone(),
            events: c.events.clone(),
            restore: resume.get_mut(shard).and_then(Option::take),
            storage: c.storage.clone(),
        });
        let builder = ShardBuilder {
            shard,
            plan: plan.clone(),
            senders: tx,
            receivers: rx,
            collect: collector.clone(),
            abort: abort.clone(),
            cancel: cancel.clone(),
            core: cores.get(i).copied(),
            checkpoints,
        };
        let guard_abort = abort.clone();
        let thread_start = control.thread_start();
        let handle = std::thread::Builder::new()
            .name(format!("sluice-shard-{shard}"))
            .spawn(move || {
                let mut guard = AbortOnDrop {
                    abort: guard_abort,
                    armed: true,
                };
                // Before the shard opens anything: its sources, rings and sinks are made
                // with what the hook set on this thread.
                let result = match thread_start.as_ref().map(ThreadStart::run) {
                    Some(Err(e)) => Err(EngineError::Shard {
                        shard,
                        message: format!("cannot start: {e}"),
                    }),
                    _ => builder.run(),
                };
                guard.armed = result.is_err();
                result
            })
            .map_err(|e| EngineError::Shard {
                shard,
                message: format!("cannot start thread: {e}"),
            });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                abort.store(true, Ordering::Relaxed);
                // Shards blocked on a full collect channel must get through to see the abort.
                drop(collector);
                collect_rx.iter().for_each(drop);
                for h in handles {
                    let _ = h.join();
                }
                if let Some(io) = remote_io {
                    let _ = io.finish(true);
                }
                return Err(e);
            }
        }
    }
    // The collect channel is bounded: take its batches while the shards run. It disconnects
    // when every shard thread has ended (each holds a sender until then).
    drop(collector);
    // The shards hold the only event senders now: the coordinator sees them go.
    let coordinator = checkpointing
        .as_mut()
        .and_then(|c| c.start(control.thread_start()));
    let collected: Vec<Batch> = collect_rx.iter().collect();
    let mut report = JobReport {
        name: plan.spec.name.clone(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    for (i, handle) in handles.into_iter().enumerate() {
        let shard = local.start + i;
        let outcome = handle.join().unwrap_or_else(|_| {
            Err(EngineError::Shard {
                shard,
                message: "shard thread panicked".into(),
            })
        });
        match outcome {
            Ok(r) => report.shards.push(r),
            Err(e) => errors.push(e),
        }
    }
    if let Some((stop, handle, restored)) = coordinator {
        stop.store(true, Ordering::Release);
        let (mut checkpoints, failed) = handle.join().unwrap_or_else(|_| {
            let e = EngineError::Checkpoint("the checkpoint coordinator panicked".into());
            (CheckpointReport::default(), Some(e))
        });
        checkpoints.restored_from = restored.0;
        checkpoints.skipped = restored.1;
        report.checkpoints = checkpoints;
        if let Some(e) = failed {
            // The coordinator stopped the shards: its error is the cause.
            errors.insert(0, e);
        }
    }
    let io_error = remote_io.and_then(|io| io.finish(!errors.is_empty()));
    // A cancelled job reports that, not the shards and connections it stopped. A job that
    // ended on its own before the cancel took effect keeps its report.
    if (io_error.is_some() || !errors.is_empty()) && cancel.load(Ordering::Acquire) {
        tracing::info!(job = %plan.spec.name, elapsed_ms = started.elapsed().as_millis() as u64,
            "job cancelled");
        return Err(EngineError::Cancelled);
    }
    // Report the cause, not the shards that only stopped because of it: a failed connection
    // first (local shards stop when a peer fails), then a shard's own failure.
    if let Some(e) = io_error {
        return Err(e);
    }
    let stopped = |e: &EngineError| matches!(e, EngineError::Shard { message, .. } if message.starts_with("stopped"));
    if let Some(i) = errors
        .iter()
        .position(|e| !stopped(e))
        .or((!errors.is_empty()).then_some(0))
    {
        return Err(errors.swap_remove(i));
    }
    for s in &report.shards {
        report.records_in += s.counters.records_in;
        report.records_out += s.counters.records_out;
        report.late_records += s.counters.late_records;
        report.backpressure_waits += s.counters.backpressure_waits;
        report.dead_letters += s.dead_letters;
        report
            .dead_letter_samples
            .extend(s.dead_letter_samples.iter().cloned());
    }
    report.collected = collected;
    report.elapsed = started.elapsed();
    tracing::info!(
        job = %report.name,
        records_in = report.records_in,
        records_out = report.records_out,
        late = report.late_records,
        dead_letters = report.dead_letters,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "job finished"
    );
    Ok(report)
}
