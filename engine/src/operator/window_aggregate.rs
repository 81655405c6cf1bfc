//! Window aggregate: per-key aggregates over tumbling or sliding event-time windows, with
//! allowed lateness and a late side output (see [`crate::operator::window`] for the rules).
//!
//! Output fields: the key (if any), `window_start`, `window_end`, then the aggregates.
//!
//! A record updates the one pane (slice of `gcd(size, slide)` ms) it falls into; a window
//! merges its panes when it fires. A record that arrives after its window fired but within the
//! allowed lateness fires that window again at once (the window's updated result for its key).
//! A watermark that fires windows for more keys than one output batch holds emits them over
//! several `on_watermark` calls ([`crate::operator::Emit::More`]).
//!
//! HOT PATH: per record, one key-index lookup and one accumulator update in a flat array;
//! panes are cleared and reused, so state allocates only when a buffer grows. No locks, no
//! logging.
//!
//! ```
//! use sluice_engine::operator::{Emit, Operator, Output, WindowAggregate, WindowKind};
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
//! assert_eq!(w.on_watermark(9, &mut out).unwrap(), Emit::Done); // [0, 10) fires
//! assert_eq!(out.main.len(), 1);
//! assert_eq!(out.main.value(0, 2), Value::Int(11));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::EngineError;
use crate::operator::agg::{init_all, parse_aggs, Acc, AggSpec};
use crate::operator::window::{last_start, starts, WindowKind};
use crate::operator::{
    output_limit, time_column, Emit, Frozen, Operator, Output, OUTPUT_BATCH_RECORDS_MAX,
    OUTPUT_RECORDS_PER_CALL_MAX,
};
use crate::record::hash::{hash_column, hash_i64};
use crate::record::{Batch, Column, DataType, Field, Schema, SchemaRef, Value};
use crate::state::{KeyedState, RocksEnv};

mod rocks;
mod snapshot;

use rocks::RocksPanes;

/// Cleared panes kept for reuse, so that a steady stream of windows allocates nothing.
const SPARE_PANES_MAX: usize = 64;

/// The aggregates of every key of one pane: one accumulator per aggregate for each key.
type Pane = KeyedState<Acc>;

/// Returns the slot of `key` in `pane`, adding it with fresh accumulators if it is new.
fn pane_slot(
    pane: &mut Pane,
    hash: u64,
    key: Value<'_>,
    aggs: &[AggSpec],
) -> Result<u32, EngineError> {
    let (slot, _) = pane
        .slot_hashed(hash, key, |i| aggs[i].init())
        .map_err(|e| e.in_operator("window"))?;
    Ok(slot as u32)
}

/// Keyed aggregation over fixed event-time windows.
///
/// Windows are cut into panes of `gcd(size, slide)` milliseconds; a pane lies wholly inside
/// or wholly outside every window, so a record updates exactly one pane however many windows
/// it falls into, and a window's result is the merge of its panes when it fires.
#[derive(Debug)]
pub struct WindowAggregate {
    key: Option<usize>,
    time: usize,
    size: i64,
    slide: i64,
    pane: i64,
    lateness: i64,
    aggs: Vec<AggSpec>,
    /// The panes in memory (`state_backend = "memory"`)...
    panes: BTreeMap<i64, Pane>,
    spare: Vec<Pane>,
    /// ... or in RocksDB (`panes` is then empty).
    rocks: Option<Box<RocksPanes>>,
    /// Scratch: one window's merged panes.
    merged: Pane,
    /// Scratch: one key's merged accumulators.
    key_accs: Vec<Acc>,
    /// Scratch: per-row key hashes and pane slots of the batch being processed.
    hashes: Vec<u64>,
    slots: Vec<u32>,
    /// Window starts the watermark made due; `firing[fire_next..]` are still to be emitted.
    firing: Vec<i64>,
    fire_next: usize,
    /// The next key slot to emit of window `firing[fire_next]`.
    fire_slot: usize,
    /// The window whose merged panes `merged` holds.
    merged_start: Option<i64>,
    key_type: DataType,
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

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The key hash keyless aggregations file every record under.
fn keyless_hash() -> u64 {
    hash_i64(0)
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
        Self::with_state(input, key, time, kind, lateness_ms, aggs, None)
    }

