//! The checkpoint coordinator of a job run by one process (`sluice run`, or one agent running
//! every shard): triggers checkpoints on an interval, gathers every shard's part, stores each
//! shard's state and then the checkpoint's metadata in the checkpoint storage, and only then
//! completes the checkpoint (sinks publish). [`crate::runtime::restore`] finds the checkpoint a
//! job resumes from.
//!
//! Layout in the store, under the job's prefix:
//!
//! ```text
//! JOB/chk-00000000000000000007/shard-0      sealed ShardState of shard 0
//! JOB/chk-00000000000000000007/shard-1
//! JOB/chk-00000000000000000007/_metadata    sealed CheckpointMetadata: written last
//! ```
//!
//! A checkpoint without `_metadata` never completed. At a restore the newest checkpoint whose
//! metadata and every shard file unseal (checksums) and decode is used; a damaged one is
//! skipped, saying so, for the one before it. Checkpoint ids only grow, across restarts too:
//! a run starts numbering after the largest id in the store.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use sluice_storage::blob::{seal, unseal, BlobStore, SharedBlobStore};

use crate::error::EngineError;
use crate::runtime::checkpoint::{
    bounded_text, CheckpointControl, CheckpointMessage, ShardCheckpoint, ShardEvent, SHARED_DIR,
};
use crate::runtime::restore::list_ids;

/// Format version of the checkpoint metadata.
pub const METADATA_FORMAT: u32 = 1;
/// Checkpoints kept in a job's history (the report).
pub const HISTORY_MAX: usize = 100;

/// How a job takes checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// Time from the end of one checkpoint to the trigger of the next.
    pub interval: Duration,
    /// Where checkpoints go.
    pub storage: SharedBlobStore,
    /// The job's prefix in the store.
    pub prefix: String,
    /// Completed checkpoints kept; older ones are deleted.
    pub retained: usize,
    /// A checkpoint not complete after this long fails.
    pub timeout: Duration,
    /// Consecutive failed checkpoints tolerated; one more fails the job.
    pub failures_tolerated: u32,
}

/// A stored shard file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardHandle {
    /// The shard.
    pub shard: u32,
    /// Its path in the store.
    pub path: String,
    /// Bytes this checkpoint stored for the shard: its state file (sealed) and the shared
    /// files it stored first (RocksDB files already stored by earlier checkpoints are not
    /// counted again).
    pub bytes: u64,
}

/// What `_metadata` says of a completed checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// [`METADATA_FORMAT`].
    pub format: u32,
    /// The job's name.
    pub job: String,
    /// The checkpoint.
    pub id: u64,
    /// Shards of the job.
    pub shards: u32,
    /// The job's key groups (`max_parallelism`).
    pub key_groups: u32,
    /// One per shard.
    pub handles: Vec<ShardHandle>,
    /// When it was triggered (ms since the Unix epoch).
    pub triggered_at_ms: i64,
    /// From trigger to complete, in µs.
    pub duration_us: u64,
    /// Per shard, the longest alignment of its stages, in µs.
    pub alignment_us: Vec<u64>,
    /// Per shard, how long its stages paused to freeze state, in µs.
    pub pause_us: Vec<u64>,
}

/// How a checkpoint ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Stored and complete.
    Completed,
    /// Failed, with the reason.
    Failed(String),
}

/// One checkpoint of a job's history.
#[derive(Clone, Debug)]
pub struct CheckpointRecord {
    /// The checkpoint.
    pub id: u64,
    /// How it ended.
    pub outcome: CheckpointOutcome,
    /// When it was triggered (ms since the Unix epoch).
    pub triggered_at_ms: i64,
    /// From trigger to the end.
    pub duration: Duration,
    /// Bytes stored.
    pub bytes: u64,
    /// Per shard, the longest alignment.
    pub alignment: Vec<Duration>,
    /// Per shard, the pause to freeze state.
    pub pause: Vec<Duration>,
    /// Per shard, approximately how many bytes of memory its frozen state held.
    pub state_bytes: Vec<u64>,
}

