//! The record model: schemas, typed columns, batches, values and key hashing.
#![forbid(unsafe_code)]

pub mod batch;
pub mod column;
pub mod hash;
pub mod schema;
pub mod value;

pub use batch::{Batch, BATCH_RECORDS_MAX};
pub use column::{Column, StrColumn};
pub use schema::{DataType, Field, Schema, SchemaRef};
pub use value::{OwnedValue, Value};
