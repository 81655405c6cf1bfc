//! Interval join: joins a left record at `lt` with every right record of the same key at
//! `rt` with `lt + lower_ms <= rt <= lt + upper_ms`. Results are emitted as soon as both
//! sides are present; state is dropped once the watermark rules out further matches. Records
//! at or behind the watermark are counted as late.
//!
//! HOT PATH: buffered rows live in column buffers, compacted when they have doubled since the
//! last compaction (amortized O(1) per record). No locks, no logging.
//!
//! ```
//! use sluice_engine::operator::{IntervalJoin, TwoInputOperator};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
//! let mut join = IntervalJoin::new(&s, &s, ("k", "k"), ("ts", "ts"), 0, 5).unwrap();
//! let mut l = Batch::new(s.clone());
//! l.push_row(&[Value::Int(1), Value::Timestamp(10)]).unwrap();
//! let mut r = Batch::new(s.clone());
//! r.push_row(&[Value::Int(1), Value::Timestamp(14)]).unwrap();
//! r.push_row(&[Value::Int(1), Value::Timestamp(16)]).unwrap();
//! let mut out = Batch::new(join.output_schema().clone());
//! join.process_left(&l, &mut out).unwrap();
//! join.process_right(&r, &mut out).unwrap();
//! assert_eq!(out.len(), 1);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::operator::{
    join_schema, output_limit, push_joined, time_column, Emit, Frozen, TwoInputOperator,
    OUTPUT_RECORDS_PER_CALL_MAX,
};
use crate::record::Value;
use crate::record::{Batch, Column, DataType, SchemaRef};
use crate::state::codec::{corrupt, decode, expect_same, FrozenFormat, Snapshot, StateFormat};
use crate::state::rocks::RocksSnapshot;
use crate::state::rows::{ChunkedRows, FrozenRows, RowChunks};
use crate::state::{KeyedState, RocksEnv};

mod rocks;

use rocks::{RocksIntervalHeader, RocksRows};

/// An interval join's checkpoint: its configuration (checked on restore), the watermark, the
/// late count and each side's buffered rows. The per-key row indexes are not kept: restore
/// derives them from the rows again. The rows `R` are [`RowChunks`] when read back and
/// [`FrozenRows`] when frozen at a barrier (shared with the live sides, see
/// [`ChunkedRows::freeze`]); both serialise alike.
#[derive(Serialize, Deserialize)]
struct IntervalJoinSnapshot<R> {
    bounds: (i64, i64),
    left: SideSnapshot<R>,
    right: SideSnapshot<R>,
    watermark: i64,
    late: u64,
}

/// One side: its configuration, rows in chunks of columns, and when it compacts next.
#[derive(Serialize, Deserialize)]
struct SideSnapshot<R> {
    key: usize,
    time: usize,
    types: Vec<DataType>,
    rows: R,
    compact_at: u64,
}

impl FrozenFormat for IntervalJoinSnapshot<FrozenRows> {
    const VERSION: u8 = <IntervalJoinSnapshot<RowChunks> as StateFormat>::VERSION;

    fn frozen_bytes(&self) -> u64 {
        self.left.rows.state_bytes() + self.right.rows.state_bytes()
    }
}

impl StateFormat for IntervalJoinSnapshot<RowChunks> {
    const VERSION: u8 = 2;

    fn state_bytes(&self) -> u64 {
        let side = |s: &SideSnapshot<RowChunks>| {
            s.rows
                .iter()
                .flatten()
                .map(Column::state_bytes)
                .sum::<u64>()
        };
        side(&self.left) + side(&self.right)
    }
}

/// Rows a side keeps before it first compacts.
const SIDE_ROWS_COMPACT_MIN: usize = 1024;

#[derive(Debug)]
struct Side {
    key: usize,
    time: usize,
    rows: ChunkedRows,
    index: KeyedState<Vec<u32>>,
    compact_at: usize,
}

impl Side {
    fn new(schema: &SchemaRef, key: usize, time: usize) -> Self {
        Self {
            key,
            time,
            rows: ChunkedRows::new(schema.clone()),
            index: KeyedState::new(schema.fields()[key].data_type, 1),
            compact_at: SIDE_ROWS_COMPACT_MIN,
        }
    }

    fn snapshot(&self) -> SideSnapshot<FrozenRows> {
        SideSnapshot {
            key: self.key,
            time: self.time,
            types: self.types(),
            rows: self.rows.freeze(),
            compact_at: self.compact_at as u64,
        }
    }

    /// The side's key column, time column and field types.
    fn config(&self) -> (usize, usize, Vec<DataType>) {
        (self.key, self.time, self.types())
    }

