//! Filter: keeps the records for which a SQL predicate is true.
//!
//! HOT PATH: vectorized evaluation, rows copied into a reused output; no per-record
//! allocation, locking or logging.
//!
//! ```
//! use sluice_engine::operator::{Filter, Operator, Output};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("price", DataType::Int)]).unwrap();
//! let mut filter = Filter::new(&schema, "price > 100").unwrap();
//! let mut input = Batch::new(schema.clone());
//! for p in [50, 150, 250] {
//!     input.push_row(&[Value::Int(p)]).unwrap();
//! }
//! let mut out = Output::new(schema.clone(), schema);
//! filter.process(&input, &mut out).unwrap();
//! assert_eq!(out.main.len(), 2);
//! ```

use crate::error::EngineError;
use crate::expr::CompiledExpr;
use crate::operator::{Operator, Output};
use crate::record::{Batch, Column, SchemaRef};

/// Keeps records matching a predicate.
#[derive(Debug)]
pub struct Filter {
    predicate: CompiledExpr,
    schema: SchemaRef,
}

impl Filter {
    /// Compiles `predicate` (e.g. `auction % 123 = 0`) against `input`.
    pub fn new(input: &SchemaRef, predicate: &str) -> Result<Self, EngineError> {
        let predicate = CompiledExpr::compile_predicate(predicate, input)?;
        Ok(Self {
            predicate,
            schema: input.clone(),
        })
    }
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        let Column::Bool(keep) = self.predicate.eval(input) else {
            return Err(EngineError::Plan(
                "filter predicate did not yield bools".into(),
            ));
        };
        if keep.iter().all(|k| *k) {
            out.main.append(input);
            return Ok(());
        }
        for (row, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            out.main.push_row_from(input, row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::{DataType, Schema, Value};

    #[test]
    fn keeps_matching_rows_in_order() {
        let schema = Schema::of(&[("auction", DataType::Int)]).unwrap();
        let mut filter = Filter::new(&schema, "auction % 123 = 0").unwrap();
        let rows: Vec<_> = [0, 5, 123, 124, 246]
            .iter()
            .map(|a| vec![Value::Int(*a)])
            .collect();
        let mut out = Output::new(schema.clone(), schema.clone());
        filter.process(&batch(&schema, &rows), &mut out).unwrap();
        let got: Vec<_> = (0..out.main.len()).map(|r| out.main.value(r, 0)).collect();
        assert_eq!(got, [Value::Int(0), Value::Int(123), Value::Int(246)]);
    }

    #[test]
    fn non_bool_predicate_is_rejected() {
        let schema = Schema::of(&[("a", DataType::Int)]).unwrap();
        assert!(Filter::new(&schema, "a + 1").is_err());
    }
}
