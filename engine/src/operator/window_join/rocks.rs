//! A window join's rows in RocksDB (`state_backend = "rocksdb"`), for windows with more rows
//! than memory holds.
//!
//! A row is stored under its window's start, its key's key group and hash, its side and a
//! sequence number, so that a window is one range of the database and in it the rows of
//! each key are together, left rows first. A window fires by one scan of its range: the
//! left rows of one key are read into memory, and every right row of that key is joined
//! with those of them whose key is equal (keys of equal hash are told apart). Rows are
//! written in batches (the pending batch goes to the database when it is large, before a
//! window fires, and with a checkpoint); a fired window is one range deletion.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sluice_storage::state_db::{CheckpointFiles, WriteBatch};

use crate::error::EngineError;
use crate::operator::{push_joined, OUTPUT_BATCH_RECORDS_MAX};
use crate::record::hash::{hash_value, key_group_of};
use crate::record::{Batch, DataType, SchemaRef};
use crate::state::keyed::same_key;
use crate::state::rocks::rows::{decode_row_into, encode_row};
use crate::state::rocks::{namespace_prefix, RocksFrozen};
use crate::state::{RocksBase, RocksEnv};

const LEFT: u8 = 0;
const RIGHT: u8 = 1;
/// Bytes of rows kept in the pending write batch before it is written.
const PENDING_BYTES_MAX: usize = 8 << 20;
/// Bytes of a stored row's key after its window's prefix: key group, hash, side, sequence.
const ROW_KEY_BYTES: usize = 2 + 8 + 1 + 8;

/// What a window join on RocksDB keeps in a checkpoint beside the database: its
/// configuration (checked on restore), the watermark, the late count, the next sequence
/// number and which windows hold rows.
#[derive(Serialize, Deserialize)]
pub(super) struct RocksJoinHeader {
    pub(super) size: i64,
    pub(super) keys: (usize, usize),
    pub(super) times: (usize, usize),
    pub(super) inputs: (Vec<DataType>, Vec<DataType>),
    pub(super) watermark: i64,
    pub(super) late: u64,
    pub(super) seq: u64,
    pub(super) windows: Vec<i64>,
}

/// A window being emitted: where its scan goes on, and the key being joined.
#[derive(Debug)]
struct Firing {
    start: i64,
    /// The scan goes on after this key (the window's prefix taken off).
    after: Option<Vec<u8>>,
    /// The key group and hash of the left rows in `lefts`.
    group: Vec<u8>,
    lefts: Batch,
    right: Batch,
    /// How many of `lefts` the right row being joined has been compared with.
    matched: usize,
}

/// A window join's rows in RocksDB.
pub(super) struct RocksJoin {
    base: RocksBase,
    /// The windows that hold rows.
    pub(super) windows: BTreeSet<i64>,
    /// Rows not yet written, and range deletions of fired windows.
    pending: WriteBatch,
    seq: u64,
    firing: Option<Firing>,
    keys: (usize, usize),
    inputs: (SchemaRef, SchemaRef),
    /// Scratch: a row's database key and value.
    key: Vec<u8>,
    value: Vec<u8>,
}

impl std::fmt::Debug for RocksJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksJoin")
            .field("base", &self.base)
            .field("windows", &self.windows.len())
            .finish()
    }
}

impl RocksJoin {
    /// No rows yet, in a database in `env.dir`, for a join of `inputs` on columns `keys`.
    pub(super) fn create(
        env: RocksEnv,
        inputs: (SchemaRef, SchemaRef),
        keys: (usize, usize),
    ) -> Result<Self, EngineError> {
        Ok(Self {
            base: RocksBase::create(env)?,
            windows: BTreeSet::new(),
            pending: WriteBatch::default(),
            seq: 0,
            firing: None,
            keys,
            key: Vec::new(),
            value: Vec::new(),
            inputs,
        })
    }

    /// Adds row `row` of `input` (of the left side when `is_left`) to the window starting
    /// at `start`.
    pub(super) fn add(
        &mut self,
        start: i64,
        input: &Batch,
        row: usize,
        is_left: bool,
    ) -> Result<(), EngineError> {
        self.windows.insert(start);
        let (column, side) = if is_left {
            (self.keys.0, LEFT)
        } else {
            (self.keys.1, RIGHT)
        };
        let hash = hash_value(input.value(row, column));
        let group = key_group_of(hash, self.base.env().key_groups) as u16;
        self.key.clear();
        self.key.extend_from_slice(&namespace_prefix(start));
        self.key.extend_from_slice(&group.to_be_bytes());
        self.key.extend_from_slice(&hash.to_be_bytes());
        self.key.push(side);
        self.key.extend_from_slice(&self.seq.to_be_bytes());
        self.seq += 1;
        self.value.clear();
        encode_row(input, row, &mut self.value)?;
        self.pending.put(&self.key, &self.value);
        if self.pending.size_in_bytes() > PENDING_BYTES_MAX {
            self.base.write(std::mem::take(&mut self.pending))?;
        }
        Ok(())
    }

    /// The start of the window being emitted, if one is.
    pub(super) fn firing(&self) -> Option<i64> {
        self.firing.as_ref().map(|f| f.start)
    }

