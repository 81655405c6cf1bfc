//! Policy tests on hand-built states: the expected orders, placements and
//! preemptions are worked out here from each policy's definition. Every
//! decision is applied through `apply_command`, as Raft would.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::command::{CommandError, CommandOutput};
use crate::state::*;

const GIB: u64 = 1 << 30;

struct Sim {
    state: ClusterState,
    index: u64,
    now_ms: u64,
}

impl Sim {
    fn new(agents: &[(u32, u64)]) -> Self {
        let mut sim = Sim {
            state: ClusterState::default(),
            index: 0,
            now_ms: 1_000_000,
        };
        for (i, &(cores, memory)) in agents.iter().enumerate() {
            sim.apply(Command::RegisterAgent {
                spec: AgentSpec {
                    id: None,
                    hostname: format!("agent-{i}"),
                    cores: (0..cores).collect(),
                    memory_bytes: memory,
                    disk_bytes: 100 * GIB,
                    attributes: BTreeMap::from([("rack".to_owned(), format!("r{i}"))]),
                },
                token: None,
            })
            .unwrap();
        }
        sim
    }

    fn apply(&mut self, mut command: Command) -> Result<CommandOutput, CommandError> {
        self.index += 1;
        command.stamp(self.now_ms);
        let result = self.state.apply_command(self.index, &command);
        self.state
            .validate()
            .expect("invariants hold after every command");
        result
    }

    fn policy(&mut self, policy: Policy) {
        self.apply(Command::SetPolicy { policy }).unwrap();
    }

    fn role(&mut self, spec: RoleSpec) {
        self.apply(Command::SetRole(spec)).unwrap();
    }

    fn submit(&mut self, spec: JobSpec) -> JobId {
        match self
            .apply(Command::SubmitJob {
                job: spec,
                now_ms: 0,
            })
            .unwrap()
        {
            CommandOutput::JobSubmitted { id } => id,
            other => panic!("{other:?}"),
        }
    }

    /// One cycle, every decision applied; all must be accepted.
    fn cycle(&mut self) -> Schedule {
        let cycle = schedule(&self.state, self.now_ms);
        for command in cycle.commands.clone() {
            if let Err(e) = self.apply(command.clone()) {
                panic!("decision {command:?} refused: {e}");
            }
        }
        cycle
    }

    fn finish(&mut self, id: JobId) {
        let tasks: Vec<(u32, AgentId)> = self.state.jobs[&id]
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32, t.grant.as_ref().expect("placed").agent))
            .collect();
        for (task, agent) in tasks {
            self.apply(Command::UpdateTask {
                update: TaskUpdate {
                    job: id,
                    task,
                    agent,
                    state: TaskState::Finished,
                    message: None,
                },
                now_ms: 0,
            })
            .unwrap();
        }
    }

    fn running(&self) -> Vec<JobId> {
        self.in_state(JobState::Running)
    }

    fn in_state(&self, state: JobState) -> Vec<JobId> {
        self.state
            .jobs
            .values()
            .filter(|j| j.state == state)
            .map(|j| j.id)
            .collect()
    }

    fn reason(&self, id: JobId) -> String {
        self.state.jobs[&id].reason.clone().unwrap_or_default()
    }

    fn agents_of(&self, id: JobId) -> Vec<AgentId> {
        self.state.jobs[&id]
            .tasks
            .iter()
            .filter_map(|t| t.grant.as_ref().map(|g| g.agent))
            .collect()
    }

    /// Runs jobs to completion one cycle at a time, returning the order in
    /// which they started.
    fn run_to_completion(&mut self) -> Vec<JobId> {
        let mut started = Vec::new();
        for _ in 0..100 {
            self.cycle();
            let running = self.running();
            for id in &running {
                if !started.contains(id) {
                    started.push(*id);
                }
            }
            if running.is_empty() {
                break;
            }
            // The job with the least time left finishes first.
            let next = *running
                .iter()
                .min_by_key(|id| self.state.jobs[id].remaining_ms(self.now_ms))
                .unwrap();
            self.now_ms += self.state.jobs[&next]
                .remaining_ms(self.now_ms)
                .unwrap_or(1000);
            self.finish(next);
        }
        started
    }
}

