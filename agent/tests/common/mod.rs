//! Real masters (three, RocksDB on disk, gRPC on loopback) and agents for
//! the agent's integration tests.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice_agent::AgentConfig;
use sluice_consensus::state::{
    Agent, Job, JobId, JobKind, JobSpec, JobState, PlacementStrategy, DEFAULT_ROLE,
};
use sluice_consensus::{Command, CommandOutput, MasterClient, MasterConfig, MasterHandle, Query};

pub const MIB: u64 = 1 << 20;

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Three in-process masters.
pub struct Cluster {
    pub configs: Vec<MasterConfig>,
    pub masters: Vec<MasterHandle>,
    pub api_addrs: Vec<String>,
    pub client: MasterClient,
}

impl Cluster {
    pub async fn start(root: &Path) -> Result<Self> {
        let mut configs = Vec::new();
        let mut api_addrs = Vec::new();
        for id in 1..=3u64 {
            let api = format!("127.0.0.1:{}", free_port()?);
            let raft = format!("127.0.0.1:{}", free_port()?);
            let mut config =
                MasterConfig::new(id, raft, api.clone(), root.join(format!("master-{id}")));
            config.agent_timeout_ms = 3_000;
            config.agent_grace_ms = 3_000;
            config.schedule_interval_ms = 50;
            configs.push(config);
            api_addrs.push(api);
        }
        let mut masters = Vec::new();
        for config in &configs {
            masters.push(MasterHandle::start(config.clone()).await?);
        }
        let client = MasterClient::new(api_addrs.clone(), Duration::from_secs(10))?;
        client.init(&api_addrs).await?;
        client.leader_status().await?;
        Ok(Self {
            configs,
            masters,
            api_addrs,
            client,
        })
    }

    /// Stops every master (their data stays on disk).
    pub async fn stop(&mut self) -> Result<()> {
        for m in self.masters.drain(..) {
            m.shutdown().await?;
        }
        Ok(())
    }

    /// Starts the stopped masters again on their data and addresses.
    pub async fn restart(&mut self) -> Result<()> {
        for config in &self.configs {
            self.masters
                .push(MasterHandle::start(config.clone()).await?);
        }
        self.client.leader_status().await?;
        Ok(())
    }

    pub async fn shutdown(mut self) -> Result<()> {
        self.stop().await
    }

    pub fn agent_config(&self, data_dir: PathBuf) -> AgentConfig {
        let mut config = AgentConfig::new(self.api_addrs.clone(), data_dir);
        config.cores = Some(BTreeSet::from([0, 1]));
        config.memory_bytes = Some(4096 * MIB);
        config.disk_bytes = Some(1024 * MIB);
        config.hostname = Some("test-agent".into());
        config.heartbeat_interval = Duration::from_millis(100);
        config.request_timeout = Duration::from_secs(2);
        config.register_timeout = Duration::from_secs(20);
        config.kill_grace = Duration::from_secs(1);
        config
    }

    pub async fn submit(&self, name: &str, kind: JobKind) -> Result<JobId> {
        let job = JobSpec {
            name: name.into(),
            role: DEFAULT_ROLE.into(),
            priority: 0,
            estimated_duration_ms: None,
            kind,
            constraints: Vec::new(),
            placement: PlacementStrategy::BinPack,
        };
        match self
            .client
            .write(&Command::SubmitJob { job, now_ms: 0 })
            .await?
            .output
        {
            CommandOutput::JobSubmitted { id } => Ok(id),
            other => bail!("unexpected output {other:?}"),
        }
    }

    pub async fn job(&self, id: JobId) -> Result<Job> {
        Ok(serde_json::from_value(
            self.client.read(&Query::Job { id }, false).await?,
        )?)
    }

    pub async fn agent(&self, id: u64) -> Result<Agent> {
        Ok(serde_json::from_value(
            self.client.read(&Query::Agent { id }, false).await?,
        )?)
    }

    /// Waits until job `id` satisfies `done`, failing after `within`.
    pub async fn wait_job(
        &self,
        id: JobId,
        within: Duration,
        done: impl Fn(&Job) -> bool,
    ) -> Result<Job> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.job(id).await?;
            if done(&job) {
                return Ok(job);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("job {id} did not reach the expected state in {within:?}: {job:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ended(&self, id: JobId) -> Result<Job> {
        self.wait_job(id, Duration::from_secs(30), |j| j.state.is_ended())
            .await
            .context("waiting for the job to end")
    }
}

pub fn command(argv: &[&str]) -> JobKind {
    JobKind::Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cpus: 1,
        memory_bytes: 64 * MIB,
        disk_bytes: 0,
    }
}

pub fn is_state(state: JobState) -> impl Fn(&Job) -> bool {
    move |j| j.state == state
}

/// Waits for `cond` (polled) with a deadline.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
