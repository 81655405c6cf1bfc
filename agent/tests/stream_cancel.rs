//! Stopping stream work on an agent: cancelling an unbounded stream job
//! stops its shard threads promptly and frees the agent's cores for the next
//! job; shutting the agent down stops the shards too.
//!
//! Alone in its test binary: it counts the engine's shard threads of this
//! process, which no other test may start meanwhile.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use sluice_agent::Agent;
use sluice_consensus::state::{JobState, TaskState};
use sluice_consensus::Request;

/// An endless Nexmark bid stream, exchanged by auction, into a blackhole.
const ENDLESS: &str = r#"name = "endless"

[[source]]
kind = "nexmark"
table = "bid"
rate_per_sec = 20000

[[operator]]
key_by = "auction"

[[sink]]
kind = "blackhole"
"#;

/// How long a stop may take: a few heartbeats plus the engine's stop.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_unbounded_stream_job_stops_its_shards_and_frees_the_cores() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let id = cluster.submit("endless", stream(ENDLESS, 2)).await?;
    cluster
        .wait_job(id, Duration::from_secs(30), |j| {
            j.tasks.iter().all(|t| t.state == TaskState::Running)
        })
        .await?;
    wait_for("both shards to run", Duration::from_secs(10), || {
        threads_named("sluice-shard-") == 2
    })
    .await?;
    let record = cluster.agent(agent.id()).await?;
    assert_eq!(record.used_cores.len(), 2, "{record:#?}");

    let cancelled_at = Instant::now();
    cluster.client.write(&Request::CancelJob { id }).await?;
    let job_thread = format!("sluice-job-{id}");
    wait_for("the shards to stop", STOP_DEADLINE, || {
        threads_named("sluice-shard-") == 0 && threads_named(&job_thread) == 0
    })
    .await?;
    let stopped_in = cancelled_at.elapsed();
    let job = cluster.job(id).await?;
    assert_eq!(job.state, JobState::Cancelled, "{job:#?}");
    assert!(job.tasks.iter().all(|t| t.state == TaskState::Killed));
    let record = cluster.agent(agent.id()).await?;
    assert!(
        record.used_cores.is_empty() && record.tasks.is_empty(),
        "{record:#?}"
    );
    eprintln!("shards stopped {stopped_in:?} after the cancel");

    // The cores are free for real: the next job gets both and runs on them.
    let next = cluster.submit("endless-2", stream(ENDLESS, 2)).await?;
    cluster
        .wait_job(next, Duration::from_secs(30), |j| {
            j.tasks.iter().all(|t| t.state == TaskState::Running)
        })
        .await?;
    wait_for("the next job's shards", Duration::from_secs(10), || {
        threads_named("sluice-shard-") == 2
    })
    .await?;

    // Shutting the agent down stops them before it returns.
    agent.shutdown().await;
    assert_eq!(threads_named("sluice-shard-"), 0);
    assert_eq!(threads_named(&format!("sluice-job-{next}")), 0);
    cluster.shutdown().await
}