fn task(name: &str, cpus: u32, memory: u64) -> JobSpec {
    JobSpec {
        name: name.into(),
        role: DEFAULT_ROLE.into(),
        priority: 0,
        estimated_duration_ms: None,
        kind: JobKind::Command {
            argv: vec!["true".into()],
            cpus,
            memory_bytes: memory,
            disk_bytes: 0,
        },
        constraints: Vec::new(),
        placement: PlacementStrategy::BinPack,
        restart: Default::default(),
    }
}

fn bounded(name: &str, secs: u64) -> JobSpec {
    JobSpec {
        estimated_duration_ms: Some(secs * 1000),
        ..task(name, 1, GIB)
    }
}

fn stream(name: &str, parallelism: u32, placement: PlacementStrategy) -> JobSpec {
    JobSpec {
        kind: JobKind::Stream {
            spec_toml: "[job]\nname = \"x\"".into(),
            parallelism,
            memory_per_shard_bytes: GIB,
        },
        placement,
        ..task(name, 1, GIB)
    }
}

fn role(name: &str, weight: f64) -> RoleSpec {
    RoleSpec {
        name: name.into(),
        weight,
        quota: None,
        limit: None,
        reservations: BTreeMap::new(),
    }
}

fn in_role(spec: JobSpec, role: &str) -> JobSpec {
    JobSpec {
        role: role.into(),
        ..spec
    }
}

/// One core: jobs run one at a time, so the start order is the policy's order.
fn one_core_queue(policy: Policy) -> Vec<JobId> {
    let mut sim = Sim::new(&[(1, 8 * GIB)]);
    sim.policy(policy);
    let a = sim.submit(bounded("a", 30));
    let b = sim.submit(bounded("b", 10));
    let c = sim.submit(bounded("c", 20));
    let order = sim.run_to_completion();
    assert_eq!(sim.in_state(JobState::Finished), vec![a, b, c]);
    order
}

#[test]
fn fcfs_sjf_and_srtf_order_the_same_queue_by_their_definitions() {
    // Submitted a (30 s), b (10 s), c (20 s), all before the first cycle.
    assert_eq!(one_core_queue(Policy::Fcfs), vec![0, 1, 2], "arrival order");
    assert_eq!(one_core_queue(Policy::Sjf), vec![1, 2, 0], "shortest first");
    assert_eq!(
        one_core_queue(Policy::Srtf),
        vec![1, 2, 0],
        "all arrived together: as SJF"
    );
}

#[test]
fn srtf_preempts_exactly_when_the_new_job_is_shorter_than_what_is_left() {
    for (policy, arrive_after_s, expect_preemption) in [
        (Policy::Srtf, 5, true),   // a has 25 s left > 10 s
        (Policy::Srtf, 25, false), // a has 5 s left < 10 s
        (Policy::Srtf, 20, false), // a has 10 s left = 10 s: no gain
        (Policy::Sjf, 5, false),   // SJF never preempts
    ] {
        let mut sim = Sim::new(&[(1, 8 * GIB)]);
        sim.policy(policy);
        let a = sim.submit(bounded("a", 30));
        sim.cycle();
        assert_eq!(sim.running(), vec![a]);
        sim.now_ms += arrive_after_s * 1000;
        let b = sim.submit(bounded("b", 10));
        let cycle = sim.cycle();
        let case = format!("{policy:?} with b arriving after {arrive_after_s} s");
        if expect_preemption {
            assert_eq!(cycle.preempted, 1, "{case}");
            assert_eq!(sim.running(), vec![b], "{case}");
            let job = &sim.state.jobs[&a];
            assert_eq!(job.state, JobState::Pending, "{case}");
            assert_eq!(job.preemptions, 1);
            assert_eq!(job.run_ms, arrive_after_s * 1000, "run time kept");
            assert!(sim.reason(a).contains("preempted"), "{}", sim.reason(a));
            assert!(
                job.events.iter().any(|e| e.message.contains("srtf")),
                "visible with its reason: {:?}",
                job.events
            );
            // a resumes with 25 s left once b is done.
            sim.now_ms += 10_000;
            sim.finish(b);
            sim.cycle();
            assert_eq!(sim.running(), vec![a]);
            assert_eq!(sim.state.jobs[&a].remaining_ms(sim.now_ms), Some(25_000));
        } else {
            assert_eq!(cycle.preempted, 0, "{case}");
            assert_eq!(sim.running(), vec![a], "{case}");
            assert!(
                sim.reason(b).contains("waiting for free resources"),
                "{}",
                sim.reason(b)
            );
        }
    }
}

