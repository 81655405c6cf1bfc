//! Sinks: where records leave a shard. Every shard has its own instance of each sink.
#![forbid(unsafe_code)]

use crate::error::EngineError;
use crate::record::Batch;

pub mod blackhole;
pub mod collect;
pub mod file;
pub mod stdout;
pub mod tcp;

pub use blackhole::BlackholeSink;
pub use collect::{CollectSink, Collector, COLLECT_CHANNEL_BATCHES_MAX, COLLECT_RECORDS_MAX};
pub use file::FileSink;
pub use stdout::StdoutSink;
pub use tcp::TcpSink;

/// A destination for output batches.
pub trait Sink {
    /// Writes one batch.
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError>;

    /// Flushes everything written; called once when the job ends.
    fn finish(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Called once before the first write of a job that takes checkpoints: with this sink's
    /// state from the checkpoint the job resumes from, or `None` for a fresh start. An
    /// exactly-once sink publishes there what that checkpoint covered and discards the rest.
    fn begin(&mut self, restored: Option<&[u8]>) -> Result<(), EngineError> {
        let _ = restored;
        Ok(())
    }

    /// At checkpoint barrier `checkpoint`: makes everything written so far durable (an
    /// exactly-once sink: durable but not yet published) and returns the sink's state for the
    /// checkpoint, which [`Sink::begin`] takes back.
    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, EngineError> {
        let _ = checkpoint;
        Ok(Vec::new())
    }

    /// Files the pre-commits wrote that must be made durable (fsynced, with their directory)
    /// before a checkpoint covering them may complete. The coordinator does that off the shard
    /// thread, so that a barrier pauses the shard only for the copy of its state.
    fn unsynced(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Checkpoint `checkpoint` completed: publish what every `pre_commit` up to it held.
    fn commit(&mut self, checkpoint: u64) -> Result<(), EngineError> {
        let _ = checkpoint;
        Ok(())
    }
}
