use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::model::*;
use crate::outcome::CommandOutput;

fn job() -> JobSpec {
    JobSpec {
        name: "etl".into(),
        role: "analytics".into(),
        priority: -3,
        estimated_duration_ms: Some(60_000),
        kind: JobKind::Command {
            argv: vec!["/bin/true".into(), "x y".into()],
            cpus: 2,
            memory_bytes: 1 << 30,
            disk_bytes: 5,
        },
        constraints: vec![Constraint::parse("zone in (a, b)").unwrap()],
        placement: PlacementStrategy::Spread,
        restart: RestartPolicy::ExponentialBackoff {
            attempts: 3,
            initial_ms: 100,
            max_ms: 1000,
        },
    }
}

fn every_request() -> Vec<Request> {
    let resources = Resources::new(4, 1 << 30, u64::MAX);
    vec![
        Request::RegisterAgent(AgentSpec {
            id: Some(3),
            hostname: "h1".into(),
            cores: BTreeSet::from([0, 1, 5]),
            memory_bytes: 1 << 34,
            disk_bytes: 0,
            attributes: BTreeMap::from([("zone".into(), "a".into())]),
        }),
        Request::DrainAgent {
            id: 2,
            deadline_ms: Some(5000),
        },
        Request::DrainAgent {
            id: 2,
            deadline_ms: None,
        },
        Request::UndrainAgent { id: 2 },
        Request::RemoveAgent { id: 9 },
        Request::SetRole(RoleSpec {
            name: "analytics".into(),
            weight: 2.5,
            quota: Some(resources),
            limit: None,
            reservations: BTreeMap::from([(1, Resources::new(1, 0, 0))]),
        }),
        Request::UpdateRole(RolePatch {
            name: "analytics".into(),
            weight: None,
            quota: Change::Clear,
            limit: Change::Set(Resources::UNLIMITED),
            reservations: Change::Keep,
        }),
        Request::UpdateRole(RolePatch {
            name: "b".into(),
            weight: Some(1.0),
            quota: Change::Keep,
            limit: Change::Keep,
            reservations: Change::Set(BTreeMap::new()),
        }),
        Request::RemoveRole { name: "old".into() },
        Request::SubmitJob { job: job() },
        Request::SubmitJob {
            job: JobSpec {
                kind: JobKind::Stream {
                    spec_toml: "[source]\nkind = \"gen\"\n".into(),
                    parallelism: 4,
                    memory_per_shard_bytes: 1 << 26,
                },
                restart: RestartPolicy::FixedDelay {
                    attempts: 1,
                    delay_ms: 10,
                },
                placement: PlacementStrategy::BinPack,
                ..job()
            },
        },
        Request::CancelJob { id: 7 },
        Request::KillTask { job: 7, task: 2 },
        Request::SetPolicy {
            policy: Policy::Srtf,
        },
        Request::RestoreState {
            snapshot: "{\"agents\": {}}".into(),
        },
        Request::UpdateTask {
            update: TaskUpdate {
                job: 1,
                task: 0,
                agent: 2,
                state: TaskState::Failed,
                message: Some("exit 3".into()),
            },
        },
        Request::CheckpointCompleted {
            job: 1,
            attempt: 2,
            checkpoint: CheckpointInfo {
                id: 5,
                handles: vec!["a".into(), "b".into()],
                triggered_ms: 10,
                duration_ms: 20,
                bytes: 30,
                alignment_us: vec![1, 2],
                completed_ms: 0,
            },
        },
        Request::CheckpointFailed {
            job: 1,
            attempt: 2,
            id: 6,
            reason: "disk full".into(),
        },
        Request::CheckpointTriggered {
            job: 1,
            attempt: 2,
            id: 7,
            triggered_ms: 99,
        },
        Request::AclBootstrap,
        Request::AclCreateToken {
            name: "ci".into(),
            policies: vec![
                AclPolicy::Read,
                AclPolicy::Submit {
                    roles: vec!["a".into(), "*".into()],
                },
                AclPolicy::Operator,
                AclPolicy::Management,
                AclPolicy::Agent,
                AclPolicy::Logs { job: 7 },
            ],
            ttl_ms: Some(1000),
        },
        Request::IssueLogTicket { job: 7 },
        Request::AclRevokeToken {
            accessor: "acc".into(),
        },
    ]
}

#[test]
fn every_request_survives_the_wire() {
    for request in every_request() {
        let wire = proto::WriteRequest::from(&request);
        assert_eq!(wire.to_string(), request.name());
        let bytes = prost::Message::encode_to_vec(&wire);
        let decoded: proto::WriteRequest = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(Request::try_from(decoded).unwrap(), request);
    }
}

#[test]
fn every_query_survives_the_wire() {
    for query in [
        Query::State,
        Query::Agents,
        Query::Agent { id: 4 },
        Query::Roles,
        Query::Role { name: "r".into() },
        Query::Jobs { state: None },
        Query::Jobs {
            state: Some(JobState::Cancelled),
        },
        Query::Job { id: 1 },
        Query::Scheduler,
        Query::AgentTasks { id: 2 },
        Query::AclTokens,
    ] {
        let wire = proto::ReadRequest::from(&query);
        assert_eq!(Query::try_from(&wire).unwrap(), query);
    }
}

