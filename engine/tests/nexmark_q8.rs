//! Nexmark q8 (new users) of the bench entry and its example job, checked against a join
//! worked out here in plain maps over the generator's own events.

use std::collections::{BTreeSet, HashMap};

use sluice_engine::bench::{nexmark_spec, run_nexmark, NexmarkBenchConfig, NexmarkQuery};
use sluice_engine::record::{Batch, OwnedValue};
use sluice_engine::source::{
    DeadLetters, NexmarkConfig, NexmarkSource, NexmarkTable, Source, SourceStatus,
};
use sluice_engine::spec::{JobSpec, SinkSpec, SourceSpec};

const WINDOW_MS: i64 = 10_000;

/// One q8 output row: person id, name, window start.
type Row = (i64, String, i64);

/// Every row of one table of the event stream, generated in a single split.
fn generate(table: NexmarkTable, events: u64, seed: u64, events_per_ms: u64) -> Vec<Batch> {
    let config = NexmarkConfig {
        table,
        events,
        seed,
        events_per_ms,
        ..Default::default()
    };
    let mut source = NexmarkSource::new(config, 0, 1).unwrap();
    let mut dead = DeadLetters::new(None).unwrap();
    let mut batches = Vec::new();
    loop {
        let mut batch = Batch::new(source.schema().clone());
        let status = source.poll(&mut batch, &mut dead).unwrap();
        batches.push(batch);
        if status == SourceStatus::Exhausted {
            return batches;
        }
    }
}

fn int(v: &OwnedValue) -> i64 {
    match v {
        OwnedValue::Int(n) | OwnedValue::Timestamp(n) => *n,
        other => panic!("expected an int or a timestamp, got {other:?}"),
    }
}

fn window_start(ts: i64) -> i64 {
    ts - ts.rem_euclid(WINDOW_MS)
}

/// q8 computed directly: the (seller, window) pairs of the auctions, then the persons whose
/// (id, window) is among them, once each. Also returns how many persons and auctions exist.
fn expected(events: u64, seed: u64, events_per_ms: u64) -> (Vec<Row>, usize, usize) {
    let persons: Vec<Vec<OwnedValue>> = generate(NexmarkTable::Person, events, seed, events_per_ms)
        .iter()
        .flat_map(Batch::to_rows)
        .collect();
    let auctions: Vec<Vec<OwnedValue>> =
        generate(NexmarkTable::Auction, events, seed, events_per_ms)
            .iter()
            .flat_map(Batch::to_rows)
            .collect();
    // Person columns: id 0, name 1, date_time 6. Auction columns: date_time 5, seller 7.
    let registered: HashMap<i64, i64> = persons.iter().map(|p| (int(&p[0]), int(&p[6]))).collect();
    assert_eq!(registered.len(), persons.len(), "person ids are unique");
    let mut sellers: BTreeSet<(i64, i64)> = BTreeSet::new();
    for a in &auctions {
        let (seller, ts) = (int(&a[7]), int(&a[5]));
        // The tables are one consistent stream: every seller registered before selling.
        let since = registered
            .get(&seller)
            .unwrap_or_else(|| panic!("seller {seller} is not a person"));
        assert!(
            *since <= ts,
            "seller {seller} registered at {since}, sold at {ts}"
        );
        sellers.insert((seller, window_start(ts)));
    }
    let mut rows: Vec<Row> = persons
        .iter()
        .filter_map(|p| {
            let (id, start) = (int(&p[0]), window_start(int(&p[6])));
            let name = match &p[1] {
                OwnedValue::Str(s) => s.clone(),
                other => panic!("person name {other:?}"),
            };
            sellers.contains(&(id, start)).then_some((id, name, start))
        })
        .collect();
    rows.sort_unstable();
    (rows, persons.len(), auctions.len())
}

/// Runs a q8 job to completion and returns its rows, sorted.
fn run(mut spec: JobSpec) -> Vec<Row> {
    spec.sinks = vec![SinkSpec::Collect];
    let report = sluice_engine::run_job(spec).unwrap();
    assert_eq!(report.late_records, 0);
    let mut rows: Vec<Row> = report
        .collected_rows()
        .iter()
        .map(|r| match r.as_slice() {
            [OwnedValue::Int(id), OwnedValue::Str(name), OwnedValue::Timestamp(start)] => {
                (*id, name.clone(), *start)
            }
            other => panic!("unexpected q8 row {other:?}"),
        })
        .collect();
    rows.sort_unstable();
    rows
}

