//! Blackhole sink: counts records and drops them (for benchmarks).
//!
//! HOT PATH: one addition per batch.

use crate::error::EngineError;
use crate::record::Batch;
use crate::sink::Sink;

/// Counts and discards.
#[derive(Debug, Default)]
pub struct BlackholeSink {
    records: u64,
}

impl BlackholeSink {
    /// Returns how many records were written.
    pub fn records(&self) -> u64 {
        self.records
    }
}

impl Sink for BlackholeSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.records += batch.len() as u64;
        Ok(())
    }
}
