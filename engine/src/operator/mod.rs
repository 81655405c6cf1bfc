//! Operators: pure batch-in, batch-out transformations, testable without threads.
//!
//! A one-input operator implements [`Operator`]; joins implement [`TwoInputOperator`]. Both
//! receive watermarks through `on_watermark`, where windows fire and state is cleaned up.
//! Records that arrive too late for any window go to the late side output.
//!
//! Output is bounded: one `on_watermark` call emits at most [`OUTPUT_BATCH_RECORDS_MAX`]
//! records and says [`Emit::More`] when a firing has more to give (the caller drains the
//! output and calls again), so a window that fires for millions of keys never builds one
//! huge batch; one `process` call emits at most [`OUTPUT_RECORDS_PER_CALL_MAX`] records, and
//! an input that would make more (a record fanning out) fails with an
//! [`EngineError::Limit`] naming the operator.
#![forbid(unsafe_code)]

use crate::error::EngineError;
use crate::operator::window::WINDOWS_PER_RECORD_MAX;
use crate::record::{Batch, SchemaRef, BATCH_RECORDS_MAX};
pub use crate::state::{Frozen, FrozenState};

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

/// Calls `on_watermark` until it is done, draining into `out` after every call; for tests
/// and for callers that keep all output anyway.
pub fn advance_fully(
    op: &mut dyn Operator,
    watermark: i64,
    out: &mut Output,
) -> Result<(), EngineError> {
    let mut chunk = Output::new(out.main.schema().clone(), out.late.schema().clone());
    loop {
        chunk.clear();
        let emit = op.on_watermark(watermark, &mut chunk)?;
        out.main.append(&chunk.main);
        out.late.append(&chunk.late);
        if emit == Emit::Done {
            return Ok(());
        }
    }
}
pub use window_aggregate::WindowAggregate;
pub use window_join::WindowJoin;

/// The most records one `on_watermark` call emits; a firing with more resumes in the next
/// call (see [`Emit`]).
pub const OUTPUT_BATCH_RECORDS_MAX: usize = BATCH_RECORDS_MAX;

/// The most records one `process` call may emit. Operators that fan a record out (flat_map
/// pieces, join matches, the re-fired windows of a late record) stop with
/// [`EngineError::Limit`] rather than go past it.
pub const OUTPUT_RECORDS_PER_CALL_MAX: usize = 1 << 21;

// A batch of late records re-firing every sliding window they fall into stays within it.
const _: () =
    assert!(OUTPUT_RECORDS_PER_CALL_MAX >= BATCH_RECORDS_MAX * WINDOWS_PER_RECORD_MAX as usize);
const _: () = assert!(OUTPUT_BATCH_RECORDS_MAX <= OUTPUT_RECORDS_PER_CALL_MAX);

/// The error of an operator whose `process` call would emit more than
/// [`OUTPUT_RECORDS_PER_CALL_MAX`] records.
pub fn output_limit(operator: &str) -> EngineError {
    EngineError::Limit(format!(
        "{operator}: one input batch makes more than {OUTPUT_RECORDS_PER_CALL_MAX} output records \
         (output_records_per_call_max); a record fans out too far (e.g. a join key with very \
         many matches)"
    ))
}