    fn types(&self) -> Vec<DataType> {
        let fields = self.rows.schema().fields();
        fields.iter().map(|f| f.data_type).collect()
    }

    /// Returns this side with the checkpointed rows `s` of side `side`, indexed again.
    fn restored(&self, side: &str, s: SideSnapshot<RowChunks>) -> Result<Self, EngineError> {
        let name = "interval_join";
        expect_same(name, &format!("{side} key column"), &s.key, &self.key)?;
        expect_same(name, &format!("{side} time column"), &s.time, &self.time)?;
        expect_same(
            name,
            &format!("{side} field types"),
            &s.types,
            &self.types(),
        )?;
        let schema = self.rows.schema().clone();
        let rows = ChunkedRows::restore(name, &format!("{side} rows"), &schema, s.rows)?;
        let mut index = KeyedState::new(self.index.key_type(), 1);
        for r in 0..rows.len() {
            index
                .entry(rows.value(r, self.key), |_| Vec::new())
                .map_err(|e| corrupt(name, format!("{side} rows: {e}")))?[0]
                .push(r as u32);
        }
        Ok(Self {
            key: self.key,
            time: self.time,
            rows,
            index,
            compact_at: usize::try_from(s.compact_at)
                .unwrap_or(usize::MAX)
                .max(SIDE_ROWS_COMPACT_MIN),
        })
    }

    /// An empty side of the same configuration.
    fn emptied(&self) -> Self {
        Self::new(self.rows.schema(), self.key, self.time)
    }

    /// Calls `emit(rows, row)` for every row of the side whose key is `key` and whose event
    /// time is in `lo..=hi`.
    fn probe(
        &self,
        key: Value<'_>,
        lo: i64,
        hi: i64,
        mut emit: impl FnMut(&Batch, usize) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        if let Some([matches]) = self.index.get(key) {
            for r in matches.iter().map(|r| *r as usize) {
                let ts = self.ts(r);
                if lo <= ts && ts <= hi {
                    let (chunk, at) = self.rows.locate(r);
                    emit(chunk, at)?;
                }
            }
        }
        Ok(())
    }

    fn ts(&self, row: usize) -> i64 {
        self.rows.get_i64(row, self.time).unwrap_or(i64::MIN)
    }

    fn insert(&mut self, input: &Batch, row: usize) -> Result<(), EngineError> {
        let at = self.rows.len() as u32;
        self.index
            .entry(input.value(row, self.key), |_| Vec::new())
            .map_err(|e| e.in_operator("interval_join"))?[0]
            .push(at);
        self.rows.push_row_from(input, row);
        Ok(())
    }

    /// Keeps rows for which `keep(ts)` holds, if the side has doubled since last time.
    fn compact(&mut self, force: bool, keep: impl Fn(i64) -> bool) -> Result<(), EngineError> {
        if !force && self.rows.len() < self.compact_at {
            return Ok(());
        }
        let mut rows = ChunkedRows::new(self.rows.schema().clone());
        let mut index = KeyedState::new(self.index.key_type(), 1);
        for r in 0..self.rows.len() {
            if keep(self.ts(r)) {
                index
                    .entry(self.rows.value(r, self.key), |_| Vec::new())
                    .map_err(|e| e.in_operator("interval_join"))?[0]
                    .push(rows.len() as u32);
                let (chunk, at) = self.rows.locate(r);
                rows.push_row_from(chunk, at);
            }
        }
        self.rows = rows;
        self.index = index;
        self.compact_at = (self.rows.len() * 2).max(SIDE_ROWS_COMPACT_MIN);
        Ok(())
    }
}

/// A keyed join of two streams on a relative time interval.
#[derive(Debug)]
pub struct IntervalJoin {
    left: Side,
    right: Side,
    lower: i64,
    upper: i64,
    watermark: i64,
    late: u64,
    schema: SchemaRef,
    /// With `state_backend = "rocksdb"`, the rows beyond those the sides hold in memory.
    rocks: Option<Box<RocksRows>>,
}

impl IntervalJoin {
    /// Joins on `keys` where `left.time + lower_ms <= right.time <= left.time + upper_ms`.
    pub fn new(
        left: &SchemaRef,
        right: &SchemaRef,
        keys: (&str, &str),
        times: (&str, &str),
        lower_ms: i64,
        upper_ms: i64,
    ) -> Result<Self, EngineError> {
        Self::with_state(left, right, keys, times, (lower_ms, upper_ms), None)
    }

