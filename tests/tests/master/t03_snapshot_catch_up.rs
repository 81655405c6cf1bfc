use std::time::Duration;

use sluice_tests::*;

/// A member that was down while the others snapshotted and purged their logs
/// catches up by installing a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_member_catches_up_through_a_snapshot() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut args = TIMING.to_vec();
    args.extend(["--snapshot-logs", "20", "--logs-kept", "0"]);
    let mut cluster = ProcessCluster::start(tmp.path(), 3, &args).await?;
    cluster.init(&[]).await?;
    let leader = cluster.leader(PATIENCE).await?;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    let client = cluster.client(&[], Duration::from_secs(20))?;
    client.write(&set_role("early")).await?;
    wait_roles(&cluster, lagging, &["early".to_owned()]).await?;
    let before = client.status_of(&cluster.member(lagging)?.api_addr).await?;
    cluster.kill(lagging)?;

    let mut names = vec!["early".to_owned()];
    for i in 0..120 {
        let name = format!("while-down-{i}");
        client.write(&set_role(&name)).await?;
        names.push(name);
    }
    // The leader has snapshotted and purged past everything the member has.
    let purged = wait_until(PATIENCE, "the leader to purge its log", || async {
        let s = client.leader_status().await.ok()?;
        s.purged_index.filter(|p| Some(*p) > before.last_log_index)
    })
    .await?;

    cluster.restart(lagging).await?;
    wait_roles(&cluster, lagging, &names)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.log_tail(lagging)))?;
    let after = client.status_of(&cluster.member(lagging)?.api_addr).await?;
    let snapshot = after.snapshot_index.unwrap_or(0);
    assert!(
        snapshot >= purged,
        "member {lagging} must hold a snapshot covering the purged log (snapshot {snapshot}, leader purged {purged})"
    );
    Ok(())
}
