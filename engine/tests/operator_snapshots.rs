//! Checkpoint snapshot and restore of every stateful operator.
//!
//! A case is a script of steps (input batches with keys, disorder and late records, and
//! watermarks that fire windows, ending with the end of time), generated from one `u64` seed
//! as in `accounting.rs` (a failure prints its seed). The script is cut in two: an operator
//! runs the first part, is snapshotted, and its frozen state is written out and restored
//! into a freshly built operator of the same configuration; then both run the second part.
//! Their outputs, step by step — main output, late output and the late count of joins —
//! must be the same, and the same as those of an operator that ran the whole script without
//! a snapshot (so taking one changes nothing).
//!
//! Checks that could pass vacuously are guarded: over the seeds of each test, some cuts must
//! fall where the restored state matters (an operator that skipped the restore would emit
//! something else), and the second parts must hold late records.
//!
//! Restore must refuse, with an [`EngineError::Checkpoint`] naming the operator, truncated
//! bytes, garbage, and the state of a differently configured operator; a state with single
//! bytes changed is refused or restored, never a panic, and the operator keeps working.

mod scripts;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use scripts::{cut_point, run_one, run_two, schema, script, Event, Rng, Step, Trace};
use sluice_engine::operator::reduce::ReduceFn;
use sluice_engine::operator::{
    Aggregate, IntervalJoin, Operator, Reduce, SessionWindow, TwoInputOperator, WindowAggregate,
    WindowJoin, WindowKind,
};
use sluice_engine::record::{DataType, Schema};
use sluice_engine::EngineError;

/// How a snapshot test of one seed went, for the checks against vacuous passes.
#[derive(Debug, Default)]
struct Outcome {
    /// The restored state mattered: a fresh operator given only the second part differs.
    state_mattered: bool,
    /// Late records (late rows, or a rising late count) in the second part.
    late_after_cut: usize,
}

fn late_in(trace: &Trace, late_before: u64) -> usize {
    let rows: usize = trace.iter().map(|(_, late, _)| late.len()).sum();
    let count = trace.last().map_or(0, |t| t.2).saturating_sub(late_before);
    rows + count as usize
}

fn write(frozen: &dyn sluice_engine::state::FrozenState) -> Vec<u8> {
    let mut bytes = Vec::new();
    frozen.write_to(&mut bytes).unwrap();
    bytes
}

/// Runs the snapshot test of one script cut at `cut` on operators built by `make`.
fn check_one<O: Operator>(seed: u64, make: impl Fn() -> O, steps: &[Step], cut: usize) -> Outcome {
    let (first, second) = steps.split_at(cut);
    let mut original = make();
    run_one(&mut original, first);
    let frozen = original
        .snapshot()
        .unwrap()
        .expect("a stateful operator has state");
    // The frozen state is written only after the original went on, as the checkpoint thread
    // writes it while the shard goes on: what the original does after the snapshot (writes
    // to state the snapshot shares) must not reach it.
    let after_original = run_one(&mut original, second);
    let bytes = write(frozen.as_ref());
    let mut restored = make();
    restored.restore(&bytes).unwrap();
    let after_restored = run_one(&mut restored, second);
    assert_eq!(
        after_original, after_restored,
        "seed {seed}, cut {cut}: the restored operator behaves differently"
    );
    let mut plain = make();
    run_one(&mut plain, first);
    assert_eq!(
        run_one(&mut plain, second),
        after_original,
        "seed {seed}, cut {cut}: taking a snapshot changed the operator"
    );
    Outcome {
        state_mattered: run_one(&mut make(), second) != after_original,
        late_after_cut: late_in(&after_original, 0),
    }
}

