//! Property tests of the scheduler over random agents, roles, jobs and
//! event sequences.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// `PROPTEST_CASES` if set (for long runs), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
enum Event {
    Submit {
        cpus: u32,
        memory_gib: u64,
        tasks: u32,
        role: usize,
        priority: i32,
        estimate_s: Option<u64>,
        spread: bool,
    },
    Cycle {
        advance_s: u64,
    },
    Finish {
        pick: usize,
    },
    Fail {
        pick: usize,
    },
    Lost {
        agent: usize,
    },
    Reregister {
        agent: usize,
    },
    Drain {
        agent: usize,
        deadline_s: Option<u64>,
    },
    Undrain {
        agent: usize,
    },
    Cancel {
        pick: usize,
    },
    Policy(usize),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1u32..4, 1u64..6, 1u32..4, 0usize..3, -2i32..3, proptest::option::of(1u64..60), any::<bool>())
            .prop_map(|(cpus, memory_gib, tasks, role, priority, estimate_s, spread)| Event::Submit { cpus, memory_gib, tasks, role, priority, estimate_s, spread }),
        4 => (0u64..30).prop_map(|advance_s| Event::Cycle { advance_s }),
        2 => any::<usize>().prop_map(|pick| Event::Finish { pick }),
        1 => any::<usize>().prop_map(|pick| Event::Fail { pick }),
        1 => (0usize..5).prop_map(|agent| Event::Lost { agent }),
        1 => (0usize..5).prop_map(|agent| Event::Reregister { agent }),
        1 => ((0usize..5), proptest::option::of(0u64..60)).prop_map(|(agent, deadline_s)| Event::Drain { agent, deadline_s }),
        1 => (0usize..5).prop_map(|agent| Event::Undrain { agent }),
        1 => any::<usize>().prop_map(|pick| Event::Cancel { pick }),
        1 => (0usize..5).prop_map(Event::Policy),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    /// Whatever happens, every scheduler decision is accepted by apply,
    /// the invariants hold after every command (`Sim::apply` validates),
    /// and after a cycle no pending job could be placed by another one.
    #[test]
    fn invariants_hold_and_pending_jobs_that_fit_get_placed(
        agents in proptest::collection::vec((1u32..8, 2u64..16), 1..5),
        limit_cores in proptest::option::of(1u32..6),
        reserve in proptest::option::of((0usize..5, 1u32..3)),
        events in proptest::collection::vec(event(), 1..60),
    ) {
        let specs: Vec<(u32, u64)> = agents.iter().map(|&(c, m)| (c, m * GIB)).collect();
        let mut sim = Sim::new(&specs);
        sim.role(RoleSpec { limit: limit_cores.map(|c| Resources::new(c, 1 << 50, 1 << 60)), ..role("r1", 1.0) });
        let reservations = reserve
            .filter(|(a, cores)| *a < specs.len() && *cores <= specs[*a].0)
            .map(|(a, cores)| BTreeMap::from([(a as AgentId, Resources::new(cores, 0, 0))]))
            .unwrap_or_default();
        sim.role(RoleSpec { weight: 2.0, reservations, ..role("r2", 2.0) });
        let roles = [DEFAULT_ROLE, "r1", "r2"];
        let pick = |sim: &Sim, state: JobState, i: usize| {
            let ids = sim.in_state(state);
            (!ids.is_empty()).then(|| ids[i % ids.len()])
        };
        for event in events {
            match event {
                Event::Submit { cpus, memory_gib, tasks, role, priority, estimate_s, spread } => {
                    let mut spec = if tasks > 1 {
                        stream("s", tasks, if spread { PlacementStrategy::Spread } else { PlacementStrategy::BinPack })
                    } else {
                        task("t", cpus, memory_gib * GIB)
                    };
                    spec.role = roles[role].into();
                    spec.priority = priority;
                    spec.estimated_duration_ms = estimate_s.map(|s| s * 1000);
                    sim.submit(spec);
                }
                Event::Cycle { advance_s } => {
                    sim.now_ms += advance_s * 1000;
                    sim.cycle();
                    let again = schedule(&sim.state, sim.now_ms);
                    prop_assert_eq!(again.placed, 0, "a second cycle placed more: {:?}", again.commands);
                }
                Event::Finish { pick: i } => {
                    if let Some(id) = pick(&sim, JobState::Running, i) { sim.finish(id) }
                }
                Event::Fail { pick: i } => {
                    if let Some(id) = pick(&sim, JobState::Running, i) {
                        let agent = sim.agents_of(id)[0];
                        sim.apply(Command::UpdateTask { update: TaskUpdate { job: id, task: 0, agent, state: TaskState::Failed, message: Some("exit 1".into()) }, now_ms: 0 }).unwrap();
                    }
                }
                Event::Lost { agent } => {
                    let _ = sim.apply(Command::SetAgentState { id: agent as AgentId, state: AgentState::Lost, reason: None, now_ms: 0 });
                }
                Event::Reregister { agent } => {
                    if let Some(a) = sim.state.agents.get(&(agent as AgentId)) {
                        let spec = a.spec();
                        sim.apply(Command::RegisterAgent {
 spec,
 token: None,
 }).unwrap();
                    }
                }
                Event::Drain { agent, deadline_s } => {
                    let _ = sim.apply(Command::DrainAgent { id: agent as AgentId, deadline_ms: deadline_s.map(|s| s * 1000), now_ms: 0 });
                }
                Event::Undrain { agent } => {
                    let _ = sim.apply(Command::UndrainAgent { id: agent as AgentId });
                }
                Event::Cancel { pick: i } => {
                    if let Some(id) = pick(&sim, JobState::Pending, i).or_else(|| pick(&sim, JobState::Running, i)) {
                        sim.apply(Command::CancelJob { id, now_ms: 0 }).unwrap();
                    }
                }
                Event::Policy(i) => sim.policy(Policy::ALL[i]),
            }
        }
        // Nothing ever ran on a Lost or Draining agent that it was placed on while so:
        // apply refuses those, and `validate` (after every command) found no
        // double grant, oversubscription or grant on a Lost agent.
        for agent in sim.state.agents.values() {
            if agent.state == AgentState::Lost {
                prop_assert!(agent.tasks.is_empty());
            }
        }
    }
}
