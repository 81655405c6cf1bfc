//! A checkpointed stream job survives the loss of its agent: real masters, two real agents,
//! the agent running the job SIGKILLed; the masters mark it Lost and place the job on the
//! other agent, which resumes from the latest checkpoint committed through Raft. The job's
//! exactly-once file output holds every bid once, each auction's running count 1..n.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sluice_bench::checkpoint::{check_counts, counting_job};
use sluice_bench::procs::{free_port, sluice_bin};
use sluice_consensus::state::JobState;
use sluice_tests::*;
use tokio::process::{Child, Command};

pub(crate) const EVENTS: u64 = 200_000;

fn spec(dir: &Path) -> String {
    counting_job(
        "failover-count",
        1,
        (EVENTS, 20_000),
        200,
        &dir.join("checkpoints"),
        &dir.join("counts.csv"),
        "",
        "auction",
    )
}

/// Starts agent `name`; `env` is its certificate and token
/// ([`ProcessCluster::agent_env`]).
pub(crate) fn agent(
    dir: &Path,
    masters: &str,
    name: &str,
    ports: &str,
    env: Vec<(String, String)>,
) -> Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let api = format!("127.0.0.1:{}", free_port()?);
    Ok(Command::new(sluice_bin()?)
        .args([
            "agent",
            "--allow-root-tasks",
            "--masters",
            masters,
            "--data-dir",
        ])
        .arg(dir.join(name))
        .args(["--cores", "1", "--memory", "1GiB", "--disk", "1GiB"])
        .args(["--heartbeat-ms", "200", "--hostname", name])
        .args(["--data-ports", ports, "--api-addr", &api])
        .envs(env)
        .env("SLUICE_LOG", "info,openraft=error")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?)
}

/// Submits the counting job (written into `dir`) through the CLI; returns its id.
async fn submit(dir: &Path, masters: &str, env: &[(String, String)]) -> Result<u64> {
    submit_spec(dir, masters, env, &spec(dir)).await
}

/// Submits the stream job `spec` (written into `dir`) through the CLI; returns its id.
pub(crate) async fn submit_spec(
    dir: &Path,
    masters: &str,
    env: &[(String, String)],
    spec: &str,
) -> Result<u64> {
    let spec_path = dir.join("job.toml");
    std::fs::write(&spec_path, spec)?;
    let spec_arg = spec_path.to_str().context("utf-8 path")?;
    let (ok, stdout, stderr) = sluice_with(
        &[
            "job",
            "submit",
            "--masters",
            masters,
            "-o",
            "json",
            "--stream",
            spec_arg,
        ],
        env,
        Duration::from_secs(30),
    )
    .await?;
    ensure!(ok, "submit: {stderr}");
    serde_json::from_str::<serde_json::Value>(&stdout)?["job_submitted"]["id"]
        .as_u64()
        .context("job id")
}