    /// Emits the joined rows of the window starting at `start` from where the last call
    /// stopped, until `out` holds [`OUTPUT_BATCH_RECORDS_MAX`] records; returns whether the
    /// window is done (and dropped).
    pub(super) fn fire(&mut self, start: i64, out: &mut Batch) -> Result<bool, EngineError> {
        if self.firing() != Some(start) {
            self.base.write(std::mem::take(&mut self.pending))?;
            self.firing = Some(Firing {
                start,
                after: None,
                group: Vec::new(),
                lefts: Batch::new(self.inputs.0.clone()),
                right: Batch::new(self.inputs.1.clone()),
                matched: 0,
            });
        }
        let Self {
            base, firing, keys, ..
        } = self;
        let Some(f) = firing.as_mut() else {
            return Ok(true);
        };
        let prefix = namespace_prefix(start);
        for item in base.scan(&prefix, f.after.as_deref()) {
            let (k, v) = item?;
            if k.len() != ROW_KEY_BYTES {
                return Err(EngineError::State(format!(
                    "window_join: a stored row key of {} bytes, expected {ROW_KEY_BYTES}",
                    k.len()
                )));
            }
            let (group, side) = (&k[..10], k[10]);
            if group != f.group {
                f.group.clear();
                f.group.extend_from_slice(group);
                f.lefts.clear();
                f.matched = 0;
            }
            if side == LEFT {
                decode_row_into(&v, &mut f.lefts)?;
            } else {
                f.right.clear();
                decode_row_into(&v, &mut f.right)?;
                let key = f.right.value(0, keys.1);
                while f.matched < f.lefts.len() {
                    if same_key(f.lefts.value(f.matched, keys.0), key) {
                        if out.len() >= OUTPUT_BATCH_RECORDS_MAX {
                            // `after` stays before this right row: it is read again.
                            return Ok(false);
                        }
                        push_joined(out, &f.lefts, f.matched, &f.right, 0);
                    }
                    f.matched += 1;
                }
                f.matched = 0;
            }
            f.after = Some(k.into_vec());
        }
        self.firing = None;
        self.windows.remove(&start);
        self.base.delete_prefix_into(&prefix, &mut self.pending)?;
        Ok(true)
    }

    /// Freezes the rows for a checkpoint (see [`RocksBase::freeze`]), `header` saying
    /// everything but the sequence number and which windows hold rows.
    pub(super) fn freeze(
        &mut self,
        operator: &'static str,
        mut header: RocksJoinHeader,
    ) -> Result<RocksFrozen<RocksJoinHeader>, EngineError> {
        header.seq = self.seq;
        header.windows = self.windows.iter().copied().collect();
        let batch = std::mem::take(&mut self.pending);
        self.base.freeze(operator, header, batch)
    }

    /// Replaces the rows with a checkpoint's: its database, sequence number and windows
    /// (each once, in order, else what is wrong).
    pub(super) fn restore(
        &mut self,
        files: &CheckpointFiles,
        header: &RocksJoinHeader,
    ) -> Result<(), String> {
        if let Some(w) = header.windows.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "the window list is not in increasing order ({} then {})",
                w[0], w[1]
            ));
        }
        self.base.restore(files).map_err(|e| e.to_string())?;
        self.pending.clear();
        self.firing = None;
        self.seq = header.seq;
        self.windows = header.windows.iter().copied().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::WindowJoin;
    use crate::operator::test_util::{batch, rocks_env};
    use crate::operator::{Emit, TwoInputOperator};
    use crate::record::{Batch, DataType, Schema, Value};

    #[test]
    fn fired_windows_leave_no_row_in_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let env = Some(rocks_env(dir.path(), 2));
        let mut j = WindowJoin::with_state(&s, &s, ("k", "k"), ("ts", "ts"), 10, env).unwrap();
        let rows: Vec<_> = (0..100)
            .map(|i| vec![Value::Int(i % 3), Value::Timestamp(i)])
            .collect();
        let mut out = Batch::new(j.output_schema().clone());
        j.process_left(&batch(&s, &rows), &mut out).unwrap();
        j.process_right(&batch(&s, &rows), &mut out).unwrap();
        let stored = |j: &mut WindowJoin| {
            let rocks = j.rocks.as_mut().unwrap();
            rocks
                .base
                .write(std::mem::take(&mut rocks.pending))
                .unwrap();
            rocks.base.scan(&[], None).count()
        };
        let mut fire = |j: &mut WindowJoin, watermark| {
            let mut joined = 0;
            loop {
                let emit = j.on_watermark(watermark, &mut out).unwrap();
                joined += out.len();
                out.clear();
                if emit == Emit::Done {
                    return joined;
                }
            }
        };
        assert_eq!(stored(&mut j), 200);
        // Windows [0, 10) to [40, 50) fire: the rows of [50, 100) are left.
        assert!(fire(&mut j, 49) > 100);
        assert_eq!(stored(&mut j), 100);
        assert!(fire(&mut j, i64::MAX) > 100);
        assert_eq!(stored(&mut j), 0);
    }
}
