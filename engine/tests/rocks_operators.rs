//! Window aggregates, session windows, window joins and interval joins on RocksDB state
//! behave as on memory state.
//!
//! Over scripted input (keys, disorder, late records and watermarks, see `scripts`), with
//! a cache of two keys (for most seeds) so that nearly every lookup goes to RocksDB and the
//! cache is written back and emptied at almost every batch, every step's output — main and late — is the
//! memory operator's (as sets of rows: RocksDB emits a window's keys in key order), and so
//! is a join's late count. A
//! RocksDB operator snapshotted mid-script, whose checkpoint is written only after it went
//! on (as the checkpoint thread writes it), is restored into a fresh operator in another
//! directory, which then does what the original did.

mod scripts;

use std::path::Path;

use scripts::{cut_point, run_one, run_two, schema, script, to_batch, Event, Step, Trace};
use sluice_engine::operator::{
    Emit, IntervalJoin, Operator, Output, SessionWindow, TwoInputOperator, WindowAggregate,
    WindowJoin, WindowKind,
};
use sluice_engine::record::{Batch, OwnedValue};
use sluice_engine::state::{Frozen, RocksEnv};
use sluice_storage::blob::SharedBlobStore;

const AGGS: [&str; 4] = [
    "count(*) AS n",
    "sum(w) AS sw",
    "last(name) AS last_name",
    "avg(w) AS mean",
];

/// Each step's rows in a fixed order.
fn sorted(mut trace: Trace) -> Trace {
    for (main, late, _) in &mut trace {
        main.sort_by_key(|r| format!("{r:?}"));
        late.sort_by_key(|r| format!("{r:?}"));
    }
    trace
}

/// An operator of one input or of two, as the test runs it.
trait Run {
    const TWO_INPUTS: bool;
    fn run(&mut self, steps: &[Step]) -> Trace;
    fn freeze(&mut self) -> Frozen;
    fn restore_from(&mut self, bytes: &[u8]) -> Result<(), String>;
}

impl Run for Box<dyn Operator> {
    const TWO_INPUTS: bool = false;
    fn run(&mut self, steps: &[Step]) -> Trace {
        run_one(&mut **self, steps)
    }
    fn freeze(&mut self) -> Frozen {
        self.snapshot()
            .unwrap()
            .expect("a stateful operator has state")
    }
    fn restore_from(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.restore(bytes).map_err(|e| e.to_string())
    }
}

impl Run for Box<dyn TwoInputOperator> {
    const TWO_INPUTS: bool = true;
    fn run(&mut self, steps: &[Step]) -> Trace {
        run_two(&mut **self, steps)
    }
    fn freeze(&mut self) -> Frozen {
        self.snapshot()
            .unwrap()
            .expect("a stateful operator has state")
    }
    fn restore_from(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.restore(bytes).map_err(|e| e.to_string())
    }
}

/// Runs the script of `seed` on a memory operator and on RocksDB ones built by `make`.
fn check<R: Run>(
    seed: u64,
    dir: &Path,
    store: &SharedBlobStore,
    make: &dyn Fn(Option<RocksEnv>) -> R,
) -> usize {
    let env = |name: &str| RocksEnv {
        dir: dir.join(format!("{seed}-{name}")),
        // Mostly two keys or rows in memory (nearly every lookup goes to RocksDB); for some
        // seeds many, so that what a checkpoint froze stays in memory while the checkpoint
        // thread writes it.
        cache_keys: if seed % 4 == 3 { 1_000 } else { 2 },
        key_groups: 128,
        storage: Some((store.clone(), format!("job/shared/{seed}"))),
    };
    let steps = script(seed, R::TWO_INPUTS);
    let cut = cut_point(seed, steps.len());
    let (first, second) = steps.split_at(cut);
    let memory = sorted(make(None).run(&steps));

    let mut rocks = make(Some(env("a")));
    let mut got = sorted(rocks.run(first));
    let frozen = rocks.freeze();
    let after = sorted(rocks.run(second));
    got.extend(after.iter().cloned());
    assert_eq!(
        got, memory,
        "seed {seed}: RocksDB state answers differently"
    );
    let mut bytes = Vec::new();
    frozen.write_to(&mut bytes).unwrap();
    drop(rocks);
    // The state is RocksDB's: an operator on memory state refuses it, saying so.
    let refused = make(None).restore_from(&bytes).unwrap_err();
    assert!(
        refused.contains("state_backend = \"rocksdb\""),
        "seed {seed}: {refused}"
    );

    let mut restored = make(Some(env("b")));
    restored.restore_from(&bytes).unwrap();
    assert_eq!(
        sorted(restored.run(second)),
        after,
        "seed {seed}, cut {cut}: the restored operator behaves differently"
    );
    memory.iter().map(|(main, _, _)| main.len()).sum()
}