#[test]
fn client_outputs_survive_the_wire() {
    for output in [
        CommandOutput::AgentRegistered { id: 1, new: true },
        CommandOutput::AgentDraining { id: 1, tasks: 3 },
        CommandOutput::AgentUndrained { id: 1 },
        CommandOutput::AgentRemoved { id: 1 },
        CommandOutput::RoleSet {
            name: "r".into(),
            created: false,
        },
        CommandOutput::RoleRemoved { name: "r".into() },
        CommandOutput::JobSubmitted { id: 5 },
        CommandOutput::JobCancelled {
            id: 5,
            previous: JobState::Running,
        },
        CommandOutput::TaskUpdated {
            job: 1,
            task: 2,
            changed: true,
        },
        CommandOutput::PolicySet {
            previous: Policy::Drf,
        },
        CommandOutput::StateRestored {
            agents: 1,
            roles: 2,
            jobs: 3,
        },
        CommandOutput::CheckpointRecorded { job: 1, id: 9 },
        CommandOutput::AclTokenCreated {
            accessor: "a".into(),
            name: "n".into(),
        },
        CommandOutput::AclTokenRevoked {
            accessor: "a".into(),
            name: "n".into(),
        },
        CommandOutput::None,
    ] {
        let wire = output_to_proto(&output);
        assert_eq!(output_from_proto(Some(wire)).unwrap(), output);
    }
}

#[test]
fn an_assignment_survives_the_wire() {
    let assignment = AgentAssignment {
        agent: 2,
        state: AgentState::Draining,
        tasks: vec![Assignment {
            job: 1,
            task: 0,
            state: TaskState::Staging,
            grant: Grant {
                agent: 2,
                cores: BTreeSet::from([3]),
                memory_bytes: 10,
                disk_bytes: 0,
            },
            name: "q".into(),
            kind: job().kind,
            peers: vec![Some(2), None],
            attempt: 4,
            restore_from: Some(3),
            last_checkpoint: None,
        }],
    };
    let wire = assignment_to_proto(&assignment);
    assert_eq!(assignment_from_proto(Some(wire)).unwrap(), assignment);
}

#[test]
fn a_bad_message_names_the_field() {
    let err = |w: proto::WriteRequest| Request::try_from(w).unwrap_err().to_string();
    assert!(err(proto::WriteRequest { request: None }).starts_with("request: missing"));

    let mut spec = records::job_spec_to(&job());
    spec.kind = None;
    let w = proto::WriteRequest {
        request: Some(proto::write_request::Request::SubmitJob(spec.clone())),
    };
    assert_eq!(err(w), "submit_job.kind: missing (one of stream, command)");

    spec = records::job_spec_to(&job());
    spec.constraints[0].op = 9;
    let w = proto::WriteRequest {
        request: Some(proto::write_request::Request::SubmitJob(spec)),
    };
    assert_eq!(
        err(w),
        "submit_job.constraints[0].op: unknown value 9 (one of eq, ne, in)"
    );

    let w = proto::WriteRequest {
        request: Some(proto::write_request::Request::SetPolicy(proto::SetPolicy {
            policy: 0,
        })),
    };
    assert!(err(w).starts_with("set_policy.policy: missing (one of fcfs"));

    let w = proto::WriteRequest {
        request: Some(proto::write_request::Request::AclCreateToken(
            proto::AclCreateToken {
                name: "x".into(),
                policies: vec![proto::AclPolicy { policy: None }],
                ttl_ms: None,
            },
        )),
    };
    assert!(err(w).starts_with("acl_create_token.policies[0].policy: missing"));

    let w = proto::WriteRequest {
        request: Some(proto::write_request::Request::RegisterAgent(
            proto::AgentSpec {
                cores: vec![1, 1],
                ..Default::default()
            },
        )),
    };
    assert_eq!(err(w), "register_agent.cores: a core id is listed twice");

    // 0 is a real id: one left out is refused, never taken for 0.
    let w = proto::WriteRequest {
        request: Some(proto::write_request::Request::CancelJob(proto::JobRef {
            id: None,
        })),
    };
    assert_eq!(err(w), "cancel_job.id: missing");
    let mut update = proto::WriteRequest::from(&every_request()[15]);
    if let Some(proto::write_request::Request::UpdateTask(u)) = &mut update.request {
        u.agent = None;
    }
    assert_eq!(err(update), "update_task.agent: missing");
}

#[test]
fn an_empty_role_is_the_default_role() {
    let mut spec = records::job_spec_to(&job());
    spec.role.clear();
    spec.restart = None;
    let decoded = records::job_spec_from(spec).unwrap();
    assert_eq!(decoded.role, DEFAULT_ROLE);
    assert_eq!(decoded.restart, RestartPolicy::Never);
}
