//! Session windows: per key, records closer than `gap_ms` to each other form one session
//! `[first_ts, last_ts + gap_ms)`; sessions that a record bridges are merged. Firing,
//! lateness and the late side output follow [`crate::operator::window`].
//!
//! Output fields: the key (if any), `window_start`, `window_end`, then the aggregates.
//!
//! HOT PATH: per record one keyed lookup and a scan of that key's open sessions (few); no
//! per-record allocation once a key's session list exists. No locks, no logging.
//!
//! ```
//! use sluice_engine::operator::{Operator, Output, SessionWindow};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("ts", DataType::Timestamp)]).unwrap();
//! let mut s = SessionWindow::new(&schema, None, "ts", 5, 0, &["count(*) AS n"]).unwrap();
//! let mut input = Batch::new(schema.clone());
//! for ts in [1, 3, 20] {
//!     input.push_row(&[Value::Timestamp(ts)]).unwrap();
//! }
//! let mut out = Output::new(s.output_schema().clone(), schema);
//! s.process(&input, &mut out).unwrap();
//! s.on_watermark(i64::MAX, &mut out).unwrap();
//! assert_eq!(out.main.len(), 2); // [1, 8) with 2 records, [20, 25) with 1
//! ```

use crate::error::EngineError;
use crate::operator::agg::{init_all, parse_aggs, update_all, Acc, AggSpec};
use crate::operator::window_aggregate::{emit_window_row, window_schema};
use crate::operator::{time_column, Operator, Output};
use crate::record::{Batch, KeyedMap, SchemaRef, Value};

#[derive(Debug)]
struct Session {
    start: i64,
    end: i64,
    fired: bool,
    accs: Vec<Acc>,
}

/// Keyed aggregation over session windows.
#[derive(Debug)]
pub struct SessionWindow {
    key: Option<usize>,
    time: usize,
    gap: i64,
    lateness: i64,
    aggs: Vec<AggSpec>,
    sessions: KeyedMap<Vec<Session>>,
    watermark: i64,
    schema: SchemaRef,
}

impl SessionWindow {
    /// Aggregates `aggs` per `key` over sessions with inactivity gap `gap_ms`.
    pub fn new(
        input: &SchemaRef,
        key: Option<&str>,
        time: &str,
        gap_ms: i64,
        lateness_ms: i64,
        aggs: &[impl AsRef<str>],
    ) -> Result<Self, EngineError> {
        if gap_ms <= 0 || lateness_ms < 0 {
            return Err(EngineError::Plan(
                "session gap must be positive and lateness not negative".into(),
            ));
        }
        let aggs = parse_aggs(aggs, input)?;
        let key = key.map(|k| input.require(k)).transpose()?;
        let schema = window_schema(input, key, &aggs)?;
        Ok(Self {
            key,
            time: time_column(input, time)?,
            gap: gap_ms,
            lateness: lateness_ms,
            aggs,
            sessions: KeyedMap::default(),
            watermark: i64::MIN,
            schema,
        })
    }
}

impl Operator for SessionWindow {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        let times = input.column(self.time);
        for row in 0..input.len() {
            let ts = times.get_i64(row).unwrap_or(i64::MIN);
            let end = ts.saturating_add(self.gap);
            if (end - 1).saturating_add(self.lateness) <= self.watermark {
                out.late.push_row_from(input, row);
                continue;
            }
            let key = self.key.map(|k| input.value(row, k));
            let list = self
                .sessions
                .entry(key.unwrap_or(Value::Int(0)), Vec::new)
                .map_err(|e| e.in_operator("window (session)"))?;
            // Sessions are kept sorted by start and never overlap.
            let first = list.iter().position(|s| s.end > ts).unwrap_or(list.len());
            let mut last = first;
            while last < list.len() && list[last].start < end {
                last += 1;
            }
            let target = if first == last {
                let accs = init_all(&self.aggs);
                list.insert(
                    first,
                    Session {
                        start: ts,
                        end,
                        fired: false,
                        accs,
                    },
                );
                first
            } else {
                // Merge sessions first+1..last into `first`, later ones in time order.
                for merged in list.drain(first + 1..last).collect::<Vec<_>>() {
                    let s = &mut list[first];
                    for (spec, (acc, later)) in
                        self.aggs.iter().zip(s.accs.iter_mut().zip(&merged.accs))
                    {
                        spec.merge(acc, later);
                    }
                    s.end = s.end.max(merged.end);
                    s.fired |= merged.fired;
                }
                let s = &mut list[first];
                s.start = s.start.min(ts);
                s.end = s.end.max(end);
                first
            };
            let s = &mut list[target];
            update_all(&self.aggs, &mut s.accs, input, row);
            if s.end - 1 <= self.watermark {
                s.fired = true;
                emit_window_row(&mut out.main, key, s.start, s.end, &self.aggs, &s.accs);
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), EngineError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        let lateness = self.lateness;
        let has_key = self.key.is_some();
        for (key, list) in self.sessions.iter_mut() {
            for s in list
                .iter_mut()
                .filter(|s| !s.fired && s.end - 1 <= watermark)
            {
                s.fired = true;
                let key = has_key.then(|| key.as_value());
                emit_window_row(&mut out.main, key, s.start, s.end, &self.aggs, &s.accs);
            }
        }
        self.sessions.retain(|_, list| {
            list.retain(|s| (s.end - 1).saturating_add(lateness) > watermark);
            !list.is_empty()
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::{DataType, OwnedValue, Schema};

    #[test]
    fn a_bridging_record_merges_sessions() {
        let schema = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut s = SessionWindow::new(
            &schema,
            Some("k"),
            "ts",
            10,
            0,
            &["count(*) AS n", "min(ts) AS lo"],
        )
        .unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        let rows = |v: &[(i64, i64)]| -> Vec<Vec<Value<'static>>> {
            v.iter()
                .map(|(k, t)| vec![Value::Int(*k), Value::Timestamp(*t)])
                .collect()
        };
        s.process(&batch(&schema, &rows(&[(1, 0), (1, 30), (2, 5)])), &mut out)
            .unwrap();
        s.process(&batch(&schema, &rows(&[(1, 15)])), &mut out)
            .unwrap(); // [15,25) touches neither
        s.process(&batch(&schema, &rows(&[(1, 22)])), &mut out)
            .unwrap(); // bridges [15,25) and [30,40)
        s.on_watermark(i64::MAX, &mut out).unwrap();
        let mut got = out.main.to_rows();
        got.sort_by_key(|r| format!("{r:?}"));
        let (i, t) = (OwnedValue::Int, OwnedValue::Timestamp);
        assert_eq!(
            got,
            [
                vec![i(1), t(0), t(10), i(1), t(0)],
                vec![i(1), t(15), t(40), i(3), t(15)],
                vec![i(2), t(5), t(15), i(1), t(5)],
            ]
        );
    }

    #[test]
    fn late_sessions_go_to_the_side_output() {
        let schema = Schema::of(&[("ts", DataType::Timestamp)]).unwrap();
        let mut s = SessionWindow::new(&schema, None, "ts", 10, 0, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        s.on_watermark(100, &mut out).unwrap();
        s.process(&batch(&schema, &[vec![Value::Timestamp(91)]]), &mut out)
            .unwrap();
        assert_eq!(out.late.len(), 1);
        s.process(&batch(&schema, &[vec![Value::Timestamp(95)]]), &mut out)
            .unwrap();
        assert_eq!(out.late.len(), 1);
        assert!(out.main.is_empty());
    }
}
