//! Reduce: a rolling, per-key fold of one column; emits the updated value for every record
//! (like a keyed reduce in Flink). Without a key, all records share one running value.
//!
//! HOT PATH: one keyed-state lookup per record; new keys copy the key once; concatenation
//! grows one buffer per key. No locks, no logging.
//!
//! ```
//! use sluice_engine::operator::{Operator, Output, Reduce, ReduceFn};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("k", DataType::String), ("n", DataType::Int)]).unwrap();
//! let mut sum = Reduce::new(&schema, Some("k"), "n", ReduceFn::Sum).unwrap();
//! let mut input = Batch::new(schema.clone());
//! input.push_row(&[Value::Str("a"), Value::Int(2)]).unwrap();
//! input.push_row(&[Value::Str("a"), Value::Int(5)]).unwrap();
//! let mut out = Output::new(sum.output_schema().clone(), schema);
//! sum.process(&input, &mut out).unwrap();
//! assert_eq!(out.main.value(1, 1), Value::Int(7));
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::operator::{Frozen, Operator, Output};
use crate::record::{Batch, DataType, Field, Schema, SchemaRef, Value};
use crate::state::codec::{corrupt, decode, expect_same, Snapshot, StateFormat};
use crate::state::rocks::RocksSnapshot;
use crate::state::{KeyedSnapshot, KeyedState, KeyedStore, RocksEnv};

/// How a reduce combines values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReduceFn {
    /// Adds numbers.
    Sum,
    /// Keeps the smallest number.
    Min,
    /// Keeps the largest number.
    Max,
    /// Concatenates strings with a separator between them.
    Concat(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum State {
    Int(i64),
    Float(f64),
    Str(String),
}

/// A reduce's configuration, checked on restore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ReduceConfig {
    key_type: Option<DataType>,
    value_type: DataType,
    func: String,
}

/// A reduce's checkpoint with in-memory state: its configuration and every key's running
/// value, in the order the keys arrived.
#[derive(Serialize, Deserialize)]
struct ReduceSnapshot {
    config: ReduceConfig,
    values: KeyedSnapshot<State>,
}

impl StateFormat for ReduceSnapshot {
    const VERSION: u8 = 4;

    fn state_bytes(&self) -> u64 {
        self.values
            .state_bytes(|s| std::mem::size_of::<State>() as u64 + s.heap_bytes())
    }
}

impl State {
    fn heap_bytes(&self) -> u64 {
        match self {
            Self::Str(s) => s.capacity() as u64,
            _ => 0,
        }
    }
}

/// A rolling keyed fold.
#[derive(Debug)]
pub struct Reduce {
    key: Option<usize>,
    /// Whether the key is an output field (not when the key is the folded column itself).
    emit_key: bool,
    value: usize,
    key_type: Option<DataType>,
    value_type: DataType,
    func: ReduceFn,
    state: KeyedStore<State>,
    schema: SchemaRef,
}

impl Reduce {
    /// Folds column `value` per `key` (or globally) with `func`, keeping the running values
    /// in memory.
    pub fn new(
        input: &SchemaRef,
        key: Option<&str>,
        value: &str,
        func: ReduceFn,
    ) -> Result<Self, EngineError> {
        Self::with_state(input, key, value, func, None)
    }

    /// Like [`Self::new`], keeping the running values in RocksDB when `rocks` says where.
    pub fn with_state(
        input: &SchemaRef,
        key: Option<&str>,
        value: &str,
        func: ReduceFn,
        rocks: Option<RocksEnv>,
    ) -> Result<Self, EngineError> {
        let value_index = input.require(value)?;
        let value_type = input.fields()[value_index].data_type;
        let ok = match func {
            ReduceFn::Concat(_) => value_type == DataType::String,
            _ => value_type.is_numeric(),
        };
        if !ok {
            return Err(EngineError::Plan(format!(
                "reduce {func:?} cannot fold `{value}` of type {value_type}"
            )));
        }
        let mut fields = Vec::new();
        let key = match key {
            Some(k) => {
                let i = input.require(k)?;
                if i != value_index {
                    fields.push(input.fields()[i].clone());
                }
                Some(i)
            }
            None => None,
        };
        fields.push(Field::new(value, value_type));
        let schema = Arc::new(Schema::new(fields)?);
        let emit_key = key.is_some_and(|k| k != value_index);
        let key_type = key.map(|k| input.fields()[k].data_type);
        Ok(Self {
            key,
            emit_key,
            value: value_index,
            key_type,
            value_type,
            func,
            // Keyless reduces file every record under the int 0.
            state: KeyedStore::new(key_type.unwrap_or(DataType::Int), 1, rocks)?,
            schema,
        })
    }

