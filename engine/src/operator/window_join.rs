//! Window join: joins left and right records with equal keys that fall into the same
//! tumbling event-time window; results are emitted when the window fires (over several
//! `on_watermark` calls when they are more than one output batch). Records for a window that
//! has already fired are counted as late.
//!
//! HOT PATH: records are appended to per-window chunked column buffers
//! ([`crate::state::rows::ChunkedRows`], which a checkpoint shares instead of copying); the
//! join itself runs once per window. No per-record allocation, no locks, no logging.
//!
//! ```
//! use sluice_engine::operator::{Emit, TwoInputOperator, WindowJoin};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let bids = Schema::of(&[("auction", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
//! let auctions = Schema::of(&[("id", DataType::Int), ("at", DataType::Timestamp)]).unwrap();
//! let mut join = WindowJoin::new(&bids, &auctions, ("auction", "id"), ("ts", "at"), 10).unwrap();
//! let mut l = Batch::new(bids.clone());
//! l.push_row(&[Value::Int(1), Value::Timestamp(3)]).unwrap();
//! let mut r = Batch::new(auctions.clone());
//! r.push_row(&[Value::Int(1), Value::Timestamp(8)]).unwrap();
//! let mut out = Batch::new(join.output_schema().clone());
//! join.process_left(&l, &mut out).unwrap();
//! join.process_right(&r, &mut out).unwrap();
//! assert_eq!(join.on_watermark(9, &mut out).unwrap(), Emit::Done);
//! assert_eq!(out.len(), 1);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::operator::window::last_start;
use crate::operator::{
    join_schema, push_joined, time_column, Emit, Frozen, TwoInputOperator, OUTPUT_BATCH_RECORDS_MAX,
};
use crate::record::{Batch, Column, DataType, SchemaRef};
use crate::state::codec::{corrupt, decode, expect_same, FrozenFormat, Snapshot, StateFormat};
use crate::state::rocks::RocksSnapshot;
use crate::state::rows::{ChunkedRows, FrozenRows, RowChunks};
use crate::state::{KeyedState, RocksEnv};

mod rocks;

use rocks::{RocksJoin, RocksJoinHeader};

/// A window join's checkpoint: its configuration (checked on restore), the watermark, the
/// late count and the rows of every open window, in chunks of columns. The rows `R` are
/// [`RowChunks`] when read back and [`FrozenRows`] when frozen at a barrier (shared with the
/// live operator, see [`ChunkedRows::freeze`]); both serialise alike.
#[derive(Serialize, Deserialize)]
struct WindowJoinSnapshot<R> {
    size: i64,
    keys: (usize, usize),
    times: (usize, usize),
    inputs: (Vec<DataType>, Vec<DataType>),
    watermark: i64,
    late: u64,
    windows: Vec<(i64, R, R)>,
}

impl StateFormat for WindowJoinSnapshot<RowChunks> {
    const VERSION: u8 = 2;

    fn state_bytes(&self) -> u64 {
        let chunks = |c: &[Vec<Column>]| c.iter().flatten().map(Column::state_bytes).sum::<u64>();
        self.windows
            .iter()
            .map(|(_, l, r)| chunks(l) + chunks(r))
            .sum()
    }
}

impl FrozenFormat for WindowJoinSnapshot<FrozenRows> {
    const VERSION: u8 = <WindowJoinSnapshot<RowChunks> as StateFormat>::VERSION;

    fn frozen_bytes(&self) -> u64 {
        self.windows
            .iter()
            .map(|(_, l, r)| l.state_bytes() + r.state_bytes())
            .sum()
    }
}

fn field_types(schema: &SchemaRef) -> Vec<DataType> {
    schema.fields().iter().map(|f| f.data_type).collect()
}

#[derive(Debug)]
struct JoinWindow {
    left: ChunkedRows,
    right: ChunkedRows,
}

/// A window being emitted: its rows, the right rows by key, and the next match to emit.
#[derive(Debug)]
struct Firing {
    window: JoinWindow,
    right_by_key: KeyedState<Vec<u32>>,
    /// The left row being joined, and how many of its matches are emitted.
    left: usize,
    matched: usize,
}

