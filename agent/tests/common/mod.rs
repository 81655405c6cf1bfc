//! Real masters (three, RocksDB on disk, gRPC on loopback) and agents for
//! the agent's integration tests.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice_agent::AgentConfig;
use sluice_consensus::state::{
    Agent, Job, JobId, JobKind, JobSpec, JobState, PlacementStrategy, DEFAULT_ROLE,
};
use sluice_consensus::{
    CommandOutput, MasterClient, MasterConfig, MasterError, MasterHandle, Query, Request,
};

pub const MIB: u64 = 1 << 20;

/// The kernel's ephemeral port range (where it picks local ports of
/// outgoing connections).
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A port for a test server to listen on later.
///
/// Not one the kernel hands out (binding port 0): such a port is in the
/// ephemeral range, so between this call and the server's bind — or while a
/// master is stopped before a restart on the same port — any outgoing
/// connection of a test running in parallel may get it as its local port,
/// and a client retrying a stopped master on loopback can even connect to
/// itself on it; the server's bind then fails. Ports come instead from
/// outside the ephemeral range, each handed out once per process (starting
/// at a per-process offset, so concurrent test processes rarely meet), and
/// only if nothing listens on them now.
pub fn free_port() -> Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (eph_low, eph_high) = ephemeral_ports();
    let (low, high) = if eph_low >= 12_000 {
        (10_000u32, u32::from(eph_low))
    } else {
        (u32::from(eph_high) + 1, 65_536)
    };
    let span = high.saturating_sub(low);
    if span < 1_000 {
        bail!("no room for test ports outside the ephemeral range {eph_low}-{eph_high}");
    }
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {low}..{high}")
}

