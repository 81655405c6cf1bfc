//! `sluice bench engine`: stream-engine throughput and end-to-end latency.
//!
//! - Nexmark q0, q1, q2, q5, q7 with the generator inside each shard and a
//!   blackhole sink, reported as events per CPU-second of the shard threads
//!   (getrusage), the way Flink's Nexmark results count cores.
//! - End-to-end latency, TCP ingest → filter → map → TCP sink, at fixed
//!   offered rates. The load is open loop: record i is due at start + i/rate
//!   and carries that due time; latency is measured from it, so a stall in
//!   the engine or the sender counts in full (no coordinated omission).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use sluice_engine::bench::{run_nexmark, NexmarkBenchConfig, NexmarkQuery};

use crate::procs::free_port;
use crate::recorder::Recorder;
use crate::report::{self, Report};

/// How long to wait for the engine's TCP source to listen.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// Most records the sender writes in one syscall when it falls behind.
const SEND_BATCH_RECORDS_MAX: u64 = 4096;

#[derive(Debug, Args, Clone)]
pub struct EngineBenchArgs {
    /// A short smoke run instead of the full one.
    #[arg(long)]
    pub quick: bool,
    /// Nexmark queries to run (q0, q1, q2, q5, q7).
    #[arg(long, value_delimiter = ',', default_value = "q0,q1,q2,q5,q7")]
    pub queries: Vec<String>,
    /// Generator events per query [default: 20000000, quick: 1000000].
    #[arg(long)]
    pub events: Option<u64>,
    /// Shards per job.
    #[arg(long, default_value_t = 1)]
    pub parallelism: usize,
    /// Offered rates (records/s) for the end-to-end latency runs
    /// [default: 10000,100000,500000; quick: 10000,100000].
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// Seconds per latency run [default: 5, quick: 1].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Output directory [default: bench-results/engine-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_query(name: &str) -> Result<NexmarkQuery> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "q0" => NexmarkQuery::Q0,
        "q1" => NexmarkQuery::Q1,
        "q2" => NexmarkQuery::Q2,
        "q5" => NexmarkQuery::Q5,
        "q7" => NexmarkQuery::Q7,
        other => bail!("unknown Nexmark query {other:?}; choose from q0, q1, q2, q5, q7"),
    })
}

/// Runs the engine suite and prints its table.
pub fn run(args: EngineBenchArgs) -> Result<()> {
    let queries: Vec<(String, NexmarkQuery)> = args
        .queries
        .iter()
        .map(|q| parse_query(q).map(|parsed| (q.to_ascii_lowercase(), parsed)))
        .collect::<Result<_>>()?;
    if args.parallelism == 0 {
        bail!("--parallelism must be at least 1");
    }
    let events = args
        .events
        .unwrap_or(if args.quick { 1_000_000 } else { 20_000_000 });
    let rates = if args.rates.is_empty() {
        if args.quick {
            vec![10_000, 100_000]
        } else {
            vec![10_000, 100_000, 500_000]
        }
    } else {
        args.rates.clone()
    };
    if rates.contains(&0) {
        bail!("--rates must be positive");
    }
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
        bail!("--seconds must be in (0, 600], got {seconds}");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("bench-results/engine-{unix}"))
    });
    let mut report = Report::new("engine", &out)?;
    for (name, query) in &queries {
        let config = NexmarkBenchConfig {
            query: *query,
            events,
            parallelism: args.parallelism,
            seed: 42,
            pin_cores: true,
        };
        let result = run_nexmark(&config).map_err(|e| anyhow::anyhow!("nexmark {name}: {e}"))?;
        let per_cpu = result.events_per_cpu_second();
        let wall = result.events as f64 / result.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "  nexmark {name}: {:>12.0} events/CPU-s ({:.0} events/s wall, {} out)",
            per_cpu, wall, result.output_records
        );
        report.add_throughput(
            &format!("engine.nexmark.{name}"),
            &format!(
                "Nexmark {name}, generator in each of {} shard(s), blackhole sink",
                args.parallelism
            ),
            wall,
            per_cpu,
        );
    }
    let dir = tempfile::tempdir()?;
    for rate in rates {
        let (rec, sent) = e2e_latency(dir.path(), rate, Duration::from_secs_f64(seconds))?;
        let s = rec.summary();
        eprintln!(
            "  e2e @ {rate}/s: p50 {} p99 {} max {} ({sent} records)",
            report::human_us(s.p50_us),
            report::human_us(s.p99_us),
            report::human_us(s.max_us)
        );
        report.add(
            &format!("engine.e2e.tcp.r{rate}"),
            &format!(
                "TCP ingest -> filter -> map -> TCP sink at {rate} records/s offered (open loop)"
            ),
            Some(&rec),
            Some(sent as f64 / seconds),
        )?;
    }
    report.note("per CPU-s = events divided by the CPU time of the shard threads (getrusage RUSAGE_THREAD); q5 and q7 read the bids twice (once per join input) and count one pass");
    report.note("e2e latency is measured from each record's scheduled send time to its arrival back from the sink, on loopback, one shard");
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    println!("files: {}", out.display());
    Ok(())
}

