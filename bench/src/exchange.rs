//! `sluice bench exchange`: what moving a record between shards costs.
//!
//! The same job — Nexmark bids from a generator in each shard, a projection,
//! a blackhole sink — runs three ways on two shards:
//! - `exchange.none`: no exchange (the baseline);
//! - `exchange.local`: `key_by auction` before the sink, so every record
//!   crosses the SPSC ring mesh between the two pinned shards;
//! - `exchange.tcp`: the same keyed job split over two runtimes in this
//!   process that exchange over one loopback TCP connection (the path
//!   between agents);
//! - `exchange.tls`: the same over mutual TLS (rustls, TLS 1.3, AES-GCM), as
//!   agents of a cluster with certificates run it.
//!
//! Reported: records per second of wall time and per CPU-second of the shard
//! threads, and the extra CPU nanoseconds per record over the baseline; for
//! the two connected runs also the whole process's CPU per record (the I/O
//! threads, where TLS encrypts, included).

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sluice_engine::runtime::remote::{ExchangeTls, RemoteExchangeConfig};
use sluice_engine::sys::process_cpu_time;
use sluice_engine::{EngineError, JobReport, JobSpec};
use sluice_security::Role;

use crate::certs::BenchCa;
use crate::report::{self, Report};

#[derive(Debug, Args, Clone)]
pub struct ExchangeBenchArgs {
    /// A short smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Generator events per run [default: 10000000, quick: 500000].
    #[arg(long)]
    pub events: Option<u64>,
    /// Output directory [default: bench-results/exchange-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn spec(events: u64, keyed: bool) -> Result<JobSpec> {
    let key_by = if keyed {
        "[[operator]]\nkey_by = \"auction\"\n"
    } else {
        ""
    };
    let text = format!(
        "name = \"exchange-bench\"\nparallelism = 2\n\n\
         [[source]]\nkind = \"nexmark\"\ntable = \"bid\"\nevents = {events}\nseed = 7\n\n\
         [[operator]]\nmap = [\"auction\", \"price\", \"date_time\"]\n\n{key_by}\n\
         [[sink]]\nkind = \"blackhole\"\n"
    );
    sluice_engine::spec::load::parse_spec(&text)
        .map_err(|e| anyhow::anyhow!("benchmark job spec: {e}"))
}

struct Run {
    records: u64,
    wall: Duration,
    cpu: Duration,
    /// CPU of every thread of the process during the run (connected runs).
    process_cpu: Option<Duration>,
}

impl Run {
    fn of(reports: &[JobReport]) -> Self {
        Self {
            records: reports.iter().map(|r| r.records_in).sum(),
            wall: reports.iter().map(|r| r.elapsed).max().unwrap_or_default(),
            cpu: reports.iter().map(JobReport::cpu_time).sum(),
            process_cpu: None,
        }
    }

