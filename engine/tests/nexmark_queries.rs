//! The Nexmark queries of the bench entry, checked against a direct computation.

use sluice_engine::bench::{nexmark_spec, run_nexmark, NexmarkBenchConfig, NexmarkQuery};
use sluice_engine::builder::StreamEnv;
use sluice_engine::record::OwnedValue;
use sluice_engine::source::{NexmarkConfig, NexmarkTable};

fn config(query: NexmarkQuery, parallelism: usize) -> NexmarkBenchConfig {
    NexmarkBenchConfig {
        query,
        events: 50_000,
        parallelism,
        seed: 5,
        pin_cores: false,
    }
}

fn all_bids() -> Vec<Vec<sluice_engine::record::OwnedValue>> {
    StreamEnv::new("bids")
        .nexmark(NexmarkConfig {
            table: NexmarkTable::Bid,
            events: 50_000,
            seed: 5,
            ..Default::default()
        })
        .collect()
        .execute()
        .unwrap()
        .collected_rows()
}

#[test]
fn q0_q1_q2_count_what_a_direct_computation_counts() {
    let bids = all_bids();
    assert_eq!(bids.len(), 46_000);
    let q2_expected = bids
        .iter()
        .filter(|r| matches!(r[0], sluice_engine::record::OwnedValue::Int(a) if a % 123 == 0))
        .count() as u64;
    assert!(q2_expected > 0);
    for parallelism in [1, 2] {
        let q0 = run_nexmark(&config(NexmarkQuery::Q0, parallelism)).unwrap();
        assert_eq!((q0.events, q0.output_records), (46_000, 46_000));
        assert_eq!(q0.shard_cpu.len(), parallelism);
        let q1 = run_nexmark(&config(NexmarkQuery::Q1, parallelism)).unwrap();
        assert_eq!(q1.output_records, 46_000);
        let q2 = run_nexmark(&config(NexmarkQuery::Q2, parallelism)).unwrap();
        assert_eq!(q2.output_records, q2_expected, "parallelism {parallelism}");
        let q7 = run_nexmark(&config(NexmarkQuery::Q7, parallelism)).unwrap();
        assert_eq!(q7.events, 46_000, "one pass of bids");
        let q5 = run_nexmark(&config(NexmarkQuery::Q5, parallelism)).unwrap();
        assert_eq!(q5.events, 46_000, "one pass of bids");
    }
}

#[test]
fn q5_and_q7_windows_cover_every_bid() {
    // 50,000 events at 10 per ms span 5 s of event time.
    let mut spec = nexmark_spec(&config(NexmarkQuery::Q5Count, 2));
    spec.sinks = vec![sluice_engine::spec::SinkSpec::Collect];
    let rows = sluice_engine::run_job(spec).unwrap().collected_rows();
    // Every bid is in 5 sliding windows (size 10 s / slide 2 s).
    let total: i64 = rows
        .iter()
        .map(|r| match r[3] {
            sluice_engine::record::OwnedValue::Int(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 46_000 * 5);

    for parallelism in [1, 2] {
        let mut spec = nexmark_spec(&config(NexmarkQuery::Q7, parallelism));
        spec.sinks = vec![sluice_engine::spec::SinkSpec::Collect];
        let rows = sluice_engine::run_job(spec).unwrap().collected_rows();
        // One 10 s tumbling window holds all 5 s of events: q7 returns the bids with the
        // highest price of all, each joined with its window's maximum.
        let prices: Vec<i64> = all_bids()
            .iter()
            .filter_map(|r| match r[2] {
                sluice_engine::record::OwnedValue::Int(p) => Some(p),
                _ => None,
            })
            .collect();
        let max = *prices.iter().max().unwrap();
        let winners = prices.iter().filter(|p| **p == max).count();
        assert_eq!(rows.len(), winners, "parallelism {parallelism}");
        for row in &rows {
            assert_eq!(row[2], sluice_engine::record::OwnedValue::Int(max));
            assert_eq!(
                row.last(),
                Some(&sluice_engine::record::OwnedValue::Int(max))
            );
        }
    }
}

#[test]
fn q5_returns_the_auctions_with_the_most_bids_per_window() {
    use std::collections::BTreeMap;
    let bids = all_bids();
    // A direct computation: counts per (window, auction), then the winners of each window.
    let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for bid in &bids {
        let (auction, ts) = match (&bid[0], &bid[5]) {
            (OwnedValue::Int(a), OwnedValue::Timestamp(t)) => (*a, *t),
            other => panic!("unexpected bid {other:?}"),
        };
        let last = ts - ts.rem_euclid(2_000);
        for start in (0..5).map(|k| last - k * 2_000) {
            *counts.entry((start + 10_000, auction)).or_insert(0) += 1;
        }
    }
    let mut best: BTreeMap<i64, i64> = BTreeMap::new();
    for ((end, _), n) in &counts {
        let b = best.entry(*end).or_insert(0);
        *b = (*b).max(*n);
    }
    let mut expected: Vec<(i64, i64, i64)> = counts
        .iter()
        .filter(|((end, _), n)| best[end] == **n)
        .map(|((end, auction), n)| (*auction, *n, *end))
        .collect();
    expected.sort_unstable();
    for parallelism in [1, 2] {
        let mut spec = nexmark_spec(&config(NexmarkQuery::Q5, parallelism));
        spec.sinks = vec![sluice_engine::spec::SinkSpec::Collect];
        let report = sluice_engine::run_job(spec).unwrap();
        assert_eq!(report.late_records, 0);
        let mut got: Vec<(i64, i64, i64)> = report
            .collected_rows()
            .iter()
            .map(|r| match (&r[0], &r[1], &r[2]) {
                (OwnedValue::Int(a), OwnedValue::Int(n), OwnedValue::Timestamp(e)) => (*a, *n, *e),
                other => panic!("unexpected row {other:?}"),
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected, "parallelism {parallelism}");
    }
}
