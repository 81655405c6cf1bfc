//! Finding the checkpoint a job resumes from in its store: the newest completed one whose
//! metadata and every shard file unseal (checksums) and decode, or exactly the one the masters
//! chose for a run, falling back to older ones when it is damaged (saying which and why).
//! Checkpoint ids only grow, across restarts too: [`Found::next_id`] is above every id in the
//! store. The layout is described in [`crate::runtime::coordinator`].

use std::collections::BTreeSet;

use sluice_storage::blob::{unseal, BlobStore};

use crate::error::EngineError;
use crate::runtime::checkpoint::ShardState;
use crate::runtime::coordinator::{chk_dir, store_err, CheckpointMetadata, METADATA_FORMAT};

/// The checkpoint a job resumes from.
pub struct Resume {
    /// The checkpoint's id.
    pub id: u64,
    /// One state per shard, in shard order.
    pub shards: Vec<ShardState>,
}

/// What is in a job's store: the checkpoint to resume from, damaged ones skipped, and the
/// first id free for new checkpoints.
pub struct Found {
    /// The newest usable completed checkpoint.
    pub resume: Option<Resume>,
    /// Checkpoints skipped, with why.
    pub skipped: Vec<String>,
    /// Larger than every id in the store.
    pub next_id: u64,
    /// Ids of the completed checkpoints, newest first (usable or not).
    pub completed: Vec<u64>,
}

/// Ids in the store under `prefix`, and which have metadata.
pub(crate) fn list_ids(
    store: &dyn BlobStore,
    prefix: &str,
) -> Result<(BTreeSet<u64>, BTreeSet<u64>), EngineError> {
    let mut all = BTreeSet::new();
    let mut complete = BTreeSet::new();
    let head = format!("{prefix}/chk-");
    for path in store.list(&format!("{prefix}/")).map_err(store_err)? {
        let Some(rest) = path.strip_prefix(&head) else {
            continue;
        };
        let Some((id, file)) = rest.split_once('/') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        all.insert(id);
        if file == "_metadata" {
            complete.insert(id);
        }
    }
    Ok((all, complete))
}

fn load_one(
    store: &dyn BlobStore,
    prefix: &str,
    job: &str,
    (shards, key_groups): (usize, usize),
    id: u64,
) -> Result<Resume, String> {
    let dir = chk_dir(prefix, id);
    let meta_path = format!("{dir}/_metadata");
    let sealed = store.get(&meta_path).map_err(|e| e.to_string())?;
    let payload = unseal(&meta_path, &sealed).map_err(|e| e.to_string())?;
    let meta: CheckpointMetadata =
        postcard::from_bytes(payload).map_err(|e| format!("{meta_path}: cannot decode: {e}"))?;
    if meta.format != METADATA_FORMAT || meta.id != id || meta.job != job {
        return Err(format!(
            "{meta_path}: metadata of job {:?} checkpoint {} (format {}), not of job {job:?} \
             checkpoint {id}",
            meta.job, meta.id, meta.format
        ));
    }
    if meta.shards as usize != shards || meta.handles.len() != shards {
        return Err(format!(
            "{meta_path}: taken with {} shards, the job has {shards} (rescaling a checkpoint \
             is not supported yet)",
            meta.shards
        ));
    }
    if meta.key_groups as usize != key_groups {
        return Err(format!(
            "{meta_path}: taken with max_parallelism {}, the job has {key_groups} (key groups \
             are fixed for the life of a job)",
            meta.key_groups
        ));
    }
    let mut states = Vec::with_capacity(shards);
    for (s, handle) in meta.handles.iter().enumerate() {
        if handle.shard as usize != s {
            return Err(format!(
                "{meta_path}: handle {s} is for shard {}",
                handle.shard
            ));
        }
        let sealed = store.get(&handle.path).map_err(|e| e.to_string())?;
        let payload = unseal(&handle.path, &sealed).map_err(|e| e.to_string())?;
        let state = ShardState::decode(&handle.path, payload).map_err(|e| e.to_string())?;
        if state.checkpoint != id || state.shard as usize != s || state.job != job {
            return Err(format!("{}: the state of another checkpoint", handle.path));
        }
        states.push(state);
    }
    Ok(Resume { id, shards: states })
}

/// Looks for the checkpoint job `job` (of `shards` shards and `key_groups` key groups)
/// resumes from under `prefix`.
pub fn find_checkpoint(
    store: &dyn BlobStore,
    prefix: &str,
    job: &str,
    (shards, key_groups): (usize, usize),
) -> Result<Found, EngineError> {
    let (all, complete) = list_ids(store, prefix)?;
    let next_id = all.iter().next_back().map_or(1, |id| id + 1);
    let mut skipped = Vec::new();
    let mut resume = None;
    for id in complete.iter().rev() {
        match load_one(store, prefix, job, (shards, key_groups), *id) {
            Ok(r) => {
                resume = Some(r);
                break;
            }
            Err(why) => {
                tracing::warn!(job, checkpoint = id, %why, "checkpoint unusable; trying the one before");
                skipped.push(format!("checkpoint {id}: {why}"));
            }
        }
    }
    Ok(Found {
        resume,
        skipped,
        next_id,
        completed: complete.into_iter().rev().collect(),
    })
}

/// Loads checkpoint `id` from its shard files alone (its completion is recorded elsewhere,
/// by the masters), falling back to older checkpoints with metadata if it is unusable.
pub fn find_exact_checkpoint(
    store: &dyn BlobStore,
    prefix: &str,
    job: &str,
    shape: (usize, usize),
    id: u64,
) -> Result<Found, EngineError> {
    let (all, complete) = list_ids(store, prefix)?;
    let next_id = all.iter().next_back().map_or(1, |i| i + 1).max(id + 1);
    let mut skipped = Vec::new();
    let exact = (|| -> Result<Resume, String> {
        let mut states = Vec::with_capacity(shape.0);
        for s in 0..shape.0 {
            let path = format!("{}/shard-{s}", chk_dir(prefix, id));
            let sealed = store.get(&path).map_err(|e| e.to_string())?;
            let payload = unseal(&path, &sealed).map_err(|e| e.to_string())?;
            let state = ShardState::decode(&path, payload).map_err(|e| e.to_string())?;
            if state.checkpoint != id || state.shard as usize != s || state.job != job {
                return Err(format!("{path}: the state of another checkpoint"));
            }
            states.push(state);
        }
        Ok(Resume { id, shards: states })
    })();
    let mut resume = None;
    match exact {
        Ok(r) => resume = Some(r),
        Err(why) => {
            tracing::warn!(job, checkpoint = id, %why, "checkpoint unusable; trying the one before");
            skipped.push(format!("checkpoint {id}: {why}"));
            for older in complete.iter().rev().filter(|c| **c < id) {
                match load_one(store, prefix, job, shape, *older) {
                    Ok(r) => {
                        resume = Some(r);
                        break;
                    }
                    Err(why) => skipped.push(format!("checkpoint {older}: {why}")),
                }
            }
        }
    }
    Ok(Found {
        resume,
        skipped,
        next_id,
        completed: complete.into_iter().rev().collect(),
    })
}
