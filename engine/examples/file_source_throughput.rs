//! Reads a generated NDJSON or CSV file through the io_uring file source on one thread and
//! prints records and megabytes per second (the parsing hot path, without a job around it).
//! Usage: `file_source_throughput [ndjson|csv] [records] [dir]`; the file is written to `dir`
//! (default: the system temp dir) and left there for later runs.
//!
//! Run with `cargo run --release -p sluice-engine --example file_source_throughput -- csv 5000000`.

use std::io::Write;
use std::time::Instant;

use sluice_engine::record::{Batch, DataType, Schema};
use sluice_engine::source::{DeadLetters, FileSource, Format, Source, SourceStatus};
use sluice_engine::EngineError;

fn main() -> Result<(), EngineError> {
    let args: Vec<String> = std::env::args().collect();
    let format = match args.get(1).map(String::as_str).unwrap_or("csv") {
        "csv" => Format::Csv,
        "ndjson" => Format::Ndjson,
        other => {
            eprintln!("unknown format {other:?}: csv or ndjson");
            std::process::exit(2);
        }
    };
    let records: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let dir = args
        .get(3)
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let path = dir.join(format!("sluice-throughput-{records}.{format:?}"));
    if !path.exists() {
        let file = std::fs::File::create(&path).map_err(|e| EngineError::io(&path, e))?;
        let mut out = std::io::BufWriter::new(file);
        for i in 0..records {
            let line = match format {
                Format::Csv => format!("{i},bidder-{},{}.25,{}\n", i % 9973, i % 1000, i % 2 == 0),
                Format::Ndjson => format!(
                    "{{\"id\":{i},\"name\":\"bidder-{}\",\"price\":{}.25,\"ok\":{}}}\n",
                    i % 9973,
                    i % 1000,
                    i % 2 == 0
                ),
            };
            out.write_all(line.as_bytes())
                .map_err(|e| EngineError::io(&path, e))?;
        }
        out.flush().map_err(|e| EngineError::io(&path, e))?;
    }
    let bytes = std::fs::metadata(&path)
        .map_err(|e| EngineError::io(&path, e))?
        .len();
    let schema = Schema::of(&[
        ("id", DataType::Int),
        ("name", DataType::String),
        ("price", DataType::Float),
        ("ok", DataType::Bool),
    ])?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut source = FileSource::open(&path, format, schema.clone(), false, 0, 1)?;
        let mut dead = DeadLetters::new(None)?;
        let mut batch = Batch::new(schema.clone());
        let mut read = 0u64;
        loop {
            batch.clear();
            let status = source.poll(&mut batch, &mut dead)?;
            read += batch.len() as u64;
            if status == SourceStatus::Exhausted {
                break;
            }
        }
        assert_eq!(read, records, "records read");
        assert_eq!(dead.count(), 0, "dead letters");
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "{format:?}: {records} records, {:.1} MB, best of 3: {:.3} s, {:.2} M records/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        best,
        records as f64 / best / 1e6,
        bytes as f64 / best / 1e6
    );
    Ok(())
}
