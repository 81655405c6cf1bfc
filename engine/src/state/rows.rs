//! Buffered rows that a checkpoint takes without copying: an append-only row store of sealed
//! chunks of [`CHUNK_ROWS`] rows, shared by reference, and one open chunk being filled.
//!
//! Joins buffer whole windows of rows (Nexmark q7 holds hundreds of megabytes). A sealed chunk
//! is never written again, so freezing the rows for a checkpoint ([`ChunkedRows::freeze`])
//! clones one reference per sealed chunk and copies only the open chunk: the shard pauses for
//! microseconds whatever the state's size, and the frozen rows are serialised later, off the
//! shard thread, straight from the shared chunks. This is copy-on-write at chunk granularity
//! with no copy ever needed: the live rows only append.
//!
//! HOT PATH: appending a row is one [`Batch::push_row_from`]; every [`CHUNK_ROWS`] rows the
//! open chunk is sealed (moved behind an `Arc`, no copy) and a new one begun. Row `i` is found
//! with one division. No locks (an `Arc` clone per sealed chunk at a checkpoint), no logging.
//!
//! ```
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//! use sluice_engine::state::rows::{ChunkedRows, CHUNK_ROWS};
//!
//! let schema = Schema::of(&[("k", DataType::Int)]).unwrap();
//! let mut input = Batch::new(schema.clone());
//! input.push_row(&[Value::Int(7)]).unwrap();
//! let mut rows = ChunkedRows::new(schema);
//! for _ in 0..CHUNK_ROWS + 1 {
//!     rows.push_row_from(&input, 0);
//! }
//! assert_eq!(rows.len(), CHUNK_ROWS + 1);
//! assert_eq!(rows.value(CHUNK_ROWS, 0), Value::Int(7));
//! let frozen = rows.freeze(); // one sealed chunk shared, one row copied
//! assert_eq!(frozen.len(), CHUNK_ROWS + 1);
//! ```

use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::error::EngineError;
use crate::record::{Batch, Column, SchemaRef, Value};
use crate::state::codec::restore_batch;

/// Rows per sealed chunk.
pub const CHUNK_ROWS: usize = 4096;

/// Rows as a checkpoint holds them: chunks, each its columns (what [`FrozenRows`] serialises
/// as and [`ChunkedRows::restore`] reads).
pub type RowChunks = Vec<Vec<Column>>;

/// Rows appended over time: sealed chunks of exactly [`CHUNK_ROWS`] rows, then the open one.
#[derive(Debug)]
pub struct ChunkedRows {
    sealed: Vec<Arc<Batch>>,
    open: Batch,
}

impl ChunkedRows {
    /// Creates an empty store for rows of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            sealed: Vec::new(),
            open: Batch::new(schema),
        }
    }

    /// Returns the schema of the rows.
    pub fn schema(&self) -> &SchemaRef {
        self.open.schema()
    }

    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.sealed.len() * CHUNK_ROWS + self.open.len()
    }

    /// Returns whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends row `row` of `input` (which has this store's schema).
    pub fn push_row_from(&mut self, input: &Batch, row: usize) {
        self.open.push_row_from(input, row);
        if self.open.len() == CHUNK_ROWS {
            let next = Batch::new(self.open.schema().clone());
            let full = std::mem::replace(&mut self.open, next);
            self.sealed.push(Arc::new(full));
        }
    }

    /// Returns the chunk holding row `i` and the row's index in it.
    pub fn locate(&self, i: usize) -> (&Batch, usize) {
        let chunk = i / CHUNK_ROWS;
        match self.sealed.get(chunk) {
            Some(batch) => (batch, i % CHUNK_ROWS),
            None => (&self.open, i - self.sealed.len() * CHUNK_ROWS),
        }
    }

    /// Returns field `field` of row `i`.
    pub fn value(&self, i: usize, field: usize) -> Value<'_> {
        let (batch, row) = self.locate(i);
        batch.value(row, field)
    }

    /// Returns field `field` of row `i` as an i64 (int and timestamp fields).
    pub fn get_i64(&self, i: usize, field: usize) -> Option<i64> {
        let (batch, row) = self.locate(i);
        batch.column(field).get_i64(row)
    }

    /// Rebuilds rows of `schema` from a checkpoint's chunks (as [`FrozenRows`] serialises
    /// them), checking each against the schema; `what` names them in errors of `operator`.
    pub fn restore(
        operator: &str,
        what: &str,
        schema: &SchemaRef,
        chunks: RowChunks,
    ) -> Result<Self, EngineError> {
        let mut rows = Self::new(schema.clone());
        for (i, columns) in chunks.into_iter().enumerate() {
            let chunk = restore_batch(operator, &format!("{what}, chunk {i}"), schema, columns)?;
            for row in 0..chunk.len() {
                rows.push_row_from(&chunk, row);
            }
        }
        Ok(rows)
    }

    /// The rows as of now, for a checkpoint: the sealed chunks shared, the open one copied.
    pub fn freeze(&self) -> FrozenRows {
        FrozenRows {
            sealed: self.sealed.clone(),
            open: self.open.columns().to_vec(),
        }
    }

    /// Approximately how many bytes of memory the rows take.
    pub fn state_bytes(&self) -> u64 {
        let batch = |b: &Batch| b.columns().iter().map(Column::state_bytes).sum::<u64>();
        self.sealed.iter().map(|b| batch(b)).sum::<u64>() + batch(&self.open)
    }
}

