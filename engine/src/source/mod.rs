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

    /// Where the split stands, for a checkpoint: bytes [`Source::seek`] takes back to resume
    /// with the next record not yet returned, or `None` for a source that cannot be replayed
    /// (the TCP source), which after a restore goes on with what arrives next (at most once).
    /// Called between polls only.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// Resumes at `position` (from [`Source::position`] of the same split of the same
    /// source), on a split just opened, before its first poll.
    fn seek(&mut self, position: &[u8]) -> Result<(), EngineError> {
        let _ = position;
        Err(EngineError::Checkpoint(
            "this source cannot resume from a checkpoint position".into(),
        ))
    }
}

/// Encodes a source position: a tag naming the source kind, then `u64`s (little-endian).
pub fn encode_position(tag: u8, values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 * values.len());
    out.push(tag);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes a position [`encode_position`] wrote with `tag` and `N` values; `source` names the
/// source in the error.
pub fn decode_position<const N: usize>(
    source: &str,
    tag: u8,
    bytes: &[u8],
) -> Result<[u64; N], EngineError> {
    if bytes.len() != 1 + 8 * N || bytes[0] != tag {
        return Err(EngineError::Checkpoint(format!(
            "{source}: the checkpoint position ({} bytes, tag {}) is not one of this source \
             (a checkpoint of another job?)",
            bytes.len(),
            bytes.first().copied().unwrap_or(0)
        )));
    }
    let mut out = [0u64; N];
    for (i, v) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[1 + 8 * i..9 + 8 * i]);
        *v = u64::from_le_bytes(b);
    }
    Ok(out)
}
