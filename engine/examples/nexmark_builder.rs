//! Builds a small Nexmark job with the builder API and prints its results:
//! bids on every 123rd auction, converted to euros, counted per auction in 1 s windows.
//!
//! Run with `cargo run -p sluice-engine --example nexmark_builder`.

use sluice_engine::builder::StreamEnv;
use sluice_engine::operator::WindowKind;
use sluice_engine::source::{NexmarkConfig, NexmarkTable};
use sluice_engine::EngineError;

fn main() -> Result<(), EngineError> {
    let report = StreamEnv::new("example")
        .parallelism(2)
        .watermark("date_time", 100, 0)
        .nexmark(NexmarkConfig {
            table: NexmarkTable::Bid,
            events: 100_000,
            seed: 1,
            ..Default::default()
        })
        .filter("auction % 123 = 0")
        .map(&["auction", "price * 0.908 AS price_eur", "date_time"])
        .key_by("auction")
        .window(
            WindowKind::Tumbling { size_ms: 1000 },
            &["count(*) AS bids", "avg(price_eur) AS avg_eur"],
            0,
        )
        .collect()
        .execute()?;
    for row in report.collected_rows().iter().take(10) {
        let cells: Vec<String> = row.iter().map(ToString::to_string).collect();
        println!("{}", cells.join("\t"));
    }
    println!(
        "{} bids in, {} rows out, {} late, {:?} wall, {:?} CPU",
        report.records_in,
        report.records_out,
        report.late_records,
        report.elapsed,
        report.cpu_time()
    );
    Ok(())
}
