//! The RocksDB state backend in running jobs: the same answers as in-memory state with a
//! cache far smaller than the key space, exactly-once recovery from incremental checkpoints,
//! and retention that deletes exactly the shared files no retained checkpoint refers to.
#![allow(clippy::disallowed_methods)] // the test runs jobs on helper threads

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_exactly_once, completed_ids};
use sluice_engine::record::OwnedValue;
use sluice_engine::runtime::{run_plan, run_plan_with, JobControl};
use sluice_engine::spec::load_spec;
use sluice_engine::EngineError;
use sluice_storage::blob::unseal;

/// The stateful operators the tests run on both backends, over Nexmark bids.
#[derive(Clone, Copy, Debug)]
enum Ops {
    /// Per bidder, the count, the largest price and the sum of prices (aggregate).
    Aggregate,
    /// Every bid's running total per auction (reduce).
    Rolling,
    /// The same per bidder over sliding windows.
    Sliding,
    /// The same per auction over tumbling windows, late records allowed for a while.
    Tumbling,
    /// The same per bidder over sessions.
    Sessions,
}

const AGGS: &str = r#"aggregate = ["count(*) AS n", "max(price) AS top", "sum(price) AS total"]"#;

/// A bounded job over Nexmark bids running `ops`.
fn bids_job(settings: &str, ops: Ops) -> String {
    let ops = match ops {
        Ops::Rolling => "[[operator]]\nkey_by = \"auction\"\n\n[[operator]]\n\
                         reduce = { column = \"price\", fn = \"sum\" }"
            .to_string(),
        Ops::Aggregate => format!("[[operator]]\nkey_by = \"bidder\"\n\n[[operator]]\n{AGGS}"),
        Ops::Sliding => format!(
            "[[operator]]\nkey_by = \"bidder\"\n\n[[operator]]\nwindow = {{ kind = \"sliding\", \
             size_ms = 4000, slide_ms = 1000, {AGGS} }}"
        ),
        Ops::Tumbling => format!(
            "[[operator]]\nkey_by = \"auction\"\n\n[[operator]]\nwindow = {{ kind = \"tumbling\", \
             size_ms = 1000, allowed_lateness_ms = 3000, {AGGS} }}"
        ),
        Ops::Sessions => format!(
            "[[operator]]\nkey_by = \"bidder\"\n\n[[operator]]\nwindow = {{ kind = \"session\", \
             gap_ms = 200, {AGGS} }}"
        ),
    };
    format!(
        r#"
name = "bids"
parallelism = 2
{settings}

[watermark]
column = "date_time"
out_of_orderness_ms = 500

[[source]]
kind = "nexmark"
table = "bid"
events = 200000

{ops}

[[sink]]
kind = "collect"
"#
    )
}

