//! A session window's sessions in RocksDB (`state_backend = "rocksdb"`), for more keys than
//! memory holds.
//!
//! Two namespaces of the operator's database: every key's sessions (as in memory, a list
//! sorted by start), and a timer per key: the event time at which its sessions next need
//! the watermark's attention (the earliest `end - 1` of an unfired session, or `end - 1 +
//! lateness` of a fired one), stored as time, key group and key, so that a watermark visits
//! only the keys that are due, in one range scan. The keys in use are cached in memory
//! ([`CachedKeys`]); a key's timer entry moves when the key is written back, from the timer
//! its stored sessions had to the one its sessions have now.

use serde::{Deserialize, Serialize};
use sluice_storage::state_db::{CheckpointFiles, WriteBatch};

use super::{fire_list, Session};
use crate::error::EngineError;
use crate::operator::agg::{check_all, AggSignature, AggSpec};
use crate::operator::OUTPUT_BATCH_RECORDS_MAX;
use crate::record::hash::hash_value;
use crate::record::{Batch, DataType, Value};
use crate::state::rocks::{decode_key, namespace_prefix, RocksFrozen};
use crate::state::{CachedKeys, RocksBase, RocksEnv};

/// The namespace of every key's sessions.
const SESSIONS: u8 = 0;
/// The namespace of the timers.
const TIMERS: u8 = 1;

/// What a session window on RocksDB keeps in a checkpoint beside the database: its
/// configuration (checked on restore) and the watermark.
#[derive(Serialize, Deserialize)]
pub(super) struct RocksSessionHeader {
    pub(super) key_type: Option<DataType>,
    pub(super) gap: i64,
    pub(super) lateness: i64,
    pub(super) aggs: Vec<AggSignature>,
    pub(super) watermark: i64,
}

/// A session window's sessions in RocksDB.
#[derive(Debug)]
pub(super) struct RocksSessions {
    base: RocksBase,
    keys: CachedKeys<Vec<Session>>,
    /// For each key in memory, the timer its sessions had when it was read (`None`: it had
    /// no sessions stored).
    stored_timers: Vec<Option<i64>>,
    lateness: i64,
    /// A firing goes on after this timer entry (`None`: from the first).
    cursor: Option<Vec<u8>>,
}

/// The event time at which `list` next needs the watermark, if it has sessions.
fn timer_of(list: &[Session], lateness: i64) -> Option<i64> {
    list.iter()
        .map(|s| match s.fired {
            false => s.end - 1,
            true => (s.end - 1).saturating_add(lateness),
        })
        .min()
}

impl RocksSessions {
    /// No sessions yet, in a database in `env.dir`, for keys of type `key_type`.
    pub(super) fn create(
        env: RocksEnv,
        key_type: DataType,
        lateness: i64,
    ) -> Result<Self, EngineError> {
        let keys = CachedKeys::new(key_type, 1, env.cache_keys, vec![SESSIONS]);
        Ok(Self {
            base: RocksBase::create(env)?,
            keys,
            stored_timers: Vec::new(),
            lateness,
            cursor: None,
        })
    }

    /// Makes room for `new_keys` more keys in memory: when they might not fit, writes the
    /// dirty keys back and empties the cache.
    pub(super) fn reserve(&mut self, new_keys: usize) -> Result<(), EngineError> {
        if self.keys.len() + new_keys > self.keys.keys_max() {
            self.write_back()?;
            self.keys.clear(new_keys);
            self.stored_timers.clear();
        }
        Ok(())
    }

    /// The dirty keys' sessions and timer moves as one write batch; a key without sessions
    /// left is deleted.
    fn take_writes(&mut self) -> Result<WriteBatch, EngineError> {
        let mut batch = WriteBatch::default();
        let mut value = Vec::new();
        let (stored_timers, lateness) = (&mut self.stored_timers, self.lateness);
        self.keys
            .take_dirty_with(self.base.env().key_groups, |slot, key, values| {
                let list = &values[0];
                let timer = timer_of(list, lateness);
                if list.is_empty() {
                    batch.delete(key);
                } else {
                    value.clear();
                    value =
                        postcard::to_extend(values, std::mem::take(&mut value)).map_err(|e| {
                            EngineError::State(format!("cannot encode the sessions of a key: {e}"))
                        })?;
                    batch.put(key, &value);
                }
                let stored = &mut stored_timers[slot];
                if *stored != timer {
                    // The key group and key follow the namespace byte.
                    let timer_key =
                        |t: i64| [&[TIMERS], &namespace_prefix(t)[..], &key[1..]].concat();
                    if let Some(old) = *stored {
                        batch.delete(timer_key(old));
                    }
                    if let Some(new) = timer {
                        batch.put(timer_key(new), []);
                    }
                    *stored = timer;
                }
                Ok(())
            })?;
        Ok(batch)
    }

    fn write_back(&mut self) -> Result<(), EngineError> {
        let batch = self.take_writes()?;
        self.base.write(batch)
    }