/// What `sluice job checkpoints ID -o json` says.
pub(crate) async fn checkpoints_view(
    masters: &str,
    env: &[(String, String)],
    id: u64,
) -> Result<serde_json::Value> {
    let id = id.to_string();
    let (ok, stdout, stderr) = sluice_with(
        &[
            "job",
            "checkpoints",
            &id,
            "--masters",
            masters,
            "-o",
            "json",
        ],
        env,
        Duration::from_secs(30),
    )
    .await?;
    ensure!(ok, "{stderr}");
    Ok(serde_json::from_str(&stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agent_s_job_resumes_from_its_last_committed_checkpoint() -> Result<()> {
    with_logs(0).await
}

/// Leader kills while checkpoints are committed lose no committed checkpoint, and the job
/// never resumes from one that was not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_during_checkpoints_lose_no_committed_checkpoint() -> Result<()> {
    with_logs(3).await
}

async fn with_logs(leader_kills: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let outcome = failover(tmp.path(), leader_kills).await;
    if outcome.is_err() {
        for name in ["a1", "a2"] {
            let log = std::fs::read_to_string(tmp.path().join(format!("{name}.log")));
            eprintln!("--- agent {name}:\n{}", log.unwrap_or_default());
        }
    }
    outcome
}

async fn failover(dir: &Path, leader_kills: usize) -> Result<()> {
    let tmp = dir;
    let mut cluster = ProcessCluster::start(tmp, 3, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let masters = cluster.api_addrs().join(",");
    let client = cluster.client(&[], Duration::from_secs(20))?;
    let mut agents = BTreeMap::new();
    agents.insert(
        "a1",
        agent(
            tmp,
            &masters,
            "a1",
            "7310-7319",
            cluster.agent_env("a1").await?,
        )?,
    );
    agents.insert(
        "a2",
        agent(
            tmp,
            &masters,
            "a2",
            "7320-7329",
            cluster.agent_env("a2").await?,
        )?,
    );
    wait_until(PATIENCE, "both agents to register", || async {
        (cluster_state(&client).await.ok()?.agents.len() == 2).then_some(())
    })
    .await?;

    let env = cluster.cli_env();
    let id = submit(tmp, &masters, &env).await?;
    let job = wait_job(&client, id, JobState::Running).await?;
    let first_agent = job.tasks[0].grant.as_ref().context("a grant")?.agent;
    // A few checkpoints committed through the masters, then the agent dies.
    wait_until(PATIENCE, "checkpoints to be committed", || async {
        let state = cluster_state(&client).await.ok()?;
        (state.jobs[&id].checkpoints.len() >= 3).then_some(())
    })
    .await?;
    // Kill the leader while checkpoints commit; every committed checkpoint stays committed.
    let mut seen: Vec<u64> = Vec::new();
    for kill in 0..leader_kills {
        let state = cluster_state(&client).await?;
        let committed: Vec<u64> = state.jobs[&id].checkpoints.iter().map(|c| c.id).collect();
        ensure!(
            seen.iter()
                .all(|c| committed.contains(c) || committed.first().is_some_and(|f| c < f)),
            "kill {kill}: committed checkpoints {seen:?} are not all in {committed:?}"
        );
        seen = committed;
        let leader = cluster.leader(PATIENCE).await?;
        cluster.kill(leader)?;
        let last = seen.last().copied().unwrap_or(0);
        // The remaining two elect a leader and commit further checkpoints of the same run.
        wait_until(
            PATIENCE,
            "a checkpoint committed under the new leader",
            || async {
                let state = cluster_state(&client).await.ok()?;
                let job = &state.jobs[&id];
                (job.checkpoints.last().is_some_and(|c| c.id > last)).then_some(())
            },
        )
        .await?;
        cluster.restart(leader).await?;
    }
    let state = cluster_state(&client).await?;
    let victim = state.agents[&first_agent].hostname.clone();
    let committed_before = state.jobs[&id].checkpoints.last().map(|c| c.id);
    let committed_ids: Vec<u64> = state.jobs[&id].checkpoints.iter().map(|c| c.id).collect();
    ensure!(
        seen.iter()
            .all(|c| committed_ids.contains(c) || committed_ids.first().is_some_and(|f| c < f)),
        "committed checkpoints {seen:?} are not all in {committed_ids:?}"
    );
    agents
        .get_mut(victim.as_str())
        .context("the victim agent")?
        .start_kill()?;

    // Re-placed on the other agent, resuming from a committed checkpoint, and finished.
    let resumed = resumed_after_kill(&client, &masters, &env, id, committed_before).await?;
    ensure!(
        committed_ids.contains(&resumed),
        "resumed from {resumed}, which was not a committed checkpoint: {committed_ids:?}"
    );

    // Exactly once: every auction's counts are 1..n and every bid is counted.
    check_counts(&[tmp.join("counts.csv")], EVENTS / 50 * 46)?;
    Ok(())
}

/// Waits for job `id`, whose agent was killed, to finish on other agents; checks that it was
/// placed again and resumed from a checkpoint no older than `committed_before` (the last one
/// committed before the kill), as `job checkpoints` says too; returns that checkpoint.
pub(crate) async fn resumed_after_kill(
    client: &sluice_consensus::MasterClient,
    masters: &str,
    env: &[(String, String)],
    id: u64,
    committed_before: Option<u64>,
) -> Result<u64> {
    let finished = wait_until(
        Duration::from_secs(120),
        "the job to finish on other agents",
        || async {
            let state = cluster_state(client).await.ok()?;
            let job = &state.jobs[&id];
            (job.state == JobState::Finished).then(|| job.clone())
        },
    )
    .await?;
    ensure!(
        finished.attempt >= 2,
        "the job was not re-placed: {finished:?}"
    );
    let resumed = finished
        .restore_from
        .context("the second run started afresh")?;
    ensure!(
        committed_before.is_some_and(|c| resumed >= c),
        "resumed from {resumed}, but {committed_before:?} was committed before the kill"
    );
    let view = checkpoints_view(masters, env, id).await?;
    ensure!(view["restored_from"] == resumed, "{view}");
    Ok(resumed)
}

/// A checkpoint store that cannot be written fails checkpoints, and the masters show them:
/// counted, with the latest reason, in `job checkpoints`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checkpoints_are_visible_through_the_masters() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let cluster = ProcessCluster::start(dir, 3, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let masters = cluster.api_addrs().join(",");
    let client = cluster.client(&[], Duration::from_secs(20))?;
    let _agent = agent(
        dir,
        &masters,
        "a1",
        "7330-7339",
        cluster.agent_env("a1").await?,
    )?;
    let env = cluster.cli_env();
    let id = submit(dir, &masters, &env).await?;
    wait_until(PATIENCE, "a checkpoint to be committed", || async {
        let state = cluster_state(&client).await.ok()?;
        (!state.jobs[&id].checkpoints.is_empty()).then_some(())
    })
    .await?;
    // The job's directory in the store becomes a file: no checkpoint can be stored.
    let job_dir = dir.join("checkpoints").join(format!("job-{id}"));
    wait_until(PATIENCE, "the store to be broken", || async {
        std::fs::remove_dir_all(&job_dir).ok()?;
        std::fs::write(&job_dir, b"not a directory").ok()
    })
    .await?;
    // The agent reports each checkpoint's trigger too (not waited for, so a trigger may
    // lose the race with its failure's report; later ones win it).
    wait_until(
        PATIENCE,
        "a failed checkpoint to be reported with its trigger",
        || async {
            let state = cluster_state(&client).await.ok()?;
            let job = &state.jobs[&id];
            let timed = job
                .failed_checkpoints
                .iter()
                .any(|f| f.triggered_ms.is_some());
            (job.checkpoints_failed > 0 && timed).then_some(())
        },
    )
    .await?;
    let view = checkpoints_view(&masters, &env, id).await?;
    ensure!(view["failed"].as_u64() > Some(0), "{view}");
    let failures = view["failures"].as_array().context("failures")?;
    let reason = failures.last().and_then(|f| f["reason"].as_str());
    ensure!(
        reason.is_some_and(|r| r.contains(&format!("job-{id}"))),
        "the reason names the store path: {view}"
    );
    Ok(())
}