/// Starts a master, retrying for a while when its ports are still taken (a
/// restart right after a stop).
async fn start_master(config: &MasterConfig) -> Result<MasterHandle> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match MasterHandle::start(config.clone()).await {
            Ok(m) => return Ok(m),
            Err(MasterError::Bind { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Three in-process masters.
pub struct Cluster {
    pub configs: Vec<MasterConfig>,
    /// Running masters with their ids.
    pub masters: Vec<(u64, MasterHandle)>,
    pub api_addrs: Vec<String>,
    pub client: MasterClient,
}

impl Cluster {
    pub async fn start(root: &Path) -> Result<Self> {
        Self::start_with(root, |_| {}).await
    }

    /// Starts three masters, `tweak` adjusting each one's config.
    pub async fn start_with(root: &Path, tweak: impl Fn(&mut MasterConfig)) -> Result<Self> {
        Self::start_tls(root, tweak, None).await
    }

    /// [`Cluster::start_with`], the cluster's client presenting `client_tls`.
    async fn start_tls(
        root: &Path,
        tweak: impl Fn(&mut MasterConfig),
        client_tls: Option<sluice_security::Tls>,
    ) -> Result<Self> {
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
            tweak(&mut config);
            configs.push(config);
            api_addrs.push(api);
        }
        let mut masters = Vec::new();
        for config in &configs {
            masters.push((config.id, start_master(config).await?));
        }
        let client =
            MasterClient::new(api_addrs.clone(), Duration::from_secs(10))?.with_tls(client_tls);
        client.init(&api_addrs).await?;
        client.leader_status().await?;
        Ok(Self {
            configs,
            masters,
            api_addrs,
            client,
        })
    }

    /// Three masters with mutual TLS (`master` identity) and ACLs on; the
    /// cluster's client presents `client` and, once bootstrapped here,
    /// carries the management token (returned).
    pub async fn start_secure(
        root: &Path,
        master: sluice_security::Tls,
        client: sluice_security::Tls,
    ) -> Result<(Self, String)> {
        let mut cluster = Self::start_tls(
            root,
            |config| {
                config.tls = Some(master.clone());
                config.acl = true;
            },
            Some(client.clone()),
        )
        .await?;
        let management = cluster
            .client
            .write(&Request::AclBootstrap)
            .await?
            .secret
            .context("no bootstrap secret")?;
        cluster.client = MasterClient::new(cluster.api_addrs.clone(), Duration::from_secs(10))?
            .with_tls(Some(client))
            .with_token(Some(management.clone()));
        Ok((cluster, management))
    }

    /// Stops every master (their data stays on disk).
    pub async fn stop(&mut self) -> Result<()> {
        for (_, m) in self.masters.drain(..) {
            m.shutdown().await?;
        }
        Ok(())
    }

    /// Starts the stopped masters again on their data and addresses.
    pub async fn restart(&mut self) -> Result<()> {
        for config in &self.configs {
            if self.masters.iter().all(|(id, _)| *id != config.id) {
                self.masters.push((config.id, start_master(config).await?));
            }
        }
        self.client.leader_status().await?;
        Ok(())
    }

    pub async fn shutdown(mut self) -> Result<()> {
        self.stop().await
    }

    /// Shuts the current leader down (the others elect a new one); returns
    /// its id.
    pub async fn kill_leader(&mut self) -> Result<u64> {
        let leader = self.client.leader_status().await?.id;
        let i = self
            .masters
            .iter()
            .position(|(id, _)| *id == leader)
            .context("the leader is not one of this cluster's running masters")?;
        self.masters.remove(i).1.shutdown().await?;
        Ok(leader)
    }

    /// Waits until a master other than `old` leads.
    pub async fn wait_new_leader(&self, old: u64, within: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(status) = self.client.leader_status().await {
                if status.id != old && status.role == "leader" {
                    return Ok(status.id);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no new leader within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        // A data-plane port of its own: parallel tests must not share one.
        let port = free_port().expect("a free port for the data plane");
        config.data_ports = port..=port;
        // CI runs as root; tests that switch users set `task_user`.
        config.allow_root_tasks = true;
        config
    }

    pub async fn submit(&self, name: &str, kind: JobKind) -> Result<JobId> {
        self.submit_placed(name, kind, PlacementStrategy::BinPack)
            .await
    }

    pub async fn submit_placed(
        &self,
        name: &str,
        kind: JobKind,
        placement: PlacementStrategy,
    ) -> Result<JobId> {
        let job = JobSpec {
            name: name.into(),
            role: DEFAULT_ROLE.into(),
            priority: 0,
            estimated_duration_ms: None,
            kind,
            constraints: Vec::new(),
            placement,
            restart: Default::default(),
        };
        match self.client.write(&Request::SubmitJob { job }).await?.output {
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

/// A stream job kind running `spec_toml` on `parallelism` shards.
pub fn stream(spec_toml: &str, parallelism: u32) -> JobKind {
    JobKind::Stream {
        spec_toml: spec_toml.into(),
        parallelism,
        memory_per_shard_bytes: 64 * MIB,
    }
}

/// Threads of this process whose name starts with `prefix` (e.g. the
/// engine's `sluice-shard-`).
pub fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

/// The lines of a file sink's part files `path.0 .. path.{parts-1}`, sorted.
pub fn part_lines(path: &Path, parts: usize) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for part in 0..parts {
        let file = format!("{}.{part}", path.display());
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    Ok(lines)
}

/// How often the job was placed (or moved), from its events.
pub fn placements(job: &Job) -> usize {
    job.events
        .iter()
        .filter(|e| e.message.starts_with("placed on") || e.message.starts_with("moved to"))
        .count()
}

/// A cluster CA in `dir` and one loaded identity per role: master, agent,
/// client.
pub fn test_pki(
    dir: &Path,
) -> Result<(
    sluice_security::Tls,
    sluice_security::Tls,
    sluice_security::Tls,
)> {
    use sluice_security::pki::{self, Ca, Validity};
    use sluice_security::{Role, Tls, TlsFiles};
    let ca = Ca::generate("t")?;
    ca.write(dir)?;
    let load = |role: Role| -> Result<Tls> {
        let issued = ca.issue(role, Validity::days(1)?)?;
        let files = pki::write_issued(dir, role.as_str(), &issued)?;
        Ok(Tls::load(&TlsFiles {
            ca: dir.join(pki::CA_CERT_FILE),
            cert: files.cert,
            key: files.key,
        })?)
    };
    Ok((load(Role::Master)?, load(Role::Agent)?, load(Role::Client)?))
}