/// The job's answer, independent of the order records from two source shards meet in: the
/// aggregate's rows, or per auction how many running totals the reduce emitted and the
/// largest (prices are positive: the total).
fn answer(text: &str, ops: Ops) -> Vec<String> {
    let rolling = matches!(ops, Ops::Rolling);
    let report = run_plan(load_spec(text).unwrap()).unwrap();
    let rows = report.collected_rows();
    let mut answer: Vec<String> = if rolling {
        let mut per_key: BTreeMap<String, (usize, i64)> = BTreeMap::new();
        for r in &rows {
            let OwnedValue::Int(total) = r[1] else {
                panic!("a running total that is not an int: {r:?}")
            };
            let e = per_key.entry(r[0].to_string()).or_default();
            *e = (e.0 + 1, e.1.max(total));
        }
        per_key
            .into_iter()
            .map(|(k, (n, total))| format!("{k} {n} {total}"))
            .collect()
    } else {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(OwnedValue::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    answer.sort();
    answer
}

fn rocks_settings(state: &Path, cache_keys: usize) -> String {
    format!(
        "state_backend = \"rocksdb\"\nstate_cache_keys = {cache_keys}\nstate_dir = \"{}\"",
        state.display()
    )
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn rocksdb_state_gives_the_answers_of_memory_state_with_a_small_cache() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for ops in [
        Ops::Aggregate,
        Ops::Rolling,
        Ops::Sliding,
        Ops::Tumbling,
        Ops::Sessions,
    ] {
        let memory = answer(&bids_job("", ops), ops);
        // 64 keys in memory per operator and shard, thousands of keys: most lookups go to
        // RocksDB and the cache is written back and emptied over and over.
        let rocks = answer(&bids_job(&rocks_settings(&state, 64), ops), ops);
        assert!(memory.len() > 1_000, "{ops:?}: {} rows", memory.len());
        assert_eq!(rocks.len(), memory.len(), "{ops:?}");
        let diff: Vec<_> = rocks
            .iter()
            .zip(&memory)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert!(diff.is_empty(), "{ops:?}: the answers differ: {diff:?}");
        assert!(
            is_empty_dir(&state),
            "the shards' RocksDB scratch is removed"
        );
    }
}

#[test]
fn a_bad_state_cache_size_is_refused_by_name() {
    let e = load_spec(&bids_job(
        "state_backend = \"rocksdb\"\nstate_cache_keys = 0",
        Ops::Aggregate,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("state_cache_keys"), "{e}");
    let e = load_spec(&bids_job("state_backend = \"disk\"", Ops::Aggregate)).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("line 4") && m.contains("`disk`") && m.contains("rocksdb"),
        "{m}"
    );
}

/// The shared files each checkpoint's shards refer to (completed ones only, or every one
/// in the store), by checkpoint id.
fn shared_lists(job_dir: &Path, completed_only: bool) -> Vec<(u64, BTreeSet<String>)> {
    let ids: Vec<u64> = if completed_only {
        completed_ids(job_dir)
    } else {
        let mut ids: Vec<u64> = std::fs::read_dir(job_dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    };
    ids.into_iter()
        .map(|id| {
            let chk = job_dir.join(format!("chk-{id:020}"));
            let mut files = BTreeSet::new();
            for entry in std::fs::read_dir(&chk).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".shared") {
                    continue;
                }
                let sealed = std::fs::read(entry.path()).unwrap();
                let list: Vec<String> =
                    postcard::from_bytes(unseal(&name, &sealed).unwrap()).unwrap();
                files.extend(list);
            }
            (id, files)
        })
        .collect()
}

/// Every object under the job's shared directory, as store paths.
fn stored_shared(store: &Path, job: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![store.join(job).join("shared")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(store).unwrap();
                found.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[test]
fn a_job_on_rocksdb_state_resumes_exactly_once_from_incremental_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let events = 60_000;
    let settings = format!("{}\ncheckpoints_retained = 2", rocks_settings(&state, 100));
    let job = common::counting_job("rocks-count", dir.path(), &settings, 50, (events, 40_000));
    let store = dir.path().join("checkpoints");
    let job_dir = store.join("rocks-count");
    let mut shared_seen = false;
    for round in 1..=3 {
        let control = JobControl::new();
        let stopper = control.clone();
        let text = job.clone();
        let running = std::thread::spawn(move || run_plan_with(load_spec(&text)?, &control));
        let want = completed_ids(&job_dir).last().copied().unwrap_or(0) + 3;
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed_ids(&job_dir).last().copied().unwrap_or(0) < want && !running.is_finished()
        {
            assert!(Instant::now() < deadline, "round {round}: no checkpoint");
            std::thread::sleep(Duration::from_millis(5));
        }
        stopper.cancel();
        match running.join().unwrap() {
            Err(EngineError::Cancelled) => {}
            Ok(report) => panic!("round {round}: the job ended before the stop: {report:?}"),
            Err(e) => panic!("round {round}: {e}"),
        }
        // Consecutive checkpoints share RocksDB files: each stores only what is new.
        let lists = shared_lists(&job_dir, true);
        shared_seen |= lists
            .windows(2)
            .any(|w| !w[0].1.is_empty() && w[0].1.intersection(&w[1].1).next().is_some());
    }
    assert!(shared_seen, "no two checkpoints shared a file");
    let report = run_plan_with(load_spec(&job).unwrap(), &JobControl::new()).unwrap();
    assert!(report.checkpoints.restored_from.is_some(), "{report:?}");
    assert_exactly_once(dir.path(), events);
    assert!(
        is_empty_dir(&state),
        "the shards' RocksDB scratch is removed"
    );

    // Retention kept two completed checkpoints and deleted every shared file only older
    // ones used; every file a kept checkpoint needs is there.
    assert!(
        completed_ids(&job_dir).len() <= 2,
        "{:?}",
        completed_ids(&job_dir)
    );
    let lists = shared_lists(&job_dir, false);
    let referenced: BTreeSet<String> = lists.into_iter().flat_map(|(_, f)| f).collect();
    assert!(!referenced.is_empty());
    let stored = stored_shared(&store, "rocks-count");
    let missing: Vec<_> = referenced.difference(&stored).collect();
    assert!(missing.is_empty(), "referenced but gone: {missing:?}");
    let leaked: Vec<_> = stored.difference(&referenced).collect();
    assert!(leaked.is_empty(), "kept but unreferenced: {leaked:?}");
}
