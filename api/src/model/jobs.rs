//! Jobs: what users submit, the tasks they split into, and their lifecycle.
//!
//! A job is either a stream job (one task per shard, each needing one core
//! and some memory) or a command task (one task with cpus and memory). A job
//! is placed whole or not at all: a stream job's shards only make sense
//! together.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checkpoints::{CheckpointFailure, CheckpointInfo, CheckpointStarted, RestartPolicy};

use super::{AgentId, Resources};
use crate::outcome::CommandError;

pub type JobId = u64;

/// Most jobs the state holds (live ones plus kept finished ones).
pub const JOBS_MAX: usize = 100_000;
/// Finished, failed and cancelled jobs kept for `job show`; older ones are
/// forgotten first.
pub const ENDED_JOBS_KEPT: usize = 10_000;
/// Most tasks (stream shards) in one job.
pub const TASKS_PER_JOB_MAX: u32 = 4096;
/// Role of jobs that name none; it exists without `role set` (weight 1, no
/// quota or limit) unless set explicitly.
pub const DEFAULT_ROLE: &str = "default";
/// Events kept per job (placements, preemptions, failures), oldest dropped.
pub const JOB_EVENTS_KEPT: usize = 32;
const JOB_NAME_BYTES_MAX: usize = 256;
/// Punctuation a job name may hold besides ASCII letters and digits (a
/// command's default name is its program's file name).
pub const JOB_NAME_PUNCTUATION: &str = "-_.:/@+";
const ARGV_BYTES_MAX: usize = 64 << 10;
const STREAM_SPEC_BYTES_MAX: usize = 1 << 20;
const CONSTRAINTS_MAX: usize = 32;
const PRIORITY_MAX: i32 = 1000;
/// One year: a longer estimate is a unit mistake.
const ESTIMATE_MS_MAX: u64 = 365 * 24 * 3_600_000;
const MESSAGE_BYTES_MAX: usize = 4096;

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JobKind {
    /// A dataflow job of the engine: `parallelism` shards, each pinned to a
    /// core of its own.
    Stream {
        /// The job spec (TOML), checked by the CLI before submission.
        spec_toml: String,
        parallelism: u32,
        memory_per_shard_bytes: u64,
    },
    /// A process.
    Command {
        argv: Vec<String>,
        cpus: u32,
        memory_bytes: u64,
        #[serde(default)]
        disk_bytes: u64,
    },
}

/// How a job's tasks are spread over agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// Fill the fullest agent that fits first, keeping whole agents free
    /// for large jobs.
    #[default]
    BinPack,
    /// Put each task on the emptiest agent, a job's tasks on distinct agents
    /// where possible.
    Spread,
}

/// An attribute constraint's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintOp {
    Eq,
    Ne,
    In,
}

/// `attribute = value`, `attribute != value` or `attribute in (a, b)`. The
/// attribute `hostname` is the agent's hostname unless the agent sets an
/// attribute of that name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    pub attribute: String,
    pub op: ConstraintOp,
    pub values: Vec<String>,
}

