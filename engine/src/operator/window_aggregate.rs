//! Window aggregate: per-key aggregates over tumbling or sliding event-time windows, with
//! allowed lateness and a late side output (see [`crate::operator::window`] for the rules).
//!
//! Output fields: the key (if any), `window_start`, `window_end`, then the aggregates.
//!
//! HOT PATH: per record, one lookup per window it falls into and one accumulator update;
//! state is allocated per new window and per new key, never per record. No locks, no logging.
//!
//! ```
//! use sluice_engine::operator::{Operator, Output, WindowAggregate, WindowKind};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("ts", DataType::Timestamp), ("p", DataType::Int)]).unwrap();
//! let kind = WindowKind::Tumbling { size_ms: 10 };
//! let mut w = WindowAggregate::new(&schema, None, "ts", kind, 0, &["sum(p) AS total"]).unwrap();
//! let mut input = Batch::new(schema.clone());
//! for (ts, p) in [(1, 5), (9, 6), (12, 100)] {
//!     input.push_row(&[Value::Timestamp(ts), Value::Int(p)]).unwrap();
//! }
//! let mut out = Output::new(w.output_schema().clone(), schema);
//! w.process(&input, &mut out).unwrap();
//! w.on_watermark(9, &mut out).unwrap(); // [0, 10) fires
//! assert_eq!(out.main.len(), 1);
//! assert_eq!(out.main.value(0, 2), Value::Int(11));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::EngineError;
use crate::operator::agg::{init_all, parse_aggs, update_all, Acc, AggSpec};
use crate::operator::window::{starts, WindowKind};
use crate::operator::{time_column, Operator, Output};
use crate::record::hash::hash_value;
use crate::record::{Batch, DataType, Field, KeyedMap, Schema, SchemaRef, Value};

#[derive(Debug, Default)]
struct WindowState {
    fired: bool,
    groups: KeyedMap<Vec<Acc>>,
}

/// Keyed aggregation over fixed event-time windows.
#[derive(Debug)]
pub struct WindowAggregate {
    key: Option<usize>,
    time: usize,
    size: i64,
    slide: i64,
    lateness: i64,
    aggs: Vec<AggSpec>,
    windows: BTreeMap<i64, WindowState>,
    watermark: i64,
    schema: SchemaRef,
}

/// Builds the output schema of a windowed aggregation.
pub(crate) fn window_schema(
    input: &SchemaRef,
    key: Option<usize>,
    aggs: &[AggSpec],
) -> Result<SchemaRef, EngineError> {
    let mut fields: Vec<_> = key.iter().map(|k| input.fields()[*k].clone()).collect();
    fields.push(Field::new("window_start", DataType::Timestamp));
    fields.push(Field::new("window_end", DataType::Timestamp));
    fields.extend(aggs.iter().map(|a| a.field().clone()));
    Ok(Arc::new(Schema::new(fields)?))
}

/// Appends one result row: key, window bounds, aggregates.
pub(crate) fn emit_window_row(
    out: &mut Batch,
    key: Option<Value<'_>>,
    start: i64,
    end: i64,
    aggs: &[AggSpec],
    accs: &[Acc],
) {
    let columns = out.columns_mut();
    let mut i = 0;
    if let Some(key) = key {
        columns[0].push(key);
        i = 1;
    }
    columns[i].push(Value::Timestamp(start));
    columns[i + 1].push(Value::Timestamp(end));
    for (j, (spec, acc)) in aggs.iter().zip(accs).enumerate() {
        spec.emit(acc, &mut columns[i + 2 + j]);
    }
    out.commit_row();
}