fn config(events: u64, parallelism: usize) -> NexmarkBenchConfig {
    NexmarkBenchConfig {
        query: NexmarkQuery::Q8,
        events,
        parallelism,
        seed: 9,
        pin_cores: false,
    }
}

/// Sets the event-time density of every Nexmark source of `spec`, its streams' included.
fn set_events_per_ms(spec: &mut JobSpec, events_per_ms: u64) {
    let streams = spec.streams.iter_mut().flat_map(|s| s.sources.iter_mut());
    for source in spec.sources.iter_mut().chain(streams) {
        if let SourceSpec::Nexmark(c) = source {
            c.events_per_ms = events_per_ms;
        }
    }
}

#[test]
fn q8_matches_a_direct_join_across_window_boundaries() {
    // 120,000 events at 10 per ms span 12 s: two windows, one boundary.
    let (want, persons, auctions) = expected(120_000, 9, 10);
    assert_eq!((persons, auctions), (2_400, 7_200));
    assert!(want.iter().any(|r| r.2 == 0) && want.iter().any(|r| r.2 == WINDOW_MS));
    for parallelism in [1, 2] {
        let got = run(nexmark_spec(&config(120_000, parallelism)));
        assert_eq!(got, want, "parallelism {parallelism}");
    }
}

#[test]
fn q8_drops_pairs_split_by_a_window_boundary() {
    // At 1 event per ms a person registers every 50 ms and sellers are drawn from the last
    // 100 persons (5 s), so many auctions near a boundary go to a seller of the window before.
    let events = 35_000;
    let (want, _, auctions) = expected(events, 9, 1);
    let all_sellers: BTreeSet<i64> = generate(NexmarkTable::Auction, events, 9, 1)
        .iter()
        .flat_map(Batch::to_rows)
        .map(|a| int(&a[7]))
        .collect();
    let new_users: BTreeSet<i64> = want.iter().map(|r| r.0).collect();
    assert!(auctions > 0 && !want.is_empty());
    assert!(
        new_users.len() < all_sellers.len(),
        "some sellers registered in an earlier window"
    );
    assert_eq!(
        want.iter().map(|r| r.2).collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 10_000, 20_000, 30_000])
    );
    for parallelism in [1, 2, 3] {
        let mut spec = nexmark_spec(&config(events, parallelism));
        set_events_per_ms(&mut spec, 1);
        assert_eq!(run(spec), want, "parallelism {parallelism}");
    }
}

#[test]
fn q8_reports_the_persons_and_auctions_it_read() {
    let (want, persons, auctions) = expected(50_000, 9, 10);
    for parallelism in [1, 2] {
        let report = run_nexmark(&config(50_000, parallelism)).unwrap();
        assert_eq!(report.events, (persons + auctions) as u64);
        assert_eq!(report.output_records, want.len() as u64);
        assert_eq!(report.shard_cpu.len(), parallelism);
    }
}

#[test]
fn the_q8_example_job_returns_the_new_users() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs/nexmark_q8.toml");
    let plan = sluice_engine::spec::load_spec_file(&path).unwrap();
    let mut spec = plan.spec;
    // The example's 1,000,000 events at 10 per ms, thinned to 100,000 events at 1 per ms:
    // the same 100 s of event time and the same seed, in a tenth of the work.
    let streams = spec.streams.iter_mut().flat_map(|s| s.sources.iter_mut());
    for source in spec.sources.iter_mut().chain(streams) {
        match source {
            SourceSpec::Nexmark(c) => {
                assert_eq!((c.seed, c.events, c.events_per_ms), (42, 1_000_000, 10));
                c.events = 100_000;
                c.events_per_ms = 1;
            }
            other => panic!("unexpected source {other:?}"),
        }
    }
    let (want, _, _) = expected(100_000, 42, 1);
    assert_eq!(run(spec), want);
}
