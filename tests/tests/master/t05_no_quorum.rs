use std::time::{Duration, Instant};

use sluice_consensus::ClientError;
use sluice_tests::*;

/// With two of three members down, a write fails with a clear error within
/// the deadline, and once they return the write is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_without_quorum_fails_in_time_and_changes_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    cluster.init(&[]).await?;
    let leader = cluster.leader(PATIENCE).await?;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.kill(*id)?;
    }
    let client = cluster.client(&[leader], Duration::from_secs(8))?;
    // The leader notices it has lost its majority (no acks past the lease).
    wait_until(
        PATIENCE,
        "the leader to notice it lost its quorum",
        || async {
            let s = client
                .status_of(&cluster.member(leader).ok()?.api_addr)
                .await
                .ok()?;
            (s.millis_since_quorum_ack? > 800).then_some(())
        },
    )
    .await?;

    let started = Instant::now();
    let err = client.write(&set_role("never")).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(9), "failed only after {took:?}");
    match &err {
        ClientError::Failed { message, .. } => assert!(message.contains("no quorum"), "{err}"),
        other => panic!("expected a no-quorum failure, got {other}"),
    }

    for id in &followers {
        cluster.restart(*id).await?;
    }
    let all = cluster.client(&[], Duration::from_secs(20))?;
    all.write(&set_role("after")).await?;
    let names = role_names(&all, false).await?;
    assert_eq!(names, vec!["after"], "the refused write must not appear");
    Ok(())
}
