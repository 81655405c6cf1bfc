use std::time::Duration;

use sluice_bench::procs::{free_port, sluice_bin};
use sluice_consensus::state::JobState;
use sluice_tests::*;

/// A job whose task keeps failing restarts as its policy says, each restart and its reason
/// in the job's history, and fails when the restarts run out: real masters, a real agent
/// running the command each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_restarts_per_its_policy_then_fails() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = ProcessCluster::start(tmp.path(), 3, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let masters = cluster.api_addrs().join(",");
    let client = cluster.client(&[], Duration::from_secs(20))?;
    let env = cluster.cli_env();
    let log = std::fs::File::create(tmp.path().join("agent.log"))?;
    let _agent = tokio::process::Command::new(sluice_bin()?)
        .args([
            "agent",
            "--allow-root-tasks",
            "--masters",
            &masters,
            "--data-dir",
        ])
        .arg(tmp.path().join("agent"))
        .args(["--cores", "1", "--memory", "1GiB", "--disk", "1GiB"])
        .args(["--heartbeat-ms", "200"])
        .args(["--api-addr", &format!("127.0.0.1:{}", free_port()?)])
        .envs(cluster.agent_env("agent").await?)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;

    let runs = tmp.path().join("runs");
    let script = format!("echo run >> {}; exit 3", runs.display());
    let (ok, stdout, stderr) = sluice_with(
        &[
            "job",
            "submit",
            "--masters",
            &masters,
            "-o",
            "json",
            "--name",
            "flaky",
            "--cpus",
            "1",
            "--memory",
            "64MiB",
            "--restart",
            "fixed:2:300ms",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    assert!(ok, "{stderr}");
    let id = serde_json::from_str::<serde_json::Value>(&stdout)?["job_submitted"]["id"]
        .as_u64()
        .expect("job id");
    let job = wait_until(
        Duration::from_secs(60),
        "the job to fail for good",
        || async {
            let job = cluster_state(&client).await.ok()?.jobs.get(&id).cloned()?;
            (job.state == JobState::Failed).then_some(job)
        },
    )
    .await?;
    assert_eq!(job.restarts, 2, "{job:?}");
    let history: Vec<&str> = job.events.iter().map(|e| e.message.as_str()).collect();
    for n in 1..=2 {
        let want = format!("restart {n} of 2 in 300 ms");
        assert!(
            history
                .iter()
                .any(|m| m.contains(&want) && m.contains("exit")),
            "no {want:?} with its reason in {history:#?}"
        );
    }
    let ran = std::fs::read_to_string(&runs)?;
    assert_eq!(
        ran.lines().count(),
        3,
        "the first run and two restarts: {ran:?}"
    );
    // A policy the masters would refuse is refused before anything is submitted.
    let (ok, _, stderr) = sluice_with(
        &[
            "job",
            "submit",
            "--masters",
            &masters,
            "--cpus",
            "1",
            "--memory",
            "64MiB",
            "--restart",
            "fixed:0:1s",
            "--",
            "true",
        ],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    assert!(!ok && stderr.contains("attempts"), "{stderr}");
    Ok(())
}
