//! Tests of agent tokens: each is bound to the agent that first registers
//! with it, and acts for that agent alone.

use std::collections::BTreeMap;

use super::*;
use crate::acl::AclPolicy;

fn agent(hostname: &str) -> AgentSpec {
    AgentSpec {
        id: None,
        hostname: hostname.to_owned(),
        cores: (0..2).collect(),
        memory_bytes: 1 << 30,
        disk_bytes: 1 << 30,
        attributes: BTreeMap::new(),
    }
}

fn with_token(state: &mut ClusterState, index: u64, n: u8, policy: AclPolicy) -> String {
    let token = AclToken {
        accessor: format!("{n:016x}"),
        name: format!("token-{n}"),
        secret_hash: format!("{n:064x}"),
        policies: vec![policy],
        created_ms: 1,
        expires_ms: None,
        revoked_ms: None,
        agent: None,
    };
    let accessor = token.accessor.clone();
    state
        .apply_command(index, &Command::AclCreateToken { token })
        .unwrap();
    accessor
}

fn register(
    state: &mut ClusterState,
    index: u64,
    spec: AgentSpec,
    token: &str,
) -> Result<CommandOutput, CommandError> {
    state.apply_command(
        index,
        &Command::RegisterAgent {
            spec,
            token: Some(token.to_owned()),
        },
    )
}

fn bound(state: &ClusterState, accessor: &str) -> Option<AgentId> {
    state
        .acl
        .tokens
        .values()
        .find(|t| t.accessor == accessor)
        .and_then(|t| t.agent)
}

#[test]
fn an_agent_token_is_bound_to_the_first_agent_that_registers_with_it() {
    let mut state = ClusterState::default();
    let a = with_token(&mut state, 1, 1, AclPolicy::Agent);
    assert_eq!(bound(&state, &a), None);
    let out = register(&mut state, 2, agent("a"), &a).unwrap();
    assert_eq!(out, CommandOutput::AgentRegistered { id: 0, new: true });
    assert_eq!(bound(&state, &a), Some(0));

    // Its agent re-registers with it; another agent cannot, new or known.
    let again = state.agents[&0].spec();
    register(&mut state, 3, again, &a).unwrap();
    let before = state.clone();
    let err = register(&mut state, 4, agent("b"), &a).unwrap_err();
    assert_eq!(
        err,
        CommandError::AgentTokenBound {
            name: "token-1".into(),
            agent: 0,
            wanted: 1
        }
    );
    assert!(err.to_string().contains("a token of its own"), "{err}");
    assert_eq!(state, before, "a refused registration changes nothing");

    let b = with_token(&mut state, 5, 2, AclPolicy::Agent);
    register(&mut state, 6, agent("b"), &b).unwrap();
    assert_eq!(bound(&state, &b), Some(1));
    let known_a = state.agents[&0].spec();
    assert!(matches!(
        register(&mut state, 7, known_a, &b),
        Err(CommandError::AgentTokenBound {
            agent: 1,
            wanted: 0,
            ..
        })
    ));
}

#[test]
fn a_management_token_acts_for_any_agent_and_stays_unbound() {
    let mut state = ClusterState::default();
    let m = with_token(&mut state, 1, 1, AclPolicy::Management);
    register(&mut state, 2, agent("a"), &m).unwrap();
    register(&mut state, 3, agent("b"), &m).unwrap();
    assert_eq!(state.agents.len(), 2);
    assert_eq!(bound(&state, &m), None);
}

#[test]
fn a_revoked_token_registers_nothing() {
    let mut state = ClusterState::default();
    let a = with_token(&mut state, 1, 1, AclPolicy::Agent);
    state
        .apply_command(
            2,
            &Command::AclRevokeToken {
                accessor: a.clone(),
                now_ms: 5,
            },
        )
        .unwrap();
    let err = register(&mut state, 3, agent("a"), &a).unwrap_err();
    assert_eq!(err, CommandError::UnknownToken { accessor: a });
    assert!(state.agents.is_empty());
}

#[test]
fn an_unbound_token_cannot_take_over_an_agent_that_has_one() {
    let mut state = ClusterState::default();
    let a = with_token(&mut state, 1, 1, AclPolicy::Agent);
    register(&mut state, 2, agent("a"), &a).unwrap();
    let c = with_token(&mut state, 3, 3, AclPolicy::Agent);
    let victim = state.agents[&0].spec();
    let before = state.clone();
    let err = register(&mut state, 4, victim.clone(), &c).unwrap_err();
    assert_eq!(
        err,
        CommandError::AgentHasToken {
            agent: 0,
            name: "token-1".into()
        }
    );
    assert_eq!(state, before, "a refused takeover changes nothing");

    // Rotation: once the agent's token is revoked, a new one takes over.
    state
        .apply_command(
            5,
            &Command::AclRevokeToken {
                accessor: a,
                now_ms: 5,
            },
        )
        .unwrap();
    register(&mut state, 6, victim, &c).unwrap();
    assert_eq!(bound(&state, &c), Some(0));
}

#[test]
fn a_restore_keeps_agent_ids_growing_and_drops_bindings_to_missing_agents() {
    let mut state = ClusterState::default();
    let saved = state.clone();
    let a = with_token(&mut state, 1, 1, AclPolicy::Agent);
    register(&mut state, 2, agent("a"), &a).unwrap();
    state
        .apply_command(3, &Command::RestoreState(Box::new(saved)))
        .unwrap();
    assert!(state.agents.is_empty());
    assert_eq!(state.next_agent_id, 1, "id 0 is never given again");
    assert_eq!(bound(&state, &a), None);
    let b = with_token(&mut state, 4, 2, AclPolicy::Agent);
    register(&mut state, 5, agent("b"), &b).unwrap();
    assert_eq!(bound(&state, &b), Some(1));
}