/// Rows frozen by [`ChunkedRows::freeze`]. Serialised as a sequence of chunks, each its
/// columns, which deserialises as `Vec<Vec<Column>>`.
#[derive(Debug)]
pub struct FrozenRows {
    sealed: Vec<Arc<Batch>>,
    open: Vec<Column>,
}

impl FrozenRows {
    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.sealed.len() * CHUNK_ROWS + self.open.first().map_or(0, Column::len)
    }

    /// Returns whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximately how many bytes of memory the rows take.
    pub fn state_bytes(&self) -> u64 {
        let columns = |c: &[Column]| c.iter().map(Column::state_bytes).sum::<u64>();
        self.sealed
            .iter()
            .map(|b| columns(b.columns()))
            .sum::<u64>()
            + columns(&self.open)
    }
}

impl Serialize for FrozenRows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.sealed.len() + 1))?;
        for chunk in &self.sealed {
            seq.serialize_element(chunk.columns())?;
        }
        seq.serialize_element(&self.open)?;
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema};

    fn rows(n: i64) -> ChunkedRows {
        let schema = Schema::of(&[("k", DataType::Int), ("s", DataType::String)]).unwrap();
        let mut input = Batch::new(schema.clone());
        let mut rows = ChunkedRows::new(schema);
        for i in 0..n {
            input.clear();
            input
                .push_row(&[Value::Int(i), Value::Str(&i.to_string())])
                .unwrap();
            rows.push_row_from(&input, 0);
        }
        rows
    }

    #[test]
    fn rows_are_found_across_chunks() {
        let n = 2 * CHUNK_ROWS as i64 + 17;
        let rows = rows(n);
        assert_eq!(rows.len(), n as usize);
        assert_eq!(rows.sealed.len(), 2);
        for i in [0, CHUNK_ROWS - 1, CHUNK_ROWS, 2 * CHUNK_ROWS + 16] {
            assert_eq!(rows.get_i64(i, 0), Some(i as i64));
            assert_eq!(rows.value(i, 1).to_string(), i.to_string());
        }
    }

    #[test]
    fn frozen_rows_keep_their_contents_while_the_store_grows_and_serialise_as_chunks() {
        let mut live = rows(CHUNK_ROWS as i64 + 3);
        let frozen = live.freeze();
        let before_bytes = postcard::to_stdvec(&frozen).unwrap();
        let more = rows(CHUNK_ROWS as i64 * 2);
        for i in 0..more.len() {
            let (batch, row) = more.locate(i);
            live.push_row_from(batch, row);
        }
        assert_eq!(frozen.len(), CHUNK_ROWS + 3);
        assert_eq!(postcard::to_stdvec(&frozen).unwrap(), before_bytes);
        // The sealed chunk is shared, not copied.
        assert!(Arc::ptr_eq(&frozen.sealed[0], &live.sealed[0]));
        let chunks: Vec<Vec<Column>> = postcard::from_bytes(&before_bytes).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0][0].len(), CHUNK_ROWS);
        assert_eq!(chunks[1][0].len(), 3);
        assert_eq!(
            chunks[1][1].get(2).to_string(),
            (CHUNK_ROWS + 2).to_string()
        );
        assert!(frozen.state_bytes() > 0 && !frozen.is_empty());
    }
}
