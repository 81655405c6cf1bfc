//! Reconciliation, as a pure function: what the masters placed here against
//! what runs here, in; what to start, stop and report lost, out.

use std::collections::{BTreeMap, BTreeSet};

use sluice_api::model::{AgentAssignment, Assignment, JobId, JobKind, TaskState};

use crate::journal::TaskKey;

/// What the agent should do after a heartbeat.
#[derive(Debug, Default, PartialEq)]
pub struct Actions {
    /// Command tasks to start.
    pub start_commands: Vec<Assignment>,
    /// Stream jobs to start: this agent's tasks of each, in task order.
    pub start_streams: BTreeMap<JobId, Vec<Assignment>>,
    /// Running tasks no longer placed here.
    pub stop: Vec<TaskKey>,
    /// Tasks the masters think run here but do not: to report Lost.
    pub lost: Vec<TaskKey>,
}

/// Compares the masters' view with the agent's.
///
/// - `running`: tasks running here;
/// - `unacknowledged`: tasks with a status update the masters have not
///   acknowledged yet (their view of such a task is behind; it is left
///   alone until they catch up).
pub fn reconcile(
    assignment: &AgentAssignment,
    running: &BTreeSet<TaskKey>,
    unacknowledged: &BTreeSet<TaskKey>,
) -> Actions {
    let mut actions = Actions::default();
    let placed: BTreeSet<TaskKey> = assignment.tasks.iter().map(|a| (a.job, a.task)).collect();
    let running_jobs: BTreeSet<JobId> = running.iter().map(|k| k.0).collect();
    for a in &assignment.tasks {
        let key = (a.job, a.task);
        if running.contains(&key) || unacknowledged.contains(&key) {
            continue;
        }
        match a.state {
            TaskState::Staging => match a.kind {
                JobKind::Command { .. } => actions.start_commands.push(a.clone()),
                // A stream job's share here starts as one; never beside a
                // running part of itself.
                JobKind::Stream { .. } if !running_jobs.contains(&a.job) => actions
                    .start_streams
                    .entry(a.job)
                    .or_default()
                    .push(a.clone()),
                JobKind::Stream { .. } => {}
            },
            TaskState::Running => actions.lost.push(key),
            _ => {}
        }
    }
    actions.stop = running.difference(&placed).copied().collect();
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::model::{AgentState, Grant};

    fn task(job: JobId, task: u32, state: TaskState, stream: bool) -> Assignment {
        Assignment {
            job,
            task,
            state,
            grant: Grant {
                agent: 1,
                cores: [task].into(),
                memory_bytes: 1,
                disk_bytes: 0,
            },
            name: "j".into(),
            kind: if stream {
                JobKind::Stream {
                    spec_toml: "x".into(),
                    parallelism: 2,
                    memory_per_shard_bytes: 1,
                }
            } else {
                JobKind::Command {
                    argv: vec!["true".into()],
                    cpus: 1,
                    memory_bytes: 1,
                    disk_bytes: 0,
                }
            },
            peers: vec![Some(1), Some(1)],
            attempt: 1,
            restore_from: None,
            last_checkpoint: None,
        }
    }

    fn assignment(tasks: Vec<Assignment>) -> AgentAssignment {
        AgentAssignment {
            agent: 1,
            state: AgentState::Active,
            tasks,
        }
    }

    #[test]
    fn staging_tasks_start_and_unplaced_ones_stop() {
        let a = assignment(vec![
            task(1, 0, TaskState::Staging, false),
            task(2, 0, TaskState::Staging, true),
            task(2, 1, TaskState::Staging, true),
            task(3, 0, TaskState::Running, false),
        ]);
        let running = [(3, 0), (9, 0)].into();
        let actions = reconcile(&a, &running, &BTreeSet::new());
        assert_eq!(actions.start_commands.len(), 1);
        assert_eq!(actions.start_streams[&2].len(), 2);
        assert_eq!(actions.stop, vec![(9, 0)]);
        assert!(actions.lost.is_empty());
    }

    #[test]
    fn tasks_not_running_here_are_lost_unless_a_report_is_on_its_way() {
        let a = assignment(vec![
            task(1, 0, TaskState::Running, false),
            task(2, 0, TaskState::Running, false),
            task(3, 0, TaskState::Staging, false),
        ]);
        let unacked = [(2, 0), (3, 0)].into();
        let actions = reconcile(&a, &BTreeSet::new(), &unacked);
        assert_eq!(actions.lost, vec![(1, 0)]);
        assert!(actions.start_commands.is_empty());
    }
}