    /// Like [`Self::new`], keeping the panes in RocksDB when `rocks` says where.
    pub fn with_state(
        input: &SchemaRef,
        key: Option<&str>,
        time: &str,
        kind: WindowKind,
        lateness_ms: i64,
        aggs: &[impl AsRef<str>],
        rocks: Option<RocksEnv>,
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
        let key_type = key.map_or(DataType::Int, |k| input.fields()[k].data_type);
        let rocks = rocks
            .map(|env| RocksPanes::create(env, key_type, aggs.len()).map(Box::new))
            .transpose()?;
        Ok(Self {
            rocks,
            key,
            time: time_column(input, time)?,
            size,
            slide,
            pane: gcd(size, slide),
            lateness: lateness_ms,
            merged: Pane::new(key_type, aggs.len()),
            aggs,
            panes: BTreeMap::new(),
            spare: Vec::new(),
            key_accs: Vec::new(),
            hashes: Vec::new(),
            slots: Vec::new(),
            firing: Vec::new(),
            fire_next: 0,
            fire_slot: 0,
            merged_start: None,
            key_type,
            watermark: i64::MIN,
            schema,
        })
    }

    fn expired(&self, end: i64) -> bool {
        (end - 1).saturating_add(self.lateness) <= self.watermark
    }

    /// Returns how many panes (slices of `gcd(size, slide)` of event time, the unit windows
    /// are built from) hold state.
    pub fn open_windows(&self) -> usize {
        match &self.rocks {
            Some(rocks) => rocks.panes.len(),
            None => self.panes.len(),
        }
    }

    /// Adds rows `rows` (all in the pane starting at `pane_start`) to that pane.
    fn add_run(
        &mut self,
        input: &Batch,
        rows: std::ops::Range<usize>,
        pane_start: i64,
    ) -> Result<(), EngineError> {
        let Self {
            key,
            panes,
            spare,
            aggs,
            hashes,
            slots,
            key_type,
            rocks,
            ..
        } = self;
        if let Some(rocks) = rocks {
            let (base, pane) = rocks.pane(pane_start);
            let mut slot_of = |hash, key| -> Result<u32, EngineError> {
                let (slot, _) = pane
                    .slot_hashed(base, hash, key, |i| aggs[i].init())
                    .map_err(|e| crate::state::store::prefixed("window", e))?;
                Ok(slot as u32)
            };
            match *key {
                Some(k) => {
                    let keys = input.column(k);
                    for r in rows.clone() {
                        slots[r] = slot_of(hashes[r], keys.get(r))?;
                    }
                }
                None => {
                    let slot = slot_of(keyless_hash(), Value::Int(0))?;
                    slots[rows.clone()].fill(slot);
                }
            }
            for (j, spec) in aggs.iter().enumerate() {
                spec.update_rows(pane.state_mut(), j, input, rows.clone(), slots);
            }
            return Ok(());
        }
        let pane = panes.entry(pane_start).or_insert_with(|| {
            spare
                .pop()
                .unwrap_or_else(|| Pane::new(*key_type, aggs.len()))
        });
        match *key {
            Some(k) => {
                let keys = input.column(k);
                for r in rows.clone() {
                    slots[r] = pane_slot(pane, hashes[r], keys.get(r), aggs)?;
                }
            }
            None => {
                let slot = pane_slot(pane, keyless_hash(), Value::Int(0), aggs)?;
                slots[rows.clone()].fill(slot);
            }
        }
        for (j, spec) in aggs.iter().enumerate() {
            spec.update_rows(pane, j, input, rows.clone(), slots);
        }
        Ok(())
    }

    /// Merges the state of one key over the panes of the window starting at `start` into
    /// `self.key_accs`.
    fn merge_key(&mut self, start: i64, hash: u64, key: Value<'_>) -> Result<(), EngineError> {
        self.key_accs.clear();
        self.key_accs.extend(init_all(&self.aggs));
        let end = start.saturating_add(self.size);
        if let Some(rocks) = &mut self.rocks {
            let starts: Vec<i64> = rocks.panes.range(start..end).map(|(s, _)| *s).collect();
            for pane_start in starts {
                if let Some(accs) = rocks.read(pane_start, hash, key, &self.aggs)? {
                    for ((spec, acc), later) in self.aggs.iter().zip(&mut self.key_accs).zip(&accs)
                    {
                        spec.merge(acc, later);
                    }
                }
            }
            return Ok(());
        }
        for pane in self.panes.range(start..end).map(|(_, p)| p) {
            if let Some(slot) = pane.find(hash, key) {
                let accs = pane.values(slot);
                for ((spec, acc), later) in self.aggs.iter().zip(&mut self.key_accs).zip(accs) {
                    spec.merge(acc, later);
                }
            }
        }
        Ok(())
    }

