//! The cluster's records as clients send and read them: agents, roles, jobs,
//! their resources and checkpoints, ACL policies.
//!
//! These are plain data with their own validation (a client can check a spec
//! before sending it; the leader checks it again). Applying them to the
//! replicated state is the masters' business (`sluice-consensus`).

pub mod acl;
mod agents;
mod checkpoints;
mod jobs;
mod placement;
mod resources;
mod roles;
mod views;

pub use acl::{AclPolicy, Need, TokenInfo};
pub use agents::{
    Agent, AgentId, AgentSpec, AgentState, Drain, AGENTS_MAX, CORES_PER_AGENT_MAX, DISK_BYTES_MAX,
    MEMORY_BYTES_MAX,
};
pub use checkpoints::{
    CheckpointFailure, CheckpointInfo, CheckpointStarted, RestartPolicy,
    CHECKPOINT_FAILURE_BYTES_MAX, JOB_CHECKPOINTS_KEPT, JOB_CHECKPOINT_FAILURES_KEPT,
    RESTART_ATTEMPTS_MAX, RESTART_DELAY_MAX_MS,
};
pub use jobs::{
    clip_message, Constraint, ConstraintOp, Grant, Job, JobEvent, JobId, JobKind, JobSpec,
    JobState, PlacementStrategy, Policy, Task, TaskState, DEFAULT_ROLE, ENDED_JOBS_KEPT, JOBS_MAX,
    JOB_EVENTS_KEPT, JOB_NAME_PUNCTUATION, TASKS_PER_JOB_MAX,
};
pub use placement::{PlacementViolation, TaskUpdate};
pub use resources::Resources;
pub use roles::{
    check_name, check_role_name, Change, Role, RolePatch, RoleSpec, ROLES_MAX,
    ROLE_NAME_PUNCTUATION,
};
pub use views::{AgentAssignment, Assignment, SchedulerSummary};
