//! Helpers shared by the integration tests in `tests/`.
//!
//! The tests start real `sluice master` processes (RocksDB on disk, gRPC on
//! loopback) through [`sluice_bench::procs::ProcessCluster`].

#![forbid(unsafe_code)]

pub mod netns;

use std::time::Duration;

use anyhow::{bail, Result};
use sluice_bench::procs::sluice_bin;
use sluice_consensus::state::RoleSpec;
use sluice_consensus::state::{AgentId, AgentSpec, ClusterState, Job, JobState};
use sluice_consensus::{CommandOutput, MasterClient, Query, Request};

pub use sluice_bench::procs::{wait_until, ProcessCluster};

/// Raft timing for test clusters: the defaults' shape, with election
/// timeouts wide enough that a loaded 2-core CI machine does not see
/// spurious elections.
pub const TIMING: &[&str] = &[
    "--heartbeat-ms",
    "50",
    "--election-timeout-min-ms",
    "400",
    "--election-timeout-max-ms",
    "800",
];

/// How long tests wait for anything the cluster should do by itself.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A role-setting command: a small real write whose effect is easy to read back.
pub fn set_role(name: &str) -> Request {
    Request::SetRole(RoleSpec {
        name: name.to_owned(),
        weight: 1.0,
        quota: None,
        limit: None,
        reservations: Default::default(),
    })
}

/// A one-core command job `name` running `true` in `role`: a small real
/// submission for tests about who may submit and what is refused.
pub fn small_job(name: &str, role: &str) -> sluice_consensus::state::JobSpec {
    sluice_consensus::state::JobSpec {
        name: name.to_owned(),
        role: role.to_owned(),
        priority: 0,
        estimated_duration_ms: None,
        kind: sluice_consensus::state::JobKind::Command {
            argv: vec!["true".into()],
            cpus: 1,
            memory_bytes: 1 << 20,
            disk_bytes: 0,
        },
        constraints: Vec::new(),
        placement: Default::default(),
        restart: Default::default(),
    }
}

/// Runs `sluice ARGS`, returning (exit success, stdout, stderr); fails past `timeout`.
/// A `sluice master` or `sluice agent` run here serves plain text unless its
/// arguments configure TLS (the flag has no effect on other commands).
pub async fn sluice(args: &[&str], timeout: Duration) -> Result<(bool, String, String)> {
    let env = if args.contains(&"--tls-ca") {
        Vec::new()
    } else {
        vec![("SLUICE_INSECURE".to_owned(), "1".to_owned())]
    };
    sluice_with(args, &env, timeout).await
}

/// [`sluice`] with `env` set for the command alone (e.g. a cluster's
/// [`ProcessCluster::cli_env`]: its client certificate and token).
pub async fn sluice_with(
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(bool, String, String)> {
    let mut cmd = tokio::process::Command::new(sluice_bin()?);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(output) => output?,
        Err(_) => bail!(
            "`sluice {}` did not finish within {timeout:?}",
            args.join(" ")
        ),
    };
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The role names the cluster holds: linearizable through the leader, or
/// `stale` from the client's first reachable seed.
pub async fn role_names(client: &MasterClient, stale: bool) -> Result<Vec<String>> {
    let value = client.read(&sluice_consensus::Query::Roles, stale).await?;
    Ok(value
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The role names a member holds, read locally (stale) from member `id`.
pub async fn roles_on(cluster: &ProcessCluster, id: u64) -> Result<Vec<String>> {
    role_names(&cluster.client(&[id], Duration::from_secs(2))?, true).await
}

/// Waits until member `id` holds every role in `expected`.
pub async fn wait_roles(cluster: &ProcessCluster, id: u64, expected: &[String]) -> Result<()> {
    wait_until(
        PATIENCE,
        &format!("master {id} to hold {} roles", expected.len()),
        || async {
            let roles = roles_on(cluster, id).await.ok()?;
            expected.iter().all(|r| roles.contains(r)).then_some(())
        },
    )
    .await
}

/// Master settings for scheduler tests: fast agent liveness on top of [`TIMING`].
pub const SCHED_TIMING: &[&str] = &[
    "--heartbeat-ms",
    "50",
    "--election-timeout-min-ms",
    "400",
    "--election-timeout-max-ms",
    "800",
    "--agent-timeout-ms",
    "2000",
    "--agent-grace-ms",
    "3000",
];

/// Registers an agent offering `cores` cores and `memory_gib` GiB.
pub async fn register_agent(
    client: &MasterClient,
    hostname: &str,
    cores: u32,
    memory_gib: u64,
) -> Result<AgentId> {
    let spec = AgentSpec {
        id: None,
        hostname: hostname.to_owned(),
        cores: (0..cores).collect(),
        memory_bytes: memory_gib << 30,
        disk_bytes: 100 << 30,
        attributes: Default::default(),
    };
    match client.write(&Request::RegisterAgent(spec)).await?.output {
        CommandOutput::AgentRegistered { id, .. } => Ok(id),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Heartbeats for agent `id` every 200 ms, following the leader, until
/// the task is aborted: what an agent daemon does for its liveness.
pub fn heartbeat(client: std::sync::Arc<MasterClient>, id: AgentId) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = client.heartbeat(id).await {
                tracing::debug!(agent = id, %e, "heartbeat failed; retrying");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The whole replicated state, read linearizably.
pub async fn cluster_state(client: &MasterClient) -> Result<ClusterState> {
    Ok(serde_json::from_value(
        client.read(&Query::State, false).await?,
    )?)
}

/// Waits until job `id` is in `state`; returns it.
pub async fn wait_job(client: &MasterClient, id: u64, state: JobState) -> Result<Job> {
    wait_until(PATIENCE, &format!("job {id} to be {state:?}"), || async {
        let value = client.read(&Query::Job { id }, false).await.ok()?;
        let job: Job = serde_json::from_value(value).ok()?;
        (job.state == state).then_some(job)
    })
    .await
}
