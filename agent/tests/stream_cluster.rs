//! Stream jobs on agents while the cluster changes: a master leader killed
//! under a running job disturbs neither the job nor its output, and a job
//! spread over two agents (records crossing between them on the data plane)
//! produces what it produces on one.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::*;
use sluice_agent::Agent;
use sluice_consensus::state::{AgentState, Job, JobState, PlacementStrategy, TaskState};
use sluice_consensus::Request;

/// An endless, rate-limited Nexmark bid stream into a blackhole.
const ENDLESS: &str = r#"name = "endless"

[[source]]
kind = "nexmark"
table = "bid"
rate_per_sec = 10000

[[operator]]
key_by = "auction"

[[sink]]
kind = "blackhole"
"#;

/// A bounded Nexmark job: `events` bids (at `rate` per second, 0 for full
/// speed), exchanged by auction, projected, into part files at `out`.
fn bounded(out: &Path, events: u64, rate: u64) -> String {
    format!(
        r#"name = "bounded"

[[source]]
kind = "nexmark"
table = "bid"
events = {events}
seed = 7
rate_per_sec = {rate}

[[operator]]
key_by = "auction"

[[operator]]
map = ["auction", "bidder", "price", "date_time"]

[[sink]]
kind = "file"
path = "{}"
"#,
        out.display()
    )
}

/// What the engine alone makes of `spec_toml` on `parallelism` shards: the
/// sorted lines of its part files.
fn reference(spec_toml: &str, parallelism: usize, out: &Path) -> Result<Vec<String>> {
    let mut spec = sluice_engine::spec::load::parse_spec(spec_toml)?;
    spec.parallelism = parallelism;
    spec.pin_cores = false;
    sluice_engine::run_job(spec)?;
    part_lines(out, parallelism)
}

fn all_tasks_running(job: &Job) -> bool {
    job.tasks.iter().all(|t| t.state == TaskState::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_kill_leaves_a_running_stream_job_alone() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let id = cluster.submit("endless", stream(ENDLESS, 2)).await?;
    let before = cluster
        .wait_job(id, Duration::from_secs(30), all_tasks_running)
        .await?;
    assert_eq!(placements(&before), 1, "{before:#?}");

    let old = cluster.kill_leader().await?;
    let new = cluster
        .wait_new_leader(old, Duration::from_secs(20))
        .await?;
    // Watch past the new leader's grace and agent timeout together: an agent
    // that did not heartbeat the new leader would be marked Lost by then and
    // its job placed again.
    let config = &cluster.configs[0];
    let window = Duration::from_millis(config.agent_grace_ms + config.agent_timeout_ms)
        + Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + window;
    let mut polls = 0;
    while tokio::time::Instant::now() < deadline {
        let job = cluster.job(id).await?;
        ensure!(
            job.state == JobState::Running && all_tasks_running(&job),
            "the job left Running after the leader {old} was killed: {job:#?}"
        );
        ensure!(
            job.version == before.version && placements(&job) == 1,
            "the job was placed again: {job:#?}"
        );
        let record = cluster.agent(agent.id()).await?;
        ensure!(
            record.state == AgentState::Active,
            "the agent stopped heartbeating the new leader {new}: {record:#?}"
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls > 10, "the job was watched {polls} times only");
    // The agent follows the new leader for commands too: a cancel stops it.
    cluster.client.write(&Request::CancelJob { id }).await?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Cancelled);
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_kill_during_a_bounded_stream_job_loses_and_duplicates_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    let events = 30_000;
    let expected = reference(
        &bounded(&root.path().join("reference.ndjson"), events, 0),
        2,
        &root.path().join("reference.ndjson"),
    )?;
    assert_eq!(
        expected.len() as u64,
        events * 46 / 50,
        "bids are 46 of 50 events"
    );

    let mut cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let out = root.path().join("out.ndjson");
    // About four seconds of work: the leader dies early in the run.
    let id = cluster
        .submit("bounded", stream(&bounded(&out, events, 7_500), 2))
        .await?;
    cluster
        .wait_job(id, Duration::from_secs(30), all_tasks_running)
        .await?;
    let old = cluster.kill_leader().await?;
    cluster
        .wait_new_leader(old, Duration::from_secs(20))
        .await?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    assert_eq!(placements(&job), 1, "never placed again: {job:#?}");
    let got = part_lines(&out, 2)?;
    assert_eq!(got.len(), expected.len(), "records lost or duplicated");
    assert!(
        got == expected,
        "the output differs from the engine's own run"
    );
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_spread_over_two_agents_matches_one_agent() -> Result<()> {
    spread_matches_one_agent(false).await
}

/// The same with mutual TLS and ACLs: agents register with their
/// certificates and token, and the shards exchange records over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_spread_over_two_agents_in_tls_matches_one_agent() -> Result<()> {
    spread_matches_one_agent(true).await
}

async fn spread_matches_one_agent(secure: bool) -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cluster, agent_identity) = if secure {
        let (master, agent, client) = test_pki(&root.path().join("pki"))?;
        let (cluster, _) = Cluster::start_secure(root.path(), master, client).await?;
        (cluster, Some(agent))
    } else {
        (Cluster::start(root.path()).await?, None)
    };
    let mut agents = Vec::new();
    for name in ["agent-a", "agent-b"] {
        let mut config = cluster.agent_config(root.path().join(name));
        config.hostname = Some(name.into());
        if let Some(tls) = &agent_identity {
            // Each agent its own token: a token is bound to the agent that
            // first registers with it.
            let token = cluster
                .client
                .write(&Request::AclCreateToken {
                    name: name.into(),
                    policies: vec![sluice_consensus::acl::AclPolicy::Agent],
                    ttl_ms: None,
                })
                .await?
                .secret;
            config.tls = Some(tls.clone());
            config.token = token.map(Into::into);
        }
        agents.push(Agent::start(config).await?);
    }
    let events = 20_000;
    let mut outputs = Vec::new();
    for (run, placement) in [
        ("one", PlacementStrategy::BinPack),
        ("two", PlacementStrategy::Spread),
    ] {
        let out = root.path().join(format!("{run}.ndjson"));
        let id = cluster
            .submit_placed(run, stream(&bounded(&out, events, 0), 2), placement)
            .await?;
        let job = cluster
            .wait_job(id, Duration::from_secs(30), |j| {
                j.tasks.iter().all(|t| t.grant.is_some()) || j.state.is_ended()
            })
            .await?;
        // A short job may end before it is seen placed: its tasks keep the
        // agent they last ran on.
        let hosts: std::collections::BTreeSet<u64> = job
            .tasks
            .iter()
            .filter_map(|t| t.grant.as_ref().map(|g| g.agent).or(t.last_agent))
            .collect();
        assert_eq!(
            hosts.len(),
            if run == "one" { 1 } else { 2 },
            "{run}: {job:#?}"
        );
        let job = cluster.wait_ended(id).await?;
        assert_eq!(job.state, JobState::Finished, "{run}: {job:#?}");
        outputs.push(part_lines(&out, 2)?);
    }
    assert_eq!(outputs[0].len() as u64, events * 46 / 50);
    assert!(
        outputs[0] == outputs[1],
        "the spread job's output differs from the one-agent run"
    );
    for agent in agents {
        agent.shutdown().await;
    }
    cluster.shutdown().await
}
