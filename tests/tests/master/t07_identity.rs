use std::time::Duration;

use sluice_tests::*;

/// A member is never started on another member's data dir, nor on a
/// directory Sluice did not create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_foreign_data_dirs_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    cluster.kill(2)?;

    // Member 2's data dir, claimed by id 1.
    let member = cluster.member(2)?;
    let data_dir = member.data_dir.to_string_lossy().into_owned();
    let (ok, _, stderr) = sluice(
        &[
            "master",
            "--id",
            "1",
            "--raft-addr",
            &member.raft_addr,
            "--api-addr",
            &member.api_addr,
            "--data-dir",
            &data_dir,
        ],
        Duration::from_secs(20),
    )
    .await?;
    assert!(!ok, "a master started on another member's data dir");
    assert!(
        stderr.contains("belongs to member 2, not member 1"),
        "{stderr}"
    );

    // A directory that holds someone else's files.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign)?;
    std::fs::write(foreign.join("notes.txt"), "not yours")?;
    let foreign_str = foreign.to_string_lossy().into_owned();
    let (ok, _, stderr) = sluice(
        &[
            "master",
            "--id",
            "2",
            "--raft-addr",
            &member.raft_addr,
            "--api-addr",
            &member.api_addr,
            "--data-dir",
            &foreign_str,
        ],
        Duration::from_secs(20),
    )
    .await?;
    assert!(!ok, "a master started on a foreign dir");
    assert!(
        stderr.contains("is not a Sluice master data dir"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&foreign)?.count(),
        1,
        "the foreign dir was touched"
    );

    // Member 2 itself still starts from its own data dir.
    cluster.restart(2).await?;
    Ok(())
}
