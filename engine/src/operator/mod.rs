//! Operators: pure batch-in, batch-out transformations, testable without threads.
//!
//! A one-input operator implements [`Operator`]; joins implement [`TwoInputOperator`]. Both
//! receive watermarks through `on_watermark`, where windows fire and state is cleaned up.
//! Records that arrive too late for any window go to the late side output.
#![forbid(unsafe_code)]

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef};

pub mod agg;
pub mod aggregate;
pub mod filter;
pub mod flat_map;
pub mod interval_join;
pub mod key_by;
pub mod map;
pub mod reduce;
pub mod session_window;
pub mod union;
pub mod window;
pub mod window_aggregate;
pub mod window_join;

pub use aggregate::Aggregate;
pub use filter::Filter;
pub use flat_map::FlatMap;
pub use interval_join::IntervalJoin;
pub use key_by::KeyBy;
pub use map::Map;
pub use reduce::{Reduce, ReduceFn};
pub use session_window::SessionWindow;
pub use union::Union;
pub use window::WindowKind;
pub use window_aggregate::WindowAggregate;
pub use window_join::WindowJoin;

/// Where an operator writes: its main output and the late side output (records that missed
/// every window they belong to, in the operator's input schema).
#[derive(Debug)]
pub struct Output {
    /// Records in the operator's output schema.
    pub main: Batch,
    /// Late records in the operator's input schema.
    pub late: Batch,
}

impl Output {
    /// Creates empty outputs.
    pub fn new(output_schema: SchemaRef, input_schema: SchemaRef) -> Self {
        Self {
            main: Batch::new(output_schema),
            late: Batch::new(input_schema),
        }
    }

    /// Clears both outputs, keeping their buffers.
    pub fn clear(&mut self) {
        self.main.clear();
        self.late.clear();
    }
}

/// A one-input operator.
pub trait Operator {
    /// The schema of the records it emits.
    fn output_schema(&self) -> &SchemaRef;

    /// Processes one input batch, appending results to `out`.
    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError>;

    /// Advances event time to `watermark` (no record with a timestamp `<= watermark` is
    /// expected any more); fires windows and drops state that is no longer needed.
    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), EngineError> {
        let _ = (watermark, out);
        Ok(())
    }
}

/// A two-input operator (joins).
pub trait TwoInputOperator {
    /// The schema of the records it emits.
    fn output_schema(&self) -> &SchemaRef;

    /// Processes a batch of the left input.
    fn process_left(&mut self, input: &Batch, out: &mut Batch) -> Result<(), EngineError>;

    /// Processes a batch of the right input.
    fn process_right(&mut self, input: &Batch, out: &mut Batch) -> Result<(), EngineError>;

    /// Advances event time (the minimum of both inputs' watermarks).
    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<(), EngineError>;

    /// Returns how many records arrived after their state was dropped.
    fn late_records(&self) -> u64;
}

/// Builds the schema of a join: left fields, then right fields; a right field whose name is
/// taken gets the suffix `_right`.
pub(crate) fn join_schema(left: &SchemaRef, right: &SchemaRef) -> Result<SchemaRef, EngineError> {
    use crate::record::{Field, Schema};
    let mut fields: Vec<Field> = left.fields().to_vec();
    for f in right.fields() {
        let mut name = f.name.clone();
        while fields.iter().any(|g| g.name == name) {
            name.push_str("_right");
        }
        fields.push(Field::new(name, f.data_type));
    }
    Ok(std::sync::Arc::new(Schema::new(fields)?))
}

/// Appends the concatenation of `left` row `l` and `right` row `r` to `out`.
pub(crate) fn push_joined(out: &mut Batch, left: &Batch, l: usize, right: &Batch, r: usize) {
    let n_left = left.columns().len();
    let columns = out.columns_mut();
    for (i, c) in left.columns().iter().enumerate() {
        columns[i].push_from(c, l);
    }
    for (i, c) in right.columns().iter().enumerate() {
        columns[n_left + i].push_from(c, r);
    }
    out.commit_row();
}

/// Returns the index of the timestamp column `name`, which must be a timestamp or an int.
pub(crate) fn time_column(schema: &SchemaRef, name: &str) -> Result<usize, EngineError> {
    use crate::record::DataType;
    let i = schema.require(name)?;
    match schema.fields()[i].data_type {
        DataType::Timestamp | DataType::Int => Ok(i),
        other => Err(EngineError::Plan(format!(
            "event-time column `{name}` is {other}; it must be a timestamp or an int"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::record::{Batch, OwnedValue, SchemaRef, Value};

    /// Builds a batch from rows of values.
    pub(crate) fn batch(schema: &SchemaRef, rows: &[Vec<Value<'_>>]) -> Batch {
        let mut b = Batch::new(schema.clone());
        for row in rows {
            b.push_row(row).unwrap();
        }
        b
    }

    /// Returns the rows sorted, for order-insensitive comparisons.
    pub(crate) fn sorted_rows(b: &Batch) -> Vec<Vec<OwnedValue>> {
        let mut rows = b.to_rows();
        rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        rows
    }
}
