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
        .apply_command(1, &Command::RegisterAgent(agent("a", 4, 1 << 30)))
        .unwrap();
    let second = state
        .apply_command(2, &Command::RegisterAgent(agent("b", 2, 1 << 30)))
        .unwrap();
    assert_eq!(first, CommandOutput::AgentRegistered { id: 0, new: true });
    assert_eq!(second, CommandOutput::AgentRegistered { id: 1, new: true });

    let mut again = state.agents[&0].spec();
    again.attributes.insert("zone".into(), "eu-1".into());
    let out = state
        .apply_command(3, &Command::RegisterAgent(again))
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
        .apply_command(1, &Command::RegisterAgent(agent("a", 4, 1 << 30)))
        .unwrap();
    let before = state.clone();
    let mut changed = state.agents[&0].spec();
    changed.cores = BTreeSet::from([0, 1, 2, 3, 4, 5, 6, 7]);
    let err = state
        .apply_command(2, &Command::RegisterAgent(changed))
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
        .apply_command(1, &Command::RegisterAgent(agent("a", 1, 1 << 20)))
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
            .apply_command(1, &Command::RegisterAgent(spec))
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
        .apply_command(1, &Command::RegisterAgent(agent("a", 1, 1 << 20)))
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
        .apply_command(1, &Command::RegisterAgent(agent("a", 4, 8 << 30)))
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
        spec.prop_map(Command::RegisterAgent),
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