impl WindowAggregate {
    /// Aggregates `aggs` per `key` over windows of `kind` (tumbling or sliding) on the event
    /// time column `time`, keeping windows `lateness_ms` past their end for late records.
    pub fn new(
        input: &SchemaRef,
        key: Option<&str>,
        time: &str,
        kind: WindowKind,
        lateness_ms: i64,
        aggs: &[impl AsRef<str>],
    ) -> Result<Self, EngineError> {
        let Some((size, slide)) = kind.validate()? else {
            return Err(EngineError::Plan(
                "session windows use SessionWindow".into(),
            ));
        };
        if lateness_ms < 0 {
            return Err(EngineError::Plan(
                "allowed lateness must not be negative".into(),
            ));
        }
        let aggs = parse_aggs(aggs, input)?;
        let key = key.map(|k| input.require(k)).transpose()?;
        let schema = window_schema(input, key, &aggs)?;
        Ok(Self {
            key,
            time: time_column(input, time)?,
            size,
            slide,
            lateness: lateness_ms,
            aggs,
            windows: BTreeMap::new(),
            watermark: i64::MIN,
            schema,
        })
    }

    fn expired(&self, end: i64) -> bool {
        (end - 1).saturating_add(self.lateness) <= self.watermark
    }

    /// Returns how many windows hold state.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }
}

impl Operator for WindowAggregate {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        let times = input.column(self.time);
        for row in 0..input.len() {
            let ts = times.get_i64(row).unwrap_or(i64::MIN);
            let key = self.key.map(|k| input.value(row, k));
            let group = key.unwrap_or(Value::Int(0));
            let hash = hash_value(group);
            let mut accepted = false;
            for start in starts(ts, self.size, self.slide) {
                let end = start.saturating_add(self.size);
                if self.expired(end) {
                    continue;
                }
                accepted = true;
                let window = self.windows.entry(start).or_default();
                let accs = window
                    .groups
                    .entry_hashed(hash, group, || init_all(&self.aggs));
                update_all(&self.aggs, accs, input, row);
                if window.fired {
                    emit_window_row(&mut out.main, key, start, end, &self.aggs, accs);
                }
            }
            if !accepted {
                out.late.push_row_from(input, row);
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), EngineError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        for (start, window) in self.windows.iter_mut() {
            let end = start.saturating_add(self.size);
            if end - 1 > watermark {
                break;
            }
            if !window.fired {
                window.fired = true;
                for (key, accs) in window.groups.iter() {
                    let key = self.key.map(|_| key.as_value());
                    emit_window_row(&mut out.main, key, *start, end, &self.aggs, accs);
                }
            }
        }
        let (size, lateness) = (self.size, self.lateness);
        self.windows
            .retain(|start, _| start.saturating_add(size - 1).saturating_add(lateness) > watermark);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::{batch, sorted_rows};
    use crate::record::OwnedValue;

    fn schema() -> SchemaRef {
        Schema::of(&[("k", DataType::String), ("ts", DataType::Timestamp)]).unwrap()
    }

    fn rows(items: &[(&'static str, i64)]) -> Vec<Vec<Value<'static>>> {
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
        w.on_watermark(i64::MAX, &mut out).unwrap();
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
        w.on_watermark(i64::MAX - 1, &mut out).unwrap();
        w.on_watermark(i64::MAX, &mut out).unwrap();
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
        w.on_watermark(9, &mut out).unwrap();
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
        w.on_watermark(13, &mut out).unwrap();
        w.process(&batch(&s, &rows(&[("a", 5)])), &mut out).unwrap();
        assert_eq!(out.main.value(0, 2), Value::Int(2));
        assert!(out.late.is_empty());
        out.clear();
        // Late by exactly the allowed lateness (watermark 14 = end - 1 + 5): side output.
        w.on_watermark(14, &mut out).unwrap();
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
        w.on_watermark(8, &mut out).unwrap();
        w.process(&batch(&s, &rows(&[("a", 9)])), &mut out).unwrap();
        assert!(out.main.is_empty() && out.late.is_empty());
        w.on_watermark(i64::MAX, &mut out).unwrap();
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
                w.on_watermark(chunk.last().map_or(i64::MIN, |e| e.1 - 1), &mut out).unwrap();
            }
            w.on_watermark(i64::MAX, &mut out).unwrap();
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
    }
}