/// An equi-join of two streams within tumbling windows.
#[derive(Debug)]
pub struct WindowJoin {
    keys: (usize, usize),
    times: (usize, usize),
    size: i64,
    inputs: (SchemaRef, SchemaRef),
    /// The rows of every open window in memory (`state_backend = "memory"`)...
    windows: BTreeMap<i64, JoinWindow>,
    /// ... or in RocksDB (`windows` is then empty).
    rocks: Option<Box<RocksJoin>>,
    /// The window whose results are being emitted, when a watermark made more due than one
    /// output batch holds.
    firing: Option<Firing>,
    watermark: i64,
    late: u64,
    schema: SchemaRef,
}

impl WindowJoin {
    /// Joins `left` and `right` on `keys = (left_key, right_key)` within tumbling windows of
    /// `size_ms` on the event-time columns `times = (left_time, right_time)`.
    pub fn new(
        left: &SchemaRef,
        right: &SchemaRef,
        keys: (&str, &str),
        times: (&str, &str),
        size_ms: i64,
    ) -> Result<Self, EngineError> {
        Self::with_state(left, right, keys, times, size_ms, None)
    }

    /// Like [`Self::new`], keeping the rows in RocksDB when `rocks` says where.
    pub fn with_state(
        left: &SchemaRef,
        right: &SchemaRef,
        keys: (&str, &str),
        times: (&str, &str),
        size_ms: i64,
        rocks: Option<RocksEnv>,
    ) -> Result<Self, EngineError> {
        if size_ms <= 0 {
            return Err(EngineError::Plan(
                "window join size must be positive".into(),
            ));
        }
        let (lk, rk) = (left.require(keys.0)?, right.require(keys.1)?);
        let (lt, rt) = (left.fields()[lk].data_type, right.fields()[rk].data_type);
        if lt != rt {
            return Err(EngineError::Plan(format!(
                "join keys `{}` ({lt}) and `{}` ({rt}) have different types",
                keys.0, keys.1
            )));
        }
        let inputs = (left.clone(), right.clone());
        let rocks = rocks
            .map(|env| RocksJoin::create(env, inputs.clone(), (lk, rk)).map(Box::new))
            .transpose()?;
        Ok(Self {
            rocks,
            keys: (lk, rk),
            times: (time_column(left, times.0)?, time_column(right, times.1)?),
            size: size_ms,
            inputs,
            windows: BTreeMap::new(),
            firing: None,
            watermark: i64::MIN,
            late: 0,
            schema: join_schema(left, right)?,
        })
    }

    fn add(&mut self, input: &Batch, is_left: bool) -> Result<(), EngineError> {
        let time = if is_left { self.times.0 } else { self.times.1 };
        let times = input.column(time);
        for row in 0..input.len() {
            let ts = times.get_i64(row).unwrap_or(i64::MIN);
            let start = last_start(ts, self.size);
            if start.saturating_add(self.size - 1) <= self.watermark {
                self.late += 1;
                continue;
            }
            if let Some(rocks) = &mut self.rocks {
                rocks.add(start, input, row, is_left)?;
                continue;
            }
            let inputs = &self.inputs;
            let w = self.windows.entry(start).or_insert_with(|| JoinWindow {
                left: ChunkedRows::new(inputs.0.clone()),
                right: ChunkedRows::new(inputs.1.clone()),
            });
            let side = if is_left { &mut w.left } else { &mut w.right };
            side.push_row_from(input, row);
        }
        Ok(())
    }

    /// Takes the earliest window the watermark has passed, with its right rows indexed.
    fn next_due(&mut self) -> Result<Option<Firing>, EngineError> {
        let Some(entry) = self.windows.first_entry() else {
            return Ok(None);
        };
        if entry.key().saturating_add(self.size - 1) > self.watermark {
            return Ok(None);
        }
        let window = entry.remove();
        let key_type = self.inputs.1.fields()[self.keys.1].data_type;
        let mut right_by_key = KeyedState::new(key_type, 1);
        for r in 0..window.right.len() {
            right_by_key
                .entry(window.right.value(r, self.keys.1), |_| Vec::new())
                .map_err(|e| e.in_operator("window_join"))?[0]
                .push(r as u32);
        }
        Ok(Some(Firing {
            window,
            right_by_key,
            left: 0,
            matched: 0,
        }))
    }
}

impl TwoInputOperator for WindowJoin {
    fn name(&self) -> &'static str {
        "window_join"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process_left(&mut self, input: &Batch, _out: &mut Batch) -> Result<(), EngineError> {
        self.add(input, true)
    }

