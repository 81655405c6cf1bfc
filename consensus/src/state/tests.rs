//! Tests of `ClusterState::apply_command`: validation, rejection without
//! side effects, determinism and snapshot encoding.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn agent(hostname: &str, cores: u32, memory_bytes: u64) -> AgentSpec {
    AgentSpec {
        id: None,
        hostname: hostname.to_owned(),
        cores: (0..cores).collect(),
        memory_bytes,
        disk_bytes: 1 << 30,
        attributes: BTreeMap::new(),
    }
}

#[test]
fn agents_get_sequential_ids_and_reregister_idempotently() {
    let mut state = ClusterState::default();
    let first = state
        .apply_command(
            1,
            &Command::RegisterAgent {
                spec: agent("a", 4, 1 << 30),
                token: None,
            },
        )
        .unwrap();
    let second = state
        .apply_command(
            2,
            &Command::RegisterAgent {
                spec: agent("b", 2, 1 << 30),
                token: None,
            },
        )
        .unwrap();
    assert_eq!(first, CommandOutput::AgentRegistered { id: 0, new: true });
    assert_eq!(second, CommandOutput::AgentRegistered { id: 1, new: true });

    let mut again = state.agents[&0].spec();
    again.attributes.insert("zone".into(), "eu-1".into());
    let out = state
        .apply_command(
            3,
            &Command::RegisterAgent {
                spec: again,
                token: None,
            },
        )
        .unwrap();
    assert_eq!(out, CommandOutput::AgentRegistered { id: 0, new: false });
    assert_eq!(state.agents[&0].attributes["zone"], "eu-1");
    assert_eq!(
        state.agents[&0].registered_at, 1,
        "first registration is kept"
    );
}

