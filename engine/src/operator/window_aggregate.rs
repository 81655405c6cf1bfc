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
mod tests;
