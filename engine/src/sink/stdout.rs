//! Stdout sink: NDJSON or CSV lines on standard output, one lock per batch.

use std::io::Write;

use crate::error::EngineError;
use crate::record::Batch;
use crate::sink::file::format_rows;
use crate::sink::Sink;
use crate::source::Format;

/// Prints rows.
#[derive(Debug)]
pub struct StdoutSink {
    format: Format,
    line: String,
}

impl StdoutSink {
    /// Creates a sink printing `format` lines.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            line: String::new(),
        }
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.line.clear();
        format_rows(batch, self.format, &mut self.line);
        std::io::stdout()
            .lock()
            .write_all(self.line.as_bytes())
            .map_err(|e| EngineError::io("<stdout>", e))
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        std::io::stdout()
            .flush()
            .map_err(|e| EngineError::io("<stdout>", e))
    }

    /// At least once: what was written before the barrier is flushed out; after a restore,
    /// what followed the checkpoint is written again.
    fn pre_commit(&mut self, _checkpoint: u64) -> Result<Vec<u8>, EngineError> {
        self.finish()?;
        Ok(Vec::new())
    }
}