/// Checks that most seeds of a test emitted something: a test whose operators emit nothing
/// would compare nothing.
fn assert_not_vacuous(test: &str, rows: &[usize]) {
    let emitted = rows.iter().filter(|r| **r > 0).count();
    assert!(
        emitted * 4 >= rows.len() * 3,
        "{test}: only {emitted} of {} seeds emitted rows",
        rows.len()
    );
}

fn store(dir: &Path) -> SharedBlobStore {
    sluice_storage::blob::open(&format!("file://{}", dir.join("store").display())).unwrap()
}

#[test]
fn window_aggregates_on_rocksdb_answer_as_in_memory_and_resume_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rows: Vec<usize> = (0..24u64)
        .map(|seed| {
            let kind = match seed % 3 {
                0 => WindowKind::Tumbling { size_ms: 10 },
                1 => WindowKind::Sliding {
                    size_ms: 20,
                    slide_ms: 10,
                },
                _ => WindowKind::Sliding {
                    size_ms: 25,
                    slide_ms: 10,
                },
            };
            let lateness = (seed % 4) as i64 * 7;
            let key = (seed % 6 != 5).then_some("k");
            let make = move |rocks| -> Box<dyn Operator> {
                let s = schema();
                let w = WindowAggregate::with_state(&s, key, "ts", kind, lateness, &AGGS, rocks);
                Box::new(w.unwrap())
            };
            check(seed, dir.path(), &store, &make)
        })
        .collect();
    assert_not_vacuous("window", &rows);
}

#[test]
fn session_windows_on_rocksdb_answer_as_in_memory_and_resume_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rows: Vec<usize> = (0..24u64)
        .map(|seed| {
            let gap = 1 + (seed % 9) as i64;
            let lateness = (seed % 3) as i64 * 10;
            let key = (seed % 6 != 5).then_some("name");
            let make = move |rocks| -> Box<dyn Operator> {
                let s = schema();
                let w = SessionWindow::with_state(&s, key, "ts", gap, lateness, &AGGS, rocks);
                Box::new(w.unwrap())
            };
            check(seed, dir.path(), &store, &make)
        })
        .collect();
    assert_not_vacuous("window (session)", &rows);
}

#[test]
fn window_joins_on_rocksdb_answer_as_in_memory_and_resume_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rows: Vec<usize> = (0..24u64)
        .map(|seed| {
            let size = [5, 10, 40][(seed % 3) as usize];
            let key = ["k", "name"][(seed % 2) as usize];
            let make = move |rocks| -> Box<dyn TwoInputOperator> {
                let s = schema();
                let j = WindowJoin::with_state(&s, &s, (key, key), ("ts", "ts"), size, rocks);
                Box::new(j.unwrap())
            };
            check(seed, dir.path(), &store, &make)
        })
        .collect();
    assert_not_vacuous("window_join", &rows);
}

#[test]
fn interval_joins_on_rocksdb_answer_as_in_memory_and_resume_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rows: Vec<usize> = (0..24u64)
        .map(|seed| {
            let bounds = [(0, 5), (-3, 3), (-20, -2)][(seed % 3) as usize];
            let key = ["k", "name"][(seed % 2) as usize];
            let make = move |rocks| -> Box<dyn TwoInputOperator> {
                let s = schema();
                let j = IntervalJoin::with_state(&s, &s, (key, key), ("ts", "ts"), bounds, rocks);
                Box::new(j.unwrap())
            };
            check(seed, dir.path(), &store, &make)
        })
        .collect();
    assert_not_vacuous("interval_join", &rows);
}

