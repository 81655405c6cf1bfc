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

use crate::error::EngineError;
use crate::operator::agg::{init_all, parse_aggs, update_all, Acc, AggSpec};
use crate::operator::{Emit, Operator, Output, OUTPUT_BATCH_RECORDS_MAX};
use crate::record::{Batch, KeyedMap, Schema, SchemaRef, Value};

/// A keyed aggregation over all of event time.
#[derive(Debug)]
pub struct Aggregate {
    key: Option<usize>,
    aggs: Vec<AggSpec>,
    state: KeyedMap<Vec<Acc>>,
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
        Ok(Self {
            key,
            aggs,
            state: KeyedMap::default(),
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
                .entry(key, || init_all(&self.aggs))
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
            let Some((key, accs)) = self.state.get_index(self.emitted) else {
                return Ok(Emit::Done);
            };
            self.emitted += 1;
            let columns = out.main.columns_mut();
            if self.key.is_some() {
                columns[0].push(key.as_value());
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
}
