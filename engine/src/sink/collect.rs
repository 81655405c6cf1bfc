//! Collecting sink: sends copies of output batches to the job's caller, which returns them in
//! the job report. For tests and small results; the channel is unbounded, so do not use it
//! for large outputs.

use crossbeam_channel::Sender;

use crate::error::EngineError;
use crate::record::Batch;
use crate::sink::Sink;

/// Sends every batch to a collector.
#[derive(Debug)]
pub struct CollectSink {
    tx: Sender<Batch>,
}

impl CollectSink {
    /// Creates a sink sending to `tx`.
    pub fn new(tx: Sender<Batch>) -> Self {
        Self { tx }
    }
}

impl Sink for CollectSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.tx
            .send(batch.clone())
            .map_err(|_| EngineError::Plan("the result collector has gone away".into()))
    }
}
