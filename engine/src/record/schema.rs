//! Schemas: named, typed fields of a record.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The type of one field. Timestamps are milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// 64-bit signed integer.
    Int,
    /// 64-bit IEEE float.
    Float,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// Milliseconds since the Unix epoch, as a 64-bit signed integer.
    Timestamp,
}

impl DataType {
    /// Returns whether values of this type are numbers (int, float or timestamp).
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float | Self::Timestamp)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Timestamp => "timestamp",
        };
        f.write_str(name)
    }
}

/// One named, typed field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    /// Field name, unique within its schema.
    pub name: String,
    /// Field type.
    #[serde(rename = "type")]
    pub data_type: DataType,
}

impl Field {
    /// Creates a field.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Self {
            name: name.into(),
            data_type,
        }
    }
}

/// An ordered list of uniquely named fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Schema {
    fields: Vec<Field>,
}

/// Schemas are shared between batches and operators.
pub type SchemaRef = Arc<Schema>;

impl Schema {
    /// Creates a schema; rejects duplicate field names.
    pub fn new(fields: Vec<Field>) -> Result<Self, EngineError> {
        for (i, field) in fields.iter().enumerate() {
            if fields[..i].iter().any(|f| f.name == field.name) {
                return Err(EngineError::Plan(format!(
                    "field `{}` appears twice in a schema; field names must be unique",
                    field.name
                )));
            }
        }
        Ok(Self { fields })
    }

    /// Creates a schema from fields the engine itself defines with unique names.
    pub(crate) fn trusted(fields: Vec<Field>) -> Self {
        debug_assert!(
            Self::new(fields.clone()).is_ok(),
            "duplicate built-in field names"
        );
        Self { fields }
    }

    /// Creates a shared schema from `(name, type)` pairs.
    pub fn of(fields: &[(&str, DataType)]) -> Result<SchemaRef, EngineError> {
        let fields = fields.iter().map(|(n, t)| Field::new(*n, *t)).collect();
        Ok(Arc::new(Self::new(fields)?))
    }

    /// Returns the fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Returns the number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Returns whether the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Returns the index of the field called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Returns the index of `name` or an error that lists the available fields.
    pub fn require(&self, name: &str) -> Result<usize, EngineError> {
        self.index_of(name).ok_or_else(|| {
            EngineError::Plan(format!(
                "unknown column `{name}`; available columns: {}",
                self
            ))
        })
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", field.name, field.data_type)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_names_are_rejected() {
        let err = Schema::of(&[("a", DataType::Int), ("a", DataType::Float)]).unwrap_err();
        assert!(err.to_string().contains("`a` appears twice"), "{err}");
    }

    #[test]
    fn require_lists_columns() {
        let schema = Schema::of(&[("a", DataType::Int), ("b", DataType::String)]).unwrap();
        assert_eq!(schema.require("b").unwrap(), 1);
        let err = schema.require("c").unwrap_err().to_string();
        assert!(
            err.contains("unknown column `c`") && err.contains("a int, b string"),
            "{err}"
        );
    }
}
