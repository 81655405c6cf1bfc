use std::time::Duration;

use sluice_tests::*;

/// Three members elect exactly one leader, and a write through any member is
/// applied on all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_writes_through_any_member_reach_all() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    cluster.init(&[]).await?;
    let leader = cluster.leader(PATIENCE).await?;

    let mut written = Vec::new();
    for id in 1..=3u64 {
        // A client that knows only member `id` must still reach the leader.
        let client = cluster.client(&[id], Duration::from_secs(10))?;
        let name = format!("via-{id}");
        client.write(&set_role(&name)).await?;
        written.push(name);
    }
    for id in 1..=3u64 {
        wait_roles(&cluster, id, &written).await?;
    }

    let client = cluster.client(&[], Duration::from_secs(5))?;
    let mut leaders = Vec::new();
    let mut terms = Vec::new();
    for id in 1..=3u64 {
        let status = client.status_of(&cluster.member(id)?.api_addr).await?;
        if status.role == "leader" {
            leaders.push(status.id);
        }
        assert_eq!(
            status.leader_id,
            Some(leader),
            "member {id} follows {:?}",
            status.leader_id
        );
        terms.push(status.term);
    }
    assert_eq!(leaders, vec![leader], "exactly one leader");
    assert!(
        terms.windows(2).all(|t| t[0] == t[1]),
        "one term: {terms:?}"
    );
    Ok(())
}
