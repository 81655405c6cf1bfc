//! Union: merges streams of the same schema. In a job, sources listed together are unioned;
//! as an operator it checks the schema and passes batches through.
//!
//! ```
//! use sluice_engine::operator::{Operator, Output, Union};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("x", DataType::Int)]).unwrap();
//! let mut union = Union::new(&[schema.clone(), schema.clone()]).unwrap();
//! let mut a = Batch::new(schema.clone());
//! a.push_row(&[Value::Int(1)]).unwrap();
//! let mut out = Output::new(schema.clone(), schema);
//! union.process(&a, &mut out).unwrap();
//! union.process(&a, &mut out).unwrap();
//! assert_eq!(out.main.len(), 2);
//! ```

use crate::error::EngineError;
use crate::operator::{Operator, Output};
use crate::record::{Batch, SchemaRef};

/// Passes through batches of any of its inputs, which share one schema.
#[derive(Debug)]
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    /// Checks that all `inputs` have the same field names and types.
    pub fn new(inputs: &[SchemaRef]) -> Result<Self, EngineError> {
        let Some(first) = inputs.first() else {
            return Err(EngineError::Plan("a union needs at least one input".into()));
        };
        for other in &inputs[1..] {
            if other.fields() != first.fields() {
                return Err(EngineError::Plan(format!(
                    "union inputs must have the same schema: ({first}) differs from ({other})"
                )));
            }
        }
        Ok(Self {
            schema: first.clone(),
        })
    }
}

impl Operator for Union {
    fn name(&self) -> &'static str {
        "union"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        if input.schema().fields() != self.schema.fields() {
            return Err(EngineError::Plan(format!(
                "union got a batch of ({}) but expects ({})",
                input.schema(),
                self.schema
            )));
        }
        out.main.append(input);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema};

    #[test]
    fn mismatched_schemas_are_rejected() {
        let a = Schema::of(&[("x", DataType::Int)]).unwrap();
        let b = Schema::of(&[("x", DataType::Float)]).unwrap();
        let err = Union::new(&[a.clone(), b.clone()]).unwrap_err().to_string();
        assert!(err.contains("same schema"), "{err}");
        let mut u = Union::new(std::slice::from_ref(&a)).unwrap();
        let mut out = Output::new(a.clone(), a);
        assert!(u.process(&Batch::new(b), &mut out).is_err());
    }
}
