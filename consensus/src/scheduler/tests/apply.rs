//! Apply-time checks behind the scheduler: refused placements, bad
//! submissions, task reports and kills, each leaving the state unchanged.

use std::collections::BTreeSet;

use super::*;

#[test]
fn apply_refuses_violating_placements_and_changes_nothing() {
    let mut sim = Sim::new(&[(2, 4 * GIB), (2, 4 * GIB)]);
    let a = sim.submit(task("a", 1, GIB));
    sim.cycle();
    let holder = sim.agents_of(a)[0];
    let core = *sim.state.jobs[&a].tasks[0]
        .grant
        .as_ref()
        .unwrap()
        .cores
        .first()
        .unwrap();
    const C_MEMORY: u64 = 3 * GIB + GIB / 2;
    let c = sim.submit(task("c", 1, C_MEMORY));
    let before = sim.state.clone();
    let grant = |agent, core, memory| Grant {
        agent,
        cores: BTreeSet::from([core]),
        memory_bytes: memory,
        disk_bytes: 0,
    };
    let cases: Vec<(Vec<Grant>, &str)> = vec![
        (vec![grant(holder, core, C_MEMORY)], "core_taken"),
        (vec![grant(holder, 7, C_MEMORY)], "core_not_offered"),
        (
            vec![grant(holder, 1 - core, C_MEMORY)],
            "memory_oversubscribed",
        ),
        (vec![grant(holder, 1 - core, GIB)], "task_shape"),
        (vec![], "task_count"),
        (vec![grant(99, 0, C_MEMORY)], "agent_not_active"),
    ];
    // A decision made on an older version of the job (a new leader that
    // has not applied everything yet) is refused: job a is placed already.
    let stale = Command::PlaceJob {
        job: a,
        version: 0,
        grants: vec![grant(1 - holder, 0, GIB)],
        reason: None,
        now_ms: 0,
    };
    let err = sim.apply(stale).unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::StaleDecision {
                decided_on: 0,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
    sim.index -= 1;
    assert_eq!(sim.state, before);
    for (grants, kind) in cases {
        let err = sim
            .apply(Command::PlaceJob {
                job: c,
                version: 0,
                grants,
                reason: None,
                now_ms: 0,
            })
            .unwrap_err();
        let json = serde_json::to_string(&err).unwrap();
        assert!(json.contains(kind), "{kind}: {json}");
        sim.index -= 1;
        assert_eq!(sim.state, before, "{kind}: state unchanged");
    }
    // Nothing new on a draining agent.
    let other = 1 - holder;
    sim.apply(Command::DrainAgent {
        id: other,
        deadline_ms: None,
        now_ms: 0,
    })
    .unwrap();
    let free_core = *sim.state.agents[&other]
        .cores
        .difference(&sim.state.agents[&other].used_cores)
        .next()
        .unwrap();
    let err = sim
        .apply(Command::PlaceJob {
            job: c,
            version: 0,
            grants: vec![grant(other, free_core, C_MEMORY)],
            reason: None,
            now_ms: 0,
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Placement {
                violation: PlacementViolation::AgentNotActive { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_job_submissions_are_refused_with_the_field() {
    let mut sim = Sim::new(&[(2, 4 * GIB)]);
    let before = sim.state.clone();
    let cases = [
        (in_role(task("x", 1, GIB), "nobody"), "unknown role"),
        (task("x", 0, GIB), "kind.command.cpus"),
        (task("x", 1, 0), "kind.command.memory_bytes"),
        (task("x", 100_000, GIB), "kind.command.cpus"),
        (
            JobSpec {
                priority: 5000,
                ..task("x", 1, GIB)
            },
            "priority",
        ),
        (task(" ", 1, GIB), "name"),
        (stream("x", 0, PlacementStrategy::Spread), "parallelism"),
    ];
    for (spec, expected) in cases {
        let err = sim
            .apply(Command::SubmitJob {
                job: spec,
                now_ms: 0,
            })
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        sim.index -= 1;
        assert_eq!(sim.state, before);
    }
    // A job bigger than any agent is accepted and waits with a reason.
    let big = sim.submit(task("big", 64, GIB));
    sim.cycle();
    assert_eq!(
        sim.reason(big),
        "needs 64 cores on one agent; the largest agent has 2"
    );
}

#[test]
fn task_reports_are_idempotent_and_stale_ones_refused() {
    let mut sim = Sim::new(&[(2, 4 * GIB), (2, 4 * GIB)]);
    let a = sim.submit(task("a", 1, GIB));
    sim.cycle();
    let agent = sim.agents_of(a)[0];
    let report = |state| Command::UpdateTask {
        update: TaskUpdate {
            job: a,
            task: 0,
            agent,
            state,
            message: None,
        },
        now_ms: 0,
    };
    assert!(matches!(
        sim.apply(report(TaskState::Running)).unwrap(),
        CommandOutput::TaskUpdated { changed: true, .. }
    ));
    assert!(matches!(
        sim.apply(report(TaskState::Running)).unwrap(),
        CommandOutput::TaskUpdated { changed: false, .. }
    ));
    let wrong_agent = Command::UpdateTask {
        update: TaskUpdate {
            job: a,
            task: 0,
            agent: 1 - agent,
            state: TaskState::Finished,
            message: None,
        },
        now_ms: 0,
    };
    assert!(matches!(
        sim.apply(wrong_agent).unwrap_err(),
        CommandError::StaleTask { .. }
    ));
    sim.apply(report(TaskState::Failed)).unwrap();
    assert_eq!(sim.state.jobs[&a].state, JobState::Failed);
    assert!(
        sim.state.agents[&agent].used_cores.is_empty(),
        "resources freed"
    );
    assert!(matches!(
        sim.apply(report(TaskState::Failed)).unwrap(),
        CommandOutput::TaskUpdated { changed: false, .. }
    ));
}

#[test]
fn killing_a_task_cancels_its_job_and_frees_its_resources() {
    let mut sim = Sim::new(&[(2, 4 * GIB)]);
    let job = sim.submit(stream("s", 2, PlacementStrategy::BinPack));
    sim.cycle();
    let before = sim.state.clone();
    let err = sim
        .apply(Command::KillTask {
            job,
            task: 5,
            now_ms: 0,
        })
        .unwrap_err();
    assert_eq!(err, CommandError::UnknownTask { job, task: 5 });
    sim.index -= 1;
    assert_eq!(sim.state, before);
    sim.apply(Command::KillTask {
        job,
        task: 1,
        now_ms: 0,
    })
    .unwrap();
    let ended = &sim.state.jobs[&job];
    assert_eq!(ended.state, JobState::Cancelled);
    assert_eq!(ended.reason.as_deref(), Some("task 1 killed by user"));
    assert!(sim.state.agents[&0].used_cores.is_empty());
    assert!(matches!(
        sim.apply(Command::KillTask {
            job,
            task: 1,
            now_ms: 0
        })
        .unwrap_err(),
        CommandError::JobEnded { .. }
    ));
}
