//! `sluice bench raft`: commit latency and throughput of the master cluster.
//!
//! Measures, in one run and on one disk:
//! - the disk's own fdatasync latency (the floor no durable commit can beat);
//! - commit latency and commits/s of a local three-master cluster (fsync on)
//!   with 1, 64 and 256 concurrent closed-loop clients, both in-process
//!   (calling the leader's Raft directly) and over gRPC (the admin API, as
//!   the CLI and agents use it);
//! - leader failover: SIGKILL of the leader process → first commit
//!   acknowledged by the new leader, over several trials.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use sluice_consensus::state::RoleSpec;
use sluice_consensus::{MasterClient, MasterConfig, MasterHandle, Request};
use sluice_security::{Role, Tls};

use crate::certs::BenchCa;

use crate::procs::{free_port, wait_until, ProcessCluster};
use crate::recorder::Recorder;
use crate::report::{self, Report};

/// Clients sharing one gRPC connection in the gRPC mode.
const CLIENTS_PER_CONNECTION: usize = 16;
/// Size of one fdatasync probe write: a typical small log append.
const FSYNC_PROBE_BYTES: usize = 4096;

#[derive(Debug, Args, Clone)]
pub struct RaftBenchArgs {
    /// A short smoke run (about 20 s) instead of the full one.
    #[arg(long)]
    pub quick: bool,
    /// Concurrent client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    pub clients: Vec<usize>,
    /// Seconds per (client count, mode) run [default: 5, quick: 1].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Failover trials (0 skips failover) [default: 20, quick: 3].
    #[arg(long)]
    pub failover_trials: Option<usize>,
    /// Output directory for the table's files [default: bench-results/raft-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the masters' RocksDB and the fsync probe live [default: a
    /// temporary dir inside --out, so on the same disk as the results].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Leader heartbeat interval for the benchmarked masters [default: the master's].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Election timeout lower bound [default: the master's].
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Election timeout upper bound [default: the master's].
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Measure a running cluster instead (any masters' API addresses):
    /// gRPC commit runs only, writing roles named `bench-*`; no fsync
    /// floor, in-process runs or failover, which need the local cluster.
    #[arg(long, value_delimiter = ',')]
    pub masters: Vec<String>,
}

impl RaftBenchArgs {
    fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(if self.quick { 1.0 } else { 5.0 })
    }

    fn trials(&self) -> usize {
        self.failover_trials
            .unwrap_or(if self.quick { 3 } else { 20 })
    }

    /// Applies the timing flags to an in-process master's config.
    fn tune(&self, config: &mut MasterConfig) {
        if let Some(v) = self.heartbeat_ms {
            config.heartbeat_interval_ms = v;
        }
        if let Some(v) = self.election_timeout_min_ms {
            config.election_timeout_min_ms = v;
        }
        if let Some(v) = self.election_timeout_max_ms {
            config.election_timeout_max_ms = v;
        }
    }

    /// The same timing as `sluice master` flags.
    fn master_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (flag, value) in [
            ("--heartbeat-ms", self.heartbeat_ms),
            ("--election-timeout-min-ms", self.election_timeout_min_ms),
            ("--election-timeout-max-ms", self.election_timeout_max_ms),
        ] {
            if let Some(v) = value {
                flags.push(flag.to_owned());
                flags.push(v.to_string());
            }
        }
        flags
    }

    /// A description of the timing in force, for the report.
    fn timing(&self) -> String {
        let mut config = MasterConfig::new(
            0,
            "127.0.0.1:1".into(),
            "127.0.0.1:2".into(),
            PathBuf::new(),
        );
        self.tune(&mut config);
        format!(
            "heartbeat {} ms, election timeout {}-{} ms",
            config.heartbeat_interval_ms,
            config.election_timeout_min_ms,
            config.election_timeout_max_ms
        )
    }
}