/// What the coordinator did, for the job's report.
#[derive(Clone, Debug, Default)]
pub struct CheckpointReport {
    /// The checkpoint the job resumed from.
    pub restored_from: Option<u64>,
    /// Checkpoints skipped at the restore, with why.
    pub skipped: Vec<String>,
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints failed.
    pub failed: u64,
    /// The latest ones, oldest first.
    pub history: Vec<CheckpointRecord>,
}

pub(crate) fn chk_dir(prefix: &str, id: u64) -> String {
    format!("{prefix}/chk-{id:020}")
}

fn ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn store_err(e: sluice_storage::blob::BlobError) -> EngineError {
    EngineError::Checkpoint(e.to_string())
}

/// The link to the coordinator of another process running shards of the same job, over
/// the exchange connection to it.
pub struct PeerLink {
    /// The shards it runs.
    pub shards: Range<usize>,
    /// Messages for it (its connection's writer sends them).
    pub tx: Sender<CheckpointMessage>,
    /// That writer, woken for each message.
    pub writer: std::thread::Thread,
}

impl PeerLink {
    fn send(&self, message: CheckpointMessage) {
        // A peer whose connection is gone fails the job on its own.
        let _ = self.tx.send(message);
        self.writer.unpark();
    }
}

/// A stored shard, as the lead gathers them: its handle, alignment, pause and state size.
struct Stored {
    handle: ShardHandle,
    alignment: Duration,
    pause: Duration,
    state_bytes: u64,
}

/// The coordinator's thread state.
///
/// A job run by one process has one coordinator, which does everything. A job split across
/// processes has one per process: the one running shard 0 leads (triggers every checkpoint
/// in every process through [`CheckpointMessage::Trigger`], gathers what each stored, completes
/// the checkpoint and tells the others through [`CheckpointMessage::Complete`]); the others
/// follow (store their own shards' state and report it with [`CheckpointMessage::Stored`]).
pub struct Coordinator {
    /// Settings.
    pub settings: CheckpointSettings,
    /// The job's name.
    pub job: String,
    /// Shards of the job.
    pub shards: usize,
    /// The shards this process runs.
    pub local: Range<usize>,
    /// The coordinators of the processes running the other shards.
    pub peers: Vec<PeerLink>,
    /// Key groups of the job.
    pub key_groups: usize,
    /// Shared with the shards.
    pub control: Arc<CheckpointControl>,
    /// From the shards (and the peers' coordinators).
    pub events: Receiver<ShardEvent>,
    /// The first id to use.
    pub next_id: u64,
    /// Set when the job is over.
    pub stop: Arc<AtomicBool>,
    /// Set to fail the job.
    pub abort: Arc<AtomicBool>,
    /// The report so far (restore details filled in by the caller).
    pub report: CheckpointReport,
    /// Completes checkpoints elsewhere (the masters), when set.
    pub hooks: Option<Arc<crate::runtime::control::CheckpointHooks>>,
}

