//! A window aggregate's panes in RocksDB (`state_backend = "rocksdb"`), for windows with
//! more keys than memory holds.
//!
//! Each pane is a namespace of the operator's database (its start, see
//! [`namespace_prefix`]) with the keys in use cached in memory ([`CachedKeys`]); all panes'
//! caches together hold at most `state_cache_keys` keys, written back and emptied before a
//! batch whose keys might not fit. A window fires by merging its panes' keys in database
//! order (a k-way merge: every pane's keys are sorted the same way), emitting from where the
//! last output batch stopped, so neither a window nor its merge needs to fit in memory. An
//! expired pane is one range deletion, written with the next write (or checkpoint).

use std::collections::BTreeMap;
use std::iter::Peekable;

use serde::{Deserialize, Serialize};
use sluice_storage::state_db::{CheckpointFiles, KeyValue, WriteBatch};

use super::emit_window_row;
use crate::error::EngineError;
use crate::operator::agg::{check_all, Acc, AggSignature, AggSpec};
use crate::operator::OUTPUT_BATCH_RECORDS_MAX;
use crate::record::{Batch, DataType, Value};
use crate::state::rocks::{namespace_prefix, RocksFrozen};
use crate::state::{CachedKeys, RocksBase, RocksEnv};

/// A window aggregate's panes in RocksDB.
pub(super) struct RocksPanes {
    base: RocksBase,
    /// Every pane, with its keys in memory (none after a write-back).
    pub(super) panes: BTreeMap<i64, CachedKeys<Acc>>,
    /// Range deletions of expired panes, not yet written.
    deletes: WriteBatch,
    /// The firing window's emission goes on after this key (`None`: from its first key).
    cursor: Option<Vec<u8>>,
    key_type: DataType,
    width: usize,
    /// Keys a pane's cache holds at most: `state_cache_keys`, or more for a larger batch.
    room: usize,
}

impl std::fmt::Debug for RocksPanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksPanes")
            .field("base", &self.base)
            .field("panes", &self.panes.len())
            .finish()
    }
}

/// What a window aggregate on RocksDB keeps in a checkpoint beside the database: its
/// configuration (checked on restore), the watermark and which panes exist.
#[derive(Serialize, Deserialize)]
pub(super) struct RocksWindowHeader {
    pub(super) key_type: Option<DataType>,
    pub(super) size: i64,
    pub(super) slide: i64,
    pub(super) lateness: i64,
    pub(super) aggs: Vec<AggSignature>,
    pub(super) watermark: i64,
    pub(super) panes: Vec<i64>,
}

/// The error of stored accumulators that do not fit the aggregates.
fn damaged(key: Value<'_>, m: String) -> EngineError {
    EngineError::State(format!(
        "window: the stored state of key {key} is damaged: {m}"
    ))
}

type Scan<'a> = Peekable<Box<dyn Iterator<Item = Result<KeyValue, EngineError>> + 'a>>;