#[test]
fn reregistering_with_other_resources_is_refused_and_changes_nothing() {
    let mut state = ClusterState::default();
    state
        .apply_command(
            1,
            &Command::RegisterAgent {
                spec: agent("a", 4, 1 << 30),
                token: None,
            },
        )
        .unwrap();
    let before = state.clone();
    let mut changed = state.agents[&0].spec();
    changed.cores = BTreeSet::from([0, 1, 2, 3, 4, 5, 6, 7]);
    let err = state
        .apply_command(
            2,
            &Command::RegisterAgent {
                spec: changed,
                token: None,
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, CommandError::AgentResourcesMismatch { id: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cores"), "{err}");
    assert_eq!(state, before);
}

#[test]
fn only_lost_agents_can_be_removed() {
    let mut state = ClusterState::default();
    state
        .apply_command(
            1,
            &Command::RegisterAgent {
                spec: agent("a", 1, 1 << 20),
                token: None,
            },
        )
        .unwrap();
    let err = state
        .apply_command(2, &Command::RemoveAgent { id: 0 })
        .unwrap_err();
    assert_eq!(
        err,
        CommandError::AgentNotLost {
            id: 0,
            state: AgentState::Active
        }
    );
    state
        .apply_command(
            3,
            &Command::SetAgentState {
                id: 0,
                state: AgentState::Lost,
                reason: None,
                now_ms: 0,
            },
        )
        .unwrap();
    state
        .apply_command(4, &Command::RemoveAgent { id: 0 })
        .unwrap();
    assert!(state.agents.is_empty());
    assert_eq!(state.next_agent_id, 1, "ids are never reused");
}

#[test]
fn absurd_resources_and_bad_roles_are_refused() {
    let mut state = ClusterState::default();
    for (spec, field) in [
        (agent("a", 0, 1 << 20), "cores"),
        (agent("a", 1, 0), "memory_bytes"),
        (agent("a", 1, u64::MAX), "memory_bytes"),
        (agent(" ", 1, 1 << 20), "hostname"),
    ] {
        let err = state
            .apply_command(1, &Command::RegisterAgent { spec, token: None })
            .unwrap_err();
        assert!(
            matches!(&err, CommandError::Invalid { field: f, .. } if f == field),
            "{err}"
        );
    }
    for (weight, name) in [(0.0, "ok"), (f64::NAN, "ok"), (1.0, "bad name!"), (1.0, "")] {
        let spec = RoleSpec {
            name: name.into(),
            weight,
            quota: None,
            limit: None,
            reservations: Default::default(),
        };
        assert!(
            state.apply_command(1, &Command::SetRole(spec)).is_err(),
            "{name} {weight}"
        );
    }
    let quota = Resources {
        cores: 4,
        memory_bytes: 1,
        disk_bytes: 1,
    };
    let limit = Resources {
        cores: 2,
        memory_bytes: 1,
        disk_bytes: 1,
    };
    let spec = RoleSpec {
        name: "r".into(),
        weight: 1.0,
        quota: Some(quota),
        limit: Some(limit),
        reservations: Default::default(),
    };
    assert!(state.apply_command(1, &Command::SetRole(spec)).is_err());
    assert_eq!(state, ClusterState::default());
}

#[test]
fn restore_refuses_an_inconsistent_state() {
    let mut saved = ClusterState::default();
    saved
        .apply_command(
            1,
            &Command::RegisterAgent {
                spec: agent("a", 1, 1 << 20),
                token: None,
            },
        )
        .unwrap();
    saved.next_agent_id = 0;
    let mut state = ClusterState::default();
    let err = state
        .apply_command(2, &Command::RestoreState(Box::new(saved)))
        .unwrap_err();
    assert!(
        matches!(&err, CommandError::Invalid { field, .. } if field == "next_agent_id"),
        "{err}"
    );
    assert_eq!(state, ClusterState::default());
}

/// A state where job 0 runs one 1-core, 1 GiB task on agent 0.
fn one_running_job() -> ClusterState {
    let mut state = ClusterState::default();
    state
        .apply_command(
            1,
            &Command::RegisterAgent {
                spec: agent("a", 4, 8 << 30),
                token: None,
            },
        )
        .unwrap();
    let job = JobSpec {
        name: "j".into(),
        role: DEFAULT_ROLE.into(),
        priority: 0,
        estimated_duration_ms: None,
        kind: JobKind::Command {
            argv: vec!["true".into()],
            cpus: 1,
            memory_bytes: 1 << 30,
            disk_bytes: 0,
        },
        constraints: Vec::new(),
        placement: PlacementStrategy::BinPack,
        restart: RestartPolicy::Never,
    };
    state
        .apply_command(2, &Command::SubmitJob { job, now_ms: 5 })
        .unwrap();
    let place = Command::PlaceJob {
        job: 0,
        version: state.jobs[&0].version,
        grants: vec![Grant {
            agent: 0,
            cores: BTreeSet::from([0]),
            memory_bytes: 1 << 30,
            disk_bytes: 0,
        }],
        reason: None,
        now_ms: 6,
    };
    state.apply_command(3, &place).unwrap();
    state
}

/// The placements one scheduler cycle at `now_ms` decides.
fn placements(state: &ClusterState, now_ms: u64) -> Vec<Command> {
    crate::scheduler::schedule(state, now_ms)
        .commands
        .into_iter()
        .filter(|c| matches!(c, Command::PlaceJob { .. }))
        .collect()
}

fn fail_task(state: &mut ClusterState, index: u64, now_ms: u64) {
    let fail = Command::UpdateTask {
        update: TaskUpdate {
            job: 0,
            task: 0,
            agent: 0,
            state: TaskState::Failed,
            message: Some("boom".into()),
        },
        now_ms,
    };
    state.apply_command(index, &fail).unwrap();
}

/// A failed task restarts its job per the job's policy: back to the queue, placed again
/// only after the delay, until the attempts run out; then the job fails.
#[test]
fn a_failed_task_restarts_its_job_until_the_policy_runs_out() {
    let mut state = one_running_job();
    state.jobs.get_mut(&0).unwrap().spec.restart = RestartPolicy::ExponentialBackoff {
        attempts: 2,
        initial_ms: 1000,
        max_ms: 1500,
    };
    fail_task(&mut state, 4, 100);
    let job = &state.jobs[&0];
    assert_eq!(
        (job.state, job.restarts, job.not_before_ms),
        (JobState::Pending, 1, Some(1100))
    );
    assert!(
        job.reason
            .as_deref()
            .unwrap()
            .contains("restart 1 of 2 in 1000 ms"),
        "{:?}",
        job.reason
    );
    assert!(job.events.last().unwrap().message.contains("boom"));
    // Not placed before its delay, placed after it.
    assert!(placements(&state, 1099).is_empty());
    let placed = placements(&state, 1100);
    assert_eq!(placed.len(), 1, "placed once the delay is over");
    for (i, command) in placed.iter().enumerate() {
        state.apply_command(5 + i as u64, command).unwrap();
    }
    assert_eq!(state.jobs[&0].state, JobState::Running);
    assert_eq!(state.jobs[&0].attempt, 2);
    // The second restart waits twice as long, capped at the maximum.
    fail_task(&mut state, 10, 2000);
    assert_eq!(state.jobs[&0].not_before_ms, Some(3500));
    let placed = placements(&state, 3500);
    for (i, command) in placed.iter().enumerate() {
        state.apply_command(11 + i as u64, command).unwrap();
    }
    // No restart left: the job fails.
    fail_task(&mut state, 20, 4000);
    assert_eq!(state.jobs[&0].state, JobState::Failed);
    assert_eq!(state.jobs[&0].restarts, 2);
    state.validate().unwrap();
}

#[test]
fn restart_policies_are_checked() {
    for bad in [
        RestartPolicy::FixedDelay {
            attempts: 0,
            delay_ms: 1,
        },
        RestartPolicy::FixedDelay {
            attempts: 1,
            delay_ms: RESTART_DELAY_MAX_MS + 1,
        },
        RestartPolicy::ExponentialBackoff {
            attempts: 3,
            initial_ms: 10,
            max_ms: 5,
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let policy = RestartPolicy::ExponentialBackoff {
        attempts: 70,
        initial_ms: 3,
        max_ms: u64::MAX,
    };
    assert_eq!(policy.delay_ms(69), Some(u64::MAX), "no overflow");
    assert_eq!(policy.delay_ms(70), None);
}

/// A checkpoint completes only from the job's current run, naming every shard, above the
/// last one; a rejected one changes nothing.
#[test]
fn checkpoint_completion_is_checked_against_the_run() {
    let mut state = one_running_job();
    // Make it a stream job of one shard.
    state.jobs.get_mut(&0).unwrap().spec.kind = JobKind::Stream {
        spec_toml: "x".into(),
        parallelism: 1,
        memory_per_shard_bytes: 1 << 30,
    };
    let info = |id: u64, handles: usize| CheckpointInfo {
        id,
        handles: (0..handles)
            .map(|s| format!("job-0/chk-{id}/shard-{s}"))
            .collect(),
        triggered_ms: 1,
        duration_ms: 1,
        bytes: 10,
        alignment_us: vec![0; handles],
        completed_ms: 0,
    };
    let done = |attempt, checkpoint| Command::CheckpointCompleted {
        job: 0,
        attempt,
        checkpoint,
        now_ms: 50,
    };
    let attempt = state.jobs[&0].attempt;
    let before = state.clone();
    for (command, what) in [
        (done(attempt + 1, info(1, 1)), "another run"),
        (done(attempt, info(1, 0)), "a missing shard"),
        (done(attempt, info(1, 2)), "an extra shard"),
    ] {
        assert!(state.apply_command(7, &command).is_err(), "{what}");
        assert_eq!(state, before, "{what} changed the state");
    }
    state.apply_command(7, &done(attempt, info(3, 1))).unwrap();
    assert_eq!(state.jobs[&0].checkpoints.last().unwrap().completed_ms, 50);
    let err = state
        .apply_command(8, &done(attempt, info(3, 1)))
        .unwrap_err();
    assert!(err.to_string().contains("not above"), "{err}");
    // A placement resumes from the latest: the next run's assignment says so.
    let job = state.jobs.get_mut(&0).unwrap();
    assert_eq!(job.checkpoints.len(), 1);
    let stale = done(attempt - 1, info(4, 1));
    let err = state.apply_command(9, &stale).unwrap_err();
    assert!(matches!(err, CommandError::StaleRun { .. }), "{err}");
    // Failures are counted with the latest reason (bounded), from the current run only.
    let failed = |attempt, reason: String| Command::CheckpointFailed {
        job: 0,
        attempt,
        id: 5,
        reason,
        now_ms: 60,
    };
    let before = state.clone();
    let err = state
        .apply_command(10, &failed(attempt + 1, "x".into()))
        .unwrap_err();
    assert!(matches!(err, CommandError::StaleRun { .. }), "{err}");
    assert_eq!(state, before);
    state
        .apply_command(11, &failed(attempt, "store: disk full".into()))
        .unwrap();
    state
        .apply_command(12, &failed(attempt, "y".repeat(100_000)))
        .unwrap();
    let job = &state.jobs[&0];
    assert_eq!(job.checkpoints_failed, 2);
    let last = job.failed_checkpoints.last().unwrap();
    assert_eq!((last.id, last.failed_ms, last.triggered_ms), (5, 60, None));
    assert!(
        last.reason.len() <= CHECKPOINT_FAILURE_BYTES_MAX + 64,
        "{}",
        last.reason.len()
    );
}

/// A triggered checkpoint is in progress until it completes or fails, or the job is placed
/// again; a trigger reported after its checkpoint ended, or from another run, is refused.
#[test]
fn checkpoints_in_progress_are_tracked_from_trigger_to_end() {
    let mut state = one_running_job();
    state.jobs.get_mut(&0).unwrap().spec.kind = JobKind::Stream {
        spec_toml: "x".into(),
        parallelism: 1,
        memory_per_shard_bytes: 1 << 30,
    };
    let attempt = state.jobs[&0].attempt;
    let triggered = |attempt, id| Command::CheckpointTriggered {
        job: 0,
        attempt,
        id,
        triggered_ms: 1000 + id,
        now_ms: 0,
    };
    let completed = |id| Command::CheckpointCompleted {
        job: 0,
        attempt,
        checkpoint: CheckpointInfo {
            id,
            handles: vec![format!("job-0/chk-{id}/shard-0")],
            triggered_ms: 1000 + id,
            duration_ms: 1,
            bytes: 10,
            alignment_us: vec![0],
            completed_ms: 0,
        },
        now_ms: 50,
    };
    let failed = |id| Command::CheckpointFailed {
        job: 0,
        attempt,
        id,
        reason: "timed out".into(),
        now_ms: 70,
    };
    let in_progress = |state: &ClusterState| state.jobs[&0].checkpoint_in_progress.clone();
    let before = state.clone();
    let err = state
        .apply_command(7, &triggered(attempt + 1, 1))
        .unwrap_err();
    assert!(matches!(err, CommandError::StaleRun { .. }), "{err}");
    assert_eq!(state, before);

    state.apply_command(7, &triggered(attempt, 1)).unwrap();
    let started = in_progress(&state).unwrap();
    assert_eq!((started.id, started.triggered_ms), (1, 1001));
    state.apply_command(8, &completed(1)).unwrap();
    assert_eq!(in_progress(&state), None, "completed");
    let err = state.apply_command(9, &triggered(attempt, 1)).unwrap_err();
    assert!(
        err.to_string().contains("not above the last ended one, 1"),
        "{err}"
    );

    state.apply_command(9, &triggered(attempt, 2)).unwrap();
    state.apply_command(10, &failed(2)).unwrap();
    assert_eq!(in_progress(&state), None, "failed");
    let failure = state.jobs[&0].failed_checkpoints.last().unwrap().clone();
    assert_eq!(
        (failure.id, failure.triggered_ms, failure.failed_ms),
        (2, Some(1002), 70)
    );
    assert!(state.apply_command(11, &triggered(attempt, 2)).is_err());

    // Failures are kept up to a bound, oldest dropped first.
    for id in 3..3 + JOB_CHECKPOINT_FAILURES_KEPT as u64 {
        state.apply_command(12, &triggered(attempt, id)).unwrap();
        state.apply_command(12, &failed(id)).unwrap();
    }
    let kept = &state.jobs[&0].failed_checkpoints;
    assert_eq!(kept.len(), JOB_CHECKPOINT_FAILURES_KEPT);
    assert_eq!(kept[0].id, 3);

    // A new placement of the job ends the old run's checkpoint.
    state.apply_command(13, &triggered(attempt, 100)).unwrap();
    assert!(in_progress(&state).is_some());
    state.jobs.get_mut(&0).unwrap().spec.restart = RestartPolicy::FixedDelay {
        attempts: 1,
        delay_ms: 0,
    };
    fail_task(&mut state, 14, 200);
    assert!(
        in_progress(&state).is_some(),
        "still the old run's until placed"
    );
    for (i, command) in placements(&state, 200).iter().enumerate() {
        state.apply_command(15 + i as u64, command).unwrap();
    }
    assert_eq!(state.jobs[&0].attempt, attempt + 1);
    assert_eq!(in_progress(&state), None);
}

/// Apply relies on derived counters (an agent's used cores, memory and
/// disk); were a bug ever to break them, every command that would release
/// resources is refused with a typed internal error on every member alike,
/// changing nothing, instead of panicking every member at the same index
/// (and again on every replay).
#[test]
fn drifted_counters_reject_commands_instead_of_panicking() {
    let update = |state: TaskState| Command::UpdateTask {
        update: TaskUpdate {
            job: 0,
            task: 0,
            agent: 0,
            state,
            message: None,
        },
        now_ms: 9,
    };
    let lost = Command::SetAgentState {
        id: 0,
        state: AgentState::Lost,
        reason: None,
        now_ms: 9,
    };
    let drifts: [fn(&mut ClusterState); 3] = [
        |s| s.agents.get_mut(&0).unwrap().used_memory_bytes = 0,
        |s| {
            s.agents.get_mut(&0).unwrap().used_cores.clear();
        },
        |s| {
            s.agents.get_mut(&0).unwrap().tasks.clear();
        },
    ];
    for drift in drifts {
        for command in [
            update(TaskState::Finished),
            update(TaskState::Failed),
            update(TaskState::Lost),
            Command::CancelJob { id: 0, now_ms: 9 },
            Command::KillTask {
                job: 0,
                task: 0,
                now_ms: 9,
            },
            lost.clone(),
        ] {
            let mut state = one_running_job();
            drift(&mut state);
            let before = state.clone();
            let err = state.apply_command(10, &command).unwrap_err();
            assert!(
                matches!(err, CommandError::Internal { .. }),
                "{command:?}: {err}"
            );
            assert_eq!(state, before, "{command:?} changed the state");
        }
    }
    // A move decided on that state is refused the same way.
    let mut state = one_running_job();
    state.agents.get_mut(&0).unwrap().used_memory_bytes = 0;
    let before = state.clone();
    let version = state.jobs[&0].version;
    let err = state
        .apply_command(
            10,
            &Command::PlaceJob {
                job: 0,
                version,
                grants: vec![Grant {
                    agent: 0,
                    cores: BTreeSet::from([1]),
                    memory_bytes: 1 << 30,
                    disk_bytes: 0,
                }],
                reason: Some("moving".into()),
                now_ms: 10,
            },
        )
        .unwrap_err();
    assert!(matches!(err, CommandError::Internal { .. }), "{err}");
    assert_eq!(state, before);
    // An intact state still applies them.
    let mut state = one_running_job();
    state
        .apply_command(10, &update(TaskState::Finished))
        .unwrap();
    state.validate().unwrap();
}

fn command_strategy() -> impl Strategy<Value = Command> {
    let spec = (0u64..4, prop::bool::ANY, 0u32..6, 0u64..4).prop_map(|(id, known, cores, mem)| {
        AgentSpec {
            id: known.then_some(id),
            hostname: format!("host-{id}"),
            cores: (0..cores).collect(),
            memory_bytes: mem << 30,
            disk_bytes: 0,
            attributes: BTreeMap::new(),
        }
    });
    let state = prop_oneof![
        Just(AgentState::Active),
        Just(AgentState::Draining),
        Just(AgentState::Lost)
    ];
    prop_oneof![
        spec.prop_map(|spec| Command::RegisterAgent { spec, token: None }),
        (0u64..5, state).prop_map(|(id, state)| Command::SetAgentState {
            id,
            state,
            reason: None,
            now_ms: 0
        }),
        (0u64..5).prop_map(|id| Command::RemoveAgent { id }),
        (0u8..4, -1.0f64..3.0).prop_map(|(n, weight)| Command::SetRole(RoleSpec {
            name: format!("role-{n}"),
            weight,
            quota: None,
            limit: None,
            reservations: Default::default(),
        })),
        (0u8..5).prop_map(|n| Command::RemoveRole {
            name: format!("role-{n}")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Rejections leave the state untouched; two members applying the same
    /// log agree; the state survives the snapshot encoding; and it always
    /// passes its own validation.
    #[test]
    fn apply_is_deterministic_and_rejections_are_side_effect_free(
        commands in prop::collection::vec(command_strategy(), 1..60)
    ) {
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        for (i, command) in commands.iter().enumerate() {
            let before = a.clone();
            let ra = a.apply_command(i as u64 + 1, command);
            let rb = b.apply_command(i as u64 + 1, command);
            prop_assert_eq!(&ra, &rb);
            if ra.is_err() {
                prop_assert_eq!(&a, &before, "rejected {:?} changed the state", command);
            }
            prop_assert!(a.validate().is_ok(), "state invalid after {:?}", command);
        }
        prop_assert_eq!(&a, &b);
        let bytes = postcard::to_stdvec(&a).unwrap();
        let back: ClusterState = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, a);
    }
}

/// Raft entries are postcard: the new job fields and commands must round-trip through it
/// (postcard has no self-describing forms, e.g. no internally tagged enums).
#[test]
fn restart_policies_and_checkpoint_commands_round_trip_through_postcard() {
    let mut spec = one_running_job().jobs[&0].spec.clone();
    for restart in [
        RestartPolicy::Never,
        RestartPolicy::FixedDelay {
            attempts: 3,
            delay_ms: 10,
        },
        RestartPolicy::ExponentialBackoff {
            attempts: 9,
            initial_ms: 1,
            max_ms: 60_000,
        },
    ] {
        spec.restart = restart;
        let command = Command::SubmitJob {
            job: spec.clone(),
            now_ms: 1,
        };
        let bytes = postcard::to_stdvec(&command).unwrap();
        assert_eq!(postcard::from_bytes::<Command>(&bytes).unwrap(), command);
    }
    let command = Command::CheckpointCompleted {
        job: 4,
        attempt: 2,
        checkpoint: CheckpointInfo {
            id: 7,
            handles: vec!["job-4/chk-7/shard-0".into()],
            triggered_ms: 1,
            duration_ms: 2,
            bytes: 3,
            alignment_us: vec![4],
            completed_ms: 0,
        },
        now_ms: 9,
    };
    let bytes = postcard::to_stdvec(&command).unwrap();
    assert_eq!(postcard::from_bytes::<Command>(&bytes).unwrap(), command);
    let command = Command::CheckpointFailed {
        job: 4,
        attempt: 2,
        id: 8,
        reason: "unreachable".into(),
        now_ms: 9,
    };
    let bytes = postcard::to_stdvec(&command).unwrap();
    assert_eq!(postcard::from_bytes::<Command>(&bytes).unwrap(), command);
    let state = one_running_job();
    let bytes = postcard::to_stdvec(&state).unwrap();
    assert_eq!(postcard::from_bytes::<ClusterState>(&bytes).unwrap(), state);
}
