use std::time::Duration;

use sluice_tests::*;

/// `kill -9` of the leader: a new leader takes over and accepts writes, every
/// acknowledged write survives, and the killed member restarts from its data
/// dir and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_loses_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    cluster.init(&[]).await?;
    let old = cluster.leader(PATIENCE).await?;
    let client = cluster.client(&[], Duration::from_secs(20))?;

    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let name = format!("before-{i}");
        client.write(&set_role(&name)).await?;
        acknowledged.push(name);
    }
    cluster.kill(old)?;

    let new = cluster.leader(PATIENCE).await?;
    assert_ne!(new, old, "the killed member cannot still lead");
    for i in 0..40 {
        let name = format!("after-{i}");
        client.write(&set_role(&name)).await?;
        acknowledged.push(name);
    }
    let names = role_names(&client, false).await?;
    for name in &acknowledged {
        assert!(names.contains(name), "acknowledged write {name} lost");
    }

    cluster.restart(old).await?;
    wait_roles(&cluster, old, &acknowledged)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.log_tail(old)))?;
    let status = client.status_of(&cluster.member(old)?.api_addr).await?;
    assert_eq!(status.role, "follower");
    assert_eq!(status.leader_id, Some(new));
    Ok(())
}