impl RocksPanes {
    /// No panes yet, in a database in `env.dir`; keys of type `key_type`, `width`
    /// accumulators each.
    pub(super) fn create(
        env: RocksEnv,
        key_type: DataType,
        width: usize,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            room: env.cache_keys,
            base: RocksBase::create(env)?,
            panes: BTreeMap::new(),
            deletes: WriteBatch::default(),
            cursor: None,
            key_type,
            width,
        })
    }

    fn cache_keys(&self) -> usize {
        self.base.env().cache_keys
    }

    /// Makes room for `new_keys` more keys in memory: when they might not fit beside the
    /// keys of every pane, writes the dirty keys back and empties every pane's cache.
    pub(super) fn reserve(&mut self, new_keys: usize) -> Result<(), EngineError> {
        let cached: usize = self.panes.values().map(|p| p.state().len()).sum();
        if cached + new_keys > self.cache_keys() {
            self.write_back()?;
            self.room = self.cache_keys().max(new_keys);
            for pane in self.panes.values_mut() {
                pane.clear(new_keys);
            }
        }
        Ok(())
    }

    /// The dirty keys of every pane and the pending deletions, as one write batch.
    fn take_writes(&mut self) -> Result<WriteBatch, EngineError> {
        let mut batch = std::mem::take(&mut self.deletes);
        let key_groups = self.base.env().key_groups;
        for pane in self.panes.values_mut() {
            pane.take_dirty(key_groups, &mut batch)?;
        }
        Ok(batch)
    }

    /// Writes the dirty keys and pending deletions to the database.
    fn write_back(&mut self) -> Result<(), EngineError> {
        let batch = self.take_writes()?;
        self.base.write(batch)
    }

    /// The pane starting at `start` (made if new) and the database behind it.
    pub(super) fn pane(&mut self, start: i64) -> (&RocksBase, &mut CachedKeys<Acc>) {
        let (key_type, width, keys_max) = (self.key_type, self.width, self.room);
        let pane = self.panes.entry(start).or_insert_with(|| {
            CachedKeys::new(key_type, width, keys_max, namespace_prefix(start).to_vec())
        });
        (&self.base, pane)
    }

    /// The accumulators of `key` (hash `hash`) in the pane starting at `start`, if it has
    /// them, checked against `aggs`.
    pub(super) fn read(
        &mut self,
        start: i64,
        hash: u64,
        key: Value<'_>,
        aggs: &[AggSpec],
    ) -> Result<Option<Vec<Acc>>, EngineError> {
        let Some(pane) = self.panes.get_mut(&start) else {
            return Ok(None);
        };
        let accs = pane.read(&self.base, hash, key)?;
        if let Some(accs) = &accs {
            check_all(aggs, accs).map_err(|m| damaged(key, m))?;
        }
        Ok(accs)
    }

    /// Drops the pane starting at `start` (its keys deleted with the next write).
    pub(super) fn drop_pane(&mut self, start: i64) -> Result<(), EngineError> {
        if let Some(pane) = self.panes.remove(&start) {
            self.base
                .delete_prefix_into(pane.prefix(), &mut self.deletes)?;
        }
        Ok(())
    }

    /// Emits the keys of window `[start, end)`, each merged over the window's panes, from
    /// where the last call stopped, until `out` holds [`OUTPUT_BATCH_RECORDS_MAX`] records;
    /// returns whether the window is done.
    pub(super) fn fire(
        &mut self,
        start: i64,
        end: i64,
        keyed: bool,
        aggs: &[AggSpec],
        out: &mut Batch,
    ) -> Result<bool, EngineError> {
        self.write_back()?;
        let Self {
            base,
            panes,
            cursor,
            key_type,
            ..
        } = self;
        let mut heads: Vec<(Scan<'_>, &CachedKeys<Acc>)> = panes
            .range(start..end)
            .map(|(_, pane)| {
                let scan: Box<dyn Iterator<Item = _>> =
                    Box::new(base.scan(pane.prefix(), cursor.as_deref()));
                (scan.peekable(), pane)
            })
            .collect();
        let mut accs: Vec<Acc> = Vec::with_capacity(aggs.len());
        loop {
            if out.len() >= OUTPUT_BATCH_RECORDS_MAX {
                return Ok(false);
            }
            // The smallest key any pane has left.
            let mut least: Option<Box<[u8]>> = None;
            for (scan, _) in &mut heads {
                match scan.peek() {
                    Some(Ok((k, _))) if least.as_ref().is_none_or(|l| k < l) => {
                        least = Some(k.clone());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        if let Some(Err(e)) = scan.next() {
                            return Err(e);
                        }
                    }
                    None => {}
                }
            }
            let Some(least) = least else {
                *cursor = None;
                return Ok(true);
            };
            // Its accumulators merged over the panes that have it, in time order.
            accs.clear();
            for (scan, pane) in &mut heads {
                if !matches!(scan.peek(), Some(Ok((k, _))) if *k == least) {
                    continue;
                }
                let Some(Ok((k, v))) = scan.next() else {
                    continue;
                };
                let (key, values) = pane.decode(&k, &v)?;
                check_all(aggs, &values).map_err(|m| damaged(key, m))?;
                if accs.is_empty() {
                    accs = values;
                } else {
                    for ((spec, acc), later) in aggs.iter().zip(&mut accs).zip(&values) {
                        spec.merge(acc, later);
                    }
                }
            }
            let key = crate::state::rocks::decode_key(&least, *key_type)
                .map_err(|m| EngineError::State(format!("a stored key is damaged: {m}")))?;
            emit_window_row(out, keyed.then_some(key), start, end, aggs, &accs);
            *cursor = Some(least.into_vec());
        }
    }

    /// Freezes the panes for a checkpoint (see [`RocksBase::freeze`]), `header` saying
    /// everything but which panes exist.
    pub(super) fn freeze(
        &mut self,
        operator: &'static str,
        mut header: RocksWindowHeader,
    ) -> Result<RocksFrozen<RocksWindowHeader>, EngineError> {
        header.panes = self.panes.keys().copied().collect();
        let batch = self.take_writes()?;
        self.base.freeze(operator, header, batch)
    }

    /// Replaces the panes with a checkpoint's: its database and pane starts (each once, in
    /// order, else what is wrong).
    pub(super) fn restore(&mut self, files: &CheckpointFiles, panes: &[i64]) -> Result<(), String> {
        if let Some(w) = panes.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "the pane list is not in increasing order ({} then {})",
                w[0], w[1]
            ));
        }
        self.base.restore(files).map_err(|e| e.to_string())?;
        self.deletes.clear();
        self.cursor = None;
        self.panes.clear();
        for &start in panes {
            self.pane(start);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::WindowAggregate;
    use crate::operator::test_util::{batch, drain, rocks_env};
    use crate::operator::{Operator, Output, WindowKind};
    use crate::record::{DataType, Schema, Value};

    #[test]
    fn expired_panes_leave_nothing_in_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let kind = WindowKind::Sliding {
            size_ms: 10,
            slide_ms: 5,
        };
        let env = Some(rocks_env(dir.path(), 2));
        let mut w =
            WindowAggregate::with_state(&s, Some("k"), "ts", kind, 3, &["count(*) AS n"], env)
                .unwrap();
        let rows: Vec<_> = (0..200)
            .map(|i| vec![Value::Int(i % 13), Value::Timestamp(i)])
            .collect();
        let mut out = Output::new(w.output_schema().clone(), s.clone());
        w.process(&batch(&s, &rows), &mut out).unwrap();
        let stored = |w: &mut WindowAggregate| {
            let rocks = w.rocks.as_mut().unwrap();
            rocks.write_back().unwrap();
            rocks.base.scan(&[], None).count()
        };
        let (fired, _) = drain(&mut w, 100, &mut out);
        assert!(!fired.is_empty());
        // Panes after the watermark (and within lateness) are kept.
        assert!(stored(&mut w) > 13, "{}", stored(&mut w));
        let (fired, _) = drain(&mut w, i64::MAX, &mut out);
        assert!(!fired.is_empty());
        assert_eq!(w.open_windows(), 0);
        assert_eq!(stored(&mut w), 0);
    }
}