/// Runs the whole raft suite and prints its table.
pub async fn run(args: RaftBenchArgs) -> Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients needs positive counts, e.g. 1,64,256");
    }
    let seconds = args.seconds();
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600], got {seconds}");
    }
    let out = report::out_dir_or_default(args.out.as_deref(), "raft");
    let mut config = MasterConfig::new(
        0,
        "127.0.0.1:1".into(),
        "127.0.0.1:2".into(),
        PathBuf::new(),
    );
    args.tune(&mut config);
    config
        .raft_config()
        .map_err(|e| anyhow::anyhow!("invalid timing flags: {e}"))?;
    let mut report = Report::new("raft", &out)?;
    report.note(format!("masters: {}", args.timing()));
    let data_root = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::tempdir_in(report.out_dir())?,
    };
    eprintln!(
        "bench raft: results in {}, data in {}",
        out.display(),
        data_root.path().display()
    );

    if !args.masters.is_empty() {
        let mut progress = report::Progress::new("raft", 1);
        progress.step(format!("gRPC commits against {}", args.masters.join(",")));
        remote_commit_runs(&args, seconds, &mut report).await?;
        progress.finish();
        report.note(format!(
            "against a running cluster ({}): gRPC clients only; masters' timing and disks are theirs",
            args.masters.join(",")
        ));
        let summary = report.finish()?;
        println!("{}", report::table(&summary));
        println!("files: {}", out.display());
        return Ok(());
    }
    let trials = args.trials();
    let mut progress = report::Progress::new("raft", if trials > 0 { 3 } else { 2 });
    progress.step("fdatasync floor");
    let floor = fsync_floor(data_root.path(), if args.quick { 200 } else { 2000 })?;
    report.add(
        "raft.fdatasync",
        "one 4 KiB pwrite + fdatasync on the data disk",
        Some(&floor),
        None,
    )?;

    progress.step("commits on a local three-master cluster");
    commit_runs(&args, seconds, data_root.path(), &mut report).await?;

    if trials > 0 {
        progress.step(format!("leader failover, {trials} trials"));
        let (rec, elect) = failover(data_root.path(), trials, &args.master_flags()).await?;
        report.add(
            "raft.failover.elect",
            "SIGKILL of the leader process -> a survivor reports being leader (polled every 20 ms)",
            Some(&elect),
            None,
        )?;
        report.add(
            "raft.failover",
            "SIGKILL of the leader process -> first write acknowledged by the new leader",
            Some(&rec),
            None,
        )?;
    }
    progress.finish();
    report.note(format!(
        "clients are closed-loop: each sends its next command when the previous one is acknowledged; \
         {seconds} s per run; every commit is fsynced on a majority before it is acknowledged"
    ));
    report.note("inproc = clients call the leader's proposer directly (no RPC); grpc = clients use the admin API over loopback gRPC; grpc-tls = the same against a second cluster with mutual TLS on Raft and the API and ACLs on (every write carries a token)");
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    println!("files: {}", out.display());
    Ok(())
}

