//! Tests of the window aggregate (memory state; RocksDB state in `rocks.rs` and the
//! engine's `rocks_operators` tests).
use super::*;
use crate::operator::test_util::{batch, sorted_rows};
use crate::record::OwnedValue;

pub(super) fn schema() -> SchemaRef {
    Schema::of(&[("k", DataType::String), ("ts", DataType::Timestamp)]).unwrap()
}

pub(super) fn rows(items: &[(&'static str, i64)]) -> Vec<Vec<Value<'static>>> {
    items
        .iter()
        .map(|(k, t)| vec![Value::Str(k), Value::Timestamp(*t)])
        .collect()
}

#[test]
fn sliding_counts_per_key() {
    let s = schema();
    let kind = WindowKind::Sliding {
        size_ms: 10,
        slide_ms: 5,
    };
    let mut w = WindowAggregate::new(&s, Some("k"), "ts", kind, 0, &["count(*) AS n"]).unwrap();
    let mut out = Output::new(w.output_schema().clone(), s.clone());
    w.process(&batch(&s, &rows(&[("a", 1), ("a", 6), ("b", 7)])), &mut out)
        .unwrap();
    assert_eq!(w.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
    let (t, i, st) = (OwnedValue::Timestamp, OwnedValue::Int, |x: &str| {
        OwnedValue::Str(x.into())
    });
    let expected = vec![
        vec![st("a"), t(-5), t(5), i(1)],
        vec![st("a"), t(0), t(10), i(2)],
        vec![st("a"), t(5), t(15), i(1)],
        vec![st("b"), t(0), t(10), i(1)],
        vec![st("b"), t(5), t(15), i(1)],
    ];
    let mut expected_sorted = expected;
    expected_sorted.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(sorted_rows(&out.main), expected_sorted);
    assert_eq!(w.open_windows(), 0);
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let s = schema();
    let kind = WindowKind::Sliding {
        size_ms: 10,
        slide_ms: 5,
    };
    let mut w = WindowAggregate::new(&s, None, "ts", kind, 3, &["count(*) AS n"]).unwrap();
    let mut out = Output::new(w.output_schema().clone(), s.clone());
    w.process(
        &batch(&s, &rows(&[("a", i64::MIN), ("a", i64::MAX)])),
        &mut out,
    )
    .unwrap();
    assert_eq!(w.on_watermark(i64::MAX - 1, &mut out).unwrap(), Emit::Done);
    assert_eq!(w.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
    assert!(!out.main.is_empty());
}

#[test]
fn lateness_boundary() {
    // Window [0, 10) with allowed lateness 5: fires at watermark 9, kept until 14.
    let s = schema();
    let kind = WindowKind::Tumbling { size_ms: 10 };
    let mut w = WindowAggregate::new(&s, None, "ts", kind, 5, &["count(*) AS n"]).unwrap();
    let mut out = Output::new(w.output_schema().clone(), s.clone());
    w.process(&batch(&s, &rows(&[("a", 3)])), &mut out).unwrap();
    assert_eq!(w.on_watermark(9, &mut out).unwrap(), Emit::Done);
    assert_eq!(
        out.main.to_rows(),
        [[
            OwnedValue::Timestamp(0),
            OwnedValue::Timestamp(10),
            OwnedValue::Int(1)
        ]]
    );
    out.clear();
    // Late by 4 (< 5): accepted, the window re-fires with the updated count.
    assert_eq!(w.on_watermark(13, &mut out).unwrap(), Emit::Done);
    w.process(&batch(&s, &rows(&[("a", 5)])), &mut out).unwrap();
    assert_eq!(out.main.value(0, 2), Value::Int(2));
    assert!(out.late.is_empty());
    out.clear();
    // Late by exactly the allowed lateness (watermark 14 = end - 1 + 5): side output.
    assert_eq!(w.on_watermark(14, &mut out).unwrap(), Emit::Done);
    w.process(&batch(&s, &rows(&[("a", 9)])), &mut out).unwrap();
    assert!(out.main.is_empty());
    assert_eq!(
        out.late.to_rows(),
        [[OwnedValue::Str("a".into()), OwnedValue::Timestamp(9)]]
    );
    assert_eq!(w.open_windows(), 0);
}

#[test]
fn out_of_order_within_the_watermark_is_counted() {
    let s = schema();
    let kind = WindowKind::Tumbling { size_ms: 10 };
    let mut w = WindowAggregate::new(&s, None, "ts", kind, 0, &["count(*) AS n"]).unwrap();
    let mut out = Output::new(w.output_schema().clone(), s.clone());
    // Watermark 8 (e.g. max 12 with out-of-orderness 3): [0, 10) still open.
    w.process(&batch(&s, &rows(&[("a", 12), ("a", 2)])), &mut out)
        .unwrap();
    assert_eq!(w.on_watermark(8, &mut out).unwrap(), Emit::Done);
    w.process(&batch(&s, &rows(&[("a", 9)])), &mut out).unwrap();
    assert!(out.main.is_empty() && out.late.is_empty());
    assert_eq!(w.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
    let counts: Vec<_> = (0..out.main.len()).map(|r| out.main.value(r, 2)).collect();
    assert_eq!(counts, [Value::Int(2), Value::Int(1)]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// In-order input in random batches: every (key, window) is emitted once, with the
    /// count a direct computation gives.
    #[test]
    fn tumbling_counts_match_a_direct_count(
        mut events in proptest::collection::vec((0i64..3, 0i64..500), 0..200),
        cut in 1usize..17,
    ) {
        events.sort_by_key(|e| e.1);
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let kind = WindowKind::Tumbling { size_ms: 37 };
        let mut w = WindowAggregate::new(&s, Some("k"), "ts", kind, 0, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(w.output_schema().clone(), s.clone());
        for chunk in events.chunks(cut) {
            let rows: Vec<_> = chunk.iter().map(|(k, t)| vec![Value::Int(*k), Value::Timestamp(*t)]).collect();
            w.process(&batch(&s, &rows), &mut out).unwrap();
            assert_eq!(w.on_watermark(chunk.last().map_or(i64::MIN, |e| e.1 - 1), &mut out).unwrap(), Emit::Done);
        }
        assert_eq!(w.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        proptest::prop_assert!(out.late.is_empty());
        let mut expected = std::collections::BTreeMap::new();
        for (k, t) in &events {
            *expected.entry((*k, t - t.rem_euclid(37))).or_insert(0i64) += 1;
        }
        let mut got = std::collections::BTreeMap::new();
        for r in 0..out.main.len() {
            let key = (out.main.column(0).get_i64(r).unwrap(), out.main.column(1).get_i64(r).unwrap());
            let previous = got.insert(key, out.main.column(3).get_i64(r).unwrap());
            proptest::prop_assert!(previous.is_none(), "window {:?} emitted twice", key);
        }
        proptest::prop_assert_eq!(got, expected);
    }

    /// Sliding windows (slide dividing the size or not) built from panes: every
    /// (key, window) is emitted once with its direct count and sum, whatever the batching.
    #[test]
    fn sliding_results_match_a_direct_computation(
        mut events in proptest::collection::vec((0i64..4, 0i64..400, -5i64..50), 0..200),
        cut in 1usize..23,
        shape in 0usize..3,
    ) {
        events.sort_by_key(|e| e.1);
        let (size, slide) = [(30, 10), (25, 10), (12, 12)][shape];
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp), ("v", DataType::Int)]).unwrap();
        let kind = WindowKind::Sliding { size_ms: size, slide_ms: slide };
        let mut w = WindowAggregate::new(&s, Some("k"), "ts", kind, 0, &["count(*) AS n", "sum(v) AS total"]).unwrap();
        let mut out = Output::new(w.output_schema().clone(), s.clone());
        for chunk in events.chunks(cut) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|(k, t, v)| vec![Value::Int(*k), Value::Timestamp(*t), Value::Int(*v)])
                .collect();
            w.process(&batch(&s, &rows), &mut out).unwrap();
            assert_eq!(w.on_watermark(chunk.last().map_or(i64::MIN, |e| e.1 - 1), &mut out).unwrap(), Emit::Done);
        }
        assert_eq!(w.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        proptest::prop_assert!(out.late.is_empty());
        proptest::prop_assert_eq!(w.open_windows(), 0);
        let mut expected = std::collections::BTreeMap::new();
        for (k, t, v) in &events {
            for start in starts(*t, size, slide) {
                let e = expected.entry((*k, start)).or_insert((0i64, 0i64));
                e.0 += 1;
                e.1 += v;
            }
        }
        let mut got = std::collections::BTreeMap::new();
        for r in 0..out.main.len() {
            let col = |c: usize| out.main.column(c).get_i64(r).unwrap();
            proptest::prop_assert_eq!(col(2) - col(1), size);
            let previous = got.insert((col(0), col(1)), (col(3), col(4)));
            proptest::prop_assert!(previous.is_none(), "window emitted twice");
        }
        proptest::prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_window_firing_for_many_keys_emits_bounded_batches() {
    // 2,500 keys in a tumbling window and in two sliding windows made of several panes:
    // each firing comes out in pieces of at most one output batch, every key once.
    let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
    let keys = 2_500i64;
    let input: Vec<_> = (0..keys)
        .map(|k| vec![Value::Int(k), Value::Timestamp(k % 20)])
        .collect();
    for kind in [
        WindowKind::Tumbling { size_ms: 20 },
        WindowKind::Sliding {
            size_ms: 20,
            slide_ms: 10,
        },
    ] {
        let mut w = WindowAggregate::new(&s, Some("k"), "ts", kind, 0, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(w.output_schema().clone(), s.clone());
        w.process(&batch(&s, &input), &mut out).unwrap();
        let (rows, sizes) = crate::operator::test_util::drain(&mut w, i64::MAX, &mut out);
        assert!(
            sizes.iter().all(|n| *n <= OUTPUT_BATCH_RECORDS_MAX),
            "{sizes:?}"
        );
        assert!(sizes.len() > 2, "{kind:?}: {sizes:?}");
        let mut seen = std::collections::BTreeSet::new();
        for row in &rows {
            assert_eq!(row[3], OwnedValue::Int(1), "{kind:?}");
            assert!(seen.insert(format!("{:?}", &row[..2])), "{row:?} twice");
        }
        let windows_per_key = if matches!(kind, WindowKind::Tumbling { .. }) {
            1
        } else {
            2
        };
        assert_eq!(rows.len() as i64, keys * windows_per_key, "{kind:?}");
        assert_eq!(w.open_windows(), 0);
    }
}

#[test]
fn consecutive_late_records_each_refire_with_the_state_up_to_themselves() {
    // Window [0, 10) fires at watermark 9 with one record; three late records of one
    // batch fall into it (lateness 20): each re-fire counts the records up to itself.
    let s = schema();
    let kind = WindowKind::Tumbling { size_ms: 10 };
    let mut w = WindowAggregate::new(&s, Some("k"), "ts", kind, 20, &["count(*) AS n"]).unwrap();
    let mut out = Output::new(w.output_schema().clone(), s.clone());
    w.process(&batch(&s, &rows(&[("a", 1)])), &mut out).unwrap();
    assert_eq!(w.on_watermark(9, &mut out).unwrap(), Emit::Done);
    w.process(&batch(&s, &rows(&[("a", 2), ("a", 5), ("a", 8)])), &mut out)
        .unwrap();
    let counts: Vec<_> = (0..out.main.len()).map(|r| out.main.value(r, 3)).collect();
    assert_eq!(
        counts,
        [Value::Int(1), Value::Int(2), Value::Int(3), Value::Int(4)]
    );
    assert!(out.late.is_empty());
}

#[test]
fn a_late_record_refires_its_sliding_windows_at_once() {
    // Size 10, slide 5, lateness 20: at watermark 14, [0, 10) and [5, 15) have fired; a
    // record at 7 updates both and each emits its new count right away.
    let s = schema();
    let kind = WindowKind::Sliding {
        size_ms: 10,
        slide_ms: 5,
    };
    let mut w = WindowAggregate::new(&s, Some("k"), "ts", kind, 20, &["count(*) AS n"]).unwrap();
    let mut out = Output::new(w.output_schema().clone(), s.clone());
    w.process(&batch(&s, &rows(&[("a", 6)])), &mut out).unwrap();
    assert_eq!(w.on_watermark(14, &mut out).unwrap(), Emit::Done);
    assert_eq!(out.main.len(), 2);
    out.clear();
    w.process(&batch(&s, &rows(&[("a", 7)])), &mut out).unwrap();
    let (t, i, st) = (OwnedValue::Timestamp, OwnedValue::Int, |x: &str| {
        OwnedValue::Str(x.into())
    });
    assert_eq!(
        sorted_rows(&out.main),
        [
            vec![st("a"), t(0), t(10), i(2)],
            vec![st("a"), t(5), t(15), i(2)]
        ]
    );
    assert!(out.late.is_empty());
}
