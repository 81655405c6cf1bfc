use std::time::Duration;

use sluice_consensus::proto::raft_client::RaftClient;
use sluice_consensus::proto::RaftMessage;
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
    expect_invalid(
        client.write_json("{\"set_role\": ").await.unwrap_err(),
        "line 1 column",
    );
    expect_invalid(
        client
            .write_json(r#"{"format_disks": {}}"#)
            .await
            .unwrap_err(),
        "unknown variant `format_disks`",
    );
    expect_invalid(
        client
            .write_json(r#"{"set_role": {"name": "x", "weight": 1, "colour": "red"}}"#)
            .await
            .unwrap_err(),
        "unknown field `colour`",
    );

    // Well-formed but invalid: rejected by the state machine on every member.
    match client
        .write_json(r#"{"set_role": {"name": "x", "weight": -1}}"#)
        .await
        .unwrap_err()
    {
        ClientError::Rejected(CommandError::Invalid { field, .. }) => assert_eq!(field, "weight"),
        other => panic!("expected an invalid-weight rejection, got {other}"),
    }
    match client
        .write_json(r#"{"drain_agent": {"id": 99}}"#)
        .await
        .unwrap_err()
    {
        ClientError::Rejected(CommandError::UnknownAgent { id }) => assert_eq!(id, 99),
        other => panic!("expected unknown agent 99, got {other}"),
    }
    // The leader's own commands are no requests, whoever sends them.
    for internal in [
        r#"{"set_agent_state": {"id": 99, "state": "lost"}}"#,
        r#"{"place_job": {"job": 0, "version": 0, "grants": []}}"#,
        r#"{"preempt_job": {"job": 0, "version": 0, "reason": "mine"}}"#,
        r#"{"set_pending_reasons": {"reasons": [[0, "x"]]}}"#,
    ] {
        expect_invalid(
            client.write_json(internal).await.unwrap_err(),
            "is an internal command: only the leader proposes it",
        );
    }
    // Nor do clients stamp times: the leader does.
    expect_invalid(
        client
            .write_json(r#"{"cancel_job": {"id": 0, "now_ms": 1}}"#)
            .await
            .unwrap_err(),
        "unknown field `now_ms`",
    );
    let bad_agent =
        r#"{"register_agent": {"hostname": "", "cores": [0], "memory_bytes": 1, "disk_bytes": 0}}"#;
    match client.write_json(bad_agent).await.unwrap_err() {
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

    // A Raft message that is not one.
    let raft_addr = &cluster.member(1)?.raft_addr;
    let mut raft = RaftClient::connect(format!("http://{raft_addr}")).await?;
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