#[test]
fn srtf_leaves_unbounded_jobs_alone() {
    let mut sim = Sim::new(&[(1, 8 * GIB)]);
    sim.policy(Policy::Srtf);
    let s = sim.submit(task("stream-like", 1, GIB));
    sim.cycle();
    sim.submit(bounded("short", 1));
    assert_eq!(sim.cycle().preempted, 0);
    assert_eq!(sim.running(), vec![s]);
}

#[test]
fn strict_order_waits_for_the_head_but_not_for_the_impossible() {
    let mut sim = Sim::new(&[(2, 8 * GIB)]);
    sim.policy(Policy::Fcfs);
    let small = sim.submit(task("small", 1, GIB));
    let big = sim.submit(task("big", 2, GIB));
    let huge = sim.submit(task("huge", 8, GIB));
    let later = sim.submit(task("later", 1, GIB));
    sim.cycle();
    assert_eq!(sim.running(), vec![small]);
    assert_eq!(
        sim.reason(huge),
        "needs 8 cores on one agent; the largest agent has 2"
    );
    assert_eq!(
        sim.reason(later),
        format!("queued behind job {big} (fcfs order)")
    );
    sim.finish(small);
    sim.cycle();
    assert_eq!(sim.running(), vec![big]);
    sim.finish(big);
    sim.cycle();
    assert_eq!(sim.running(), vec![later]);
    assert_eq!(sim.state.jobs[&huge].state, JobState::Pending);
}

#[test]
fn priority_preempts_the_lowest_priority_youngest_job_only_as_needed() {
    let mut sim = Sim::new(&[(2, 8 * GIB)]);
    sim.policy(Policy::Priority);
    let low_old = sim.submit(JobSpec {
        priority: 1,
        ..task("low-old", 1, GIB)
    });
    sim.cycle();
    sim.now_ms += 1000;
    let low_young = sim.submit(JobSpec {
        priority: 1,
        ..task("low-young", 1, GIB)
    });
    sim.cycle();
    assert_eq!(sim.running(), vec![low_old, low_young]);

    // Same priority: waits.
    let peer = sim.submit(JobSpec {
        priority: 1,
        ..task("peer", 1, GIB)
    });
    assert_eq!(sim.cycle().preempted, 0);
    let high = sim.submit(JobSpec {
        priority: 5,
        ..task("high", 1, GIB)
    });
    let cycle = sim.cycle();
    assert_eq!(cycle.preempted, 1);
    assert_eq!(sim.running(), vec![low_old, high]);
    assert!(
        sim.reason(low_young).contains("priority 5 above 1"),
        "{}",
        sim.reason(low_young)
    );
    assert_eq!(sim.state.jobs[&peer].state, JobState::Pending);
}

#[test]
fn priority_does_not_preempt_when_that_would_not_make_room() {
    let mut sim = Sim::new(&[(2, 8 * GIB)]);
    sim.policy(Policy::Priority);
    sim.submit(JobSpec {
        priority: 1,
        ..task("low", 1, GIB)
    });
    sim.submit(JobSpec {
        priority: 9,
        ..task("mid", 1, GIB)
    });
    sim.cycle();
    // Needs 2 cores; only one job may be displaced.
    sim.submit(JobSpec {
        priority: 5,
        ..task("high", 2, GIB)
    });
    assert_eq!(sim.cycle().preempted, 0);
    assert_eq!(sim.running().len(), 2);
}