    /// Emits the keys of the window starting at `start` from slot `self.fire_slot` on, until
    /// `out` holds [`OUTPUT_BATCH_RECORDS_MAX`] records; returns whether the window is done.
    fn fire(&mut self, start: i64, out: &mut Batch) -> Result<bool, EngineError> {
        let end = start.saturating_add(self.size);
        let key = self.key;
        if let Some(rocks) = &mut self.rocks {
            return rocks.fire(start, end, key.is_some(), &self.aggs, out);
        }
        // Emits slots `*next..` of `pane`, stopping when `out` is full.
        let emit_pane = |pane: &Pane, next: &mut usize, out: &mut Batch, aggs: &[AggSpec]| {
            while *next < pane.len() {
                if out.len() >= OUTPUT_BATCH_RECORDS_MAX {
                    return false;
                }
                let accs = pane.values(*next);
                let k = key.map(|_| pane.key(*next));
                emit_window_row(out, k, start, end, aggs, accs);
                *next += 1;
            }
            true
        };
        let mut range = self.panes.range(start..end);
        let first = range.next();
        if range.next().is_none() {
            // One pane (always so for tumbling windows): its state is the window's.
            return Ok(match first {
                Some((_, pane)) => emit_pane(pane, &mut self.fire_slot, out, &self.aggs),
                None => true,
            });
        }
        let Self {
            panes,
            merged,
            merged_start,
            aggs,
            fire_slot,
            ..
        } = self;
        if *merged_start != Some(start) {
            merged.clear();
            *merged_start = None;
            for (_, pane) in panes.range(start..end) {
                for slot in 0..pane.len() {
                    let (hash, k, accs) = (pane.hash(slot), pane.key(slot), pane.values(slot));
                    let (m, new) = merged
                        .slot_hashed(hash, k, |i| accs[i].clone())
                        .map_err(|e| e.in_operator("window"))?;
                    if !new {
                        let into = merged.values_mut(m);
                        for ((spec, acc), later) in aggs.iter().zip(into).zip(accs) {
                            spec.merge(acc, later);
                        }
                    }
                }
            }
            *merged_start = Some(start);
        }
        Ok(emit_pane(merged, fire_slot, out, aggs))
    }

    /// Emits the windows in `firing[fire_next..]`; returns whether all are done.
    fn fire_due(&mut self, out: &mut Batch) -> Result<bool, EngineError> {
        while let Some(&start) = self.firing.get(self.fire_next) {
            if !self.fire(start, out)? {
                return Ok(false);
            }
            self.fire_next += 1;
            self.fire_slot = 0;
            self.merged_start = None;
        }
        self.firing.clear();
        self.fire_next = 0;
        Ok(true)
    }

    /// Returns whether every window of the pane starting at `pane_start` is past its
    /// allowed lateness.
    fn pane_expired(&self, pane_start: i64) -> bool {
        let latest = last_start(pane_start, self.slide);
        let keep_until = latest
            .saturating_add(self.size - 1)
            .saturating_add(self.lateness);
        keep_until <= self.watermark
    }

    /// Drops panes whose every window is past its allowed lateness; keeps a few for reuse.
    fn drop_expired(&mut self) -> Result<(), EngineError> {
        if let Some(mut rocks) = self.rocks.take() {
            let mut dropped = Ok(());
            while let Some(&start) = rocks.panes.keys().next() {
                if !self.pane_expired(start) {
                    break;
                }
                dropped = rocks.drop_pane(start);
                if dropped.is_err() {
                    break;
                }
            }
            self.rocks = Some(rocks);
            return dropped;
        }
        while let Some(&start) = self.panes.keys().next() {
            if !self.pane_expired(start) {
                break;
            }
            let Some(mut pane) = self.panes.remove(&start) else {
                break;
            };
            if self.spare.len() < SPARE_PANES_MAX {
                pane.clear();
                self.spare.push(pane);
            }
        }
        Ok(())
    }
}

