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
}
