//! `sluice bench engine`: stream-engine throughput and end-to-end latency.
//!
//! - Nexmark q0, q1, q2, q5, q7, q8 with the generator inside each shard and a
//!   blackhole sink, reported as events per CPU-second of the shard threads
//!   (getrusage), the way Flink's Nexmark results count cores.
//! - End-to-end latency, TCP ingest → filter → map → TCP sink, at fixed
//!   offered rates. The load is open loop: record i is due at start + i/rate
//!   and carries that due time; latency is measured from it, so a stall in
//!   the engine or the sender counts in full (no coordinated omission).
//! - The maximum sustainable rate of that pipeline: the offered rate is raised
//!   (doubling, then bisecting) until a short probe falls behind — records
//!   lost, or latency at the end of the probe well above latency at its start
//!   (a backlog that keeps growing) — and the latency run is repeated at half
//!   the highest rate that kept up.

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
/// First rate the sustainable-rate search offers (records/s).
const SEARCH_RATE_START: u64 = 50_000;
/// The search stops raising the rate here (records/s); the result is then "at least" this.
const SEARCH_RATE_MAX: u64 = 16_000_000;
/// The bisection stops when the bracket is this tight (high / low).
const SEARCH_PRECISION: f64 = 1.1;
/// Fraction of a probe's records, at its start and at its end, whose latencies are compared.
const PROBE_PHASE_FRACTION: f64 = 0.2;
/// A probe fell behind if the median latency of its last records exceeds twice that of its
/// first records plus this slack (a backlog that keeps growing)...
const PROBE_GROWTH_SLACK: Duration = Duration::from_millis(2);
/// ... or if the p99 of its last records exceeds this.
const PROBE_TAIL_P99_MAX: Duration = Duration::from_millis(100);

#[derive(Debug, Args, Clone)]
pub struct EngineBenchArgs {
    /// A short smoke run instead of the full one.
    #[arg(long)]
    pub quick: bool,
    /// Nexmark queries to run (q0, q1, q2, q5, q7, q8).
    #[arg(long, value_delimiter = ',', default_value = "q0,q1,q2,q5,q7,q8")]
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
    /// Skip the maximum-sustainable-rate search (and the latency run at half of it).
    #[arg(long)]
    pub no_search: bool,
    /// Seconds per probe of the sustainable-rate search [default: 1, quick: 0.5].
    #[arg(long)]
    pub probe_seconds: Option<f64>,
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
        "q8" => NexmarkQuery::Q8,
        other => bail!("unknown Nexmark query {other:?}; choose from q0, q1, q2, q5, q7, q8"),
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
    let out = report::out_dir_or_default(args.out.as_deref(), "engine");
    let mut report = Report::new("engine", &out)?;
    let steps = queries.len() + rates.len() + if args.no_search { 0 } else { 2 };
    let mut progress = report::Progress::new("engine", steps);
    for (name, query) in &queries {
        let config = NexmarkBenchConfig {
            query: *query,
            events,
            parallelism: args.parallelism,
            seed: 42,
            pin_cores: true,
        };
        progress.step(format!("Nexmark {name}, {events} events"));
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
        progress.step(format!("end-to-end latency at {rate} records/s"));
        let run = e2e_latency(dir.path(), rate, Duration::from_secs_f64(seconds))?;
        run.check_complete()?;
        add_latency(
            &mut report,
            &format!("engine.e2e.tcp.r{rate}"),
            rate,
            seconds,
            &run,
            "",
        )?;
    }
    if !args.no_search {
        let probe = args
            .probe_seconds
            .unwrap_or(if args.quick { 0.5 } else { 1.0 });
        if !(probe.is_finite() && probe > 0.0 && probe <= 60.0) {
            bail!("--probe-seconds must be in (0, 60], got {probe}");
        }
        progress.step("search for the maximum sustainable rate");
        let (max_rate, capped) = max_sustainable_rate(dir.path(), Duration::from_secs_f64(probe))?;
        let at_least = if capped { "at least " } else { "" };
        eprintln!("  e2e max sustainable rate: {at_least}{max_rate}/s");
        report.add(
            "engine.e2e.tcp.max_sustainable",
            &format!(
                "highest offered rate (records/s) the TCP ingest -> filter -> map -> TCP sink \
                 pipeline kept up with for {probe} s probes{}",
                if capped { " (search cap reached)" } else { "" }
            ),
            None,
            Some(max_rate as f64),
        )?;
        let half = (max_rate / 2).max(1);
        progress.step(format!(
            "end-to-end latency at {half} records/s (half the maximum)"
        ));
        let run = e2e_latency(dir.path(), half, Duration::from_secs_f64(seconds))?;
        run.check_complete()?;
        add_latency(
            &mut report,
            "engine.e2e.tcp.half_max",
            half,
            seconds,
            &run,
            " = half the maximum sustainable rate",
        )?;
    }
    progress.finish();
    report.note("per CPU-s = events divided by the CPU time of the shard threads (getrusage RUSAGE_THREAD); q5 and q7 read the bids twice (once per join input) and count one pass; q8 counts the persons and auctions it reads (4 of every 50 generator events), each once");
    if !args.no_search {
        report.note("max sustainable = highest offered rate whose probe returned every record with the median latency of its last 20% of records at most 2x (+2 ms) that of its first 20% and their p99 at most 100 ms; found by doubling from 50k/s, then bisecting to within 10%; half_max repeats the latency run at half of it");
    }
    report.note("e2e latency is measured from each record's scheduled send time to its arrival back from the sink, on loopback, one shard");
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    println!("files: {}", out.display());
    Ok(())
}

