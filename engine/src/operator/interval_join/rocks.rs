//! An interval join's rows in RocksDB (`state_backend = "rocksdb"`), for more rows than
//! memory holds.
//!
//! New rows go to the in-memory sides of the operator, as with memory state; when the two
//! sides hold `state_cache_keys` rows they are written to the database and emptied. A row
//! probes the other side in memory and in the database, where a side's rows are stored by
//! key group, key hash, event time and a sequence number: the rows that can match one row
//! are one range. A second index by event time finds the rows the watermark expires, whose
//! deletions are written with the next write.
//!
//! At a checkpoint the in-memory rows go to the database with the checkpoint (written on
//! the checkpoint thread); until the next write they stay in memory too, as the frozen
//! sides, and probes skip their copies in the database (by sequence number), so that a row
//! is found once whether or not the checkpoint thread has written it yet.

use serde::{Deserialize, Serialize};
use sluice_storage::state_db::{CheckpointFiles, WriteBatch};

use super::Side;
use crate::error::EngineError;
use crate::record::hash::{hash_value, key_group_of};
use crate::record::{Batch, DataType, SchemaRef, Value};
use crate::state::keyed::same_key;
use crate::state::rocks::rows::{decode_row_into, encode_row};
use crate::state::rocks::{namespace_prefix, RocksFrozen};
use crate::state::{RocksBase, RocksEnv};

/// The namespace of a side's rows (left 0, right 1); its expiry index is 2 more.
const ROWS: [u8; 2] = [0, 1];
const EXPIRY: [u8; 2] = [2, 3];

/// What an interval join on RocksDB keeps in a checkpoint beside the database: its
/// configuration (checked on restore), the watermark, the late count, the next sequence
/// number and where each side's expiry stands.
#[derive(Serialize, Deserialize)]
pub(super) struct RocksIntervalHeader {
    pub(super) bounds: (i64, i64),
    /// Per side: key column, time column, field types.
    pub(super) sides: [(usize, usize, Vec<DataType>); 2],
    pub(super) watermark: i64,
    pub(super) late: u64,
    pub(super) seq: u64,
    pub(super) expired_below: [i64; 2],
}

/// An interval join's rows in RocksDB, beside its sides in memory.
pub(super) struct RocksRows {
    base: RocksBase,
    /// The sides' rows as of the last checkpoint, until the next write.
    pub(super) frozen: Option<(Side, Side)>,
    /// Rows in the database with this sequence number or later are in `frozen` too.
    floor: u64,
    /// Per side, the earliest event time of the rows of `frozen` that went to the database
    /// with the checkpoint: until the checkpoint thread has written them, expiry must not
    /// move past them.
    frozen_since: [i64; 2],
    seq: u64,
    /// Per side: rows earlier than this are deleted (or their deletion is pending).
    expired_below: [i64; 2],
    /// Deletions of expired rows, not yet written.
    deletes: WriteBatch,
    /// Scratch: one stored row of each side.
    scratch: [Batch; 2],
    key: Vec<u8>,
    value: Vec<u8>,
}

impl std::fmt::Debug for RocksRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksRows")
            .field("base", &self.base)
            .finish()
    }
}

fn side_of(is_left: bool) -> usize {
    usize::from(!is_left)
}

fn time_of(bytes: &[u8]) -> Option<i64> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

impl RocksRows {
    /// No rows yet, in a database in `env.dir`, for a join of `inputs`.
    pub(super) fn create(
        env: RocksEnv,
        inputs: (&SchemaRef, &SchemaRef),
    ) -> Result<Self, EngineError> {
        Ok(Self {
            base: RocksBase::create(env)?,
            frozen: None,
            floor: u64::MAX,
            frozen_since: [i64::MAX; 2],
            seq: 0,
            expired_below: [i64::MIN; 2],
            deletes: WriteBatch::default(),
            scratch: [Batch::new(inputs.0.clone()), Batch::new(inputs.1.clone())],
            key: Vec::new(),
            value: Vec::new(),
        })
    }

    /// Forgets the frozen sides once the checkpoint thread has written their rows: probes
    /// and expiry then find them in the database.
    pub(super) fn absorb_frozen(&mut self) -> Result<(), EngineError> {
        if self.frozen.is_some() && self.base.try_settle()? {
            self.frozen = None;
            self.floor = u64::MAX;
            self.frozen_since = [i64::MAX; 2];
        }
        Ok(())
    }

