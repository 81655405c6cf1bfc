//! Stream jobs' checkpoint records and every job's restart policy: what the masters keep of
//! a job's runs, and the apply side of their checkpoint reports.

use serde::{Deserialize, Serialize};

/// Longest restart delay accepted.
pub const RESTART_DELAY_MAX_MS: u64 = 24 * 3600 * 1000;
/// Most restarts a policy may allow.
pub const RESTART_ATTEMPTS_MAX: u32 = 10_000;

/// How a job restarts after a task fails (an agent lost is not a failure of the job: its
/// work is always placed again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// The job ends Failed with its first failed task.
    #[default]
    Never,
    /// Up to `attempts` restarts, each `delay_ms` after the failure.
    FixedDelay { attempts: u32, delay_ms: u64 },
    /// Up to `attempts` restarts, the first `initial_ms` after the failure, each next one
    /// twice as long, at most `max_ms`.
    ExponentialBackoff {
        attempts: u32,
        initial_ms: u64,
        max_ms: u64,
    },
}

impl RestartPolicy {
    /// The delay before restart number `done + 1`, or `None` when no restart is left.
    pub fn delay_ms(&self, done: u32) -> Option<u64> {
        match *self {
            Self::Never => None,
            Self::FixedDelay { attempts, delay_ms } => (done < attempts).then_some(delay_ms),
            Self::ExponentialBackoff {
                attempts,
                initial_ms,
                max_ms,
            } => (done < attempts).then(|| {
                let factor = 1u64.checked_shl(done.min(63)).unwrap_or(u64::MAX);
                initial_ms.saturating_mul(factor).min(max_ms)
            }),
        }
    }

    /// How many restarts it allows.
    pub fn attempts(&self) -> u32 {
        match *self {
            Self::Never => 0,
            Self::FixedDelay { attempts, .. } | Self::ExponentialBackoff { attempts, .. } => {
                attempts
            }
        }
    }

    /// Checks the policy's numbers.
    pub fn validate(&self) -> Result<(), String> {
        let (attempts, delays) = match *self {
            Self::Never => return Ok(()),
            Self::FixedDelay { attempts, delay_ms } => (attempts, [delay_ms, delay_ms]),
            Self::ExponentialBackoff {
                attempts,
                initial_ms,
                max_ms,
            } => {
                if initial_ms > max_ms {
                    return Err(format!(
                        "the first delay ({initial_ms} ms) is longer than the longest ({max_ms} ms)"
                    ));
                }
                (attempts, [initial_ms, max_ms])
            }
        };
        if attempts == 0 || attempts > RESTART_ATTEMPTS_MAX {
            return Err(format!(
                "restart attempts must be 1..={RESTART_ATTEMPTS_MAX}, not {attempts}"
            ));
        }
        if delays.iter().any(|d| *d > RESTART_DELAY_MAX_MS) {
            return Err(format!(
                "a restart delay may be at most {RESTART_DELAY_MAX_MS} ms"
            ));
        }
        Ok(())
    }
}

/// Completed checkpoints kept per job (in the state; the store keeps its own count).
pub const JOB_CHECKPOINTS_KEPT: usize = 10;

/// A completed checkpoint of a stream job, as its run's agents reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The checkpoint's id (ids only grow within a job).
    pub id: u64,
    /// Where each shard's state is, in shard order, in the job's checkpoint storage.
    pub handles: Vec<String>,
    /// When it was triggered (Unix ms, the agent's clock).
    pub triggered_ms: u64,
    /// From trigger to stored, in ms.
    pub duration_ms: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Per shard, the longest alignment of its stages, in µs.
    pub alignment_us: Vec<u64>,
    /// When the completion was committed (the leader's clock).
    #[serde(default)]
    pub completed_ms: u64,
}

/// Longest checkpoint failure reason kept.
pub const CHECKPOINT_FAILURE_BYTES_MAX: usize = 1024;

/// Failed checkpoints kept per job.
pub const JOB_CHECKPOINT_FAILURES_KEPT: usize = 10;

/// A checkpoint being taken, as its run's agent reported the trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStarted {
    /// The checkpoint's id.
    pub id: u64,
    /// When it was triggered (Unix ms, the agent's clock).
    pub triggered_ms: u64,
}

/// A failed checkpoint of a stream job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFailure {
    /// The checkpoint's id.
    pub id: u64,
    /// When it was triggered (Unix ms, the agent's clock), if its trigger was reported.
    pub triggered_ms: Option<u64>,
    /// When the failure was committed (the leader's clock).
    pub failed_ms: u64,
    /// Why it failed.
    pub reason: String,
}
