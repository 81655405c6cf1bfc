//! Flat map: splits a string field on a separator and emits one record per non-empty piece.
//!
//! HOT PATH: pieces are copied into reused column buffers; no per-record allocation, locking
//! or logging.
//!
//! ```
//! use sluice_engine::operator::{FlatMap, Operator, Output};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("line", DataType::String)]).unwrap();
//! let mut split = FlatMap::split(&schema, "line", " ", "word").unwrap();
//! let mut input = Batch::new(schema.clone());
//! input.push_row(&[Value::Str("to be  or")]).unwrap();
//! let mut out = Output::new(split.output_schema().clone(), schema);
//! split.process(&input, &mut out).unwrap();
//! assert_eq!(out.main.len(), 3);
//! assert_eq!(out.main.value(2, 0), Value::Str("or"));
//! ```

use std::sync::Arc;

use crate::error::EngineError;
use crate::operator::{output_limit, Operator, Output, OUTPUT_RECORDS_PER_CALL_MAX};
use crate::record::{Batch, Column, DataType, Field, Schema, SchemaRef};

/// Splits a string column into one record per piece.
#[derive(Debug)]
pub struct FlatMap {
    column: usize,
    separator: String,
    schema: SchemaRef,
}

impl FlatMap {
    /// Splits `column` of `input` on `separator`; the pieces replace the column under the name
    /// `output`, the other fields are repeated.
    pub fn split(
        input: &SchemaRef,
        column: &str,
        separator: &str,
        output: &str,
    ) -> Result<Self, EngineError> {
        let index = input.require(column)?;
        if input.fields()[index].data_type != DataType::String {
            return Err(EngineError::Plan(format!(
                "flat_map splits strings, but `{column}` is {}",
                input.fields()[index].data_type
            )));
        }
        if separator.is_empty() {
            return Err(EngineError::Plan(
                "flat_map separator must not be empty".into(),
            ));
        }
        let mut fields = input.fields().to_vec();
        fields[index] = Field::new(output, DataType::String);
        let schema = Arc::new(Schema::new(fields)?);
        Ok(Self {
            column: index,
            separator: separator.to_owned(),
            schema,
        })
    }
}

impl Operator for FlatMap {
    fn name(&self) -> &'static str {
        "flat_map"
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        let Column::Str(text) = input.column(self.column) else {
            return Err(EngineError::Plan("flat_map column is not a string".into()));
        };
        for row in 0..input.len() {
            for piece in text
                .get(row)
                .split(self.separator.as_str())
                .filter(|p| !p.is_empty())
            {
                if out.main.len() >= OUTPUT_RECORDS_PER_CALL_MAX {
                    return Err(output_limit("flat_map"));
                }
                for (i, column) in out.main.columns_mut().iter_mut().enumerate() {
                    match column {
                        Column::Str(c) if i == self.column => c.push(piece),
                        c => c.push_from(input.column(i), row),
                    }
                }
                out.main.commit_row();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::{OwnedValue, Value};

    #[test]
    fn repeats_other_fields() {
        let schema = Schema::of(&[("id", DataType::Int), ("text", DataType::String)]).unwrap();
        let mut fm = FlatMap::split(&schema, "text", ",", "part").unwrap();
        let input = batch(
            &schema,
            &[
                vec![Value::Int(1), Value::Str("a,b")],
                vec![Value::Int(2), Value::Str(",")],
            ],
        );
        let mut out = Output::new(fm.output_schema().clone(), schema);
        fm.process(&input, &mut out).unwrap();
        let s = |v: &str| OwnedValue::Str(v.into());
        assert_eq!(
            out.main.to_rows(),
            vec![
                vec![OwnedValue::Int(1), s("a")],
                vec![OwnedValue::Int(1), s("b")]
            ]
        );
        assert_eq!(out.main.schema().fields()[1].name, "part");
    }

    #[test]
    fn splitting_a_non_string_is_rejected() {
        let schema = Schema::of(&[("id", DataType::Int)]).unwrap();
        assert!(FlatMap::split(&schema, "id", " ", "x").is_err());
        assert!(FlatMap::split(&schema, "nope", " ", "x").is_err());
    }
}
