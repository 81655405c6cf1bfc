//! Throughput entry for the bench crate: Nexmark queries with the generator inside every
//! shard and a blackhole sink, reporting events and per-thread CPU time.
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::api::run_job;
use crate::error::EngineError;
use crate::operator::WindowKind;
use crate::source::{NexmarkConfig, NexmarkTable};
use crate::spec::job::{
    JobSpec, JoinSpec, OperatorSpec, SinkSpec, SourceSpec, StreamSpec, WatermarkSpec, WindowSpec,
};

/// The Nexmark queries the engine can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NexmarkQuery {
    /// Passthrough of bids.
    Q0,
    /// Bid prices converted to euros (`price * 0.908`).
    Q1,
    /// Bids on every 123rd auction (`auction % 123 = 0`).
    Q2,
    /// Bids per auction in 10 s windows sliding by 2 s (the counting part of q5).
    Q5Count,
    /// The auctions with the most bids in each 10 s window sliding by 2 s: the counts, their
    /// maximum per window (gathered on shard 0), joined back on the count within the window.
    /// The counts are computed twice (once per join input).
    Q5,
    /// The bids with the highest price of their 10 s tumbling window: the maximum per window
    /// (gathered on shard 0) joined back to the bids on price within the same window.
    Q7,
    /// New users: the persons who registered and opened an auction within the same 10 s
    /// tumbling window. The auctions are counted per seller and window (so a person is
    /// returned once per window however many auctions they opened), then joined with the
    /// persons on `id = seller` within the window; output `id, name, window_start`.
    /// Persons are every 50th event id, so with a parallelism divisible by 2 or 5 some person
    /// splits emit nothing and hold the join's watermark back until they are exhausted: the
    /// results of a bounded run then all come at its end (an unbounded run would buffer
    /// without end).
    Q8,
}

/// Settings of one benchmark run.
#[derive(Clone, Debug)]
pub struct NexmarkBenchConfig {
    /// The query.
    pub query: NexmarkQuery,
    /// Total generator events over all shards (bids are 46 of every 50).
    pub events: u64,
    /// Shards.
    pub parallelism: usize,
    /// Generator seed.
    pub seed: u64,
    /// Whether shards are pinned to cores.
    pub pin_cores: bool,
}

/// What one benchmark run measured.
#[derive(Clone, Debug)]
pub struct NexmarkBenchReport {
    /// The query.
    pub query: NexmarkQuery,
    /// Bids processed (records read from the generator; for q5 and q7, from one of their two
    /// passes; for q8, the persons and auctions read, each table once).
    pub events: u64,
    /// Records reaching the blackhole sink.
    pub output_records: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// CPU time of each shard thread (getrusage `RUSAGE_THREAD`).
    pub shard_cpu: Vec<Duration>,
}

impl NexmarkBenchReport {
    /// Events per CPU-second, summed over shards (per core when each shard has a core).
    pub fn events_per_cpu_second(&self) -> f64 {
        let cpu: f64 = self.shard_cpu.iter().map(Duration::as_secs_f64).sum();
        if cpu > 0.0 {
            self.events as f64 / cpu
        } else {
            0.0
        }
    }
}

const Q5_SIZE_MS: i64 = 10_000;
const Q5_SLIDE_MS: i64 = 2_000;
const Q8_WINDOW_MS: i64 = 10_000;
/// The named stream of q8: auctions per seller and window.
const Q8_SELLERS_STREAM: &str = "sellers";

/// Counts bids per auction in q5's sliding windows, then projects `fields`.
fn q5_counts(fields: &[&str]) -> Vec<OperatorSpec> {
    vec![
        OperatorSpec::KeyBy("auction".into()),
        OperatorSpec::Window(WindowSpec {
            kind: WindowKind::Sliding {
                size_ms: Q5_SIZE_MS,
                slide_ms: Q5_SLIDE_MS,
            },
            aggregate: vec!["count(*) AS bids".into()],
            allowed_lateness_ms: 0,
            time: None,
        }),
        OperatorSpec::Map(fields.iter().map(|f| (*f).to_owned()).collect()),
    ]
}