/// Latency of a small write + fdatasync, the lower bound of a durable commit.
pub fn fsync_floor(dir: &Path, samples: usize) -> Result<Recorder> {
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = vec![0xA5u8; FSYNC_PROBE_BYTES];
    let mut rec = Recorder::new();
    for i in 0..samples {
        let started = Instant::now();
        file.write_at(&block, (i * FSYNC_PROBE_BYTES) as u64)?;
        file.sync_data()?;
        rec.record(started.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    Ok(rec)
}

/// Three masters in this process, on loopback, with real Raft and RocksDB.
pub(crate) struct InProcessCluster {
    pub masters: Vec<MasterHandle>,
    pub api_addrs: Vec<String>,
}

impl InProcessCluster {
    /// Starts and initializes the cluster; `tune` adjusts each master's config.
    pub async fn start_with(root: &Path, tune: impl Fn(&mut MasterConfig)) -> Result<Self> {
        Self::start_tls(root, tune, None).await
    }

    /// [`InProcessCluster::start_with`] for masters that `tune` gives TLS:
    /// the cluster is formed with `client_tls`.
    pub async fn start_tls(
        root: &Path,
        tune: impl Fn(&mut MasterConfig),
        client_tls: Option<Tls>,
    ) -> Result<Self> {
        let mut masters = Vec::new();
        let mut api_addrs = Vec::new();
        for id in 1..=3u64 {
            let api = format!("127.0.0.1:{}", free_port()?);
            let raft = format!("127.0.0.1:{}", free_port()?);
            let mut config =
                MasterConfig::new(id, raft, api.clone(), root.join(format!("inproc-{id}")));
            tune(&mut config);
            masters.push(MasterHandle::start(config).await?);
            api_addrs.push(api);
        }
        let client =
            MasterClient::new(api_addrs.clone(), Duration::from_secs(10))?.with_tls(client_tls);
        client.init(&api_addrs).await?;
        client.leader_status().await?;
        Ok(Self { masters, api_addrs })
    }

    async fn start(root: &Path, args: &RaftBenchArgs) -> Result<Self> {
        Self::start_with(root, |config| args.tune(config)).await
    }

    pub fn leader(&self) -> Option<&MasterHandle> {
        self.masters
            .iter()
            .find(|m| m.raft.metrics().borrow().state == openraft::ServerState::Leader)
    }

    pub async fn shutdown(self) -> Result<()> {
        for m in self.masters {
            m.shutdown().await?;
        }
        Ok(())
    }
}

fn bench_command(client: usize, seq: u64) -> Request {
    Request::SetRole(RoleSpec {
        name: format!("bench-{client}"),
        weight: 1.0 + (seq % 1000) as f64,
        quota: None,
        limit: None,
        reservations: Default::default(),
    })
}

async fn commit_runs(
    args: &RaftBenchArgs,
    seconds: f64,
    root: &Path,
    report: &mut Report,
) -> Result<()> {
    let cluster = InProcessCluster::start(root, args).await?;
    // The same cluster as a secure deployment runs it: mutual TLS on Raft and
    // the API, ACLs on, every write carrying a token.
    let ca = BenchCa::new("bench")?;
    let (master_tls, client_tls) = (ca.identity(Role::Master)?, ca.identity(Role::Client)?);
    let secure = InProcessCluster::start_tls(
        &root.join("tls"),
        |config| {
            args.tune(config);
            config.tls = Some(master_tls.clone());
            config.acl = true;
        },
        Some(client_tls.clone()),
    )
    .await?;
    let token = MasterClient::new(secure.api_addrs.clone(), Duration::from_secs(10))?
        .with_tls(Some(client_tls.clone()))
        .write(&Request::AclBootstrap)
        .await?
        .secret;
    let secure_client = (Some(client_tls), token);
    let duration = Duration::from_secs_f64(seconds);
    for &clients in &args.clients {
        for mode in ["inproc", "grpc", "grpc-tls"] {
            let (rec, ops, errors) = if mode == "grpc" {
                grpc_load(&cluster.api_addrs, clients, duration, (None, None)).await?
            } else if mode == "grpc-tls" {
                grpc_load(&secure.api_addrs, clients, duration, secure_client.clone()).await?
            } else {
                let leader = wait_until(Duration::from_secs(5), "a leader", || async {
                    cluster.leader().map(|m| m.proposer.clone())
                })
                .await?;
                inproc_load(leader, clients, duration).await
            };
            eprintln!(
                "  {mode:>6} c={clients:<4} {:>10.0} commits/s  p99 {}",
                ops,
                report::human_us(rec.summary().p99_us)
            );
            if errors > 0 {
                report.note(format!(
                    "{mode} c{clients}: {errors} writes failed (leader change during the run?)"
                ));
            }
            report.add(
                &format!("raft.commit.{mode}.c{clients}"),
                &format!("{clients} closed-loop clients ({mode}), commit latency"),
                Some(&rec),
                Some(ops),
            )?;
        }
    }
    secure.shutdown().await?;
    cluster.shutdown().await
}

async fn remote_commit_runs(args: &RaftBenchArgs, seconds: f64, report: &mut Report) -> Result<()> {
    let duration = Duration::from_secs_f64(seconds);
    for &clients in &args.clients {
        let (rec, ops, errors) = grpc_load(&args.masters, clients, duration, (None, None)).await?;
        eprintln!(
            "    grpc c={clients:<4} {:>10.0} commits/s  p99 {}",
            ops,
            report::human_us(rec.summary().p99_us)
        );
        if errors > 0 {
            report.note(format!("grpc c{clients}: {errors} writes failed"));
        }
        report.add(
            &format!("raft.commit.grpc.c{clients}"),
            &format!(
                "{clients} closed-loop clients over gRPC to a running cluster, commit latency"
            ),
            Some(&rec),
            Some(ops),
        )?;
    }
    Ok(())
}

async fn inproc_load(
    proposer: sluice_consensus::proposer::Proposer,
    clients: usize,
    duration: Duration,
) -> (Recorder, f64, u64) {
    closed_loop(clients, duration, |_| {
        let proposer = proposer.clone();
        move |command| {
            let proposer = proposer.clone();
            async move {
                match sluice_consensus::request::into_command(command, 0, None) {
                    Ok((command, _)) => proposer.propose(command).await.is_ok(),
                    Err(_) => false,
                }
            }
        }
    })
    .await
}

/// `secure`: the clients' TLS identity and ACL token, if the cluster wants them.
async fn grpc_load(
    api_addrs: &[String],
    clients: usize,
    duration: Duration,
    secure: (Option<Tls>, Option<String>),
) -> Result<(Recorder, f64, u64)> {
    let connections = clients.div_ceil(CLIENTS_PER_CONNECTION);
    let shared: Vec<Arc<MasterClient>> = (0..connections)
        .map(|_| {
            MasterClient::new(api_addrs.to_vec(), Duration::from_secs(10))
                .map(|c| Arc::new(c.with_tls(secure.0.clone()).with_token(secure.1.clone())))
        })
        .collect::<Result<_, _>>()?;
    Ok(closed_loop(clients, duration, |client| {
        let master = shared[client % connections].clone();
        move |command| {
            let master = master.clone();
            async move { master.write(&command).await.is_ok() }
        }
    })
    .await)
}

/// Runs `clients` closed-loop writers for `duration`: each sends its next
/// command when the previous one is answered and records its latency.
/// `writer_for(i)` makes client i's write function (true = acknowledged).
async fn closed_loop<W, Fut>(
    clients: usize,
    duration: Duration,
    writer_for: impl Fn(usize) -> W,
) -> (Recorder, f64, u64)
where
    W: Fn(Request) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let write = writer_for(client);
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if write(bench_command(client, seq)).await {
                    rec.record(started.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            rec
        }));
    }
    collect(tasks, stop, duration, errors).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Recorder>>,
    stop: Arc<AtomicBool>,
    duration: Duration,
    errors: Arc<AtomicU64>,
) -> (Recorder, f64, u64) {
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Recorder::new();
    for task in tasks {
        if let Ok(rec) = task.await {
            total.merge(&rec);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ops = total.len() as f64 / elapsed;
    (total, ops, errors.load(Ordering::Relaxed))
}

/// Kills the leader process `trials` times and times the first commit after.
/// Returns (kill -> first commit, kill -> a survivor reports being leader).
pub async fn failover(
    root: &Path,
    trials: usize,
    master_flags: &[String],
) -> Result<(Recorder, Recorder)> {
    let dir = root.join("failover");
    std::fs::create_dir_all(&dir)?;
    let flags: Vec<&str> = master_flags.iter().map(String::as_str).collect();
    let mut cluster = ProcessCluster::start_insecure(&dir, 3, &flags).await?;
    cluster.init(&[]).await?;
    let mut rec = Recorder::new();
    let mut elect = Recorder::new();
    let client = cluster.client(&[], Duration::from_secs(10))?;
    for trial in 0..trials {
        let leader = cluster.leader(Duration::from_secs(10)).await?;
        // A committed write first, so the cluster is in steady state.
        client.write(&bench_command(0, trial as u64)).await?;
        cluster.kill(leader)?;
        let killed = Instant::now();
        let others: Vec<u64> = cluster
            .members
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        let survivor = cluster.client(&others, Duration::from_secs(10))?;
        let watcher = cluster.client(&others, Duration::from_millis(200))?;
        let addrs: Vec<String> = others
            .iter()
            .map(|id| cluster.member(*id).map(|m| m.api_addr.clone()))
            .collect::<Result<_>>()?;
        let (written, elected) = tokio::join!(
            async {
                survivor
                    .write(&bench_command(1, trial as u64))
                    .await
                    .map(|_| killed.elapsed())
            },
            async {
                wait_until(Duration::from_secs(10), "a new leader", || async {
                    for addr in &addrs {
                        if watcher.status_of(addr).await.ok()?.role == "leader" {
                            return Some(killed.elapsed());
                        }
                    }
                    None
                })
                .await
            }
        );
        let took = written.context("first write after killing the leader")?;
        let elected = elected?;
        rec.record(took);
        elect.record(elected);
        eprintln!(
            "  trial {:>2}: leader {leader} killed -> new leader in {}, first commit in {}",
            trial + 1,
            report::human_us(elected.as_secs_f64() * 1e6),
            report::human_us(took.as_secs_f64() * 1e6)
        );
        cluster.restart(leader).await?;
        // Let the restarted member catch up before the next kill.
        let api = cluster.member(leader)?.api_addr.clone();
        let target = client.leader_status().await?.last_log_index;
        wait_until(
            Duration::from_secs(20),
            "the restarted master to catch up",
            || async {
                let s = client.status_of(&api).await.ok()?;
                (s.applied_index >= target).then_some(())
            },
        )
        .await?;
    }
    let _ = std::io::stderr().flush();
    Ok((rec, elect))
}