impl Operator for WindowAggregate {
    fn name(&self) -> &'static str {
        "window"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        let n = input.len();
        if let Some(rocks) = &mut self.rocks {
            rocks.reserve(n)?;
        }
        let times = match input.column(self.time) {
            Column::Int(t) | Column::Timestamp(t) => t,
            other => {
                return Err(EngineError::Plan(format!(
                    "window time column is {}, expected a timestamp or an int",
                    other.data_type()
                )))
            }
        };
        match self.key {
            Some(k) => hash_column(input.column(k), &mut self.hashes),
            None => self.hashes.clear(),
        }
        self.slots.clear();
        self.slots.resize(n, 0);
        let mut row = 0;
        while row < n {
            // A run: consecutive rows in one pane (in-order input makes long runs).
            let pane_start = last_start(times[row], self.pane);
            let pane_end = pane_start.saturating_add(self.pane);
            let mut end = row + 1;
            while end < n && times[end] >= pane_start && times[end] < pane_end {
                end += 1;
            }
            // Every window containing the pane contains all of it; the latest decides
            // whether the pane may still change.
            let latest = starts(pane_start, self.size, self.slide).next();
            let open = latest.is_some_and(|s| !self.expired(s.saturating_add(self.size)));
            if !open {
                for r in row..end {
                    out.late.push_row_from(input, r);
                }
                row = end;
                continue;
            }
            // Windows of the pane that already fired (allowed lateness) fire again for every
            // record: the watermark passed them, so the update is their result now. Each
            // re-fire shows the state with that record and none after it, so such a run is
            // added one record at a time (in-order input never takes this path).
            let earliest = starts(pane_start, self.size, self.slide).last();
            if earliest.is_none_or(|s| s.saturating_add(self.size) - 1 > self.watermark) {
                self.add_run(input, row..end, pane_start)?;
                row = end;
                continue;
            }
            for r in row..end {
                self.add_run(input, r..r + 1, pane_start)?;
                let key = self.key.map(|k| input.value(r, k));
                let hash = key.map_or_else(keyless_hash, |_| self.hashes[r]);
                for start in starts(pane_start, self.size, self.slide) {
                    let w_end = start.saturating_add(self.size);
                    if w_end - 1 > self.watermark || self.expired(w_end) {
                        continue;
                    }
                    if out.main.len() >= OUTPUT_RECORDS_PER_CALL_MAX {
                        return Err(output_limit("window"));
                    }
                    self.merge_key(start, hash, key.unwrap_or(Value::Int(0)))?;
                    emit_window_row(&mut out.main, key, start, w_end, &self.aggs, &self.key_accs);
                }
            }
            row = end;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Emit, EngineError> {
        if watermark > self.watermark {
            let old = self.watermark;
            self.watermark = watermark;
            // Windows whose last millisecond `end - 1` is now covered, and was not before,
            // fire if they hold any pane. Such a window starts after `old + 1 - size`, and its
            // panes start at or after its start and at or before `watermark`. They all end
            // after the windows still queued (those end by `old`), so they go after them.
            let lowest = old.saturating_add(1).saturating_sub(self.size);
            let queued = self.firing.len();
            let pane_starts: Box<dyn Iterator<Item = i64> + '_> = match &self.rocks {
                Some(rocks) => Box::new(rocks.panes.range(lowest..=watermark).map(|(s, _)| *s)),
                None => Box::new(self.panes.range(lowest..=watermark).map(|(s, _)| *s)),
            };
            for pane_start in pane_starts {
                for start in starts(pane_start, self.size, self.slide) {
                    let last = start.saturating_add(self.size) - 1;
                    if old < last && last <= watermark {
                        self.firing.push(start);
                    }
                }
            }
            let new = &mut self.firing[queued..];
            new.sort_unstable();
            let mut kept = queued;
            for i in queued..self.firing.len() {
                if kept == queued || self.firing[kept - 1] != self.firing[i] {
                    self.firing[kept] = self.firing[i];
                    kept += 1;
                }
            }
            self.firing.truncate(kept);
        }
        if !self.fire_due(&mut out.main)? {
            return Ok(Emit::More);
        }
        self.drop_expired()?;
        Ok(Emit::Done)
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        self.freeze_state()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        self.restore_state(state)
    }
}

#[cfg(test)]
mod tests {
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
            let mut w =
                WindowAggregate::new(&s, Some("k"), "ts", kind, 0, &["count(*) AS n"]).unwrap();
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
        let mut w =
            WindowAggregate::new(&s, Some("k"), "ts", kind, 20, &["count(*) AS n"]).unwrap();
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
        let mut w =
            WindowAggregate::new(&s, Some("k"), "ts", kind, 20, &["count(*) AS n"]).unwrap();
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
}