/// Whether an `on_watermark` call emitted everything the watermark made due.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Everything due is emitted.
    Done,
    /// The output holds [`OUTPUT_BATCH_RECORDS_MAX`] records and more are due: the caller
    /// drains the output and calls `on_watermark` again with the same watermark, with no
    /// other call in between, until it returns `Done`.
    More,
}

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
    /// The operator's name in messages (its key in a job spec, e.g. `window`).
    fn name(&self) -> &'static str;

    /// The schema of the records it emits.
    fn output_schema(&self) -> &SchemaRef;

    /// Processes one input batch, appending results to `out` (at most
    /// [`OUTPUT_RECORDS_PER_CALL_MAX`] records).
    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError>;

    /// Advances event time to `watermark` (no record with a timestamp `<= watermark` is
    /// expected any more); fires windows and drops state that is no longer needed. Emits at
    /// most [`OUTPUT_BATCH_RECORDS_MAX`] records per call; see [`Emit`] for the rest.
    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Emit, EngineError> {
        let _ = (watermark, out);
        Ok(Emit::Done)
    }

    /// Freezes the operator's state at a checkpoint barrier, cheaply (the shard waits for
    /// this call only); the frozen copy is serialised later, off the shard thread. `None`
    /// for an operator without state. Never called while a firing is paused (`Emit::More`).
    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        Ok(None)
    }

    /// Replaces the operator's state with one written by [`FrozenState::write_to`] of a
    /// snapshot of the same operator in the same plan. Called once, before any record.
    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        stateless_restore(self.name(), state)
    }
}

/// The default `restore` of an operator that holds no state: only an empty state fits.
pub fn stateless_restore(operator: &str, state: &[u8]) -> Result<(), EngineError> {
    if state.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Checkpoint(format!(
            "{operator} holds no state, but the checkpoint has {} bytes for it (a checkpoint of \
             another plan?)",
            state.len()
        )))
    }
}

/// A two-input operator (joins).
pub trait TwoInputOperator {
    /// The operator's name in messages (its key in a job spec, e.g. `window_join`).
    fn name(&self) -> &'static str;

    /// The schema of the records it emits.
    fn output_schema(&self) -> &SchemaRef;

    /// Processes a batch of the left input (emitting at most
    /// [`OUTPUT_RECORDS_PER_CALL_MAX`] records).
    fn process_left(&mut self, input: &Batch, out: &mut Batch) -> Result<(), EngineError>;

    /// Processes a batch of the right input (emitting at most
    /// [`OUTPUT_RECORDS_PER_CALL_MAX`] records).
    fn process_right(&mut self, input: &Batch, out: &mut Batch) -> Result<(), EngineError>;

    /// Advances event time (the minimum of both inputs' watermarks), emitting at most
    /// [`OUTPUT_BATCH_RECORDS_MAX`] records per call; see [`Emit`] for the rest.
    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<Emit, EngineError>;

    /// Returns how many records arrived after their state was dropped.
    fn late_records(&self) -> u64;

    /// As [`Operator::snapshot`].
    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        Ok(None)
    }

    /// As [`Operator::restore`].
    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        stateless_restore(self.name(), state)
    }
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

    /// Where an operator under test keeps RocksDB state: `dir`, with `cache_keys` keys in
    /// memory and a `file://` checkpoint store beside it.
    pub(crate) fn rocks_env(dir: &std::path::Path, cache_keys: usize) -> crate::state::RocksEnv {
        let url = format!("file://{}", dir.join("store").display());
        crate::state::RocksEnv {
            dir: dir.join("db"),
            cache_keys,
            key_groups: 128,
            storage: Some((
                sluice_storage::blob::open(&url).unwrap(),
                "job/shared/op".into(),
            )),
        }
    }

    /// Calls `on_watermark` until it is done; returns every emitted row and the size of each
    /// call's output.
    pub(crate) fn drain(
        op: &mut dyn super::Operator,
        watermark: i64,
        out: &mut super::Output,
    ) -> (Vec<Vec<OwnedValue>>, Vec<usize>) {
        let (mut rows, mut sizes) = (Vec::new(), Vec::new());
        loop {
            out.clear();
            let emit = op.on_watermark(watermark, out).unwrap();
            sizes.push(out.main.len());
            rows.extend(out.main.to_rows());
            if emit == super::Emit::Done {
                return (rows, sizes);
            }
        }
    }

    /// Returns the rows sorted, for order-insensitive comparisons.
    pub(crate) fn sorted_rows(b: &Batch) -> Vec<Vec<OwnedValue>> {
        let mut rows = b.to_rows();
        rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        rows
    }
}