    /// Rows the sides hold in memory before they are written.
    pub(super) fn rows_in_memory_max(&self) -> usize {
        self.base.env().cache_keys
    }

    /// Calls `emit(rows, row)` for every stored row of the left side (`is_left`) or the
    /// right one whose key is `key` and whose event time is in `lo..=hi`.
    pub(super) fn probe(
        &mut self,
        is_left: bool,
        columns: (usize, usize),
        key: Value<'_>,
        (lo, hi): (i64, i64),
        mut emit: impl FnMut(&Batch, usize) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let side = side_of(is_left);
        let (key_column, _) = columns;
        let hash = hash_value(key);
        let group = key_group_of(hash, self.base.env().key_groups) as u16;
        let mut prefix = vec![ROWS[side]];
        prefix.extend_from_slice(&group.to_be_bytes());
        prefix.extend_from_slice(&hash.to_be_bytes());
        let rows = &mut self.scratch[side];
        for item in self.base.scan_from(&prefix, &namespace_prefix(lo)) {
            let (k, v) = item?;
            let (Some(ts), Some(seq)) = (time_of(&k), k.get(8..16)) else {
                return Err(EngineError::State(
                    "interval_join: a stored row key is damaged".into(),
                ));
            };
            if ts > hi {
                break;
            }
            let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
            if seq >= self.floor {
                continue;
            }
            rows.clear();
            decode_row_into(&v, rows)?;
            if same_key(rows.value(0, key_column), key) {
                emit(rows, 0)?;
            }
        }
        Ok(())
    }

    /// Puts the rows of `side` that `keep(ts)` holds for into `batch`, with their expiry
    /// entries; returns the earliest event time put.
    fn put_rows(
        &mut self,
        is_left: bool,
        side: &Side,
        keep: &dyn Fn(i64) -> bool,
        batch: &mut WriteBatch,
    ) -> Result<i64, EngineError> {
        let s = side_of(is_left);
        let key_groups = self.base.env().key_groups;
        let mut earliest = i64::MAX;
        for r in 0..side.rows.len() {
            let ts = side.ts(r);
            if !keep(ts) {
                continue;
            }
            earliest = earliest.min(ts);
            let hash = hash_value(side.rows.value(r, side.key));
            let group = (key_group_of(hash, key_groups) as u16).to_be_bytes();
            let (time, seq) = (namespace_prefix(ts), self.seq.to_be_bytes());
            self.seq += 1;
            self.key.clear();
            self.key.push(ROWS[s]);
            self.key.extend_from_slice(&group);
            self.key.extend_from_slice(&hash.to_be_bytes());
            self.key.extend_from_slice(&time);
            self.key.extend_from_slice(&seq);
            let (chunk, at) = side.rows.locate(r);
            self.value.clear();
            encode_row(chunk, at, &mut self.value)?;
            batch.put(&self.key, &self.value);
            // The expiry entry: side, time, sequence number -> key group and hash.
            let expiry = [&[EXPIRY[s]], &time[..], &seq[..]].concat();
            batch.put(expiry, &self.key[1..11]);
        }
        Ok(earliest)
    }

    /// Writes the sides' rows that `keep` holds for (left, right) and the pending deletions
    /// to the database; the caller empties the sides.
    pub(super) fn write(
        &mut self,
        sides: (&Side, &Side),
        keep: (&dyn Fn(i64) -> bool, &dyn Fn(i64) -> bool),
    ) -> Result<(), EngineError> {
        let mut batch = std::mem::take(&mut self.deletes);
        self.put_rows(true, sides.0, keep.0, &mut batch)?;
        self.put_rows(false, sides.1, keep.1, &mut batch)?;
        self.base.write(batch)?;
        self.frozen = None;
        self.floor = u64::MAX;
        self.frozen_since = [i64::MAX; 2];
        Ok(())
    }

