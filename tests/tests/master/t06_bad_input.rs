use std::time::Duration;

use prost::Message;
use sluice_consensus::proto::raft_client::RaftClient;
use sluice_consensus::proto::{write_request, RaftMessage, SetPolicy, WriteRequest};
use sluice_consensus::state::{AgentSpec, RoleSpec};
use sluice_consensus::{ClientError, CommandError, Query};
use sluice_tests::*;
use tonic::Code;

/// Malformed, unknown and invalid requests are refused with a clear error
/// and leave the state as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let client = cluster.client(&[], Duration::from_secs(10))?;
    client.write(&set_role("kept")).await?;
    let as_agent = cluster
        .agent_client("bad-agent", Duration::from_secs(10))
        .await?;
    let before = client.read(&Query::State, false).await?;

    let expect_invalid = |err: ClientError, needle: &str| match err {
        ClientError::Failed {
            code: Code::InvalidArgument,
            message,
            ..
        } => {
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            )
        }
        other => panic!("expected InvalidArgument mentioning {needle:?}, got {other}"),
    };
    // A write names exactly one operation; nothing else decodes.
    expect_invalid(
        client
            .write_message(WriteRequest { request: None })
            .await
            .unwrap_err(),
        "invalid request: request: missing",
    );
    // The leader's own commands have no message at all: one forged under a
    // field number the API does not define decodes to no operation.
    let forged = [0x92, 0x03, 0x02, 0x08, 0x01]; // field 50, a message { 1: 1 }
    let decoded = WriteRequest::decode(&forged[..])?;
    expect_invalid(
        client.write_message(decoded).await.unwrap_err(),
        "invalid request: request: missing",
    );
    let mut job = WriteRequest::from(&sluice_consensus::Request::SubmitJob {
        job: small_job("x", "default"),
    });
    if let Some(write_request::Request::SubmitJob(spec)) = &mut job.request {
        spec.kind = None;
    }
    expect_invalid(
        client.write_message(job).await.unwrap_err(),
        "invalid request: submit_job.kind: missing (one of stream, command)",
    );
    expect_invalid(
        client
            .write_message(WriteRequest {
                request: Some(write_request::Request::SetPolicy(SetPolicy { policy: 42 })),
            })
            .await
            .unwrap_err(),
        "invalid request: set_policy.policy: unknown value 42",
    );

    // Well-formed but invalid: rejected by the state machine on every member.
    let weight = sluice_consensus::Request::SetRole(RoleSpec {
        name: "x".into(),
        weight: -1.0,
        quota: None,
        limit: None,
        reservations: Default::default(),
    });
    match client.write(&weight).await.unwrap_err() {
        ClientError::Rejected(CommandError::Invalid { field, .. }) => assert_eq!(field, "weight"),
        other => panic!("expected an invalid-weight rejection, got {other}"),
    }
    let drain = sluice_consensus::Request::DrainAgent {
        id: 99,
        deadline_ms: None,
    };
    match client.write(&drain).await.unwrap_err() {
        ClientError::Rejected(CommandError::UnknownAgent { id }) => assert_eq!(id, 99),
        other => panic!("expected unknown agent 99, got {other}"),
    }
    let restore = sluice_consensus::Request::RestoreState {
        snapshot: "{\"agents\": ".into(),
    };
    match client.write(&restore).await.unwrap_err() {
        ClientError::Rejected(CommandError::Invalid { field, reason }) => {
            assert_eq!(field, "snapshot");
            assert!(reason.contains("line 1 column"), "{reason}");
        }
        other => panic!("expected an invalid snapshot, got {other}"),
    }
    let bad_agent = sluice_consensus::Request::RegisterAgent(AgentSpec {
        id: None,
        hostname: String::new(),
        cores: [0].into(),
        memory_bytes: 1,
        disk_bytes: 0,
        attributes: Default::default(),
    });
    match as_agent.write(&bad_agent).await.unwrap_err() {
        ClientError::Rejected(CommandError::Invalid { field, .. }) => assert_eq!(field, "hostname"),
        other => panic!("expected an invalid hostname, got {other}"),
    }
    match client
        .read(&Query::Agent { id: 7 }, false)
        .await
        .unwrap_err()
    {
        ClientError::Failed {
            code: Code::NotFound,
            message,
            ..
        } => {
            assert!(message.contains("unknown agent 7"), "{message}")
        }
        other => panic!("expected unknown agent 7, got {other}"),
    }

    // A Raft message that is not one, from a master's certificate.
    let raft_addr = &cluster.member(1)?.raft_addr;
    let security = cluster.security().expect("a secure cluster");
    let as_master = sluice_security::Tls::load(&security.master)?;
    let channel = sluice_consensus::network::lazy_channel(raft_addr, Some(&as_master))
        .map_err(anyhow::Error::msg)?;
    let mut raft = RaftClient::new(channel);
    let status = raft
        .append_entries(RaftMessage {
            body: vec![0xff; 7],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("undecodable Raft message"),
        "{}",
        status.message()
    );

    let after = client.read(&Query::State, false).await?;
    assert_eq!(before, after, "refused requests changed the state");
    Ok(())
}