#[test]
fn drf_equalizes_dominant_shares_within_one_task() {
    // The DRF paper's example: 9 cores, 18 GiB; A's tasks <1 core, 4 GiB>
    // (memory-dominant), B's <3 cores, 1 GiB> (core-dominant). DRF gives A
    // three tasks and B two: both at a dominant share of 2/3.
    let mut sim = Sim::new(&[(9, 18 * GIB)]);
    sim.policy(Policy::Drf);
    sim.role(role("a", 1.0));
    sim.role(role("b", 1.0));
    for i in 0..10 {
        sim.submit(in_role(task(&format!("a{i}"), 1, 4 * GIB), "a"));
        sim.submit(in_role(task(&format!("b{i}"), 3, GIB), "b"));
    }
    sim.cycle();
    let usage = &sim.state.role_usage;
    assert_eq!(usage["a"], Resources::new(3, 12 * GIB, 0));
    assert_eq!(usage["b"], Resources::new(6, 2 * GIB, 0));
}

#[test]
fn drf_shares_follow_weights() {
    let mut sim = Sim::new(&[(9, 64 * GIB)]);
    sim.policy(Policy::Drf);
    sim.role(role("heavy", 2.0));
    sim.role(role("light", 1.0));
    for i in 0..10 {
        sim.submit(in_role(task(&format!("h{i}"), 1, GIB), "heavy"));
        sim.submit(in_role(task(&format!("l{i}"), 1, GIB), "light"));
    }
    sim.cycle();
    assert_eq!(sim.state.role_usage["heavy"].cores, 6);
    assert_eq!(sim.state.role_usage["light"].cores, 3);
}

#[test]
fn quotas_are_held_for_their_role_and_limits_cap_in_every_policy() {
    let mut sim = Sim::new(&[(8, 64 * GIB)]);
    sim.policy(Policy::Drf);
    sim.role(RoleSpec {
        quota: Some(Resources::new(4, 0, 0)),
        ..role("guaranteed", 1.0)
    });
    sim.role(role("other", 1.0));
    let others: Vec<JobId> = (0..8)
        .map(|i| sim.submit(in_role(task(&format!("o{i}"), 1, GIB), "other")))
        .collect();
    sim.cycle();
    assert_eq!(
        sim.state.role_usage["other"].cores, 4,
        "4 cores held for the quota"
    );
    assert!(
        sim.reason(others[7]).contains("quota"),
        "{}",
        sim.reason(others[7])
    );
    for i in 0..4 {
        sim.submit(in_role(task(&format!("g{i}"), 1, GIB), "guaranteed"));
    }
    sim.cycle();
    assert_eq!(sim.state.role_usage["guaranteed"].cores, 4);

    for policy in Policy::ALL {
        let mut sim = Sim::new(&[(8, 64 * GIB)]);
        sim.policy(policy);
        sim.role(RoleSpec {
            limit: Some(Resources::new(2, 100 * GIB, 100 * GIB)),
            ..role("capped", 1.0)
        });
        let jobs: Vec<JobId> = (0..3)
            .map(|i| sim.submit(in_role(task(&format!("c{i}"), 1, GIB), "capped")))
            .collect();
        sim.cycle();
        assert_eq!(sim.running().len(), 2, "{policy:?}");
        assert!(
            sim.reason(jobs[2]).contains("at its limit"),
            "{policy:?}: {}",
            sim.reason(jobs[2])
        );
    }
}

#[test]
fn reservations_keep_resources_for_their_role() {
    let mut sim = Sim::new(&[(2, 8 * GIB), (2, 8 * GIB)]);
    sim.policy(Policy::Fcfs);
    sim.role(RoleSpec {
        reservations: BTreeMap::from([(0, Resources::new(2, GIB, 0))]),
        ..role("owner", 1.0)
    });
    let others: Vec<JobId> = (0..3)
        .map(|i| sim.submit(task(&format!("x{i}"), 1, GIB)))
        .collect();
    sim.cycle();
    for id in &others[..2] {
        assert_eq!(sim.agents_of(*id), vec![1], "unreserved agent only");
    }
    assert_eq!(sim.state.jobs[&others[2]].state, JobState::Pending);
    let owned = sim.submit(in_role(task("mine", 2, GIB), "owner"));
    sim.policy(Policy::Drf);
    sim.cycle();
    assert_eq!(sim.agents_of(owned), vec![0]);
}