    fn config(&self) -> ReduceConfig {
        ReduceConfig {
            key_type: self.key_type,
            value_type: self.value_type,
            func: format!("{:?}", self.func),
        }
    }

    /// Refuses a checkpoint of a reduce configured otherwise, naming what differs.
    fn check_config(&self, saved: &ReduceConfig) -> Result<(), EngineError> {
        let (name, here) = (self.name(), self.config());
        expect_same(name, "key type", &saved.key_type, &here.key_type)?;
        expect_same(name, "value type", &saved.value_type, &here.value_type)?;
        expect_same(name, "function", &saved.func, &here.func)
    }

    /// Refuses a checkpointed running value that is not of the folded type.
    fn check_value(&self, key: Value<'_>, value: &State) -> Result<(), EngineError> {
        let fits = matches!(
            (value, self.value_type),
            (
                State::Int(_),
                DataType::Int | DataType::Timestamp | DataType::Bool
            ) | (State::Float(_), DataType::Float)
                | (State::Str(_), DataType::String)
        );
        if fits {
            return Ok(());
        }
        Err(corrupt(
            self.name(),
            format!(
                "the value {value:?} of key {key} is not a running {}",
                self.value_type
            ),
        ))
    }
}

impl Operator for Reduce {
    fn name(&self) -> &'static str {
        "reduce"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        self.state.reserve(input.len())?;
        for row in 0..input.len() {
            let key = self.key.map_or(Value::Int(0), |k| input.value(row, k));
            let v = input.value(row, self.value);
            let mut fresh = false;
            let state = &mut self.state.entry("reduce", key, |_| {
                fresh = true;
                match v {
                    Value::Float(x) => State::Float(x),
                    Value::Str(s) => State::Str(s.to_owned()),
                    Value::Int(x) | Value::Timestamp(x) => State::Int(x),
                    Value::Bool(b) => State::Int(i64::from(b)),
                }
            })?[0];
            if !fresh {
                match (&mut *state, v, &self.func) {
                    (State::Int(a), Value::Int(x) | Value::Timestamp(x), f) => {
                        *a = match f {
                            ReduceFn::Sum => a.wrapping_add(x),
                            ReduceFn::Min => (*a).min(x),
                            _ => (*a).max(x),
                        };
                    }
                    (State::Float(a), Value::Float(x), f) => {
                        *a = match f {
                            ReduceFn::Sum => *a + x,
                            ReduceFn::Min => a.min(x),
                            _ => a.max(x),
                        };
                    }
                    (State::Str(a), Value::Str(x), ReduceFn::Concat(sep)) => {
                        a.push_str(sep);
                        a.push_str(x);
                    }
                    _ => {}
                }
            }
            let result = match state {
                State::Int(a) => Value::Int(*a),
                State::Float(a) => Value::Float(*a),
                State::Str(a) => Value::Str(a),
            };
            let columns = out.main.columns_mut();
            let mut i = 0;
            if self.emit_key {
                columns[0].push(key);
                i = 1;
            }
            columns[i].push(result);
            out.main.commit_row();
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        let config = self.config();
        let name = self.name();
        Ok(Some(match &mut self.state {
            KeyedStore::Memory(state) => Snapshot::frozen(
                name,
                ReduceSnapshot {
                    config,
                    values: state.snapshot(),
                },
            ),
            KeyedStore::Rocks(state) => Box::new(state.freeze(name, config)?),
        }))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        match &self.state {
            KeyedStore::Memory(live) => {
                let s: ReduceSnapshot = decode(name, state)?;
                self.check_config(&s.config)?;
                let restored = KeyedState::restore(s.values, live.key_type(), 1, live.keys_max())
                    .map_err(|m| corrupt(name, format!("keyed state: {m}")))?;
                for slot in 0..restored.len() {
                    self.check_value(restored.key(slot), &restored.values(slot)[0])?;
                }
                self.state = KeyedStore::Memory(restored);
            }
            KeyedStore::Rocks(_) => {
                let s: RocksSnapshot<ReduceConfig> = decode(name, state)?;
                self.check_config(&s.header)?;
                if let KeyedStore::Rocks(live) = &mut self.state {
                    live.restore(&s.files)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::OwnedValue;

    #[test]
    fn rolling_sum_per_key_and_global_concat() {
        let schema = Schema::of(&[("k", DataType::String), ("n", DataType::Int)]).unwrap();
        let input = batch(
            &schema,
            &[
                vec![Value::Str("a"), Value::Int(1)],
                vec![Value::Str("b"), Value::Int(10)],
                vec![Value::Str("a"), Value::Int(2)],
            ],
        );
        let mut sum = Reduce::new(&schema, Some("k"), "n", ReduceFn::Sum).unwrap();
        let mut out = Output::new(sum.output_schema().clone(), schema.clone());
        sum.process(&input, &mut out).unwrap();
        let ns: Vec<_> = (0..3).map(|r| out.main.value(r, 1)).collect();
        assert_eq!(ns, [Value::Int(1), Value::Int(10), Value::Int(3)]);

        let mut cat = Reduce::new(&schema, None, "k", ReduceFn::Concat("+".into())).unwrap();
        let mut out = Output::new(cat.output_schema().clone(), schema.clone());
        cat.process(&input, &mut out).unwrap();
        assert_eq!(
            out.main.to_rows().last().unwrap(),
            &vec![OwnedValue::Str("a+b+a".into())]
        );
        assert!(Reduce::new(&schema, None, "k", ReduceFn::Sum).is_err());

        // Keyed by the folded column itself: one running value per distinct value.
        let mut per_word =
            Reduce::new(&schema, Some("k"), "k", ReduceFn::Concat("+".into())).unwrap();
        let mut out = Output::new(per_word.output_schema().clone(), schema.clone());
        per_word.process(&input, &mut out).unwrap();
        let got: Vec<_> = out
            .main
            .to_rows()
            .into_iter()
            .map(|r| r[0].to_string())
            .collect();
        assert_eq!(got, ["a", "b", "a+a"]);
    }

    #[test]
    fn a_reduce_on_rocksdb_emits_what_one_in_memory_does() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::of(&[("k", DataType::Int), ("n", DataType::Int)]).unwrap();
        let env = RocksEnv {
            dir: dir.path().join("op"),
            cache_keys: 3,
            key_groups: 128,
            storage: None,
        };
        let mut mem = Reduce::new(&schema, Some("k"), "n", ReduceFn::Sum).unwrap();
        let mut rocks =
            Reduce::with_state(&schema, Some("k"), "n", ReduceFn::Sum, Some(env)).unwrap();
        for round in 0..20i64 {
            let rows: Vec<_> = (0..(round % 5 + 1))
                .map(|i| vec![Value::Int((round * 3 + i) % 11), Value::Int(i + 1)])
                .collect();
            let input = batch(&schema, &rows);
            let mut a = Output::new(mem.output_schema().clone(), schema.clone());
            let mut b = Output::new(rocks.output_schema().clone(), schema.clone());
            mem.process(&input, &mut a).unwrap();
            rocks.process(&input, &mut b).unwrap();
            assert_eq!(a.main.to_rows(), b.main.to_rows(), "round {round}");
        }
    }
}