/// One open-loop latency run at `rate` records/s for `duration`.
fn e2e_latency(dir: &Path, rate: u64, duration: Duration) -> Result<(Recorder, u64)> {
    let source_port = free_port()?;
    let sink = TcpListener::bind("127.0.0.1:0").context("binding the latency receiver")?;
    let sink_addr = sink.local_addr()?;
    let spec = dir.join(format!("e2e-{rate}.toml"));
    std::fs::write(
        &spec,
        format!(
            r#"name = "e2e-latency"
parallelism = 1

[[source]]
kind = "tcp"
addr = "127.0.0.1:{source_port}"
format = "csv"
fields = [{{ name = "seq", type = "int" }}, {{ name = "due_ns", type = "int" }}, {{ name = "price", type = "int" }}]

[[operator]]
filter = "price >= 0"

[[operator]]
map = ["seq", "due_ns", "price * 0.908 AS price_eur"]

[[sink]]
kind = "tcp"
addr = "{sink_addr}"
format = "csv"
"#
        ),
    )?;
    let epoch = Instant::now();
    let job = std::thread::Builder::new()
        .name("e2e-job".into())
        .spawn(move || sluice_engine::run_job_file(&spec))?;
    let receiver = std::thread::Builder::new().name("e2e-recv".into()).spawn(
        move || -> Result<(Recorder, u64)> {
            let (stream, _) = sink.accept().context("waiting for the engine's sink")?;
            let mut rec = Recorder::new();
            let mut received = 0u64;
            for line in BufReader::new(stream).lines() {
                let line = line?;
                let now = epoch.elapsed().as_nanos() as u64;
                let due: u64 = line
                    .split(',')
                    .nth(1)
                    .and_then(|f| f.trim().parse().ok())
                    .with_context(|| format!("bad sink line {line:?}"))?;
                rec.record(Duration::from_nanos(now.saturating_sub(due)));
                received += 1;
            }
            Ok((rec, received))
        },
    )?;

    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", source_port)) {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => bail!("the engine's TCP source did not listen on port {source_port}: {e}"),
        }
    };
    conn.set_nodelay(true)?;
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let interval_ns = 1e9 / rate as f64;
    let start_ns = epoch.elapsed().as_nanos() as u64 + 1_000_000;
    let mut buf = String::new();
    let mut next = 0u64;
    while next < total {
        let now = epoch.elapsed().as_nanos() as u64;
        let due_of = |i: u64| start_ns + (i as f64 * interval_ns) as u64;
        if due_of(next) > now {
            // Sleep rather than spin: on a small machine a spinning sender
            // steals the core the engine or the receiver needs. Waking late
            // is still charged to latency (it is measured from the due time).
            std::thread::sleep(Duration::from_nanos(due_of(next) - now));
            continue;
        }
        buf.clear();
        let mut sent_now = 0;
        while next < total && due_of(next) <= now && sent_now < SEND_BATCH_RECORDS_MAX {
            use std::fmt::Write as _;
            let _ = writeln!(buf, "{next},{},{}", due_of(next), next % 1000);
            next += 1;
            sent_now += 1;
        }
        conn.write_all(buf.as_bytes())
            .context("sending to the engine")?;
    }
    drop(conn);
    let job_report = job
        .join()
        .map_err(|_| anyhow::anyhow!("the e2e job panicked"))?
        .map_err(|e| anyhow::anyhow!("e2e job: {e}"))?;
    let (rec, received) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    if received != total || job_report.dead_letters != 0 {
        bail!(
            "sent {total} records, got {received} back ({} dead letters)",
            job_report.dead_letters
        );
    }
    Ok((rec, total))
}
