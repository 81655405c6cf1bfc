//! Masters as separate `sluice master` processes, for scenarios and tests
//! that kill them (SIGKILL) and restart them from their data dirs: on
//! loopback, or each on a host of its own (a network namespace) given as a
//! [`Host`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sluice_consensus::acl::AclPolicy;
use sluice_consensus::MasterClient;

use crate::secure::ClusterSecurity;

/// Polling interval of [`wait_until`].
const POLL_MS: u64 = 20;
/// How long a new cluster may take to elect the leader that bootstraps its ACLs.
const PATIENCE_BOOTSTRAP: Duration = Duration::from_secs(30);

/// Polls `check` until it yields `Some`, or fails after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// The `sluice` binary to launch: `$SLUICE_BIN`, this process if it is
/// `sluice`, or `sluice` in the cargo target dir this test binary runs from.
pub fn sluice_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    if exe.file_name().is_some_and(|n| n == "sluice") {
        return Ok(exe);
    }
    // Test binaries live in target/<profile>/deps; the binary one level up.
    let candidates = [exe.parent().and_then(Path::parent), exe.parent()];
    for dir in candidates.into_iter().flatten() {
        let path = dir.join("sluice");
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("cannot find the `sluice` binary next to {}; build it first (`cargo build --bin sluice`) or set SLUICE_BIN", exe.display())
}

/// A free loopback port (bound then released; fine for tests on one machine).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where a master runs: its own IP address, and the command that runs a
/// program there (e.g. `ip netns exec NS`); empty for this host.
#[derive(Debug, Clone)]
pub struct Host {
    pub ip: String,
    pub exec: Vec<String>,
}

/// Ports of a master on a host of its own.
pub const HOST_API_PORT: u16 = 7101;
pub const HOST_RAFT_PORT: u16 = 7201;

/// One master process and where it lives.
#[derive(Debug)]
pub struct Member {
    pub id: u64,
    pub api_addr: String,
    pub raft_addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The command prefix that runs it on its host (empty: here).
    exec: Vec<String>,
    child: Option<Child>,
}

/// A set of master processes under one root directory.
#[derive(Debug)]
pub struct ProcessCluster {
    bin: PathBuf,
    root: PathBuf,
    extra_args: Vec<String>,
    /// The identity this harness's own clients present (when the masters
    /// run TLS).
    client_tls: Option<sluice_security::Tls>,
    /// The cluster's CA, certificates and tokens, when the harness set up
    /// TLS and ACLs itself (the default).
    security: Option<Arc<ClusterSecurity>>,
    pub members: BTreeMap<u64, Member>,
}

impl ProcessCluster {
    /// Starts masters `1..=count` (not yet forming a cluster) under `root`,
    /// as a production cluster runs: mutual TLS with a CA of the cluster's
    /// own (in `root/tls`) and ACLs on; [`ProcessCluster::init`] bootstraps
    /// the management token, which the harness's clients then carry.
    /// `extra_args` go to every `sluice master` (e.g. timing flags).
    pub async fn start(root: &Path, count: u64, extra_args: &[&str]) -> Result<Self> {
        let (security, args) = Self::secure_args(root, extra_args)?;
        let mut cluster = Self::new(root, &args, Some(security.client_tls()))?;
        cluster.security = Some(security);
        for id in 1..=count {
            cluster.add_process(id).await?;
        }
        Ok(cluster)
    }

    /// [`ProcessCluster::start`] in plain text without ACLs (`--insecure`),
    /// for tests of that mode.
    pub async fn start_insecure(root: &Path, count: u64, extra_args: &[&str]) -> Result<Self> {
        Self::start_with_tls(root, count, extra_args, None).await
    }

    fn new(
        root: &Path,
        extra_args: &[String],
        client_tls: Option<sluice_security::Tls>,
    ) -> Result<Self> {
        Ok(Self {
            bin: sluice_bin()?,
            root: root.to_path_buf(),
            extra_args: extra_args.to_vec(),
            client_tls,
            security: None,
            members: BTreeMap::new(),
        })
    }

    /// A CA and certificates under `root/tls`, and the master arguments
    /// that use them with ACLs on, followed by `extra_args`.
    fn secure_args(
        root: &Path,
        extra_args: &[&str],
    ) -> Result<(Arc<ClusterSecurity>, Vec<String>)> {
        let security = Arc::new(ClusterSecurity::create(&root.join("tls"))?);
        let mut args = security.master_args();
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        Ok((security, args))
    }

    /// The cluster's certificates and tokens (None for a plain-text cluster
    /// or one whose TLS the caller set up).
    pub fn security(&self) -> Option<&Arc<ClusterSecurity>> {
        self.security.as_ref()
    }