impl Coordinator {
    /// Runs until the job ends; returns the report, or the error that failed the job.
    pub fn run(self) -> (CheckpointReport, Option<EngineError>) {
        if self.local.start == 0 {
            self.lead()
        } else {
            self.follow()
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.abort.load(Ordering::Relaxed)
    }

    /// Triggers checkpoints on the interval and completes them.
    fn lead(mut self) -> (CheckpointReport, Option<EngineError>) {
        let mut consecutive_failures = 0u32;
        let mut next_trigger = Instant::now() + self.settings.interval;
        let mut finished = false;
        loop {
            if self.stopping() {
                break;
            }
            // Between checkpoints: drain stale events, wait for the next trigger.
            let now = Instant::now();
            if finished || now < next_trigger {
                let wait = next_trigger
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(50));
                match self.events.recv_timeout(wait) {
                    Ok(
                        ShardEvent::Declined { finished: true, .. }
                        | ShardEvent::Peer(CheckpointMessage::Declined { finished: true, .. }),
                    ) => finished = true,
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let outcome = self.take(id);
            next_trigger = Instant::now() + self.settings.interval;
            match outcome {
                Ok(record) => {
                    consecutive_failures = 0;
                    self.report.completed += 1;
                    self.push(record);
                    if let Err(e) = self.retain() {
                        tracing::warn!(job = %self.job, error = %e, "cannot delete old checkpoints");
                    }
                }
                Err((record, finished_now)) => {
                    if finished_now {
                        // The job is ending: not a failure of the storage or the shards.
                        finished = true;
                        continue;
                    }
                    self.report.failed += 1;
                    consecutive_failures += 1;
                    let reason = match &record.outcome {
                        CheckpointOutcome::Failed(r) => r.clone(),
                        CheckpointOutcome::Completed => String::new(),
                    };
                    tracing::warn!(job = %self.job, checkpoint = id, %reason, consecutive_failures, "checkpoint failed");
                    if let Some(hooks) = &self.hooks {
                        (hooks.failed)(id, &reason);
                    }
                    self.push(record);
                    if self.abort.load(Ordering::Relaxed) {
                        // A fatal completion error stopped the job: that is its cause.
                        return (self.report, Some(EngineError::Checkpoint(reason)));
                    }
                    if consecutive_failures > self.settings.failures_tolerated {
                        let e = EngineError::Checkpoint(format!(
                            "{consecutive_failures} checkpoints in a row failed (tolerated: {}); \
                             the last, {id}: {reason}",
                            self.settings.failures_tolerated
                        ));
                        self.abort.store(true, Ordering::Relaxed);
                        return (self.report, Some(e));
                    }
                }
            }
        }
        (self.report, None)
    }

    /// Takes the checkpoints the lead triggers: stores this process's shards' state and
    /// reports it to the lead; publishes what the lead completes.
    fn follow(mut self) -> (CheckpointReport, Option<EngineError>) {
        let Some(lead) = self.peers.iter().position(|p| p.shards.contains(&0)) else {
            return (
                self.report,
                Some(EngineError::Checkpoint(
                    "no peer runs shard 0, whose process leads the checkpoints".into(),
                )),
            );
        };
        // The checkpoint being taken: its id, when it was triggered, and the local parts.
        let mut current: Option<(u64, Instant, Vec<ShardCheckpoint>)> = None;
        loop {
            if self.stopping() {
                break;
            }
            if current
                .as_ref()
                .is_some_and(|(_, at, _)| at.elapsed() > self.settings.timeout)
            {
                // The lead fails it on its own timeout.
                current = None;
            }
            let event = match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match event {
                ShardEvent::Peer(CheckpointMessage::Trigger { id }) => {
                    if id > self.control.requested() {
                        self.control.trigger(id);
                        current = Some((id, Instant::now(), Vec::new()));
                    }
                }
                ShardEvent::Peer(CheckpointMessage::Complete { id }) => {
                    if id > self.control.completed() {
                        self.control.complete(id);
                        self.report.completed += 1;
                    }
                }
                ShardEvent::Peer(other) => {
                    tracing::debug!(job = %self.job, message = ?other, "a follower ignores it");
                }
                ShardEvent::Taken(part) => {
                    let Some((id, _, parts)) = current.as_mut() else {
                        continue;
                    };
                    if part.id != *id || !self.local.contains(&part.shard) {
                        continue;
                    }
                    if parts.iter().all(|p| p.shard != part.shard) {
                        parts.push(part);
                    }
                    if parts.len() < self.local.len() {
                        continue;
                    }
                    let Some((id, _, parts)) = current.take() else {
                        continue;
                    };
                    self.report_stored(lead, id, &parts);
                }
                ShardEvent::Declined {
                    id,
                    shard,
                    reason,
                    finished,
                } => {
                    if current.as_ref().is_some_and(|(c, _, _)| *c == id) {
                        current = None;
                    }
                    self.peers[lead].send(CheckpointMessage::Declined {
                        id,
                        shard: shard as u32,
                        reason: bounded_text(&reason),
                        finished,
                    });
                }
            }
        }
        (self.report, None)
    }

    /// Stores this follower's shards' parts of checkpoint `id` and tells the lead.
    fn report_stored(&mut self, lead: usize, id: u64, parts: &[ShardCheckpoint]) {
        let dir = chk_dir(&self.settings.prefix, id);
        for part in parts {
            let message = match self.store_part(&dir, part) {
                Ok(handle) => CheckpointMessage::Stored {
                    id,
                    shard: part.shard as u32,
                    path: handle.path,
                    bytes: handle.bytes,
                    alignment_us: part.alignment().as_micros() as u64,
                    pause_us: part.pause().as_micros() as u64,
                    state_bytes: part.size_bytes(),
                },
                Err(e) => {
                    self.report.failed += 1;
                    CheckpointMessage::Declined {
                        id,
                        shard: part.shard as u32,
                        reason: bounded_text(&e.to_string()),
                        finished: false,
                    }
                }
            };
            self.peers[lead].send(message);
        }
    }

    fn push(&mut self, record: CheckpointRecord) {
        if self.report.history.len() == HISTORY_MAX {
            self.report.history.remove(0);
        }
        self.report.history.push(record);
    }

    /// Takes checkpoint `id`; on failure returns its record and whether it failed only
    /// because the job's sources are ending.
    fn take(&mut self, id: u64) -> Result<CheckpointRecord, (CheckpointRecord, bool)> {
        let started = Instant::now();
        let triggered_at_ms = ms_now();
        let failed = |reason: String, bytes| CheckpointRecord {
            id,
            outcome: CheckpointOutcome::Failed(reason),
            triggered_at_ms,
            duration: started.elapsed(),
            bytes,
            alignment: Vec::new(),
            pause: Vec::new(),
            state_bytes: Vec::new(),
        };
        self.control.trigger(id);
        for peer in &self.peers {
            peer.send(CheckpointMessage::Trigger { id });
        }
        if let Some(hooks) = &self.hooks {
            (hooks.triggered)(id, triggered_at_ms);
        }
        let deadline = started + self.settings.timeout;
        // Local shards hand over their parts; the peers' shards report what they stored.
        let mut parts: Vec<Option<ShardCheckpoint>> = (0..self.shards).map(|_| None).collect();
        let mut stored: Vec<Option<Stored>> = (0..self.shards).map(|_| None).collect();
        let mut got = 0;
        while got < self.shards {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop.load(Ordering::Acquire) {
                let missing: Vec<usize> = (0..self.shards)
                    .filter(|s| parts[*s].is_none() && stored[*s].is_none())
                    .collect();
                let why = format!(
                    "timed out after {:?} waiting for shards {missing:?}",
                    self.settings.timeout
                );
                return Err((failed(why, 0), self.stop.load(Ordering::Acquire)));
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(50)))
            {
                Ok(ShardEvent::Taken(part))
                    if part.id == id && self.local.contains(&part.shard) =>
                {
                    let shard = part.shard;
                    if parts[shard].replace(part).is_none() {
                        got += 1;
                    }
                }
                Ok(ShardEvent::Peer(CheckpointMessage::Stored {
                    id: for_id,
                    shard,
                    path,
                    bytes,
                    alignment_us,
                    pause_us,
                    state_bytes,
                })) if for_id == id && !self.local.contains(&(shard as usize)) => {
                    let Some(slot) = stored.get_mut(shard as usize) else {
                        continue;
                    };
                    let handle = ShardHandle { shard, path, bytes };
                    let entry = Stored {
                        handle,
                        alignment: Duration::from_micros(alignment_us),
                        pause: Duration::from_micros(pause_us),
                        state_bytes,
                    };
                    if slot.replace(entry).is_none() {
                        got += 1;
                    }
                }
                Ok(ShardEvent::Declined {
                    id: declined,
                    shard,
                    reason,
                    finished,
                }) => {
                    if declined == id || finished {
                        let why = format!("shard {shard} declined: {reason}");
                        return Err((failed(why, 0), finished));
                    }
                }
                Ok(ShardEvent::Peer(CheckpointMessage::Declined {
                    id: declined,
                    shard,
                    reason,
                    finished,
                })) => {
                    if declined == id || finished {
                        let why = format!("shard {shard} declined: {reason}");
                        return Err((failed(why, 0), finished));
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err((failed("the shards ended".into(), 0), true));
                }
            }
        }
        let parts: Vec<ShardCheckpoint> = parts.into_iter().flatten().collect();
        match self.store(id, &parts, stored, triggered_at_ms, started) {
            Ok((bytes, entries)) => {
                self.control.complete(id);
                for peer in &self.peers {
                    peer.send(CheckpointMessage::Complete { id });
                }
                Ok(CheckpointRecord {
                    id,
                    outcome: CheckpointOutcome::Completed,
                    triggered_at_ms,
                    duration: started.elapsed(),
                    bytes,
                    alignment: entries.iter().map(|e| e.alignment).collect(),
                    pause: entries.iter().map(|e| e.pause).collect(),
                    state_bytes: entries.iter().map(|e| e.state_bytes).collect(),
                })
            }
            Err(e) => Err((failed(e.to_string(), 0), false)),
        }
    }

    /// Stops the job for good: another run of it replaced this one.
    fn fatal(&self, why: &str) -> EngineError {
        self.abort.store(true, Ordering::Relaxed);
        EngineError::Checkpoint(format!("stopping: {why}"))
    }

    /// Makes one shard's sink files durable, serialises its state and stores it in `dir`.
    fn store_part(&self, dir: &str, part: &ShardCheckpoint) -> Result<ShardHandle, EngineError> {
        part.sync_files()?;
        let store = &self.settings.storage;
        let planned = part.planned_shared()?;
        if !planned.is_empty() {
            // Written before any shared file is stored: every stored shared file is named by
            // some checkpoint's list, which retention deletes it with, even if this process
            // is killed half-way through storing them.
            let list = postcard::to_stdvec(&planned)
                .map_err(|e| EngineError::Checkpoint(format!("cannot encode a file list: {e}")))?;
            let list_path = format!("{dir}/shard-{}{SHARED_LIST}", part.shard);
            store.put(&list_path, &seal(&list)).map_err(store_err)?;
        }
        let state = part.to_state(&self.job, self.shards)?;
        if let Some(unlisted) = state.shared.iter().find(|p| !planned.contains(p)) {
            return Err(EngineError::Checkpoint(format!(
                "shard {}: the state refers to {unlisted}, which its list does not name",
                part.shard
            )));
        }
        let sealed = seal(&state.encode()?);
        let path = format!("{dir}/shard-{}", part.shard);
        store.put(&path, &sealed).map_err(store_err)?;
        Ok(ShardHandle {
            shard: part.shard as u32,
            path,
            bytes: sealed.len() as u64 + state.shared_new_bytes,
        })
    }

    /// Stores the local shards' states, completes the checkpoint with every shard's (through
    /// the masters, when hooks are set), then writes the metadata; returns the bytes stored
    /// and every shard's entry, in shard order.
    fn store(
        &self,
        id: u64,
        parts: &[ShardCheckpoint],
        remote: Vec<Option<Stored>>,
        triggered_at_ms: i64,
        started: Instant,
    ) -> Result<(u64, Vec<Stored>), EngineError> {
        let dir = chk_dir(&self.settings.prefix, id);
        let mut entries: Vec<Stored> = remote.into_iter().flatten().collect();
        for part in parts {
            entries.push(Stored {
                handle: self.store_part(&dir, part)?,
                alignment: part.alignment(),
                pause: part.pause(),
                state_bytes: part.size_bytes(),
            });
        }
        entries.sort_by_key(|e| e.handle.shard);
        let meta = CheckpointMetadata {
            format: METADATA_FORMAT,
            job: self.job.clone(),
            id,
            shards: self.shards as u32,
            key_groups: self.key_groups as u32,
            handles: entries.iter().map(|e| e.handle.clone()).collect(),
            triggered_at_ms,
            duration_us: started.elapsed().as_micros() as u64,
            alignment_us: entries
                .iter()
                .map(|e| e.alignment.as_micros() as u64)
                .collect(),
            pause_us: entries.iter().map(|e| e.pause.as_micros() as u64).collect(),
        };
        if let Some(hooks) = &self.hooks {
            // The masters decide: the checkpoint is complete once they committed it.
            match (hooks.complete)(&meta) {
                Ok(()) => {}
                Err(crate::runtime::control::CompletionError::Failed(why)) => {
                    return Err(EngineError::Checkpoint(format!("not completed: {why}")))
                }
                Err(crate::runtime::control::CompletionError::Fatal(why)) => {
                    return Err(self.fatal(&why))
                }
            }
        }
        let encoded = postcard::to_stdvec(&meta)
            .map_err(|e| EngineError::Checkpoint(format!("cannot encode metadata: {e}")))?;
        let sealed = seal(&encoded);
        self.settings
            .storage
            .put(&format!("{dir}/_metadata"), &sealed)
            .map_err(store_err)?;
        let bytes = entries.iter().map(|e| e.handle.bytes).sum::<u64>() + sealed.len() as u64;
        Ok((bytes, entries))
    }

    /// Deletes checkpoints older than the retained completed ones (and failed ones before
    /// the newest completed).
    fn retain(&self) -> Result<(), EngineError> {
        let store = &self.settings.storage;
        let prefix = &self.settings.prefix;
        let (all, complete) = list_ids(store.as_ref(), prefix)?;
        let keep: BTreeSet<u64> = complete
            .iter()
            .rev()
            .take(self.settings.retained.max(1))
            .copied()
            .collect();
        let Some(oldest_kept) = keep.iter().next().copied() else {
            return Ok(());
        };
        let (old, kept): (Vec<u64>, Vec<u64>) = all.into_iter().partition(|id| *id < oldest_kept);
        if old.is_empty() {
            return Ok(());
        }
        // Shared files go with the last checkpoint referring to them; read before deleting.
        let unreferenced: Vec<String> = {
            let used = shared_files(store.as_ref(), prefix, &kept)?;
            shared_files(store.as_ref(), prefix, &old)?
                .into_iter()
                .filter(|f| !used.contains(f))
                .collect()
        };
        // Metadata first: a half-deleted checkpoint is never taken for a complete one. Then
        // the shared files, and the lists naming them last, so that a process killed
        // part-way leaves no shared file that no list names (the next retention goes on).
        for id in &old {
            let dir = chk_dir(prefix, *id);
            store
                .delete(&format!("{dir}/_metadata"))
                .map_err(store_err)?;
        }
        for path in unreferenced {
            store.delete(&path).map_err(store_err)?;
        }
        for id in old {
            let dir = chk_dir(prefix, id);
            // Every name a checkpoint's directory may hold, listed or not: a store deletes
            // with an object what a put of it killed part-way left (`DirStore`'s partial
            // files, which no list shows).
            let names = (0..self.shards).flat_map(|s| {
                [
                    format!("{dir}/shard-{s}"),
                    format!("{dir}/shard-{s}{SHARED_LIST}"),
                ]
            });
            let listed = store.list(&format!("{dir}/")).map_err(store_err)?;
            let paths: BTreeSet<String> = listed.into_iter().chain(names).collect();
            for path in paths {
                store.delete(&path).map_err(store_err)?;
            }
        }
        Ok(())
    }
}

/// The suffix of a shard's list of the shared files its state refers to.
const SHARED_LIST: &str = ".shared";

/// The shared files that checkpoints `ids` refer to; a list that cannot be read fails
/// (retention then deletes nothing rather than a file some checkpoint may need).
fn shared_files(
    store: &dyn BlobStore,
    prefix: &str,
    ids: &[u64],
) -> Result<BTreeSet<String>, EngineError> {
    let mut files = BTreeSet::new();
    for id in ids {
        let dir = chk_dir(prefix, *id);
        for path in store.list(&format!("{dir}/")).map_err(store_err)? {
            if !path.ends_with(SHARED_LIST) {
                continue;
            }
            let sealed = store.get(&path).map_err(store_err)?;
            let list = unseal(&path, &sealed).map_err(store_err)?;
            let list: Vec<String> = postcard::from_bytes(list)
                .map_err(|e| EngineError::Checkpoint(format!("{path}: cannot decode: {e}")))?;
            // Only files under the job's shared directory are ever deleted.
            let shared = format!("{prefix}/{SHARED_DIR}/");
            files.extend(list.into_iter().filter(|f| f.starts_with(&shared)));
        }
    }
    Ok(files)
}
