//! Single values: borrowed views into columns and owned copies kept in state.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::record::schema::DataType;

/// A value borrowed from a column. Creating one never allocates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A string borrowed from its column.
    Str(&'a str),
    /// A timestamp in epoch milliseconds.
    Timestamp(i64),
}

impl Value<'_> {
    /// Returns the type of the value.
    pub fn data_type(&self) -> DataType {
        match self {
            Self::Int(_) => DataType::Int,
            Self::Float(_) => DataType::Float,
            Self::Bool(_) => DataType::Bool,
            Self::Str(_) => DataType::String,
            Self::Timestamp(_) => DataType::Timestamp,
        }
    }

    /// Copies the value out of its column.
    pub fn to_owned_value(&self) -> OwnedValue {
        match *self {
            Self::Int(v) => OwnedValue::Int(v),
            Self::Float(v) => OwnedValue::Float(v),
            Self::Bool(v) => OwnedValue::Bool(v),
            Self::Str(v) => OwnedValue::Str(v.to_owned()),
            Self::Timestamp(v) => OwnedValue::Timestamp(v),
        }
    }

    /// Returns the value as f64 if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Int(v) | Self::Timestamp(v) => Some(v as f64),
            Self::Float(v) => Some(v),
            Self::Bool(_) | Self::Str(_) => None,
        }
    }

    /// Appends the value as a JSON scalar to `out`.
    pub fn write_json(&self, out: &mut String) {
        match *self {
            Self::Int(v) | Self::Timestamp(v) => {
                let _ = write!(out, "{v}");
            }
            Self::Float(v) if v.is_finite() => {
                let _ = write!(out, "{v:?}");
            }
            Self::Float(_) => out.push_str("null"),
            Self::Bool(v) => out.push_str(if v { "true" } else { "false" }),
            Self::Str(s) => write_json_string(s, out),
        }
    }
}

/// Appends `s` as a quoted, escaped JSON string.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(v) | Self::Timestamp(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::Str(v) => f.write_str(v),
        }
    }
}

/// An owned value, kept in operator state (keys, first/last aggregates) and in tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OwnedValue {
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A string.
    Str(String),
    /// A timestamp in epoch milliseconds.
    Timestamp(i64),
}

impl OwnedValue {
    /// Borrows the value.
    pub fn as_value(&self) -> Value<'_> {
        match self {
            Self::Int(v) => Value::Int(*v),
            Self::Float(v) => Value::Float(*v),
            Self::Bool(v) => Value::Bool(*v),
            Self::Str(v) => Value::Str(v),
            Self::Timestamp(v) => Value::Timestamp(*v),
        }
    }

    /// Returns the type of the value.
    pub fn data_type(&self) -> DataType {
        self.as_value().data_type()
    }

    /// Approximately how many bytes of memory the value takes, inline and on the heap.
    pub fn state_bytes(&self) -> u64 {
        let heap = match self {
            Self::Str(s) => s.capacity(),
            _ => 0,
        };
        (std::mem::size_of::<Self>() + heap) as u64
    }

    /// Returns whether this equals the borrowed `other` (floats compare bitwise, so NaN keys
    /// group together).
    pub fn eq_value(&self, other: Value<'_>) -> bool {
        match (self, other) {
            (Self::Int(a), Value::Int(b)) | (Self::Timestamp(a), Value::Timestamp(b)) => *a == b,
            (Self::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Bool(a), Value::Bool(b)) => *a == b,
            (Self::Str(a), Value::Str(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for OwnedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_value().fmt(f)
    }
}