/// The rows of `events` fired at the end of time, and how many `on_watermark` calls that
/// took.
fn fire_one(op: &mut dyn Operator, events: &[Event]) -> (Vec<Vec<OwnedValue>>, usize) {
    let mut out = Output::new(op.output_schema().clone(), schema());
    op.process(&to_batch(events), &mut out).unwrap();
    let (mut rows, mut calls) = (out.main.to_rows(), 0);
    out.clear();
    loop {
        calls += 1;
        let emit = op.on_watermark(i64::MAX, &mut out).unwrap();
        rows.extend(out.main.to_rows());
        out.clear();
        if emit == Emit::Done {
            break;
        }
    }
    rows.sort_by_key(|r| format!("{r:?}"));
    (rows, calls)
}

/// As [`fire_one`] for a join, `left` and `right` its inputs.
fn fire_two(
    op: &mut dyn TwoInputOperator,
    left: &[Event],
    right: &[Event],
) -> (Vec<Vec<OwnedValue>>, usize) {
    let mut out = Batch::new(op.output_schema().clone());
    op.process_left(&to_batch(left), &mut out).unwrap();
    op.process_right(&to_batch(right), &mut out).unwrap();
    let (mut rows, mut calls) = (out.to_rows(), 0);
    out.clear();
    loop {
        calls += 1;
        let emit = op.on_watermark(i64::MAX, &mut out).unwrap();
        rows.extend(out.to_rows());
        out.clear();
        if emit == Emit::Done {
            break;
        }
    }
    rows.sort_by_key(|r| format!("{r:?}"));
    (rows, calls)
}

#[test]
fn results_larger_than_an_output_batch_fire_over_several_calls_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let env = |name: &str| RocksEnv {
        dir: dir.path().join(name),
        cache_keys: 100,
        key_groups: 128,
        storage: Some((store.clone(), format!("job/shared/{name}"))),
    };
    let s = schema();
    // 3,000 keys, each in the same tumbling window, in two sliding panes and in a session.
    let keys: Vec<Event> = (0..3_000)
        .map(|i| Event {
            key: i,
            ts: i % 7,
            id: i,
            w: i * 3,
        })
        .collect();
    let windows = [
        WindowKind::Tumbling { size_ms: 10 },
        WindowKind::Sliding {
            size_ms: 8,
            slide_ms: 4,
        },
    ];
    for (n, kind) in windows.into_iter().enumerate() {
        let make = |rocks| WindowAggregate::with_state(&s, Some("k"), "ts", kind, 0, &AGGS, rocks);
        let (want, _) = fire_one(&mut make(None).unwrap(), &keys);
        let (got, calls) = fire_one(&mut make(Some(env(&format!("w{n}")))).unwrap(), &keys);
        assert!(want.len() >= 3_000, "{kind:?}: {} rows", want.len());
        assert_eq!(got, want, "{kind:?}");
        assert!(calls > 2, "{kind:?}: fired in {calls} calls");
    }
    let make = |rocks| SessionWindow::with_state(&s, Some("k"), "ts", 5, 0, &AGGS, rocks);
    let (want, _) = fire_one(&mut make(None).unwrap(), &keys);
    let (got, calls) = fire_one(&mut make(Some(env("s"))).unwrap(), &keys);
    assert_eq!((got.len(), &got), (3_000, &want));
    assert!(calls > 2, "sessions fired in {calls} calls");

    // One key with 40 rows on each side: 1,600 matches.
    let side = |w| -> Vec<Event> {
        (0..40)
            .map(|i| Event {
                key: 7,
                ts: i % 9,
                id: i,
                w,
            })
            .collect()
    };
    let (left, right) = (side(1), side(2));
    let make = |rocks| WindowJoin::with_state(&s, &s, ("k", "k"), ("ts", "ts"), 10, rocks);
    let (want, _) = fire_two(&mut make(None).unwrap(), &left, &right);
    let (got, calls) = fire_two(&mut make(Some(env("j"))).unwrap(), &left, &right);
    assert_eq!((got.len(), &got), (1_600, &want));
    assert!(calls > 1, "the join fired in {calls} calls");
}
