//! Map (projection): computes a list of SQL expressions per record.
//!
//! HOT PATH: vectorized evaluation into reused buffers; no per-record allocation, locking or
//! logging.
//!
//! ```
//! use sluice_engine::operator::{Map, Operator, Output};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("auction", DataType::Int), ("price", DataType::Int)]).unwrap();
//! let mut map = Map::new(&schema, &["auction", "price * 0.908 AS price_eur"]).unwrap();
//! let mut input = Batch::new(schema.clone());
//! input.push_row(&[Value::Int(7), Value::Int(1000)]).unwrap();
//! let mut out = Output::new(map.output_schema().clone(), schema);
//! map.process(&input, &mut out).unwrap();
//! assert_eq!(out.main.value(0, 1), Value::Float(908.0));
//! assert_eq!(out.main.schema().fields()[1].name, "price_eur");
//! ```

use std::sync::Arc;

use crate::error::EngineError;
use crate::expr::CompiledExpr;
use crate::operator::{Operator, Output};
use crate::record::{Batch, Field, Schema, SchemaRef};

/// Projects each record through a list of expressions.
#[derive(Debug)]
pub struct Map {
    exprs: Vec<CompiledExpr>,
    schema: SchemaRef,
}

impl Map {
    /// Compiles `projections` (e.g. `price * 0.908 AS price_eur`) against `input`.
    pub fn new(input: &SchemaRef, projections: &[impl AsRef<str>]) -> Result<Self, EngineError> {
        if projections.is_empty() {
            return Err(EngineError::Plan(
                "a map needs at least one expression".into(),
            ));
        }
        let exprs = projections
            .iter()
            .map(|p| CompiledExpr::compile_projection(p.as_ref(), input))
            .collect::<Result<Vec<_>, _>>()?;
        let fields = exprs
            .iter()
            .map(|e| Field::new(e.name(), e.data_type()))
            .collect();
        let schema = Schema::new(fields).map_err(|e| {
            EngineError::expr(
                &projections
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<_>>()
                    .join(", "),
                format!("{e}; give the expressions distinct names with AS"),
            )
        })?;
        Ok(Self {
            exprs,
            schema: Arc::new(schema),
        })
    }
}

impl Operator for Map {
    fn name(&self) -> &'static str {
        "map"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        for (i, expr) in self.exprs.iter_mut().enumerate() {
            let column = expr.eval(input);
            out.main.columns_mut()[i].extend_from(column);
        }
        out.main.commit_rows(input.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::{DataType, OwnedValue, Value};

    #[test]
    fn duplicate_output_names_are_rejected() {
        let schema = Schema::of(&[("a", DataType::Int)]).unwrap();
        let err = Map::new(&schema, &["a", "a + 1 AS a"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("distinct names"), "{err}");
    }

    #[test]
    fn projects_and_appends() {
        let schema = Schema::of(&[("w", DataType::String)]).unwrap();
        let mut map = Map::new(&schema, &["upper(w) AS w"]).unwrap();
        let input = batch(&schema, &[vec![Value::Str("a")], vec![Value::Str("b")]]);
        let mut out = Output::new(map.output_schema().clone(), schema);
        map.process(&input, &mut out).unwrap();
        map.process(&input, &mut out).unwrap();
        let rows = out.main.to_rows();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3], vec![OwnedValue::Str("B".into())]);
    }
}