/// Under FCFS, a job that only other roles' reservations could hold never
/// fits: it must not hold the queue, and it says so. (It used to wait
/// "for free resources" and block every job behind it for ever.)
#[test]
fn a_job_other_roles_reservations_shut_out_does_not_hold_the_queue() {
    let mut sim = Sim::new(&[(4, 8 * GIB)]);
    sim.policy(Policy::Fcfs);
    sim.role(RoleSpec {
        reservations: BTreeMap::from([(0, Resources::new(4, 8 * GIB, 0))]),
        ..role("batch", 1.0)
    });
    let d = sim.submit(task("d", 1, GIB));
    let r = sim.submit(in_role(task("r", 1, GIB), "batch"));
    sim.cycle();
    assert_eq!(
        sim.state.jobs[&r].state,
        JobState::Running,
        "{}",
        sim.reason(r)
    );
    assert_eq!(sim.state.jobs[&d].state, JobState::Pending);
    let reason = sim.reason(d);
    assert!(
        reason.contains("reserved for role \"batch\""),
        "the reason names the reservation: {reason}"
    );
    for policy in [Policy::Sjf, Policy::Srtf, Policy::Priority, Policy::Drf] {
        sim.policy(policy);
        sim.cycle();
        assert!(
            sim.reason(d).contains("reserved for role"),
            "{policy:?}: {}",
            sim.reason(d)
        );
    }
}

/// Reservations shut a role out only where they leave too little: a job
/// that fits the unreserved agent waits its turn as usual.
#[test]
fn reservations_on_some_agents_leave_the_others_open() {
    let mut sim = Sim::new(&[(4, 8 * GIB), (2, 8 * GIB)]);
    sim.policy(Policy::Fcfs);
    sim.role(RoleSpec {
        reservations: BTreeMap::from([(0, Resources::new(4, GIB, 0))]),
        ..role("batch", 1.0)
    });
    let big = sim.submit(task("big", 3, GIB));
    let small = sim.submit(task("small", 2, GIB));
    sim.cycle();
    assert!(
        sim.reason(big).contains("reserved for role"),
        "{}",
        sim.reason(big)
    );
    assert_eq!(sim.agents_of(small), vec![1], "{}", sim.reason(small));
    // Two more default jobs: the first fits agent 1 once it is free, so it
    // waits for free resources and holds the one behind it.
    let next = sim.submit(task("next", 2, GIB));
    let behind = sim.submit(in_role(task("behind", 1, GIB), "batch"));
    sim.cycle();
    assert!(
        sim.reason(next).contains("waiting for free resources"),
        "{}",
        sim.reason(next)
    );
    assert!(
        sim.reason(behind).contains("queued behind job"),
        "{}",
        sim.reason(behind)
    );
}

#[test]
fn bin_pack_fills_one_agent_spread_uses_distinct_agents() {
    let mut sim = Sim::new(&[(4, 8 * GIB), (4, 8 * GIB), (4, 8 * GIB)]);
    let packed = sim.submit(stream("packed", 3, PlacementStrategy::BinPack));
    let spread = sim.submit(stream("spread", 3, PlacementStrategy::Spread));
    sim.cycle();
    let mut on: Vec<AgentId> = sim.agents_of(packed);
    on.dedup();
    assert_eq!(on.len(), 1, "bin-pack: one agent: {on:?}");
    let distinct: BTreeSet<AgentId> = sim.agents_of(spread).into_iter().collect();
    assert_eq!(distinct.len(), 3, "spread: three agents");
}

#[test]
fn constraints_choose_agents_and_explain_when_nothing_matches() {
    let mut sim = Sim::new(&[(4, 8 * GIB), (4, 8 * GIB), (4, 8 * GIB)]);
    let on_r1 = sim.submit(JobSpec {
        constraints: vec![Constraint::parse("rack = r1").unwrap()],
        ..task("r1", 1, GIB)
    });
    let not_r0 = sim.submit(JobSpec {
        constraints: vec![
            Constraint::parse("rack != r0").unwrap(),
            Constraint::parse("rack in (r0, r2)").unwrap(),
        ],
        ..task("r2", 1, GIB)
    });
    let nowhere = sim.submit(JobSpec {
        constraints: vec![Constraint::parse("gpu = yes").unwrap()],
        ..task("gpu", 1, GIB)
    });
    sim.cycle();
    assert_eq!(sim.agents_of(on_r1), vec![1]);
    assert_eq!(sim.agents_of(not_r0), vec![2]);
    assert_eq!(sim.reason(nowhere), "no active agent satisfies `gpu = yes`");
    assert!(Constraint::parse("rack ~ r1").is_err());
}