impl Constraint {
    /// Parses `k = v`, `k != v` or `k in (a, b, c)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "constraint {text:?}: expected `ATTR = VALUE`, `ATTR != VALUE` or `ATTR in (A, B)`"
            )
        };
        let (attribute, op, rest) = if let Some((k, v)) = text.split_once("!=") {
            (k, ConstraintOp::Ne, v)
        } else if let Some((k, v)) = text.split_once('=') {
            (k, ConstraintOp::Eq, v)
        } else {
            let lower = text.to_ascii_lowercase();
            let at = lower.find(" in ").ok_or_else(bad)?;
            (&text[..at], ConstraintOp::In, &text[at + 4..])
        };
        let attribute = attribute.trim();
        let values: Vec<String> = match op {
            ConstraintOp::In => {
                let list = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                list.split(',').map(|v| v.trim().to_owned()).collect()
            }
            _ => vec![rest.trim().to_owned()],
        };
        if attribute.is_empty() || values.iter().any(String::is_empty) {
            return Err(bad());
        }
        Ok(Self {
            attribute: attribute.to_owned(),
            op,
            values,
        })
    }

    /// Whether an agent with this hostname and these attributes satisfies it.
    pub fn matches(&self, hostname: &str, attributes: &BTreeMap<String, String>) -> bool {
        let value = attributes
            .get(&self.attribute)
            .map(String::as_str)
            .or((self.attribute == "hostname").then_some(hostname));
        match (self.op, value) {
            (ConstraintOp::Eq | ConstraintOp::In, Some(v)) => self.values.iter().any(|x| x == v),
            (ConstraintOp::Eq | ConstraintOp::In, None) => false,
            (ConstraintOp::Ne, Some(v)) => self.values.iter().all(|x| x != v),
            (ConstraintOp::Ne, None) => true,
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op {
            ConstraintOp::Eq => write!(f, "{} = {}", self.attribute, self.values[0]),
            ConstraintOp::Ne => write!(f, "{} != {}", self.attribute, self.values[0]),
            ConstraintOp::In => write!(f, "{} in ({})", self.attribute, self.values.join(", ")),
        }
    }
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    #[serde(default = "default_role")]
    pub role: String,
    /// Higher runs first under the priority policy and may preempt lower.
    #[serde(default)]
    pub priority: i32,
    /// Expected run time of bounded work; SJF and SRTF order by it. None
    /// means unbounded (a stream job) or unknown.
    #[serde(default)]
    pub estimated_duration_ms: Option<u64>,
    pub kind: JobKind,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub placement: PlacementStrategy,
    /// What happens when a task fails: the job ends Failed, or goes back to the queue
    /// after a delay (a stream job then resumes from its latest checkpoint).
    #[serde(default)]
    pub restart: RestartPolicy,
}

fn default_role() -> String {
    DEFAULT_ROLE.to_owned()
}

impl JobSpec {
    /// Number of tasks and what each needs.
    pub fn demand(&self) -> (u32, Resources) {
        match &self.kind {
            JobKind::Stream {
                parallelism,
                memory_per_shard_bytes,
                ..
            } => (*parallelism, Resources::new(1, *memory_per_shard_bytes, 0)),
            JobKind::Command {
                cpus,
                memory_bytes,
                disk_bytes,
                ..
            } => (1, Resources::new(*cpus, *memory_bytes, *disk_bytes)),
        }
    }

    /// What the whole job needs.
    pub fn total_demand(&self) -> Resources {
        let (tasks, each) = self.demand();
        each.times(tasks)
    }

