//! Reads answer typed messages; decoded, they are exactly the stored records
//! as JSON (what `--output json` printed when reads were JSON on the wire).

use super::*;
use crate::acl::AclToken;

#[test]
fn every_read_answers_the_stored_records() {
    let mut sim = Sim::new(&[(4, 8 * GIB), (2, 4 * GIB)]);
    sim.role(RoleSpec {
        name: "etl".into(),
        weight: 2.0,
        quota: Some(Resources::new(2, GIB, 0)),
        limit: Some(Resources::UNLIMITED),
        reservations: BTreeMap::from([(1, Resources::new(1, GIB, 0))]),
    });
    let web = sim.submit(task("web", 1, GIB));
    let shards = sim.submit(stream("shards", 2, PlacementStrategy::Spread));
    let huge = sim.submit(task("huge", 64, GIB));
    sim.cycle();
    sim.finish(web);
    sim.apply(Command::DrainAgent {
        id: 1,
        deadline_ms: Some(5_000),
        now_ms: 0,
    })
    .unwrap();
    sim.apply(Command::AclCreateToken {
        token: AclToken {
            accessor: "00000000000000aa".into(),
            name: "ci".into(),
            secret_hash: "b".repeat(64),
            policies: vec![crate::acl::AclPolicy::Submit {
                roles: vec!["etl".into()],
            }],
            created_ms: 1,
            expires_ms: Some(99),
            revoked_ms: None,
            agent: None,
        },
    })
    .unwrap();
    let state = &sim.state;
    assert_eq!(state.jobs[&shards].state, JobState::Running);
    assert!(state.jobs[&huge].reason.is_some());

    let json = |query: Query| {
        let answer = state.answer(&query).unwrap();
        sluice_api::convert::answer_to_json(Some(answer)).unwrap()
    };
    assert_eq!(
        json(Query::Agents),
        value(&state.agents.values().collect::<Vec<_>>())
    );
    assert_eq!(json(Query::Agent { id: 1 }), value(&state.agents[&1]));
    assert_eq!(
        json(Query::Roles),
        value(&state.roles.values().collect::<Vec<_>>())
    );
    assert_eq!(
        json(Query::Role { name: "etl".into() }),
        value(&state.roles["etl"])
    );
    assert_eq!(
        json(Query::Jobs { state: None }),
        value(&state.jobs.values().collect::<Vec<_>>())
    );
    assert_eq!(
        json(Query::Jobs {
            state: Some(JobState::Pending)
        }),
        value(&vec![&state.jobs[&huge]])
    );
    for id in [web, shards, huge] {
        assert_eq!(json(Query::Job { id }), value(&state.jobs[&id]));
    }
    assert_eq!(json(Query::Scheduler), value(&state.scheduler_summary()));
    assert_eq!(
        json(Query::AgentTasks { id: 0 }),
        value(&state.assignment_of(&state.agents[&0]))
    );
    assert_eq!(
        json(Query::AclTokens),
        value(
            &state
                .acl
                .tokens
                .values()
                .map(TokenInfo::from)
                .collect::<Vec<_>>()
        )
    );
    let whole = json(Query::State);
    assert!(
        whole.get("acl").is_none(),
        "tokens never leave in a snapshot"
    );
    assert_eq!(whole["jobs"], value(&state.jobs));
}

/// A stored record as JSON.
fn value<T: serde::Serialize + ?Sized>(record: &T) -> serde_json::Value {
    serde_json::to_value(record).unwrap()
}