fn check_two<O: TwoInputOperator>(
    seed: u64,
    make: impl Fn() -> O,
    steps: &[Step],
    cut: usize,
) -> Outcome {
    let (first, second) = steps.split_at(cut);
    let mut original = make();
    run_two(&mut original, first);
    let late_before = original.late_records();
    let frozen = original
        .snapshot()
        .unwrap()
        .expect("a stateful operator has state");
    // Written after the original went on, as in `check_one`.
    let after_original = run_two(&mut original, second);
    let bytes = write(frozen.as_ref());
    let mut restored = make();
    restored.restore(&bytes).unwrap();
    assert_eq!(
        restored.late_records(),
        late_before,
        "seed {seed}: late count"
    );
    let after_restored = run_two(&mut restored, second);
    assert_eq!(
        after_original, after_restored,
        "seed {seed}, cut {cut}: the restored operator behaves differently"
    );
    let mut plain = make();
    run_two(&mut plain, first);
    assert_eq!(
        run_two(&mut plain, second),
        after_original,
        "seed {seed}, cut {cut}: taking a snapshot changed the operator"
    );
    Outcome {
        state_mattered: run_two(&mut make(), second) != after_original,
        late_after_cut: late_in(&after_original, late_before),
    }
}

/// Seeds of the deterministic tests.
const SEEDS: std::ops::Range<u64> = 0..40;

/// Checks the outcomes of the seeds of one test against vacuous passes.
fn assert_not_vacuous(test: &str, outcomes: &[Outcome], expect_late: bool) {
    let mattered = outcomes.iter().filter(|o| o.state_mattered).count();
    assert!(
        mattered * 2 >= outcomes.len(),
        "{test}: the restored state mattered in only {mattered} of {} cases",
        outcomes.len()
    );
    if expect_late {
        let late: usize = outcomes.iter().map(|o| o.late_after_cut).sum();
        assert!(late > 0, "{test}: no late record after any cut");
    }
}

const AGGS: [&str; 5] = [
    "count(*) AS n",
    "sum(w) AS sw",
    "last(name) AS last_name",
    "min(x) AS low",
    "avg(w) AS mean",
];

fn window(kind: WindowKind, lateness: i64) -> impl Fn() -> WindowAggregate {
    move || WindowAggregate::new(&schema(), Some("k"), "ts", kind, lateness, &AGGS).unwrap()
}

fn session(gap: i64, lateness: i64) -> impl Fn() -> SessionWindow {
    move || SessionWindow::new(&schema(), Some("name"), "ts", gap, lateness, &AGGS).unwrap()
}

fn window_join(size: i64) -> impl Fn() -> WindowJoin {
    move || WindowJoin::new(&schema(), &schema(), ("k", "k"), ("ts", "ts"), size).unwrap()
}

fn interval_join(lower: i64, upper: i64) -> impl Fn() -> IntervalJoin {
    move || {
        IntervalJoin::new(
            &schema(),
            &schema(),
            ("name", "name"),
            ("ts", "ts"),
            lower,
            upper,
        )
        .unwrap()
    }
}

fn one_input_outcomes<O: Operator, F: Fn() -> O>(make: impl Fn(u64) -> F) -> Vec<Outcome> {
    SEEDS
        .map(|seed| {
            let steps = script(seed, false);
            check_one(seed, make(seed), &steps, cut_point(seed, steps.len()))
        })
        .collect()
}

#[test]
fn tumbling_and_sliding_windows_resume_from_a_snapshot() {
    let outcomes = one_input_outcomes(|seed| {
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
        window(kind, (seed % 4) as i64 * 7)
    });
    assert_not_vacuous("window", &outcomes, true);
}

#[test]
fn session_windows_resume_from_a_snapshot() {
    let outcomes =
        one_input_outcomes(|seed| session(1 + (seed % 9) as i64, (seed % 3) as i64 * 10));
    assert_not_vacuous("window (session)", &outcomes, true);
}

