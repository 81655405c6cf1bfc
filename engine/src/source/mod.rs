//! Sources: where records enter a shard. Each source is split across shards; a shard polls
//! its own split for batches.
#![forbid(unsafe_code)]

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef};

pub mod csv;
pub mod dead_letter;
pub mod file;
pub mod nexmark;
pub mod parse;
pub mod tcp;
pub mod values;

pub use dead_letter::{position, DeadLetter, DeadLetters};
pub use file::{FileFormat, FileSource};
pub use nexmark::{NexmarkConfig, NexmarkSource, NexmarkTable};
pub use parse::Format;
pub use tcp::TcpSource;
pub use values::ValuesSource;

/// What a poll produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// Rows may have been appended; poll again.
    Ready,
    /// Nothing is available right now (rate limit, no data yet); poll again later.
    Pending,
    /// The split is exhausted; rows appended by this last poll still count.
    Exhausted,
}

/// One shard's split of a source.
pub trait Source {
    /// The schema of the records it produces.
    fn schema(&self) -> &SchemaRef;

    /// Appends up to [`crate::record::BATCH_RECORDS_MAX`] records to `out`; malformed input
    /// goes to `dead` with its position.
    fn poll(
        &mut self,
        out: &mut Batch,
        dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError>;
}