    /// The sessions of `key` (hash `hash`), if it has any, without caching them.
    pub(super) fn read(
        &mut self,
        hash: u64,
        key: Value<'_>,
    ) -> Result<Option<Vec<Session>>, EngineError> {
        Ok(self
            .keys
            .read(&self.base, hash, key)?
            .and_then(|mut v| v.pop()))
    }

    /// The sessions of `key` (hash `hash`), read into memory if need be; dirty afterwards.
    pub(super) fn entry(
        &mut self,
        hash: u64,
        key: Value<'_>,
    ) -> Result<&mut Vec<Session>, EngineError> {
        let (slot, _) = self
            .keys
            .slot_hashed(&self.base, hash, key, |_| Vec::new())?;
        if slot == self.stored_timers.len() {
            let stored = timer_of(&self.keys.state().values(slot)[0], self.lateness);
            self.stored_timers.push(stored);
        }
        Ok(&mut self.keys.state_mut().values_mut(slot)[0])
    }

    /// Starts a firing over from the first due key (the watermark moved).
    pub(super) fn restart(&mut self) {
        self.cursor = None;
    }

    /// Fires the sessions the watermark passed and drops those past their lateness, key
    /// after key in timer order, until `out` holds [`OUTPUT_BATCH_RECORDS_MAX`] records;
    /// returns whether every due key was visited.
    pub(super) fn fire(
        &mut self,
        watermark: i64,
        keyed: bool,
        aggs: &[AggSpec],
        out: &mut Batch,
    ) -> Result<bool, EngineError> {
        // The timers in the database are every key's once the dirty keys are written.
        self.write_back()?;
        let limit = OUTPUT_BATCH_RECORDS_MAX.min(self.keys.keys_max()).max(1);
        let mut due: Vec<Box<[u8]>> = Vec::new();
        for item in self.base.scan(&[TIMERS], self.cursor.as_deref()) {
            let (entry, _) = item?;
            let time = entry
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(|b: [u8; 8]| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
                .ok_or_else(|| EngineError::State("a stored timer is damaged".into()))?;
            if time > watermark || due.len() == limit {
                break;
            }
            due.push(entry);
        }
        let key_type = self.keys.state().key_type();
        self.reserve(due.len())?;
        for entry in &due {
            let key = decode_key(&entry[8..], key_type)
                .map_err(|m| EngineError::State(format!("a stored timer is damaged: {m}")))?;
            let lateness = self.lateness;
            let list = self.entry(hash_value(key), key)?;
            for s in list.iter() {
                check_all(aggs, &s.accs).map_err(|m| {
                    EngineError::State(format!(
                        "window (session): the stored sessions of key {key} are damaged: {m}"
                    ))
                })?;
            }
            if !fire_list(list, watermark, keyed.then_some(key), aggs, out) {
                return Ok(false);
            }
            list.retain(|s| (s.end - 1).saturating_add(lateness) > watermark);
            self.cursor = Some(entry.to_vec());
        }
        if due.len() == limit {
            return Ok(false);
        }
        self.cursor = None;
        Ok(true)
    }

    /// Freezes the sessions for a checkpoint (see [`RocksBase::freeze`]).
    pub(super) fn freeze(
        &mut self,
        operator: &'static str,
        header: RocksSessionHeader,
    ) -> Result<RocksFrozen<RocksSessionHeader>, EngineError> {
        let batch = self.take_writes()?;
        self.base.freeze(operator, header, batch)
    }

    /// Replaces the sessions with a checkpoint's database.
    pub(super) fn restore(&mut self, files: &CheckpointFiles) -> Result<(), EngineError> {
        self.base.restore(files)?;
        self.keys.clear(0);
        self.stored_timers.clear();
        self.cursor = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::SessionWindow;
    use crate::operator::test_util::{batch, drain, rocks_env};
    use crate::operator::{Operator, Output};
    use crate::record::{DataType, Schema, Value};

    #[test]
    fn dropped_sessions_leave_no_key_and_no_timer_in_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let s = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let env = Some(rocks_env(dir.path(), 3));
        let mut w =
            SessionWindow::with_state(&s, Some("k"), "ts", 4, 2, &["count(*) AS n"], env).unwrap();
        let rows: Vec<_> = (0..300)
            .map(|i| vec![Value::Int(i % 17), Value::Timestamp(i * 2 + i % 5)])
            .collect();
        let mut out = Output::new(w.output_schema().clone(), s.clone());
        w.process(&batch(&s, &rows), &mut out).unwrap();
        let stored = |w: &mut SessionWindow, namespace: u8| {
            let rocks = w.rocks.as_mut().unwrap();
            rocks.write_back().unwrap();
            rocks.base.scan(&[namespace], None).count()
        };
        let (fired, _) = drain(&mut w, 300, &mut out);
        assert!(!fired.is_empty());
        // Every key still with sessions has one timer.
        let keys = stored(&mut w, super::SESSIONS);
        assert!(keys > 0);
        assert_eq!(stored(&mut w, super::TIMERS), keys);
        let (fired, _) = drain(&mut w, i64::MAX, &mut out);
        assert!(!fired.is_empty());
        assert_eq!(
            (
                stored(&mut w, super::SESSIONS),
                stored(&mut w, super::TIMERS)
            ),
            (0, 0)
        );
    }
}