#[test]
fn aggregates_resume_from_a_snapshot() {
    let outcomes = one_input_outcomes(|seed| {
        move || {
            let key = ["k", "name"][(seed % 2) as usize];
            Aggregate::new(&schema(), Some(key), &AGGS).unwrap()
        }
    });
    assert_not_vacuous("aggregate", &outcomes, false);
    // A snapshot after the final emission keeps it final: more input and another end of
    // time emit nothing, from the original and from the restored operator alike.
    let steps = script(7, false);
    let mut both = steps.clone();
    both.extend(steps.iter().cloned());
    check_one(
        7,
        || Aggregate::new(&schema(), None, &AGGS).unwrap(),
        &both,
        steps.len(),
    );
}

#[test]
fn reduces_resume_from_a_snapshot() {
    let outcomes = one_input_outcomes(|seed| {
        move || match seed % 3 {
            0 => Reduce::new(&schema(), Some("k"), "x", ReduceFn::Max).unwrap(),
            1 => Reduce::new(&schema(), Some("name"), "w", ReduceFn::Sum).unwrap(),
            _ => Reduce::new(&schema(), Some("k"), "name", ReduceFn::Concat("|".into())).unwrap(),
        }
    });
    assert_not_vacuous("reduce", &outcomes, false);
}

#[test]
fn window_joins_resume_from_a_snapshot() {
    let outcomes: Vec<_> = SEEDS
        .map(|seed| {
            let steps = script(seed, true);
            let make = window_join(1 + (seed % 20) as i64);
            check_two(seed, make, &steps, cut_point(seed, steps.len()))
        })
        .collect();
    assert_not_vacuous("window_join", &outcomes, true);
}

#[test]
fn interval_joins_resume_from_a_snapshot() {
    let outcomes: Vec<_> = SEEDS
        .map(|seed| {
            let steps = script(seed, true);
            let lower = -((seed % 7) as i64);
            let make = interval_join(lower, lower + (seed % 11) as i64);
            check_two(seed, make, &steps, cut_point(seed, steps.len()))
        })
        .collect();
    assert_not_vacuous("interval_join", &outcomes, true);
}

#[test]
fn an_interval_join_side_past_its_first_compaction_resumes() {
    // More rows than a side keeps before it first compacts, cut after the compaction.
    let mut steps = Vec::new();
    for round in 0..6i64 {
        let events: Vec<_> = (0..500)
            .map(|i| Event {
                key: i % 5,
                ts: round * 500 + i,
                id: round * 500 + i,
                w: i,
            })
            .collect();
        steps.push(Step::Left(events.clone()));
        steps.push(Step::Right(events));
        steps.push(Step::Watermark(round * 500 + 450));
    }
    steps.push(Step::Watermark(i64::MAX));
    let outcome = check_two(0, interval_join(-30, 30), &steps, 9);
    assert!(outcome.state_mattered);
}

fn config() -> Config {
    Config {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x5EED_C4EC_0001),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fixed_windows_resume_at_any_cut(seed in any::<u64>(), shape in 0usize..3, lateness in 0i64..30, cut in any::<u64>()) {
        let (size, slide) = [(10, 10), (20, 10), (30, 7)][shape];
        let kind = if size == slide {
            WindowKind::Tumbling { size_ms: size }
        } else {
            WindowKind::Sliding { size_ms: size, slide_ms: slide }
        };
        let steps = script(seed, false);
        check_one(seed, window(kind, lateness), &steps, 1 + (cut % (steps.len() as u64 - 1)) as usize);
    }

    #[test]
    fn sessions_resume_at_any_cut(seed in any::<u64>(), gap in 1i64..16, lateness in 0i64..30, cut in any::<u64>()) {
        let steps = script(seed, false);
        check_one(seed, session(gap, lateness), &steps, 1 + (cut % (steps.len() as u64 - 1)) as usize);
    }
}

/// The message of a restore that must fail with a checkpoint error naming `operator`.
fn refused(operator: &str, result: Result<(), EngineError>) -> String {
    match result {
        Err(EngineError::Checkpoint(m)) => {
            assert!(m.starts_with(&format!("{operator}: ")), "{m}");
            m
        }
        other => panic!("{operator}: expected a checkpoint error, got {other:?}"),
    }
}