/// What one open-loop latency run measured.
struct E2eRun {
    /// Every record's latency.
    rec: Recorder,
    /// Records sent.
    sent: u64,
    /// Records received back.
    received: u64,
    /// Malformed records the job reported.
    dead_letters: u64,
    /// Latencies (ns) of the first records sent, by send order.
    head_ns: Vec<u64>,
    /// Latencies (ns) of the last records sent.
    tail_ns: Vec<u64>,
}

impl E2eRun {
    fn check_complete(&self) -> Result<()> {
        if self.received != self.sent || self.dead_letters != 0 {
            bail!(
                "sent {} records, got {} back ({} dead letters)",
                self.sent,
                self.received,
                self.dead_letters
            );
        }
        Ok(())
    }

    /// Whether the pipeline kept up: everything came back, and the latency at the end of
    /// the run did not grow well past the latency at its start.
    fn kept_up(&self) -> bool {
        fn quantile(v: &mut [u64], q: f64) -> u64 {
            if v.is_empty() {
                return 0;
            }
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q) as usize]
        }
        if self.check_complete().is_err() {
            return false;
        }
        let (mut head, mut tail) = (self.head_ns.clone(), self.tail_ns.clone());
        let head_p50 = quantile(&mut head, 0.5);
        let tail_p50 = quantile(&mut tail, 0.5);
        let tail_p99 = quantile(&mut tail, 0.99);
        let growth_limit = head_p50
            .saturating_mul(2)
            .saturating_add(PROBE_GROWTH_SLACK.as_nanos() as u64);
        tail_p50 <= growth_limit && tail_p99 <= PROBE_TAIL_P99_MAX.as_nanos() as u64
    }
}

fn add_latency(
    report: &mut Report,
    name: &str,
    rate: u64,
    seconds: f64,
    run: &E2eRun,
    what: &str,
) -> Result<()> {
    let s = run.rec.summary();
    eprintln!(
        "  e2e @ {rate}/s{what}: p50 {} p99 {} max {} ({} records)",
        report::human_us(s.p50_us),
        report::human_us(s.p99_us),
        report::human_us(s.max_us),
        run.sent
    );
    report.add(
        name,
        &format!(
            "TCP ingest -> filter -> map -> TCP sink at {rate} records/s offered{what} (open loop)"
        ),
        Some(&run.rec),
        Some(run.sent as f64 / seconds),
    )
}

/// Raises the offered rate until a probe falls behind, then bisects; returns the highest rate
/// that kept up, and whether the search stopped at [`SEARCH_RATE_MAX`] instead.
fn max_sustainable_rate(dir: &Path, probe: Duration) -> Result<(u64, bool)> {
    let mut good = 0u64;
    let mut bad = None;
    let mut rate = SEARCH_RATE_START;
    // Doubling until a probe falls behind.
    while rate <= SEARCH_RATE_MAX {
        let kept = e2e_latency(dir, rate, probe)?.kept_up();
        eprintln!(
            "  search: {rate}/s {}",
            if kept { "kept up" } else { "fell behind" }
        );
        if !kept {
            bad = Some(rate);
            break;
        }
        good = rate;
        rate = rate.saturating_mul(2);
    }
    let Some(mut high) = bad else {
        return Ok((good, true));
    };
    // Bisecting between the last rate that kept up and the first that did not.
    while good > 0 && (high as f64) / (good as f64) > SEARCH_PRECISION {
        let mid = good + (high - good) / 2;
        let kept = e2e_latency(dir, mid, probe)?.kept_up();
        eprintln!(
            "  search: {mid}/s {}",
            if kept { "kept up" } else { "fell behind" }
        );
        if kept {
            good = mid;
        } else {
            high = mid;
        }
    }
    if good == 0 {
        bail!(
            "the pipeline fell behind even at {SEARCH_RATE_START} records/s; no sustainable \
             rate found"
        );
    }
    Ok((good, false))
}