    /// Deletes (with the next write) the stored rows of a side for which `keep(ts)` no
    /// longer holds.
    pub(super) fn expire(
        &mut self,
        is_left: bool,
        keep: impl Fn(i64) -> bool,
    ) -> Result<(), EngineError> {
        self.absorb_frozen()?;
        let s = side_of(is_left);
        let prefix = [EXPIRY[s]];
        let mut below = self.expired_below[s];
        for item in self.base.scan_from(&prefix, &namespace_prefix(below)) {
            let (k, v) = item?;
            let ts = time_of(&k).ok_or_else(|| {
                EngineError::State("interval_join: a stored expiry entry is damaged".into())
            })?;
            if keep(ts) {
                break;
            }
            self.deletes.delete([&prefix[..], &k].concat());
            self.deletes.delete([&[ROWS[s]], &v[..], &k[..]].concat());
            below = ts.saturating_add(1);
        }
        self.expired_below[s] = below.min(self.frozen_since[s]);
        Ok(())
    }

    /// Freezes the rows for a checkpoint: the sides' rows that `keep` holds for go to the
    /// database with it (see [`RocksBase::freeze`]) and become the frozen sides; `header`
    /// says everything but the sequence number and expiry.
    pub(super) fn freeze(
        &mut self,
        sides: (Side, Side),
        keep: (&dyn Fn(i64) -> bool, &dyn Fn(i64) -> bool),
        mut header: RocksIntervalHeader,
    ) -> Result<RocksFrozen<RocksIntervalHeader>, EngineError> {
        // The previous checkpoint's rows are in the database once it is settled.
        self.base.settle()?;
        self.floor = self.seq;
        let mut batch = std::mem::take(&mut self.deletes);
        self.frozen_since = [
            self.put_rows(true, &sides.0, keep.0, &mut batch)?,
            self.put_rows(false, &sides.1, keep.1, &mut batch)?,
        ];
        self.frozen = Some(sides);
        header.seq = self.seq;
        header.expired_below = self.expired_below;
        self.base.freeze("interval_join", header, batch)
    }

    /// Replaces the rows with a checkpoint's database, sequence number and expiry.
    pub(super) fn restore(
        &mut self,
        files: &CheckpointFiles,
        header: &RocksIntervalHeader,
    ) -> Result<(), EngineError> {
        self.base.restore(files)?;
        self.frozen = None;
        self.floor = u64::MAX;
        self.frozen_since = [i64::MAX; 2];
        self.seq = header.seq;
        self.expired_below = header.expired_below;
        self.deletes.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::Schema;

    #[test]
    fn rows_a_checkpoint_froze_are_found_once_while_and_after_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        let store = sluice_storage::blob::open(&url).unwrap();
        let env = RocksEnv {
            dir: dir.path().join("db"),
            cache_keys: 100,
            key_groups: 128,
            storage: Some((store, "job/shared/join".into())),
        };
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut rows = RocksRows::create(env, (&s, &s)).unwrap();
        let (mut left, right) = (Side::new(&s, 0, 1), Side::new(&s, 0, 1));
        let row = |t| vec![Value::Int(1), Value::Timestamp(t)];
        let input = batch(&s, &[row(10), row(12), row(40)]);
        for r in 0..input.len() {
            left.insert(&input, r).unwrap();
        }
        let header = RocksIntervalHeader {
            bounds: (0, 5),
            sides: [left.config(), right.config()],
            watermark: i64::MIN,
            late: 0,
            seq: 0,
            expired_below: [i64::MIN; 2],
        };
        let keep = |_: i64| true;
        let _frozen = rows.freeze((left, right), (&keep, &keep), header).unwrap();
        let count = |rows: &mut RocksRows| {
            let mut n = 0;
            rows.probe(true, (0, 1), Value::Int(1), (0, 20), |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            n
        };
        // Written by the checkpoint thread and still frozen in memory: the database's copies
        // are not found (the operator finds the frozen ones).
        rows.base.settle().unwrap();
        assert!(rows.frozen.is_some());
        assert_eq!(count(&mut rows), 0);
        // Once the frozen sides are let go, the database's are found: ts 10 and 12.
        rows.absorb_frozen().unwrap();
        assert!(rows.frozen.is_none());
        assert_eq!(count(&mut rows), 2);
        // Expired rows are deleted with the next write.
        rows.expire(true, |ts| ts > 12).unwrap();
        rows.write((&Side::new(&s, 0, 1), &Side::new(&s, 0, 1)), (&keep, &keep))
            .unwrap();
        assert_eq!(count(&mut rows), 0);
        let left_rows = rows.base.scan(&[ROWS[0]], None).count();
        let expiry = rows.base.scan(&[EXPIRY[0]], None).count();
        assert_eq!((left_rows, expiry), (1, 1), "the row at 40 is kept");
    }
}