    /// Like [`Self::new`] with bounds `(lower_ms, upper_ms)`, keeping rows in RocksDB when
    /// `rocks` says where.
    pub fn with_state(
        left: &SchemaRef,
        right: &SchemaRef,
        keys: (&str, &str),
        times: (&str, &str),
        (lower_ms, upper_ms): (i64, i64),
        rocks: Option<RocksEnv>,
    ) -> Result<Self, EngineError> {
        if lower_ms > upper_ms {
            return Err(EngineError::Plan(format!(
                "interval join bounds are empty: lower {lower_ms} > upper {upper_ms}"
            )));
        }
        Ok(Self {
            left: Side::new(left, left.require(keys.0)?, time_column(left, times.0)?),
            right: Side::new(right, right.require(keys.1)?, time_column(right, times.1)?),
            lower: lower_ms,
            upper: upper_ms,
            watermark: i64::MIN,
            late: 0,
            schema: join_schema(left, right)?,
            rocks: rocks
                .map(|env| RocksRows::create(env, (left, right)).map(Box::new))
                .transpose()?,
        })
    }

    /// Whether a left row at `lt` may still match a future right row, and a right row at
    /// `rt` a future left row: only while `lt + upper`, and `rt - lower`, exceed the
    /// watermark.
    fn keeps(&self) -> (impl Fn(i64) -> bool, impl Fn(i64) -> bool) {
        let (lower, upper, watermark) = (self.lower, self.upper, self.watermark);
        (
            move |lt: i64| lt.saturating_add(upper) > watermark,
            move |rt: i64| rt.saturating_sub(lower) > watermark,
        )
    }

    /// Joins every row of `input` (the left side's when `is_left`) that is not late with
    /// the other side's rows in its interval, then keeps it.
    fn process(
        &mut self,
        input: &Batch,
        out: &mut Batch,
        is_left: bool,
    ) -> Result<(), EngineError> {
        if let Some(rocks) = &mut self.rocks {
            rocks.absorb_frozen()?;
        }
        let Self {
            left,
            right,
            lower,
            upper,
            watermark,
            late,
            rocks,
            ..
        } = self;
        let (this, other) = if is_left {
            (&mut *left, &*right)
        } else {
            (&mut *right, &*left)
        };
        let times = input.column(this.time);
        for row in 0..input.len() {
            let t = times.get_i64(row).unwrap_or(i64::MIN);
            if t <= *watermark {
                *late += 1;
                continue;
            }
            let (lo, hi) = if is_left {
                (t.saturating_add(*lower), t.saturating_add(*upper))
            } else {
                (t.saturating_sub(*upper), t.saturating_sub(*lower))
            };
            let key = input.value(row, this.key);
            let mut emit = |rows: &Batch, at: usize| {
                if out.len() >= OUTPUT_RECORDS_PER_CALL_MAX {
                    return Err(output_limit("interval_join"));
                }
                if is_left {
                    push_joined(out, input, row, rows, at);
                } else {
                    push_joined(out, rows, at, input, row);
                }
                Ok(())
            };
            other.probe(key, lo, hi, &mut emit)?;
            if let Some(rocks) = rocks.as_deref_mut() {
                if let Some((frozen_left, frozen_right)) = &rocks.frozen {
                    let frozen = if is_left { frozen_right } else { frozen_left };
                    frozen.probe(key, lo, hi, &mut emit)?;
                }
                rocks.probe(!is_left, (other.key, other.time), key, (lo, hi), &mut emit)?;
            }
            this.insert(input, row)?;
        }
        let full = rocks
            .as_ref()
            .is_some_and(|r| left.rows.len() + right.rows.len() >= r.rows_in_memory_max());
        if full {
            let (keep_left, keep_right) = self.keeps();
            if let Some(rocks) = &mut self.rocks {
                rocks.write((&self.left, &self.right), (&keep_left, &keep_right))?;
            }
            self.left = self.left.emptied();
            self.right = self.right.emptied();
        }
        Ok(())
    }
}

impl TwoInputOperator for IntervalJoin {
    fn name(&self) -> &'static str {
        "interval_join"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process_left(&mut self, input: &Batch, out: &mut Batch) -> Result<(), EngineError> {
        self.process(input, out, true)
    }

    fn process_right(&mut self, input: &Batch, out: &mut Batch) -> Result<(), EngineError> {
        self.process(input, out, false)
    }