    fn per_sec(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn per_cpu_sec(&self) -> f64 {
        self.records as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    fn cpu_ns_per_record(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.records.max(1) as f64
    }
}

/// Both ends' exchange TLS: agents of one throwaway cluster CA, set up as
/// the agent sets up its own.
fn bench_tls() -> Result<(ExchangeTls, ExchangeTls)> {
    let ca = BenchCa::new("bench")?;
    let one = || -> Result<ExchangeTls> {
        sluice_agent::task::stream::exchange_tls(&ca.identity(Role::Agent)?)
            .map_err(anyhow::Error::msg)
    };
    Ok((one()?, one()?))
}

/// Runs the keyed job split over two runtimes joined by loopback TCP (in
/// TLS when `tls` is given).
fn run_tcp(events: u64, tls: Option<(ExchangeTls, ExchangeTls)>) -> Result<Run> {
    let (tls_a, tls_b) = match tls {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let listen_a = TcpListener::bind("127.0.0.1:0")?;
    let listen_b = TcpListener::bind("127.0.0.1:0")?;
    let (addr_a, addr_b) = (listen_a.local_addr()?, listen_b.local_addr()?);
    let configs = [
        (
            RemoteExchangeConfig {
                local_shards: 0..1,
                peers: vec![(1..2, addr_b)],
                listen: addr_a,
                connect_timeout: Duration::from_secs(20),
                tls: tls_a,
            },
            listen_a,
        ),
        (
            RemoteExchangeConfig {
                local_shards: 1..2,
                peers: vec![(0..1, addr_a)],
                listen: addr_b,
                connect_timeout: Duration::from_secs(20),
                tls: tls_b,
            },
            listen_b,
        ),
    ];
    let cpu_before = process_cpu_time();
    let mut workers = Vec::new();
    for (i, (config, listener)) in configs.into_iter().enumerate() {
        let job = spec(events, true)?;
        workers.push(
            std::thread::Builder::new()
                .name(format!("exchange-worker-{i}"))
                .spawn(move || sluice_engine::api::run_job_remote_on(job, config, listener))
                .context("starting a worker thread")?,
        );
    }
    let mut reports = Vec::new();
    for worker in workers {
        let report: Result<JobReport, EngineError> = worker
            .join()
            .map_err(|_| anyhow::anyhow!("an exchange worker panicked"))?;
        reports.push(report?);
    }
    let mut run = Run::of(&reports);
    run.process_cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(run)
}

/// Runs the exchange suite and prints its table.
pub fn run(args: ExchangeBenchArgs) -> Result<()> {
    let events = args
        .events
        .unwrap_or(if args.quick { 500_000 } else { 10_000_000 });
    if events == 0 {
        bail!("--events must be positive");
    }
    let out = report::out_dir_or_default(args.out.as_deref(), "exchange");
    let mut report = Report::new("exchange", &out)?;
    eprintln!("bench exchange: results in {}", out.display());
    let mut progress = report::Progress::new("exchange", 4);
    progress.step(format!(
        "no exchange (baseline), 2 shards, {events} events each"
    ));
    let none = Run::of(&[sluice_engine::run_job(spec(events, false)?)?]);
    progress.step("key_by over the local SPSC ring mesh");
    let local = Run::of(&[sluice_engine::run_job(spec(events, true)?)?]);
    progress.step("key_by over loopback TCP between two runtimes");
    let tcp = run_tcp(events, None)?;
    progress.step("key_by over loopback mutual TLS between two runtimes");
    let tls = run_tcp(events, Some(bench_tls()?))?;
    progress.finish();
    let base = none.cpu_ns_per_record();
    for (name, run, what) in [
        (
            "exchange.none",
            &none,
            "bids -> projection -> blackhole on 2 shards, no exchange",
        ),
        (
            "exchange.local",
            &local,
            "the same with key_by auction: every record crosses the shards' SPSC rings",
        ),
        (
            "exchange.tcp",
            &tcp,
            "the keyed job split over two runtimes joined by one loopback TCP connection",
        ),
        (
            "exchange.tls",
            &tls,
            "the same over mutual TLS (rustls, agent certificates)",
        ),
    ] {
        let extra = run.cpu_ns_per_record() - base;
        let mut description = if name == "exchange.none" {
            format!("{what}; {:.1} CPU ns per record", run.cpu_ns_per_record())
        } else {
            format!(
                "{what}; {:.1} CPU ns per record, {extra:+.1} ns over no exchange",
                run.cpu_ns_per_record()
            )
        };
        if let Some(cpu) = run.process_cpu {
            description.push_str(&format!(
                "; whole process {:.1} CPU ns per record",
                cpu.as_nanos() as f64 / run.records.max(1) as f64
            ));
        }
        report.add_throughput(name, &description, run.per_sec(), run.per_cpu_sec());
    }
    report.note("records counted at the sources; CPU time is the shard threads' (getrusage); the connected runs' I/O threads (where TLS encrypts and decrypts) are not in it but are in their whole-process CPU per record");
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    for s in &summary.scenarios {
        println!("{}: {}", s.name, s.description);
    }
    println!("files: {}", out.display());
    Ok(())
}
