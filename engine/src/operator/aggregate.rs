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
use crate::state::{KeyedSnapshot, KeyedState};

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
    const VERSION: u8 = 2;

    fn state_bytes(&self) -> u64 {
        self.groups.state_bytes(Acc::state_bytes)
    }
}

/// A keyed aggregation over all of event time.
#[derive(Debug)]
pub struct Aggregate {
    key: Option<usize>,
    key_type: Option<DataType>,
    aggs: Vec<AggSpec>,
    state: KeyedState<Acc>,
    schema: SchemaRef,
    /// How many keys the final emission has written so far.
    emitted: usize,
}

impl Aggregate {
    /// Aggregates `aggs` (e.g. `count(*) AS n`) per `key` (or globally).
    pub fn new(
        input: &SchemaRef,
        key: Option<&str>,
        aggs: &[impl AsRef<str>],
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
            state: KeyedState::new(key_type.unwrap_or(DataType::Int), aggs.len()),
            aggs,
            schema,
            emitted: 0,
        })
    }
}

impl Operator for Aggregate {
    fn name(&self) -> &'static str {
        "aggregate"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, _out: &mut Output) -> Result<(), EngineError> {
        for row in 0..input.len() {
            let key = self.key.map_or(Value::Int(0), |k| input.value(row, k));
            let accs = self
                .state
                .entry(key, |i| self.aggs[i].init())
                .map_err(|e| e.in_operator("aggregate"))?;
            update_all(&self.aggs, accs, input, row);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Emit, EngineError> {
        if watermark < i64::MAX || self.emitted == self.state.len() {
            return Ok(Emit::Done);
        }
        let offset = usize::from(self.key.is_some());
        while out.main.len() < OUTPUT_BATCH_RECORDS_MAX {
            if self.emitted == self.state.len() {
                return Ok(Emit::Done);
            }
            let (key, accs) = (
                self.state.key(self.emitted),
                self.state.values(self.emitted),
            );
            self.emitted += 1;
            let columns = out.main.columns_mut();
            if self.key.is_some() {
                columns[0].push(key);
            }
            for (i, (spec, acc)) in self.aggs.iter().zip(accs).enumerate() {
                spec.emit(acc, &mut columns[offset + i]);
            }
            out.main.commit_row();
        }
        Ok(if self.emitted == self.state.len() {
            Emit::Done
        } else {
            Emit::More
        })
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        let state = AggregateSnapshot {
            key_type: self.key_type,
            aggs: signatures(&self.aggs),
            groups: self.state.snapshot(),
            emitted: self.emitted as u64,
        };
        Ok(Some(Snapshot::frozen(self.name(), state)))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        let s: AggregateSnapshot = decode(name, state)?;
        expect_same(name, "key type", &s.key_type, &self.key_type)?;
        expect_same(name, "aggregates", &s.aggs, &signatures(&self.aggs))?;
        let state = KeyedState::restore(
            s.groups,
            self.state.key_type(),
            self.aggs.len(),
            self.state.keys_max(),
        )
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
        self.state = state;
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
            s.groups.values.pop();
        })
        .unwrap_err();
        assert!(m.contains("keyed state: 2 values for 3 keys"), "{m}");
        let m = restore_changed(&|s| s.groups.values[2] = Acc::Avg(1.0, 1)).unwrap_err();
        assert!(m.contains("key 2") && m.contains("`n`"), "{m}");
    }
}