/// Bytes of the operator after the first half of a script.
fn state_of_one<O: Operator>(op: &mut O, seed: u64) -> Vec<u8> {
    let steps = script(seed, false);
    run_one(op, &steps[..steps.len() / 2]);
    write(op.snapshot().unwrap().unwrap().as_ref())
}

fn state_of_two<O: TwoInputOperator>(op: &mut O, seed: u64) -> Vec<u8> {
    let steps = script(seed, true);
    run_two(op, &steps[..steps.len() / 2]);
    write(op.snapshot().unwrap().unwrap().as_ref())
}

/// Restores every truncation of `bytes`, garbage, and `bytes` with each byte changed (a
/// sample of positions for long states); all must be refused naming the operator or — for
/// changed bytes that still make a valid state — restored into an operator that then runs the
/// rest of a script without panicking.
fn check_damage<O>(
    name: &str,
    make: impl Fn() -> O,
    bytes: &[u8],
    restore: impl Fn(&mut O, &[u8]) -> Result<(), EngineError>,
    rest: impl Fn(&mut O),
) {
    assert!(bytes.len() > 16, "{name}: a state of {} bytes", bytes.len());
    restore(&mut make(), bytes).unwrap();
    let step = (bytes.len() / 400).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        refused(name, restore(&mut make(), &bytes[..cut]));
    }
    let mut rng = Rng(bytes.len() as u64);
    let garbage: Vec<u8> = (0..bytes.len()).map(|_| rng.next() as u8).collect();
    refused(name, restore(&mut make(), &garbage));
    let mut accepted = 0;
    for at in (0..bytes.len()).step_by(step) {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut changed = bytes.to_vec();
            changed[at] ^= flip;
            let mut op = make();
            match restore(&mut op, &changed) {
                Ok(()) => {
                    accepted += 1;
                    rest(&mut op);
                }
                Err(e) => {
                    refused(name, Err(e));
                }
            }
        }
    }
    // Most single-byte changes of a value (a count, a timestamp) make another valid state.
    assert!(accepted > 0, "{name}: no changed state was accepted");
}

fn damage_one<O: Operator>(make: impl Fn() -> O) {
    let mut op = make();
    let name = op.name();
    let bytes = state_of_one(&mut op, 3);
    let steps = script(3, false);
    let rest = &steps[steps.len() / 2..];
    check_damage(
        name,
        &make,
        &bytes,
        |op, b| op.restore(b),
        |op| {
            run_one(op, rest);
        },
    );
}

fn damage_two<O: TwoInputOperator>(make: impl Fn() -> O) {
    let mut op = make();
    let name = op.name();
    let bytes = state_of_two(&mut op, 3);
    let steps = script(3, true);
    let rest = &steps[steps.len() / 2..];
    check_damage(
        name,
        &make,
        &bytes,
        |op, b| op.restore(b),
        |op| {
            run_two(op, rest);
        },
    );
}

#[test]
fn damaged_states_are_refused_naming_the_operator_or_restored_without_panics() {
    damage_one(window(
        WindowKind::Sliding {
            size_ms: 20,
            slide_ms: 10,
        },
        15,
    ));
    damage_one(session(8, 10));
    damage_one(|| Aggregate::new(&schema(), Some("name"), &AGGS).unwrap());
    damage_one(|| Reduce::new(&schema(), Some("k"), "name", ReduceFn::Concat("|".into())).unwrap());
    damage_two(window_join(10));
    damage_two(interval_join(-5, 5));
}

