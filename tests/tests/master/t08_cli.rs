use std::time::Duration;

use serde_json::Value;
use sluice_consensus::Query;
use sluice_tests::*;

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

async fn cli_json(cluster: &ProcessCluster, args: &[&str]) -> anyhow::Result<Value> {
    let mut full = args.to_vec();
    full.extend(["--output", "json"]);
    let (ok, stdout, stderr) = sluice_with(&full, &cluster.cli_env(), CLI_TIMEOUT).await?;
    anyhow::ensure!(ok, "`sluice {}` failed: {stderr}", full.join(" "));
    Ok(serde_json::from_str(&stdout)?)
}

/// The admin CLI against a real cluster with TLS and ACLs: init, ACL
/// bootstrap, status (table and JSON), transfer-leader, snapshot save and
/// restore; any member's address works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_drives_a_real_cluster() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = ProcessCluster::start(tmp.path(), 3, TIMING).await?;
    let all = cluster.api_addrs().join(",");
    let init = cli_json(&cluster, &["cluster", "init", "--masters", &all]).await?;
    assert_eq!(init["members"], serde_json::json!([1, 2, 3]));
    let security = cluster.security().expect("a secure cluster");
    let created = cli_json(&cluster, &["acl", "bootstrap", "--masters", &all]).await?;
    let token = created["secret"].as_str().expect("a token").to_owned();
    security.set_management_token(token);

    // Again: refused, nothing changed.
    let env = cluster.cli_env();
    let (ok, _, stderr) =
        sluice_with(&["cluster", "init", "--masters", &all], &env, CLI_TIMEOUT).await?;
    assert!(
        !ok && stderr.contains("already belongs to a cluster"),
        "{stderr}"
    );

    // Status through a single, arbitrary member.
    let member3 = cluster.member(3)?.api_addr.clone();
    let status = cli_json(&cluster, &["cluster", "status", "--masters", &member3]).await?;
    let leader = status["leader_id"].as_u64().expect("a leader");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "leader").count(), 1);
    assert!(members.iter().all(|m| m["lag"].is_u64()), "{status}");
    let (ok, table, _) = sluice_with(
        &["cluster", "status", "--masters", &member3],
        &env,
        CLI_TIMEOUT,
    )
    .await?;
    assert!(
        ok && table.contains("leader") && table.contains("applied"),
        "{table}"
    );

    // Leadership moves where asked.
    let target = (1..=3).find(|id| *id != leader).unwrap();
    let moved = cli_json(
        &cluster,
        &[
            "cluster",
            "transfer-leader",
            &target.to_string(),
            "--masters",
            &member3,
        ],
    )
    .await?;
    assert_eq!(moved["leader_id"], target);
    assert_eq!(cluster.leader(PATIENCE).await?, target);

    // Snapshot save, change, restore: the state returns to the saved one.
    let client = cluster.client(&[], Duration::from_secs(10))?;
    client.write(&set_role("saved")).await?;
    let file = tmp.path().join("state.json");
    let file_str = file.to_string_lossy().into_owned();
    cli_json(
        &cluster,
        &[
            "cluster",
            "snapshot",
            "save",
            &file_str,
            "--masters",
            &member3,
        ],
    )
    .await?;
    let saved = client.read(&Query::State, false).await?;
    client.write(&set_role("later")).await?;
    cli_json(
        &cluster,
        &[
            "cluster",
            "snapshot",
            "restore",
            &file_str,
            "--masters",
            &member3,
        ],
    )
    .await?;
    let mut restored = client.read(&Query::State, false).await?;
    // The restore itself is the latest change.
    restored["last_change_index"] = saved["last_change_index"].clone();
    assert_eq!(restored, saved);

    // A damaged snapshot file is refused before anything is sent.
    std::fs::write(
        &file,
        "{\"format\": \"sluice-cluster-state/1\", \"state\": 3}",
    )?;
    let (ok, _, stderr) = sluice_with(
        &[
            "cluster",
            "snapshot",
            "restore",
            &file_str,
            "--masters",
            &member3,
        ],
        &env,
        CLI_TIMEOUT,
    )
    .await?;
    assert!(!ok && stderr.contains("line 1 column"), "{stderr}");
    Ok(())
}
