//! `sluice bench failover`: what a master failover costs.
//!
//! - `failover.commit` / `failover.elect`: SIGKILL of the leader process →
//!   first write acknowledged by the new leader / a survivor reports leading
//!   (the raft suite's measurement, here with more context).
//! - `failover.stream.*`: a stream job placed by the masters on an agent
//!   (TCP ingest → filter → map → TCP sink) carries an open-loop load while
//!   the leader master is SIGKILLed halfway through. Latency is recorded per
//!   record from its due time and split into records due before the kill,
//!   during the 3 s after it, and after that: the data plane should not
//!   notice the control plane's election.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use sluice_consensus::state::{Job, JobKind, JobSpec, JobState, PlacementStrategy};
use sluice_consensus::{CommandOutput, Query, Request};

use crate::procs::{free_port, wait_until, ProcessCluster};
use crate::recorder::Recorder;
use crate::report::{self, Report};

/// Records due within this long after the kill count as "during".
const DURING: Duration = Duration::from_secs(3);

#[derive(Debug, Args, Clone)]
pub struct FailoverBenchArgs {
    /// A short smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Leader-kill trials for the commit measurement [default: 20, quick: 2].
    #[arg(long)]
    pub trials: Option<usize>,
    /// Offered rate of the stream job, records per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of stream load; the leader is killed halfway [default: 12, quick: 6].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Output directory [default: bench-results/failover-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs the failover suite and prints its table.
pub async fn run(args: FailoverBenchArgs) -> Result<()> {
    let trials = args.trials.unwrap_or(if args.quick { 2 } else { 20 });
    let seconds = args.seconds.unwrap_or(if args.quick { 6.0 } else { 12.0 });
    if !(seconds.is_finite() && (2.0..=3600.0).contains(&seconds)) || args.rate == 0 {
        bail!("--seconds must be in [2, 3600] and --rate positive");
    }
    let out = report::out_dir_or_default(args.out.as_deref(), "failover");
    let mut report = Report::new("failover", &out)?;
    let data = tempfile::tempdir_in(report.out_dir())?;
    eprintln!("bench failover: results in {}", out.display());
    let mut progress = report::Progress::new("failover", if trials > 0 { 2 } else { 1 });
    if trials > 0 {
        progress.step(format!("leader kill -> first commit, {trials} trials"));
        let (commit, elect) = crate::raft::failover(data.path(), trials, &[]).await?;
        report.add(
            "failover.elect",
            "SIGKILL of the leader process -> a survivor reports being leader (polled every 20 ms)",
            Some(&elect),
            None,
        )?;
        report.add(
            "failover.commit",
            "SIGKILL of the leader process -> first write acknowledged by the new leader",
            Some(&commit),
            None,
        )?;
    }
    progress.step(format!(
        "stream job at {} records/s for {seconds} s, leader killed halfway",
        args.rate
    ));
    let stream =
        stream_during_failover(data.path(), args.rate, Duration::from_secs_f64(seconds)).await?;
    for (name, rec, what) in [
        (
            "failover.stream.before",
            &stream.before,
            "records due before the leader kill",
        ),
        (
            "failover.stream.during",
            &stream.during,
            "records due in the 3 s after the leader kill",
        ),
        ("failover.stream.after", &stream.after, "records due later"),
    ] {
        report.add(
            name,
            &format!(
                "TCP ingest -> filter -> map -> TCP sink on an agent, open loop at {} records/s: {what}",
                args.rate
            ),
            Some(rec),
            None,
        )?;
    }
    progress.finish();
    report.note(format!(
        "stream job: {} records sent, {} received; placed {} time(s), state during the failover always Running: {}",
        stream.sent, stream.received, stream.placements, stream.stayed_running
    ));
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    for note in &summary.notes {
        println!("{note}");
    }
    println!("files: {}", out.display());
    Ok(())
}

async fn read_job(client: &sluice_consensus::MasterClient, id: u64) -> Option<Job> {
    let value = client.read(&Query::Job { id }, false).await.ok()?;
    serde_json::from_value(value).ok()
}

struct StreamFailover {
    before: Recorder,
    during: Recorder,
    after: Recorder,
    sent: u64,
    received: u64,
    placements: usize,
    stayed_running: bool,
}

fn job_spec(source_port: u16, sink: std::net::SocketAddr) -> JobSpec {
    let toml = crate::engine::e2e_job_toml("failover-latency", source_port, sink);
    JobSpec {
        name: "failover-latency".into(),
        role: "default".into(),
        priority: 0,
        estimated_duration_ms: None,
        kind: JobKind::Stream {
            spec_toml: toml,
            parallelism: 1,
            memory_per_shard_bytes: 64 << 20,
        },
        constraints: Vec::new(),
        placement: PlacementStrategy::BinPack,
        restart: Default::default(),
    }
}

async fn stream_during_failover(
    root: &Path,
    rate: u64,
    duration: Duration,
) -> Result<StreamFailover> {
    let dir = root.join("stream-failover");
    std::fs::create_dir_all(&dir)?;
    let mut cluster = ProcessCluster::start_insecure(&dir, 3, &[]).await?;
    cluster.init(&[]).await?;
    let leader = cluster.leader(Duration::from_secs(20)).await?;
    let client = cluster.client(&[], Duration::from_secs(20))?;
    let mut agent_config = sluice_agent::AgentConfig::new(cluster.api_addrs(), dir.join("agent"));
    let data_port = free_port()?;
    agent_config.data_ports = data_port..=data_port;
    agent_config.heartbeat_interval = Duration::from_millis(500);
    // The bench's stream job runs no command task; root or not is moot.
    agent_config.allow_root_tasks = true;
    let agent = sluice_agent::Agent::start(agent_config)
        .await
        .context("starting the agent")?;

    let source_port = free_port()?;
    let sink = TcpListener::bind("127.0.0.1:0").context("binding the latency receiver")?;
    let sink_addr = sink.local_addr()?;
    let id = match client
        .write(&Request::SubmitJob {
            job: job_spec(source_port, sink_addr),
        })
        .await?
        .output
    {
        CommandOutput::JobSubmitted { id } => id,
        other => bail!("unexpected answer {other:?}"),
    };
    wait_until(Duration::from_secs(30), "the stream job to run", || async {
        read_job(&client, id)
            .await
            .filter(|j| j.state == JobState::Running)
    })
    .await?;

    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let epoch = Instant::now();
    let kill_ns = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let kill_ns = kill_ns.clone();
        std::thread::Builder::new()
            .name("failover-recv".into())
            .spawn(move || -> Result<(Recorder, Recorder, Recorder, u64)> {
                let (stream, _) = sink.accept().context("waiting for the job's sink")?;
                let (mut before, mut during, mut after) =
                    (Recorder::new(), Recorder::new(), Recorder::new());
                let mut received = 0;
                for line in BufReader::new(stream).lines() {
                    let line = line?;
                    let now = epoch.elapsed().as_nanos() as u64;
                    let mut fields = line.split(',').skip(1);
                    let due: u64 = fields
                        .next()
                        .and_then(|f| f.trim().parse().ok())
                        .with_context(|| format!("bad sink line {line:?}"))?;
                    let latency = Duration::from_nanos(now.saturating_sub(due));
                    let kill = kill_ns.load(Ordering::Relaxed);
                    if due < kill {
                        before.record(latency);
                    } else if due < kill.saturating_add(DURING.as_nanos() as u64) {
                        during.record(latency);
                    } else {
                        after.record(latency);
                    }
                    received += 1;
                }
                Ok((before, during, after, received))
            })?
    };
    let sender = std::thread::Builder::new()
        .name("failover-send".into())
        .spawn(move || -> Result<u64> {
            crate::engine::send_open_loop(
                source_port,
                epoch,
                rate,
                total,
                Duration::from_secs(30),
            )?;
            Ok(total)
        })?;

    // Halfway through, kill the leader; watch the job's state meanwhile.
    tokio::time::sleep(duration / 2).await;
    kill_ns.store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    cluster.kill(leader)?;
    let mut stayed_running = true;
    let watch_until = Instant::now() + DURING;
    while Instant::now() < watch_until {
        if let Some(job) = read_job(&client, id).await {
            stayed_running &= job.state == JobState::Running || job.state == JobState::Finished;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent = tokio::task::spawn_blocking(move || sender.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    let (before, during, after, received) = tokio::task::spawn_blocking(move || receiver.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    let job = wait_until(
        Duration::from_secs(30),
        "the stream job to finish",
        || async { read_job(&client, id).await.filter(|j| j.state.is_ended()) },
    )
    .await?;
    let placements = job
        .events
        .iter()
        .filter(|e| e.message.starts_with("placed"))
        .count();
    agent.shutdown().await;
    if received != sent {
        bail!("sent {sent} records through the failover, received {received}");
    }
    Ok(StreamFailover {
        before,
        during,
        after,
        sent,
        received,
        placements,
        stayed_running,
    })
}