#[test]
fn pending_jobs_say_why_they_wait() {
    let mut sim = Sim::new(&[(4, 8 * GIB), (2, 8 * GIB)]);
    let cores = sim.submit(task("cores", 8, GIB));
    let memory = sim.submit(task("memory", 1, 32 * GIB));
    let shards = sim.submit(stream("shards", 7, PlacementStrategy::BinPack));
    sim.cycle();
    assert_eq!(
        sim.reason(cores),
        "needs 8 cores on one agent; the largest agent has 4"
    );
    assert_eq!(
        sim.reason(memory),
        "needs 32 GiB of memory on one agent; the largest agent has 8 GiB"
    );
    assert!(
        sim.reason(shards).contains("room for 6 at most"),
        "{}",
        sim.reason(shards)
    );
    // Reasons are only rewritten when they change.
    let again = sim.cycle();
    assert!(again.commands.is_empty(), "{:?}", again.commands);
}

#[test]
fn drain_moves_work_where_there_is_room_and_requeues_at_the_deadline() {
    let mut sim = Sim::new(&[(2, 8 * GIB), (2, 8 * GIB)]);
    let a = sim.submit(task("a", 2, GIB));
    let b = sim.submit(task("b", 2, GIB));
    sim.cycle();
    let on_a = sim.agents_of(a)[0];
    sim.finish(b);
    sim.apply(Command::DrainAgent {
        id: on_a,
        deadline_ms: None,
        now_ms: 0,
    })
    .unwrap();
    let cycle = sim.cycle();
    assert_eq!(cycle.moved, 1);
    assert_ne!(sim.agents_of(a), vec![on_a]);
    assert!(sim.state.agents[&on_a].tasks.is_empty());
    assert_eq!(
        sim.state.jobs[&a].state,
        JobState::Running,
        "moved, not stopped"
    );

    // No room elsewhere: stays until the deadline, then back to the queue.
    let mut sim = Sim::new(&[(2, 8 * GIB), (2, 8 * GIB)]);
    let a = sim.submit(task("a", 2, GIB));
    let b = sim.submit(task("b", 2, GIB));
    sim.cycle();
    let on_a = sim.agents_of(a)[0];
    sim.apply(Command::DrainAgent {
        id: on_a,
        deadline_ms: Some(60_000),
        now_ms: 0,
    })
    .unwrap();
    assert!(sim.cycle().commands.is_empty());
    assert_eq!(sim.state.jobs[&a].state, JobState::Running);
    sim.now_ms += 60_000;
    sim.cycle();
    assert_eq!(sim.state.jobs[&a].state, JobState::Pending);
    assert!(
        sim.reason(a).contains("drain deadline"),
        "{}",
        sim.reason(a)
    );
    assert_eq!(sim.running(), vec![b]);
    // Undrained, the agent takes it back.
    sim.apply(Command::UndrainAgent { id: on_a }).unwrap();
    sim.cycle();
    assert_eq!(sim.agents_of(a), vec![on_a]);
}

#[test]
fn a_lost_agent_s_work_is_placed_elsewhere() {
    let mut sim = Sim::new(&[(2, 8 * GIB), (2, 8 * GIB)]);
    let job = sim.submit(stream("s", 2, PlacementStrategy::BinPack));
    sim.cycle();
    let first = sim.agents_of(job)[0];
    let out = sim
        .apply(Command::SetAgentState {
            id: first,
            state: AgentState::Lost,
            reason: Some("no heartbeat".into()),
            now_ms: 0,
        })
        .unwrap();
    assert!(
        matches!(out, CommandOutput::AgentStateSet { ref requeued, .. } if requeued == &vec![job])
    );
    assert!(sim.reason(job).contains("lost"));
    sim.cycle();
    assert_eq!(sim.agents_of(job), vec![1 - first, 1 - first]);
}

mod answers;
mod apply;
mod props;