/// Returns the job spec of a query.
pub fn nexmark_spec(config: &NexmarkBenchConfig) -> JobSpec {
    let ops = match config.query {
        NexmarkQuery::Q0 => vec![],
        NexmarkQuery::Q1 => vec![OperatorSpec::Map(
            ["auction", "bidder", "price * 0.908 AS price", "date_time"]
                .map(String::from)
                .to_vec(),
        )],
        NexmarkQuery::Q2 => vec![
            OperatorSpec::Filter("auction % 123 = 0".into()),
            OperatorSpec::Map(vec!["auction".into(), "price".into()]),
        ],
        NexmarkQuery::Q5Count => q5_counts(&["auction", "window_start", "window_end", "bids"]),
        NexmarkQuery::Q5 => {
            let mut ops = q5_counts(&["auction", "bids", "window_end - 1 AS ts"]);
            ops.push(OperatorSpec::WindowJoin(JoinSpec {
                stream: "top_count".into(),
                left_key: "bids".into(),
                right_key: "max_bids".into(),
                left_time: Some("ts".into()),
                right_time: Some("window_start".into()),
                size_ms: Q5_SLIDE_MS,
                lower_ms: 0,
                upper_ms: 0,
            }));
            ops.push(OperatorSpec::Map(
                ["auction", "bids", "ts + 1 AS window_end"]
                    .map(String::from)
                    .to_vec(),
            ));
            ops
        }
        NexmarkQuery::Q7 => vec![OperatorSpec::WindowJoin(JoinSpec {
            stream: "max_per_window".into(),
            left_key: "price".into(),
            right_key: "max_price".into(),
            left_time: None,
            right_time: Some("window_start".into()),
            size_ms: 10_000,
            lower_ms: 0,
            upper_ms: 0,
        })],
        NexmarkQuery::Q8 => vec![
            // Window results are stamped with their `window_start`, which is inside the join's
            // window of the same size and still ahead of the join's watermark when they arrive
            // (as in q7).
            OperatorSpec::WindowJoin(JoinSpec {
                stream: Q8_SELLERS_STREAM.into(),
                left_key: "id".into(),
                right_key: "seller".into(),
                left_time: None,
                right_time: Some("window_start".into()),
                size_ms: Q8_WINDOW_MS,
                lower_ms: 0,
                upper_ms: 0,
            }),
            OperatorSpec::Map(["id", "name", "window_start"].map(String::from).to_vec()),
        ],
    };
    let table_source = |table| {
        SourceSpec::Nexmark(NexmarkConfig {
            table,
            seed: config.seed,
            events: config.events,
            ..Default::default()
        })
    };
    // Every table is drawn from the same event ids of the same seed, so the persons and the
    // auctions of q8 belong to one consistent event stream (sellers are persons already
    // registered by the auction's event time).
    let bids = table_source(NexmarkTable::Bid);
    let main_source = match config.query {
        NexmarkQuery::Q8 => table_source(NexmarkTable::Person),
        _ => bids.clone(),
    };
    let streams = match config.query {
        NexmarkQuery::Q5 => {
            // Window results are stamped `window_end - 1`, which is still ahead of the
            // watermark downstream when they arrive, so a 2 s tumbling window on that stamp
            // collects exactly the counts of one sliding window.
            let mut operators = q5_counts(&["bids", "window_end - 1 AS ts"]);
            operators.push(OperatorSpec::Window(WindowSpec {
                kind: WindowKind::Tumbling {
                    size_ms: Q5_SLIDE_MS,
                },
                aggregate: vec!["max(bids) AS max_bids".into()],
                allowed_lateness_ms: 0,
                time: Some("ts".into()),
            }));
            vec![StreamSpec {
                name: "top_count".into(),
                sources: vec![bids.clone()],
                operators,
                watermark: None,
            }]
        }
        NexmarkQuery::Q7 => vec![StreamSpec {
            name: "max_per_window".into(),
            sources: vec![bids.clone()],
            operators: vec![OperatorSpec::Window(WindowSpec {
                kind: WindowKind::Tumbling { size_ms: 10_000 },
                aggregate: vec!["max(price) AS max_price".into()],
                allowed_lateness_ms: 0,
                time: None,
            })],
            watermark: None,
        }],
        NexmarkQuery::Q8 => vec![StreamSpec {
            name: Q8_SELLERS_STREAM.into(),
            sources: vec![table_source(NexmarkTable::Auction)],
            operators: vec![
                OperatorSpec::KeyBy("seller".into()),
                OperatorSpec::Window(WindowSpec {
                    kind: WindowKind::Tumbling {
                        size_ms: Q8_WINDOW_MS,
                    },
                    aggregate: vec!["count(*) AS auctions".into()],
                    allowed_lateness_ms: 0,
                    time: None,
                }),
            ],
            watermark: None,
        }],
        _ => Vec::new(),
    };
    JobSpec {
        name: format!("nexmark-{:?}", config.query).to_lowercase(),
        parallelism: config.parallelism,
        pin_cores: config.pin_cores,
        watermark: WatermarkSpec {
            column: Some("date_time".into()),
            out_of_orderness_ms: 0,
            idle_timeout_ms: 0,
            processing_time: false,
        },
        sources: vec![main_source],
        operators: ops,
        streams,
        sinks: vec![SinkSpec::Blackhole],
        late_sink: None,
        dead_letter: None,
        ..JobSpec::named("nexmark")
    }
}

/// Runs one Nexmark query to completion and reports throughput.
pub fn run_nexmark(config: &NexmarkBenchConfig) -> Result<NexmarkBenchReport, EngineError> {
    let report = run_job(nexmark_spec(config))?;
    // q5 and q7 read the bids twice (once for the maximum per window, once to join it back);
    // their events are the bids of one pass. q8 reads two disjoint tables (persons and
    // auctions) once each; its events are both.
    let passes = if matches!(config.query, NexmarkQuery::Q5 | NexmarkQuery::Q7) {
        2
    } else {
        1
    };
    Ok(NexmarkBenchReport {
        query: config.query,
        events: report.records_in / passes,
        output_records: report.records_out,
        elapsed: report.elapsed,
        shard_cpu: report.shards.iter().map(|s| s.cpu_time).collect(),
    })
}