    fn on_watermark(&mut self, watermark: i64, _out: &mut Batch) -> Result<Emit, EngineError> {
        if watermark <= self.watermark {
            return Ok(Emit::Done);
        }
        self.watermark = watermark;
        let (lower, upper) = (self.lower, self.upper);
        let end = watermark == i64::MAX;
        // A left row can still match a future right row (rt > watermark) only if lt + upper
        // exceeds the watermark; symmetrically for right rows with rt - lower.
        self.left
            .compact(end, |lt| lt.saturating_add(upper) > watermark)?;
        self.right
            .compact(end, |rt| rt.saturating_sub(lower) > watermark)?;
        let (keep_left, keep_right) = self.keeps();
        if let Some(rocks) = &mut self.rocks {
            rocks.expire(true, keep_left)?;
            rocks.expire(false, keep_right)?;
        }
        Ok(Emit::Done)
    }

    fn late_records(&self) -> u64 {
        self.late
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        let (keep_left, keep_right) = self.keeps();
        if let Some(rocks) = &mut self.rocks {
            let header = RocksIntervalHeader {
                bounds: (self.lower, self.upper),
                sides: [self.left.config(), self.right.config()],
                watermark: self.watermark,
                late: self.late,
                seq: 0,
                expired_below: [i64::MIN; 2],
            };
            let sides = (self.left.emptied(), self.right.emptied());
            let sides = (
                std::mem::replace(&mut self.left, sides.0),
                std::mem::replace(&mut self.right, sides.1),
            );
            return Ok(Some(Box::new(rocks.freeze(
                sides,
                (&keep_left, &keep_right),
                header,
            )?)));
        }
        let state = IntervalJoinSnapshot {
            bounds: (self.lower, self.upper),
            left: self.left.snapshot(),
            right: self.right.snapshot(),
            watermark: self.watermark,
            late: self.late,
        };
        Ok(Some(Snapshot::frozen(self.name(), state)))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        let bounds = (self.lower, self.upper);
        if let Some(rocks) = &mut self.rocks {
            let s: RocksSnapshot<RocksIntervalHeader> = decode(name, state)?;
            let h = &s.header;
            expect_same(name, "bounds (lower_ms, upper_ms)", &h.bounds, &bounds)?;
            let sides = [self.left.config(), self.right.config()];
            expect_same(
                name,
                "sides (key column, time column, field types)",
                &h.sides,
                &sides,
            )?;
            rocks.restore(&s.files, h)?;
            self.left = self.left.emptied();
            self.right = self.right.emptied();
            self.watermark = h.watermark;
            self.late = h.late;
            return Ok(());
        }
        let s: IntervalJoinSnapshot<RowChunks> = decode(name, state)?;
        expect_same(name, "bounds (lower_ms, upper_ms)", &s.bounds, &bounds)?;
        let left = self.left.restored("left", s.left)?;
        self.right = self.right.restored("right", s.right)?;
        self.left = left;
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
    fn a_key_matching_past_the_per_call_limit_fails_naming_the_operator() {
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut j = IntervalJoin::new(&s, &s, ("k", "k"), ("ts", "ts"), 0, 0).unwrap();
        let mut right = Batch::new(s.clone());
        for _ in 0..=OUTPUT_RECORDS_PER_CALL_MAX {
            right
                .push_row(&[Value::Int(1), Value::Timestamp(5)])
                .unwrap();
        }
        let mut out = Batch::new(j.output_schema().clone());
        j.process_right(&right, &mut out).unwrap();
        let left = batch(&s, &[vec![Value::Int(1), Value::Timestamp(5)]]);
        let err = j.process_left(&left, &mut out).unwrap_err().to_string();
        assert!(
            err.contains("interval_join") && err.contains("output_records_per_call_max"),
            "{err}"
        );
        assert_eq!(out.len(), OUTPUT_RECORDS_PER_CALL_MAX);
    }

    #[test]
    fn bounds_are_inclusive_and_keys_must_match() {
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut j = IntervalJoin::new(&s, &s, ("k", "k"), ("ts", "ts"), -2, 3).unwrap();
        let row = |k, t| vec![Value::Int(k), Value::Timestamp(t)];
        let mut out = Batch::new(j.output_schema().clone());
        j.process_right(
            &batch(&s, &[row(1, 8), row(1, 13), row(1, 14), row(2, 10)]),
            &mut out,
        )
        .unwrap();
        j.process_left(&batch(&s, &[row(1, 10)]), &mut out).unwrap();
        // rt in [8, 13] for key 1: 8 and 13.
        let rts: Vec<_> = (0..out.len()).map(|r| out.value(r, 3)).collect();
        assert_eq!(rts, [Value::Timestamp(8), Value::Timestamp(13)]);
        assert_eq!(j.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        assert_eq!(j.left.rows.len() + j.right.rows.len(), 0);
        j.process_left(&batch(&s, &[row(1, 20)]), &mut out).unwrap();
        assert_eq!(j.late_records(), 1);
    }
}