    pub fn validate(&self) -> Result<(), CommandError> {
        super::roles::check_name("name", &self.name, JOB_NAME_BYTES_MAX, JOB_NAME_PUNCTUATION)?;
        super::roles::check_role_name("role", &self.role)?;
        self.restart
            .validate()
            .map_err(|reason| CommandError::invalid("restart", reason))?;
        if !(-PRIORITY_MAX..=PRIORITY_MAX).contains(&self.priority) {
            return Err(CommandError::invalid(
                "priority",
                format!(
                    "{} is outside -{PRIORITY_MAX}..={PRIORITY_MAX}",
                    self.priority
                ),
            ));
        }
        if let Some(ms) = self.estimated_duration_ms {
            if ms == 0 || ms > ESTIMATE_MS_MAX {
                return Err(CommandError::invalid(
                    "estimated_duration_ms",
                    format!("{ms} is outside 1..={ESTIMATE_MS_MAX} (one year)"),
                ));
            }
        }
        match &self.kind {
            JobKind::Stream {
                spec_toml,
                parallelism,
                memory_per_shard_bytes,
            } => {
                if spec_toml.trim().is_empty() || spec_toml.len() > STREAM_SPEC_BYTES_MAX {
                    return Err(CommandError::invalid(
                        "kind.stream.spec_toml",
                        format!("must be 1..={STREAM_SPEC_BYTES_MAX} bytes"),
                    ));
                }
                check_range(
                    "kind.stream.parallelism",
                    u64::from(*parallelism),
                    1,
                    u64::from(TASKS_PER_JOB_MAX),
                )?;
                check_range(
                    "kind.stream.memory_per_shard_bytes",
                    *memory_per_shard_bytes,
                    1,
                    super::agents::MEMORY_BYTES_MAX,
                )?;
            }
            JobKind::Command {
                argv,
                cpus,
                memory_bytes,
                disk_bytes,
            } => {
                if argv.is_empty() || argv[0].trim().is_empty() {
                    return Err(CommandError::invalid(
                        "kind.command.argv",
                        "must name a program to run",
                    ));
                }
                if argv.iter().map(String::len).sum::<usize>() > ARGV_BYTES_MAX {
                    return Err(CommandError::invalid(
                        "kind.command.argv",
                        format!("longer than {ARGV_BYTES_MAX} bytes"),
                    ));
                }
                check_range(
                    "kind.command.cpus",
                    u64::from(*cpus),
                    1,
                    super::agents::CORES_PER_AGENT_MAX as u64,
                )?;
                check_range(
                    "kind.command.memory_bytes",
                    *memory_bytes,
                    1,
                    super::agents::MEMORY_BYTES_MAX,
                )?;
                check_range(
                    "kind.command.disk_bytes",
                    *disk_bytes,
                    0,
                    super::agents::DISK_BYTES_MAX,
                )?;
            }
        }
        if self.constraints.len() > CONSTRAINTS_MAX {
            return Err(CommandError::invalid(
                "constraints",
                format!(
                    "{} constraints, at most {CONSTRAINTS_MAX}",
                    self.constraints.len()
                ),
            ));
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if c.attribute.is_empty()
                || c.values.is_empty()
                || c.values.iter().any(String::is_empty)
                || (c.op != ConstraintOp::In && c.values.len() != 1)
            {
                return Err(CommandError::invalid(
                    format!("constraints[{i}]"),
                    "needs an attribute and one value (`in`: one or more values), none empty",
                ));
            }
        }
        Ok(())
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), CommandError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(CommandError::invalid(
            field,
            format!("{value} is outside {min}..={max}"),
        ))
    }
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for resources; `reason` says why.
    Pending,
    /// Placed; its tasks are starting or running.
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }
}

/// Lifecycle of one task (a shard or a command), as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not placed.
    Pending,
    /// Placed; the agent has not reported it running yet.
    Staging,
    Running,
    Finished,
    Failed,
    Killed,
    /// Its agent lost it (or was lost).
    Lost,
}

impl TaskState {
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            Self::Finished | Self::Failed | Self::Killed | Self::Lost
        )
    }
}

/// Resources granted to one task on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub agent: AgentId,
    /// The core ids, each granted to this task alone.
    pub cores: BTreeSet<u32>,
    pub memory_bytes: u64,
    #[serde(default)]
    pub disk_bytes: u64,
}

impl Grant {
    pub fn resources(&self) -> Resources {
        Resources::new(self.cores.len() as u32, self.memory_bytes, self.disk_bytes)
    }
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub state: TaskState,
    /// Where it runs; None while Pending or once ended.
    pub grant: Option<Grant>,
    /// The agent's last word on it (e.g. why it failed).
    pub message: Option<String>,
    /// The agent it was last placed on (kept after it ends, for its logs).
    pub last_agent: Option<AgentId>,
}

