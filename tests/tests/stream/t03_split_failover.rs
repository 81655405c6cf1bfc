//! A checkpointed stream job split across two agents: each agent stores its own shards'
//! state, the one running shard 0 leads (triggers every checkpoint in both and completes it
//! through the masters). When the lead agent is SIGKILLed the job resumes on the surviving
//! agent and a third one from the latest checkpoint committed through Raft, and its
//! exactly-once file output holds every bid once, each auction's running count 1..n.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sluice_bench::checkpoint::{check_counts, counting_job};
use sluice_consensus::state::JobState;
use sluice_tests::*;

use super::t02_agent_failover::{agent, resumed_after_kill, submit_spec, EVENTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_split_across_agents_checkpoints_and_recovers_exactly_once() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let outcome = split_failover(tmp.path()).await;
    if outcome.is_err() {
        for name in ["a1", "a2", "a3"] {
            let log = std::fs::read_to_string(tmp.path().join(format!("{name}.log")));
            eprintln!("--- agent {name}:\n{}", log.unwrap_or_default());
        }
    }
    outcome
}

async fn split_failover(dir: &Path) -> Result<()> {
    let cluster = ProcessCluster::start(dir, 3, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let masters = cluster.api_addrs().join(",");
    let client = cluster.client(&[], Duration::from_secs(20))?;
    let mut agents = BTreeMap::new();
    agents.insert(
        "a1",
        agent(
            dir,
            &masters,
            "a1",
            "7340-7349",
            cluster.agent_env("a1").await?,
        )?,
    );
    agents.insert(
        "a2",
        agent(
            dir,
            &masters,
            "a2",
            "7350-7359",
            cluster.agent_env("a2").await?,
        )?,
    );
    wait_until(PATIENCE, "both agents to register", || async {
        (cluster_state(&client).await.ok()?.agents.len() == 2).then_some(())
    })
    .await?;

    let out = dir.join("counts.csv");
    let spec = counting_job(
        "split-count",
        2,
        (EVENTS, 20_000),
        200,
        &dir.join("checkpoints"),
        &out,
        "",
        "auction",
    );
    let env = cluster.cli_env();
    let id = submit_spec(dir, &masters, &env, &spec).await?;
    let job = wait_job(&client, id, JobState::Running).await?;
    let placed: BTreeSet<u64> = job
        .tasks
        .iter()
        .filter_map(|t| t.grant.as_ref().map(|g| g.agent))
        .collect();
    ensure!(placed.len() == 2, "the job is not split: {placed:?}");
    let lead_agent = job.tasks[0].grant.as_ref().context("a grant")?.agent;
    // Checkpoints of both agents' shards complete through the masters.
    wait_until(PATIENCE, "checkpoints to be committed", || async {
        let state = cluster_state(&client).await.ok()?;
        (state.jobs[&id].checkpoints.len() >= 3).then_some(())
    })
    .await?;
    let state = cluster_state(&client).await?;
    for c in &state.jobs[&id].checkpoints {
        ensure!(
            c.handles.len() == 2,
            "checkpoint {} misses a shard: {c:?}",
            c.id
        );
        ensure!(
            c.handles[1].ends_with("/shard-1"),
            "checkpoint {}: {:?}",
            c.id,
            c.handles
        );
    }
    let committed_before = state.jobs[&id].checkpoints.last().map(|c| c.id);

    // A third agent to take over, then the lead agent dies.
    agents.insert(
        "a3",
        agent(
            dir,
            &masters,
            "a3",
            "7360-7369",
            cluster.agent_env("a3").await?,
        )?,
    );
    wait_until(PATIENCE, "the third agent to register", || async {
        (cluster_state(&client).await.ok()?.agents.len() == 3).then_some(())
    })
    .await?;
    let victim = state.agents[&lead_agent].hostname.clone();
    agents
        .get_mut(victim.as_str())
        .context("the victim agent")?
        .start_kill()?;

    resumed_after_kill(&client, &masters, &env, id, committed_before).await?;

    // Exactly once across both shards' files.
    let parts = [0, 1].map(|s| dir.join(format!("counts.csv.{s}")));
    check_counts(&parts, EVENTS / 50 * 46)?;
    Ok(())
}