    /// The environment a `sluice` command needs to act as a client of this
    /// cluster: its client certificate and management token, or the
    /// plain-text opt-out.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        match &self.security {
            Some(security) => security.client_env(),
            None => vec![("SLUICE_INSECURE".into(), "1".into())],
        }
    }

    /// The environment a `sluice agent` of this cluster needs: the agent
    /// certificate and a new token of its own with the `agent` policy (needs
    /// [`ProcessCluster::init`] first), or the plain-text opt-out.
    pub async fn agent_env(&self, name: &str) -> Result<Vec<(String, String)>> {
        match &self.security {
            Some(security) => {
                let client = self.client(&[], Duration::from_secs(20))?;
                let token = security
                    .new_token(&client, name, vec![AclPolicy::Agent])
                    .await?;
                Ok(security.agent_env(&token))
            }
            None => Ok(vec![("SLUICE_INSECURE".into(), "1".into())]),
        }
    }

    /// [`ProcessCluster::start`] for masters whose `extra_args` configure
    /// TLS; the harness's clients present `client_tls`.
    pub async fn start_with_tls(
        root: &Path,
        count: u64,
        extra_args: &[&str],
        client_tls: Option<sluice_security::Tls>,
    ) -> Result<Self> {
        let args: Vec<String> = extra_args.iter().map(|s| (*s).to_owned()).collect();
        let mut cluster = Self::new(root, &args, client_tls)?;
        for id in 1..=count {
            cluster.add_process(id).await?;
        }
        Ok(cluster)
    }

    /// Starts masters `1..=hosts.len()` (not yet forming a cluster), each
    /// on its host, at [`HOST_API_PORT`] and [`HOST_RAFT_PORT`] of its IP.
    /// Secure as [`ProcessCluster::start`].
    pub async fn start_on(root: &Path, hosts: &[Host], extra_args: &[&str]) -> Result<Self> {
        let (security, args) = Self::secure_args(root, extra_args)?;
        let mut cluster = Self::new(root, &args, Some(security.client_tls()))?;
        cluster.security = Some(security);
        for (id, host) in (1..).zip(hosts) {
            let member = Member {
                id,
                api_addr: format!("{}:{HOST_API_PORT}", host.ip),
                raft_addr: format!("{}:{HOST_RAFT_PORT}", host.ip),
                data_dir: root.join(format!("master-{id}")),
                log: root.join(format!("master-{id}.log")),
                exec: host.exec.clone(),
                child: None,
            };
            cluster.members.insert(id, member);
            cluster.restart(id).await?;
        }
        Ok(cluster)
    }

    /// Starts one more master process with a fresh data dir, on free loopback ports.
    pub async fn add_process(&mut self, id: u64) -> Result<()> {
        // A port `free_port` found can be taken by another process (a test running beside
        // this one) before the master binds it: then start over on other ports.
        const TRIES: usize = 5;
        for attempt in 1..=TRIES {
            let member = Member {
                id,
                api_addr: format!("127.0.0.1:{}", free_port()?),
                raft_addr: format!("127.0.0.1:{}", free_port()?),
                data_dir: self.root.join(format!("master-{id}")),
                log: self.root.join(format!("master-{id}.log")),
                exec: Vec::new(),
                child: None,
            };
            let data_dir = member.data_dir.clone();
            self.members.insert(id, member);
            match self.restart(id).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < TRIES && e.to_string().contains("Address already in use") => {
                    self.kill(id)?;
                    // Nothing of the fresh master is worth keeping.
                    let _ = std::fs::remove_dir_all(&data_dir);
                }
                Err(e) => return Err(e),
            }
        }
        bail!("master {id}: no free ports after {TRIES} tries")
    }

    /// Starts (again) master `id` from its data dir and waits until it answers; fails at once
    /// if the process exits first.
    pub async fn restart(&mut self, id: u64) -> Result<()> {
        let child = self.spawn(id, id)?;
        let client_tls = self.client_tls.clone();
        let member = self.member_mut(id)?;
        member.child = Some(child);
        let api = member.api_addr.clone();
        let client =
            MasterClient::new(vec![api.clone()], Duration::from_millis(500))?.with_tls(client_tls);
        let log = member.log.clone();
        let timeout = Duration::from_secs(20);
        let deadline = Instant::now() + timeout;
        loop {
            if client.info(&api).await.is_ok() {
                return Ok(());
            }
            let member = self.member_mut(id)?;
            let exited = member
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                member.child = None;
                bail!(
                    "master {id} exited ({status}) before answering on {api}; its log:\n{}",
                    tail(&log)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for master {id} to answer on {api}; \
                     its log:\n{}",
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Launches `sluice master` with member `id`'s addresses and data dir,
    /// claiming to be `claimed_id` (tests pass another id to check refusal).
    pub fn spawn(&self, id: u64, claimed_id: u64) -> Result<Child> {
        let member = self.member(id)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .with_context(|| format!("opening {}", member.log.display()))?;
        let mut cmd = match member.exec.split_first() {
            Some((program, args)) => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(args).arg(&self.bin);
                cmd
            }
            None => std::process::Command::new(&self.bin),
        };
        cmd.arg("master")
            .args(["--id", &claimed_id.to_string()])
            .args(["--raft-addr", &member.raft_addr])
            .args(["--api-addr", &member.api_addr])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(&self.extra_args)
            // Plain text unless the caller configured TLS.
            .args((!self.extra_args.iter().any(|a| a == "--tls-ca")).then_some("--insecure"))
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_LOG")
                    .unwrap_or_else(|_| "warn,openraft=error".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.spawn()
            .with_context(|| format!("starting {}", self.bin.display()))
    }

    /// SIGKILLs master `id` (no clean shutdown) and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let member = self.member_mut(id)?;
        if let Some(mut child) = member.child.take() {
            child.kill().context("SIGKILL")?;
            child.wait().context("reaping")?;
        }
        Ok(())
    }

    /// Sends master `id` a signal by name (`STOP` to pause it as a hung or
    /// swapped-out process would be, `CONT` to resume it).
    pub fn signal(&self, id: u64, signal: &str) -> Result<()> {
        let pid = self
            .member(id)?
            .child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("master {id} is not running"))?;
        // bash's builtin `kill`: no dependency on procps' /bin/kill.
        let status = std::process::Command::new("bash")
            .args(["-c", "kill -\"$1\" \"$2\"", "kill"])
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .context("running bash's kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed: {status}");
        }
        Ok(())
    }

    pub fn member(&self, id: u64) -> Result<&Member> {
        self.members
            .get(&id)
            .ok_or_else(|| anyhow!("no master {id}"))
    }

    fn member_mut(&mut self, id: u64) -> Result<&mut Member> {
        self.members
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no master {id}"))
    }

    pub fn api_addrs(&self) -> Vec<String> {
        self.members.values().map(|m| m.api_addr.clone()).collect()
    }

    /// A client seeded with the given members (all when `ids` is empty).
    pub fn client(&self, ids: &[u64], timeout: Duration) -> Result<MasterClient> {
        let addrs = if ids.is_empty() {
            self.api_addrs()
        } else {
            ids.iter()
                .map(|id| self.member(*id).map(|m| m.api_addr.clone()))
                .collect::<Result<_>>()?
        };
        let token = self.security.as_ref().and_then(|s| s.management_token());
        Ok(MasterClient::new(addrs, timeout)?
            .with_tls(self.client_tls.clone())
            .with_token(token))
    }

    /// A client that acts as an agent (for tests that play one): the agent
    /// certificate and a new token of its own with the `agent` policy
    /// (needs [`ProcessCluster::init`] first).
    pub async fn agent_client(&self, name: &str, timeout: Duration) -> Result<MasterClient> {
        let client = MasterClient::new(self.api_addrs(), timeout)?;
        match &self.security {
            Some(security) => {
                let admin = self.client(&[], Duration::from_secs(20))?;
                let token = security
                    .new_token(&admin, name, vec![AclPolicy::Agent])
                    .await?;
                Ok(client
                    .with_tls(Some(security.agent_tls()))
                    .with_token(Some(token)))
            }
            None => Ok(client.with_tls(self.client_tls.clone())),
        }
    }

    /// Forms a cluster of the given members (all when empty) and, when the
    /// harness runs ACLs, bootstraps the management token.
    pub async fn init(&self, ids: &[u64]) -> Result<()> {
        let client = self.client(ids, Duration::from_secs(10))?;
        let addrs = client.seeds().to_vec();
        client.init(&addrs).await?;
        if let Some(security) = &self.security {
            let client = self.client(ids, PATIENCE_BOOTSTRAP)?;
            security.bootstrap(&client).await?;
        }
        Ok(())
    }

    /// The current leader's id, waiting up to `timeout` for one.
    pub async fn leader(&self, timeout: Duration) -> Result<u64> {
        let client = self.client(&[], Duration::from_millis(500))?;
        let live: Vec<String> = self
            .members
            .values()
            .filter(|m| m.child.is_some())
            .map(|m| m.api_addr.clone())
            .collect();
        // A restarted former leader can briefly report itself leader of an
        // old term: trust a member that reports leading at the highest term
        // seen and that another member follows.
        wait_until(timeout, "a leader", || async {
            let mut statuses = Vec::new();
            for addr in &live {
                if let Ok(status) = client.status_of(addr).await {
                    statuses.push(status);
                }
            }
            let top_term = statuses.iter().map(|s| s.term).max()?;
            let leader = statuses
                .iter()
                .find(|s| s.role == "leader" && s.term == top_term)?;
            let followed = live.len() < 2
                || statuses.iter().any(|s| {
                    s.id != leader.id && s.leader_id == Some(leader.id) && s.term == top_term
                });
            followed.then_some(leader.id)
        })
        .await
    }

    /// The last lines of master `id`'s log, for failure messages.
    pub fn log_tail(&self, id: u64) -> String {
        self.member(id)
            .map_or_else(|e| e.to_string(), |m| tail(&m.log))
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for member in self.members.values_mut() {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