/// One open-loop latency run at `rate` records/s for `duration`.
/// The latency job: CSV `seq,due_ns,price` over TCP on loopback
/// `source_port` (one connection) → filter → map → TCP sink to `sink`.
pub(crate) fn e2e_job_toml(name: &str, source_port: u16, sink: std::net::SocketAddr) -> String {
    format!(
        r#"name = "{name}"
parallelism = 1

[[source]]
kind = "tcp"
addr = "127.0.0.1:{source_port}"
format = "csv"
connections = 1
fields = [{{ name = "seq", type = "int" }}, {{ name = "due_ns", type = "int" }}, {{ name = "price", type = "int" }}]

[[operator]]
filter = "price >= 0"

[[operator]]
map = ["seq", "due_ns", "price * 0.908 AS price_eur"]

[[sink]]
kind = "tcp"
addr = "{sink}"
format = "csv"
"#
    )
}

/// Connects to a TCP source on loopback `port` (waiting up to `patience`
/// for it to listen) and sends `total` CSV records `seq,due_ns,price` at
/// `rate` per second, open loop: record i is due at a fixed time from the
/// start, `due_ns` counted from `epoch`, whatever happened before it.
pub(crate) fn send_open_loop(
    port: u16,
    epoch: Instant,
    rate: u64,
    total: u64,
    patience: Duration,
) -> Result<()> {
    let deadline = Instant::now() + patience;
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => bail!("the job's TCP source did not listen on port {port}: {e}"),
        }
    };
    conn.set_nodelay(true)?;
    let interval_ns = 1e9 / rate as f64;
    let start_ns = epoch.elapsed().as_nanos() as u64 + 1_000_000;
    let due_of = |i: u64| start_ns + (i as f64 * interval_ns) as u64;
    let mut buf = String::new();
    let mut next = 0u64;
    while next < total {
        let now = epoch.elapsed().as_nanos() as u64;
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
            .context("sending to the job")?;
    }
    Ok(())
}

fn e2e_latency(dir: &Path, rate: u64, duration: Duration) -> Result<E2eRun> {
    let total = (rate as f64 * duration.as_secs_f64()).round().max(1.0) as u64;
    let phase = ((total as f64 * PROBE_PHASE_FRACTION) as u64).max(1);
    let source_port = free_port()?;
    let sink = TcpListener::bind("127.0.0.1:0").context("binding the latency receiver")?;
    let sink_addr = sink.local_addr()?;
    let spec = dir.join(format!("e2e-{rate}.toml"));
    std::fs::write(&spec, e2e_job_toml("e2e-latency", source_port, sink_addr))?;
    let epoch = Instant::now();
    let job = std::thread::Builder::new()
        .name("e2e-job".into())
        .spawn(move || sluice_engine::run_job_file(&spec))?;
    let receiver =
        std::thread::Builder::new()
            .name("e2e-recv".into())
            .spawn(move || -> Result<E2eRun> {
                let (stream, _) = sink.accept().context("waiting for the engine's sink")?;
                let mut run = E2eRun {
                    rec: Recorder::new(),
                    sent: total,
                    received: 0,
                    dead_letters: 0,
                    head_ns: Vec::new(),
                    tail_ns: Vec::new(),
                };
                for line in BufReader::new(stream).lines() {
                    let line = line?;
                    let now = epoch.elapsed().as_nanos() as u64;
                    let mut fields = line.split(',');
                    let (seq, due): (u64, u64) = fields
                        .next()
                        .and_then(|f| f.trim().parse().ok())
                        .zip(fields.next().and_then(|f| f.trim().parse().ok()))
                        .with_context(|| format!("bad sink line {line:?}"))?;
                    let latency = now.saturating_sub(due);
                    run.rec.record(Duration::from_nanos(latency));
                    if seq < phase {
                        run.head_ns.push(latency);
                    } else if seq >= total.saturating_sub(phase) {
                        run.tail_ns.push(latency);
                    }
                    run.received += 1;
                }
                Ok(run)
            })?;

    send_open_loop(source_port, epoch, rate, total, CONNECT_PATIENCE)?;
    let job_report = job
        .join()
        .map_err(|_| anyhow::anyhow!("the e2e job panicked"))?
        .map_err(|e| anyhow::anyhow!("e2e job: {e}"))?;
    let mut run = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    run.dead_letters = job_report.dead_letters;
    Ok(run)
}
