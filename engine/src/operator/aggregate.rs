//! Aggregate: a per-key (or global) aggregation over the whole input, emitted once when event
//! time ends (the final watermark of a bounded job). For results per time window use
//! [`crate::operator::WindowAggregate`].
//!
//! HOT PATH: one keyed-state lookup and one accumulator update per record; no locks, no
//! logging; a new key allocates its state once.
//!
//! ```
//! use sluice_engine::operator::{Aggregate, Emit, Operator, Output};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("k", DataType::String), ("p", DataType::Int)]).unwrap();
//! let mut agg = Aggregate::new(&schema, Some("k"), &["count(*) AS n", "max(p)"]).unwrap();
//! let mut input = Batch::new(schema.clone());
//! input.push_row(&[Value::Str("a"), Value::Int(4)]).unwrap();
//! input.push_row(&[Value::Str("a"), Value::Int(9)]).unwrap();
//! let mut out = Output::new(agg.output_schema().clone(), schema);
//! agg.process(&input, &mut out).unwrap();
//! assert!(out.main.is_empty());
//! assert_eq!(agg.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
//! assert_eq!(out.main.value(0, 1), Value::Int(2));
//! assert_eq!(out.main.value(0, 2), Value::Int(9));
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::operator::agg::{
    check_all, parse_aggs, signatures, update_all, Acc, AggSignature, AggSpec,
};
use crate::operator::{Emit, Frozen, Operator, Output, OUTPUT_BATCH_RECORDS_MAX};
use crate::record::{Batch, DataType, Schema, SchemaRef, Value};
use crate::state::codec::{corrupt, decode, expect_same, Snapshot, StateFormat};
use crate::state::rocks::RocksSnapshot;
use crate::state::{KeyedSnapshot, KeyedState, KeyedStore, RocksEnv};

/// An aggregate's checkpoint: its configuration (checked on restore), every key's
/// accumulators in the order the keys arrived, and how far the final emission got.
#[derive(Serialize, Deserialize)]
struct AggregateSnapshot {
    key_type: Option<DataType>,
    aggs: Vec<AggSignature>,
    groups: KeyedSnapshot<Acc>,
    emitted: u64,
}

impl StateFormat for AggregateSnapshot {
    const VERSION: u8 = 3;

    fn state_bytes(&self) -> u64 {
        self.groups.state_bytes(Acc::state_bytes)
    }
}

/// What an aggregate on RocksDB keeps in a checkpoint besides the database: its
/// configuration and how far the final emission got (the last key emitted, and whether it
/// is over).
#[derive(Serialize, Deserialize)]
struct AggregateHeader {
    key_type: Option<DataType>,
    aggs: Vec<AggSignature>,
    emit_after: Option<Vec<u8>>,
    emitted_all: bool,
}

/// How far the final emission of an aggregate on RocksDB got.
#[derive(Debug, Default)]
struct RocksEmission {
    after: Option<Vec<u8>>,
    done: bool,
}

/// A keyed aggregation over all of event time.
#[derive(Debug)]
pub struct Aggregate {
    key: Option<usize>,
    key_type: Option<DataType>,
    aggs: Vec<AggSpec>,
    state: KeyedStore<Acc>,
    schema: SchemaRef,
    /// How many keys the final emission has written so far (in-memory state).
    emitted: usize,
    /// How far the final emission got (RocksDB state).
    emission: RocksEmission,
}

impl Aggregate {
    /// Aggregates `aggs` (e.g. `count(*) AS n`) per `key` (or globally), in memory.
    pub fn new(
        input: &SchemaRef,
        key: Option<&str>,
        aggs: &[impl AsRef<str>],
    ) -> Result<Self, EngineError> {
        Self::with_state(input, key, aggs, None)
    }

    /// Like [`Self::new`], keeping the accumulators in RocksDB when `rocks` says where.
    pub fn with_state(
        input: &SchemaRef,
        key: Option<&str>,
        aggs: &[impl AsRef<str>],
        rocks: Option<RocksEnv>,
    ) -> Result<Self, EngineError> {
        let aggs = parse_aggs(aggs, input)?;
        let key = key.map(|k| input.require(k)).transpose()?;
        let mut fields: Vec<_> = key.iter().map(|k| input.fields()[*k].clone()).collect();
        fields.extend(aggs.iter().map(|a| a.field().clone()));
        let schema = Arc::new(Schema::new(fields)?);
        let key_type = key.map(|k| input.fields()[k].data_type);
        Ok(Self {
            key,
            key_type,
            // Keyless aggregates file every record under the int 0.
            state: KeyedStore::new(key_type.unwrap_or(DataType::Int), aggs.len(), rocks)?,
            aggs,
            schema,
            emitted: 0,
            emission: RocksEmission::default(),
        })
    }
}