    fn process_right(&mut self, input: &Batch, _out: &mut Batch) -> Result<(), EngineError> {
        self.add(input, false)
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<Emit, EngineError> {
        self.watermark = self.watermark.max(watermark);
        if let Some(rocks) = &mut self.rocks {
            loop {
                let due = rocks.firing().or_else(|| {
                    let first = rocks.windows.first().copied()?;
                    (first.saturating_add(self.size - 1) <= self.watermark).then_some(first)
                });
                let Some(start) = due else {
                    return Ok(Emit::Done);
                };
                if !rocks.fire(start, out)? {
                    return Ok(Emit::More);
                }
            }
        }
        loop {
            let mut f = match self.firing.take() {
                Some(f) => f,
                None => match self.next_due()? {
                    Some(f) => f,
                    None => return Ok(Emit::Done),
                },
            };
            let (left, right) = (&f.window.left, &f.window.right);
            while f.left < left.len() {
                if let Some([matches]) = f.right_by_key.get(left.value(f.left, self.keys.0)) {
                    while let Some(r) = matches.get(f.matched) {
                        if out.len() >= OUTPUT_BATCH_RECORDS_MAX {
                            self.firing = Some(f);
                            return Ok(Emit::More);
                        }
                        let (lb, lr) = left.locate(f.left);
                        let (rb, rr) = right.locate(*r as usize);
                        push_joined(out, lb, lr, rb, rr);
                        f.matched += 1;
                    }
                }
                f.left += 1;
                f.matched = 0;
            }
        }
    }

    fn late_records(&self) -> u64 {
        self.late
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        let rocks_firing = self.rocks.as_ref().is_some_and(|r| r.firing().is_some());
        if self.firing.is_some() || rocks_firing {
            return Err(corrupt(
                self.name(),
                "a snapshot was asked for while a firing is paused (Emit::More)",
            ));
        }
        let inputs = (field_types(&self.inputs.0), field_types(&self.inputs.1));
        if let Some(rocks) = &mut self.rocks {
            let header = RocksJoinHeader {
                size: self.size,
                keys: self.keys,
                times: self.times,
                inputs,
                watermark: self.watermark,
                late: self.late,
                seq: 0,
                windows: Vec::new(),
            };
            return Ok(Some(Box::new(rocks.freeze("window_join", header)?)));
        }
        let windows = self
            .windows
            .iter()
            .map(|(start, w)| (*start, w.left.freeze(), w.right.freeze()))
            .collect();
        let state = WindowJoinSnapshot {
            size: self.size,
            keys: self.keys,
            times: self.times,
            inputs,
            watermark: self.watermark,
            late: self.late,
            windows,
        };
        Ok(Some(Snapshot::frozen(self.name(), state)))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        let inputs = (field_types(&self.inputs.0), field_types(&self.inputs.1));
        if let Some(rocks) = &mut self.rocks {
            let s: RocksSnapshot<RocksJoinHeader> = decode(name, state)?;
            let h = &s.header;
            expect_same(name, "window size_ms", &h.size, &self.size)?;
            expect_same(name, "key columns", &h.keys, &self.keys)?;
            expect_same(name, "time columns", &h.times, &self.times)?;
            expect_same(name, "input field types", &h.inputs, &inputs)?;
            rocks.restore(&s.files, h).map_err(|m| corrupt(name, m))?;
            self.watermark = h.watermark;
            self.late = h.late;
            return Ok(());
        }
        let s: WindowJoinSnapshot<RowChunks> = decode(name, state)?;
        expect_same(name, "window size_ms", &s.size, &self.size)?;
        expect_same(name, "key columns", &s.keys, &self.keys)?;
        expect_same(name, "time columns", &s.times, &self.times)?;
        expect_same(name, "input field types", &s.inputs, &inputs)?;
        let mut windows = BTreeMap::new();
        for (start, left, right) in s.windows {
            let what = |side: &str| format!("{side} rows of window {start}");
            let window = JoinWindow {
                left: ChunkedRows::restore(name, &what("left"), &self.inputs.0, left)?,
                right: ChunkedRows::restore(name, &what("right"), &self.inputs.1, right)?,
            };
            if windows.insert(start, window).is_some() {
                return Err(corrupt(
                    name,
                    format!("window {start} is in the checkpoint twice"),
                ));
            }
        }
        self.windows = windows;
        self.watermark = s.watermark;
        self.late = s.late;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::{DataType, Schema, Value};

    #[test]
    fn joins_only_within_the_same_window_and_counts_late() {
        let l = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut j = WindowJoin::new(&l, &l, ("k", "k"), ("ts", "ts"), 10).unwrap();
        assert_eq!(j.output_schema().fields()[2].name, "k_right");
        let row = |k, t| vec![Value::Int(k), Value::Timestamp(t)];
        let mut out = Batch::new(j.output_schema().clone());
        j.process_left(
            &batch(&l, &[row(1, 1), row(1, 2), row(2, 3), row(1, 11)]),
            &mut out,
        )
        .unwrap();
        j.process_right(&batch(&l, &[row(1, 9), row(2, 15), row(3, 4)]), &mut out)
            .unwrap();
        assert_eq!(j.on_watermark(9, &mut out).unwrap(), Emit::Done);
        // Window [0,10): left k=1 (ts 1, 2) x right k=1 (ts 9) = 2 rows; k=2 has no partner.
        assert_eq!(out.len(), 2);
        j.process_right(&batch(&l, &[row(1, 5)]), &mut out).unwrap();
        assert_eq!(j.late_records(), 1);
        assert_eq!(j.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        assert_eq!(out.len(), 2, "k=1 at 11 and k=2 at 15 do not match");
    }

    /// A snapshot is the state at its barrier even though the frozen rows are shared with
    /// the live join, which goes on appending to the same window before the snapshot is
    /// written.
    #[test]
    fn a_frozen_window_is_unchanged_by_rows_that_arrive_after_the_barrier() {
        use crate::state::rows::CHUNK_ROWS;
        let l = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let make = || WindowJoin::new(&l, &l, ("k", "k"), ("ts", "ts"), 10).unwrap();
        let rows = |n: usize, k: i64| -> Vec<_> {
            (0..n)
                .map(|i| {
                    vec![
                        Value::Int(k + (i % 3) as i64),
                        Value::Timestamp((i % 10) as i64),
                    ]
                })
                .collect()
        };
        let before = batch(&l, &rows(2 * CHUNK_ROWS + 5, 0));
        let right = batch(&l, &rows(4, 0));
        let mut out = Batch::new(make().output_schema().clone());
        let mut live = make();
        live.process_left(&before, &mut out).unwrap();
        live.process_right(&right, &mut out).unwrap();
        let frozen = live.snapshot().unwrap().unwrap();
        // After the barrier: more rows in the same window, on both sides.
        live.process_left(&batch(&l, &rows(CHUNK_ROWS, 0)), &mut out)
            .unwrap();
        live.process_right(&right, &mut out).unwrap();
        let mut bytes = Vec::new();
        frozen.write_to(&mut bytes).unwrap();
        let fire = |j: &mut WindowJoin| {
            let mut out = Batch::new(j.output_schema().clone());
            let mut rows = Vec::new();
            loop {
                out.clear();
                let emit = j.on_watermark(i64::MAX, &mut out).unwrap();
                rows.extend(out.to_rows());
                if emit == Emit::Done {
                    break rows;
                }
            }
        };
        let mut restored = make();
        restored.restore(&bytes).unwrap();
        let mut reference = make();
        reference.process_left(&before, &mut out).unwrap();
        reference.process_right(&right, &mut out).unwrap();
        let (got, want) = (fire(&mut restored), fire(&mut reference));
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn a_window_with_many_matches_is_emitted_in_bounded_batches() {
        // 50 left x 50 right rows of one key: 2,500 results, at most one batch per call.
        let l = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut j = WindowJoin::new(&l, &l, ("k", "k"), ("ts", "ts"), 10).unwrap();
        let rows: Vec<_> = (0..50)
            .map(|t| vec![Value::Int(1), Value::Timestamp(t % 10)])
            .collect();
        let mut out = Batch::new(j.output_schema().clone());
        j.process_left(&batch(&l, &rows), &mut out).unwrap();
        j.process_right(&batch(&l, &rows), &mut out).unwrap();
        let mut sizes = Vec::new();
        loop {
            out.clear();
            let emit = j.on_watermark(i64::MAX, &mut out).unwrap();
            sizes.push(out.len());
            if emit == Emit::Done {
                break;
            }
        }
        assert_eq!(
            sizes,
            [OUTPUT_BATCH_RECORDS_MAX, OUTPUT_BATCH_RECORDS_MAX, 452]
        );
        assert!(j.windows.is_empty() && j.firing.is_none());
    }
}
