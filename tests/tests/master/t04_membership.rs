use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_tests::*;

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A fourth member is added and one removed while a writer keeps writing;
/// no write fails and every member ends with every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_and_removed_while_serving() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    cluster.add_process(4).await?;

    let stop = Arc::new(AtomicBool::new(false));
    // However the test ends, the writer stops: a failing test must fail, not spin.
    let _stop_writer = StopOnDrop(stop.clone());
    let failures = Arc::new(AtomicU64::new(0));
    let writer = {
        let client = cluster.client(&[1, 2, 3], Duration::from_secs(20))?;
        let (stop, failures) = (stop.clone(), failures.clone());
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("during-{i}");
                match client.write(&set_role(&name)).await {
                    Ok(_) => written.push(name),
                    Err(e) => {
                        eprintln!("write {name} failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                        // A write that fails at once (the cluster gone, the runtime shutting
                        // down) must not make a loop that never yields.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
            written
        })
    };

    let admin = cluster.client(&[1, 2, 3], Duration::from_secs(30))?;
    let added = admin.add_master(&cluster.member(4)?.api_addr).await?;
    assert_eq!(added.voters, vec![1, 2, 3, 4]);
    let removed = match admin.remove_master(1).await {
        Ok(removed) => removed,
        Err(e) => {
            let logs: Vec<String> = (1..=4)
                .map(|id| format!("--- master {id}\n{}", cluster.log_tail(id)))
                .collect();
            anyhow::bail!("remove-master 1: {e}\n{}", logs.join("\n"));
        }
    };
    assert_eq!(removed.voters, vec![2, 3, 4]);

    // Keep writing a little under the new membership.
    let status = admin.leader_status().await?;
    let target = status.last_log_index.unwrap_or(0) + 20;
    wait_until(PATIENCE, "writes under the new membership", || async {
        let s = admin.leader_status().await.ok()?;
        (s.last_log_index? >= target).then_some(())
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await?;
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "writes failed during membership changes"
    );
    assert!(written.len() >= 20, "only {} writes", written.len());
    for id in [2, 3, 4] {
        wait_roles(&cluster, id, &written).await?;
    }
    let members: Vec<u64> = admin
        .leader_status()
        .await?
        .members
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(members, vec![2, 3, 4]);
    Ok(())
}