/// Something that happened to a job, for `job show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Log index of the entry that did it.
    pub index: u64,
    /// The leader's clock when it was proposed (Unix ms).
    pub at_ms: u64,
    pub message: String,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// Why it waits (Pending) or how it ended (Failed, Cancelled).
    pub reason: Option<String>,
    /// Log index of its submission: the FCFS order.
    pub submitted_index: u64,
    pub submitted_ms: u64,
    /// When its current run started (Running only).
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// Time run before earlier preemptions; SRTF subtracts it from the estimate.
    pub run_ms: u64,
    pub preemptions: u32,
    pub tasks: Vec<Task>,
    pub events: Vec<JobEvent>,
    /// Bumped by every change of placement or state; the scheduler's
    /// decisions name the version they were made on, and apply refuses a
    /// decision made on an older one.
    pub version: u64,
    /// Bumped by every placement: which run of the job its tasks belong to.
    /// A checkpoint is accepted only from the current run.
    #[serde(default)]
    pub attempt: u64,
    /// Its latest completed checkpoints, oldest first.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointInfo>,
    /// The checkpoint the current run resumes from (decided with its placement).
    #[serde(default)]
    pub restore_from: Option<u64>,
    /// Restarts after failed tasks so far (see [`RestartPolicy`]).
    #[serde(default)]
    pub restarts: u32,
    /// A restarting job is not placed before this time (the leader's clock, Unix ms).
    #[serde(default)]
    pub not_before_ms: Option<u64>,
    /// Checkpoints of its runs that failed.
    #[serde(default)]
    pub checkpoints_failed: u64,
    /// The latest failed checkpoints, oldest first (at most
    /// [`JOB_CHECKPOINT_FAILURES_KEPT`](super::checkpoints::JOB_CHECKPOINT_FAILURES_KEPT)).
    #[serde(default)]
    pub failed_checkpoints: Vec<CheckpointFailure>,
    /// The checkpoint of the current run being taken, if its agent reported one triggered.
    #[serde(default)]
    pub checkpoint_in_progress: Option<CheckpointStarted>,
}

impl Job {
    /// Estimated time left at `now_ms`, for bounded jobs.
    pub fn remaining_ms(&self, now_ms: u64) -> Option<u64> {
        let estimate = self.spec.estimated_duration_ms?;
        let current = self
            .started_ms
            .map_or(0, |started| now_ms.saturating_sub(started));
        Some(estimate.saturating_sub(self.run_ms.saturating_add(current)))
    }

    /// Appends an event to the job's history, dropping the oldest past [`JOB_EVENTS_KEPT`].
    pub fn record(&mut self, index: u64, at_ms: u64, message: impl Into<String>) {
        if self.events.len() >= JOB_EVENTS_KEPT {
            self.events.remove(0);
        }
        self.events.push(JobEvent {
            index,
            at_ms,
            message: message.into(),
        });
    }
}

/// Caps an agent-supplied message.
pub fn clip_message(message: &str) -> String {
    crate::text::clip(message, MESSAGE_BYTES_MAX).into_owned()
}

/// How the scheduler orders the queue; one per cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// First come, first served: the oldest pending job goes first, and
    /// nothing passes it while it waits for resources that will free up.
    Fcfs,
    /// Shortest job first: the shortest estimated duration goes first
    /// (jobs without an estimate last, oldest first); no preemption.
    Sjf,
    /// Shortest remaining time first: like SJF, and a pending bounded job
    /// preempts running bounded jobs with more time remaining than its estimate.
    Srtf,
    /// Highest priority first; a job preempts lower-priority jobs it needs room from.
    Priority,
    /// Dominant resource fairness across roles, by weight, within quotas,
    /// limits and reservations; within a role, highest priority then oldest first.
    #[default]
    Drf,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Fcfs,
        Policy::Sjf,
        Policy::Srtf,
        Policy::Priority,
        Policy::Drf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Fcfs => "fcfs",
            Policy::Sjf => "sjf",
            Policy::Srtf => "srtf",
            Policy::Priority => "priority",
            Policy::Drf => "drf",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown policy {s:?}; one of fcfs, sjf, srtf, priority, drf"))
    }
}
