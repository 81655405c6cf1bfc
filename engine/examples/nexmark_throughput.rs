//! Runs one Nexmark query with the generator in every shard and a blackhole sink, and prints
//! events per CPU-second. Usage: `nexmark_throughput [q0|q1|q2|q5|q5count|q7|q8] [events] [parallelism]`.
//!
//! Run with `cargo run -p sluice-engine --example nexmark_throughput -- q1 20000000 2`.

use sluice_engine::bench::{run_nexmark, NexmarkBenchConfig, NexmarkQuery};
use sluice_engine::EngineError;

fn main() -> Result<(), EngineError> {
    let args: Vec<String> = std::env::args().collect();
    let query = match args.get(1).map(String::as_str).unwrap_or("q0") {
        "q0" => NexmarkQuery::Q0,
        "q1" => NexmarkQuery::Q1,
        "q2" => NexmarkQuery::Q2,
        "q5" => NexmarkQuery::Q5,
        "q5count" => NexmarkQuery::Q5Count,
        "q7" => NexmarkQuery::Q7,
        "q8" => NexmarkQuery::Q8,
        other => {
            eprintln!("unknown query {other:?}: one of q0, q1, q2, q5, q5count, q7, q8");
            std::process::exit(2);
        }
    };
    let events = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let parallelism = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let config = NexmarkBenchConfig {
        query,
        events,
        parallelism,
        seed: 42,
        pin_cores: true,
    };
    let report = run_nexmark(&config)?;
    println!(
        "{query:?}: {} events, {} out, {:?} wall, cpu per shard {:?}, {:.2} M events per CPU-second",
        report.events,
        report.output_records,
        report.elapsed,
        report.shard_cpu,
        report.events_per_cpu_second() / 1e6
    );
    Ok(())
}