#[test]
fn a_state_of_a_differently_configured_operator_is_refused() {
    let s = schema();
    let sliding = WindowKind::Sliding {
        size_ms: 20,
        slide_ms: 10,
    };
    let bytes = state_of_one(&mut window(sliding, 5)(), 1);
    let m = refused(
        "window",
        WindowAggregate::new(&s, Some("k"), "ts", sliding, 5, &AGGS[..2])
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("aggregates"), "{m}");
    let m = refused(
        "window",
        WindowAggregate::new(&s, Some("name"), "ts", sliding, 5, &AGGS)
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("key type") && m.contains("String"), "{m}");
    let tumbling = WindowKind::Tumbling { size_ms: 20 };
    let m = refused("window", window(tumbling, 5)().restore(&bytes));
    assert!(m.contains("slide_ms"), "{m}");
    let m = refused("window", window(sliding, 6)().restore(&bytes));
    assert!(m.contains("lateness"), "{m}");
    // Another operator's state.
    let m = refused("window (session)", session(8, 5)().restore(&bytes));
    assert!(m.contains("`window`"), "{m}");

    let bytes = state_of_one(&mut session(8, 5)(), 1);
    let m = refused("window (session)", session(9, 5)().restore(&bytes));
    assert!(m.contains("gap_ms"), "{m}");
    let m = refused(
        "window (session)",
        SessionWindow::new(&s, Some("k"), "ts", 8, 5, &AGGS)
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("key type"), "{m}");

    let bytes = state_of_one(&mut Aggregate::new(&s, Some("k"), &AGGS).unwrap(), 1);
    let m = refused(
        "aggregate",
        Aggregate::new(&s, Some("k"), &["count(*) AS n", "sum(x) AS sw"])
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("aggregates"), "{m}");

    let bytes = state_of_one(
        &mut Reduce::new(&s, Some("k"), "w", ReduceFn::Sum).unwrap(),
        1,
    );
    let m = refused(
        "reduce",
        Reduce::new(&s, Some("k"), "w", ReduceFn::Max)
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("function"), "{m}");
    let m = refused(
        "reduce",
        Reduce::new(&s, Some("k"), "x", ReduceFn::Sum)
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("value type"), "{m}");

    let bytes = state_of_two(&mut window_join(10)(), 1);
    let m = refused("window_join", window_join(11)().restore(&bytes));
    assert!(m.contains("size_ms"), "{m}");
    let narrow = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
    let m = refused(
        "window_join",
        WindowJoin::new(&narrow, &s, ("k", "k"), ("ts", "ts"), 10)
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("field types"), "{m}");

    let bytes = state_of_two(&mut interval_join(-5, 5)(), 1);
    let m = refused("interval_join", interval_join(-5, 6)().restore(&bytes));
    assert!(m.contains("bounds"), "{m}");
    let m = refused(
        "interval_join",
        IntervalJoin::new(&s, &s, ("k", "k"), ("ts", "ts"), -5, 5)
            .unwrap()
            .restore(&bytes),
    );
    assert!(m.contains("left key column"), "{m}");
    // An empty state is a truncated one for an operator with state.
    let m = refused("interval_join", interval_join(-5, 5)().restore(&[]));
    assert!(m.contains("empty"), "{m}");
}

#[test]
fn a_frozen_state_reports_its_size() {
    let mut small = window(WindowKind::Tumbling { size_ms: 10 }, 100)();
    let mut large = window(WindowKind::Tumbling { size_ms: 10 }, 100)();
    let steps = script(5, false);
    run_one(&mut small, &steps[..4]);
    run_one(&mut large, &steps[..steps.len() - 1]);
    let (small, large) = (
        small.snapshot().unwrap().unwrap(),
        large.snapshot().unwrap().unwrap(),
    );
    assert!(small.size_bytes() > 0);
    assert!(
        large.size_bytes() > small.size_bytes(),
        "{} <= {}",
        large.size_bytes(),
        small.size_bytes()
    );
    // Memory is at least the written size of the values in it, give or take the framing.
    let written = write(large.as_ref()).len() as u64;
    assert!(
        large.size_bytes() * 2 >= written,
        "{} bytes for {written} written",
        large.size_bytes()
    );
}