/// Writes one result row: the key (when `keyed`), then each aggregate's result.
fn emit_row(keyed: bool, aggs: &[AggSpec], key: Value<'_>, accs: &[Acc], out: &mut Output) {
    let offset = usize::from(keyed);
    let columns = out.main.columns_mut();
    if keyed {
        columns[0].push(key);
    }
    for (i, (spec, acc)) in aggs.iter().zip(accs).enumerate() {
        spec.emit(acc, &mut columns[offset + i]);
    }
    out.main.commit_row();
}

impl Operator for Aggregate {
    fn name(&self) -> &'static str {
        "aggregate"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, _out: &mut Output) -> Result<(), EngineError> {
        self.state.reserve(input.len())?;
        for row in 0..input.len() {
            let key = self.key.map_or(Value::Int(0), |k| input.value(row, k));
            let aggs = &self.aggs;
            let accs = self.state.entry("aggregate", key, |i| aggs[i].init())?;
            update_all(aggs, accs, input, row);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Emit, EngineError> {
        if watermark < i64::MAX {
            return Ok(Emit::Done);
        }
        let room = OUTPUT_BATCH_RECORDS_MAX.saturating_sub(out.main.len());
        let (keyed, aggs) = (self.key.is_some(), &self.aggs);
        let done = match &mut self.state {
            KeyedStore::Memory(groups) => {
                let end = groups.len().min(self.emitted + room);
                for slot in self.emitted..end {
                    emit_row(keyed, aggs, groups.key(slot), groups.values(slot), out);
                }
                self.emitted = end;
                end == groups.len()
            }
            KeyedStore::Rocks(_) if self.emission.done => true,
            KeyedStore::Rocks(_) if room == 0 => false,
            KeyedStore::Rocks(groups) => {
                let next = groups.visit(self.emission.after.as_deref(), room, |key, accs| {
                    emit_row(keyed, aggs, key, accs, out)
                })?;
                self.emission.done = next.is_none();
                if next.is_some() {
                    self.emission.after = next;
                }
                self.emission.done
            }
        };
        Ok(if done { Emit::Done } else { Emit::More })
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        let name = self.name();
        let (key_type, aggs) = (self.key_type, signatures(&self.aggs));
        Ok(Some(match &mut self.state {
            KeyedStore::Memory(groups) => Snapshot::frozen(
                name,
                AggregateSnapshot {
                    key_type,
                    aggs,
                    groups: groups.snapshot(),
                    emitted: self.emitted as u64,
                },
            ),
            KeyedStore::Rocks(groups) => {
                let header = AggregateHeader {
                    key_type,
                    aggs,
                    emit_after: self.emission.after.clone(),
                    emitted_all: self.emission.done,
                };
                Box::new(groups.freeze(name, header)?)
            }
        }))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        let signatures = signatures(&self.aggs);
        if let KeyedStore::Rocks(groups) = &mut self.state {
            let s: RocksSnapshot<AggregateHeader> = decode(name, state)?;
            expect_same(name, "key type", &s.header.key_type, &self.key_type)?;
            expect_same(name, "aggregates", &s.header.aggs, &signatures)?;
            groups.restore(&s.files)?;
            self.emission = RocksEmission {
                after: s.header.emit_after,
                done: s.header.emitted_all,
            };
            return Ok(());
        }
        let s: AggregateSnapshot = decode(name, state)?;
        expect_same(name, "key type", &s.key_type, &self.key_type)?;
        expect_same(name, "aggregates", &s.aggs, &signatures)?;
        let keys_max = match &self.state {
            KeyedStore::Memory(live) => live.keys_max(),
            KeyedStore::Rocks(_) => crate::state::KEYED_STATE_KEYS_MAX,
        };
        let state = KeyedState::restore(s.groups, self.state.key_type(), self.aggs.len(), keys_max)
            .map_err(|m| corrupt(name, format!("keyed state: {m}")))?;
        for slot in 0..state.len() {
            check_all(&self.aggs, state.values(slot))
                .map_err(|m| corrupt(name, format!("key {}: {m}", state.key(slot))))?;
        }
        if s.emitted > state.len() as u64 {
            return Err(corrupt(
                name,
                format!(
                    "the final emission is past its end ({} of {} keys)",
                    s.emitted,
                    state.len()
                ),
            ));
        }
        self.state = KeyedStore::Memory(state);
        self.emitted = s.emitted as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::{batch, drain};
    use crate::record::{DataType, OwnedValue};

    #[test]
    fn the_final_emission_comes_in_bounded_batches() {
        let schema = Schema::of(&[("k", DataType::Int)]).unwrap();
        let mut agg = Aggregate::new(&schema, Some("k"), &["count(*) AS n"]).unwrap();
        let mut out = Output::new(agg.output_schema().clone(), schema.clone());
        let rows: Vec<_> = (0..2_100).map(|k| vec![Value::Int(k % 2_050)]).collect();
        agg.process(&batch(&schema, &rows), &mut out).unwrap();
        let (got, sizes) = drain(&mut agg, i64::MAX, &mut out);
        assert_eq!(
            sizes,
            [OUTPUT_BATCH_RECORDS_MAX, OUTPUT_BATCH_RECORDS_MAX, 2]
        );
        let total: i64 = got
            .iter()
            .map(|r| match r[1] {
                OwnedValue::Int(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!((got.len(), total), (2_050, 2_100));
        // Emitted once: a later end-of-time watermark adds nothing.
        let (again, _) = drain(&mut agg, i64::MAX, &mut out);
        assert!(again.is_empty());
    }

    #[test]
    fn a_restore_refuses_groups_the_operator_could_not_have_made() {
        let schema = Schema::of(&[("k", DataType::Int)]).unwrap();
        let make = || Aggregate::new(&schema, Some("k"), &["count(*) AS n"]).unwrap();
        let restore_changed = |change: &dyn Fn(&mut AggregateSnapshot)| {
            let mut agg = make();
            let mut out = Output::new(agg.output_schema().clone(), schema.clone());
            let rows: Vec<_> = (0..3).map(|k| vec![Value::Int(k)]).collect();
            agg.process(&batch(&schema, &rows), &mut out).unwrap();
            let mut bytes = Vec::new();
            agg.snapshot()
                .unwrap()
                .unwrap()
                .write_to(&mut bytes)
                .unwrap();
            let mut state: AggregateSnapshot = decode("aggregate", &bytes).unwrap();
            change(&mut state);
            bytes.clear();
            Snapshot::frozen("aggregate", state)
                .write_to(&mut bytes)
                .unwrap();
            make().restore(&bytes).map_err(|e| e.to_string())
        };
        assert_eq!(restore_changed(&|_| {}), Ok(()));
        let m = restore_changed(&|s| s.emitted = 4).unwrap_err();
        assert!(
            m.contains("aggregate: ") && m.contains("4 of 3 keys"),
            "{m}"
        );
        let m = restore_changed(&|s| {
            s.groups.first_chunk_mut().values.pop();
        })
        .unwrap_err();
        assert!(
            m.contains("keyed state: chunk 0: 2 values for 3 keys"),
            "{m}"
        );
        let m = restore_changed(&|s| s.groups.first_chunk_mut().values[2] = Acc::Avg(1.0, 1))
            .unwrap_err();
        assert!(m.contains("key 2") && m.contains("`n`"), "{m}");
    }

    #[test]
    fn an_aggregate_on_rocksdb_restores_from_its_checkpoint_and_emits_every_group() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            sluice_storage::blob::open(&format!("file://{}", dir.path().join("store").display()))
                .unwrap();
        let env = |name: &str| RocksEnv {
            dir: dir.path().join(name),
            cache_keys: 8,
            key_groups: 128,
            storage: Some((store.clone(), "job/shared/op".into())),
        };
        let schema = Schema::of(&[("k", DataType::String), ("p", DataType::Int)]).unwrap();
        let aggs = ["count(*) AS n", "sum(p) AS total"];
        let make = |rocks| Aggregate::with_state(&schema, Some("k"), &aggs, rocks).unwrap();
        let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
        let rows = |from: i64, to: i64| -> Vec<Vec<Value<'_>>> {
            (from..to)
                .map(|i| vec![Value::Str(&keys[i as usize % 300]), Value::Int(i)])
                .collect()
        };
        let (first, second) = (rows(0, 2_000), rows(2_000, 3_000));
        let mut out = Output::new(make(None).output_schema().clone(), schema.clone());

        let mut memory = make(None);
        memory.process(&batch(&schema, &first), &mut out).unwrap();
        memory.process(&batch(&schema, &second), &mut out).unwrap();
        let (want, _) = drain(&mut memory, i64::MAX, &mut out);

        let mut before = make(Some(env("a")));
        before.process(&batch(&schema, &first), &mut out).unwrap();
        let mut bytes = Vec::new();
        let frozen = before.snapshot().unwrap().unwrap();
        // Records after the barrier are not in the checkpoint.
        before.process(&batch(&schema, &second), &mut out).unwrap();
        frozen.write_to(&mut bytes).unwrap();
        assert!(!frozen.shared_objects().paths.is_empty());
        drop(before);

        let mut after = make(Some(env("b")));
        after.restore(&bytes).unwrap();
        after.process(&batch(&schema, &second), &mut out).unwrap();
        let (got, sizes) = drain(&mut after, i64::MAX, &mut out);
        let sorted = |mut v: Vec<Vec<OwnedValue>>| {
            v.sort_by_key(|r| r[0].to_string());
            v
        };
        assert_eq!(got.len(), 300, "{sizes:?}");
        assert_eq!(sorted(got), sorted(want));

        // A checkpoint of the other backend is named as such.
        let e = make(None).restore(&bytes).unwrap_err().to_string();
        assert!(e.contains("state_backend = \"rocksdb\""), "{e}");
    }
}
