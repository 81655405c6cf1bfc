//! Collecting sink: sends copies of output batches to the job's caller, which returns them in
//! the job report. For tests and small results.
//!
//! Bounded both ways: the channel holds at most [`COLLECT_CHANNEL_BATCHES_MAX`] batches (a
//! full channel blocks the sending shard until the caller, which drains it while the job
//! runs, takes one: backpressure), and a job collects at most [`COLLECT_RECORDS_MAX`] records
//! over all its shards; the batch that would go past it fails the job with an
//! [`EngineError::Limit`] naming the sink and the limit, rather than filling memory.
//!
//! ```
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//! use sluice_engine::sink::{CollectSink, Collector, Sink};
//!
//! let (collector, results) = Collector::new(4, 2);
//! let mut sink = CollectSink::new(collector);
//! let schema = Schema::of(&[("x", DataType::Int)]).unwrap();
//! let mut batch = Batch::new(schema);
//! batch.push_row(&[Value::Int(1)]).unwrap();
//! sink.write(&batch).unwrap();
//! sink.write(&batch).unwrap();
//! assert!(sink.write(&batch).is_err(), "a third record is over the limit of 2");
//! assert_eq!(results.try_iter().count(), 2);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::EngineError;
use crate::record::Batch;
use crate::sink::Sink;

/// Batches waiting for the job's caller; more block the sending shard.
pub const COLLECT_CHANNEL_BATCHES_MAX: usize = 64;
/// The most records one job collects, over all its shards.
pub const COLLECT_RECORDS_MAX: u64 = 1 << 22;

/// Where a job's collect sinks send: a bounded channel to the caller and a record count
/// shared by every shard.
#[derive(Clone, Debug)]
pub struct Collector {
    tx: Sender<Batch>,
    records: Arc<AtomicU64>,
    records_max: u64,
}

impl Collector {
    /// Creates a collector whose channel holds `capacity_batches` batches and which takes at
    /// most `records_max` records; the receiver gets the batches.
    pub fn new(capacity_batches: usize, records_max: u64) -> (Self, Receiver<Batch>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity_batches.max(1));
        let collector = Self {
            tx,
            records: Arc::default(),
            records_max,
        };
        (collector, rx)
    }
}

/// Sends every batch to a collector.
#[derive(Debug)]
pub struct CollectSink {
    collector: Collector,
}

impl CollectSink {
    /// Creates a sink sending to `collector`.
    pub fn new(collector: Collector) -> Self {
        Self { collector }
    }
}

impl Sink for CollectSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let c = &self.collector;
        let n = batch.len() as u64;
        let before = c.records.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > c.records_max {
            return Err(EngineError::Limit(format!(
                "collect sink: the job's output passed {} records (collect_records_max); \
                 collect is for tests and small results, write large outputs to a file sink",
                c.records_max
            )));
        }
        c.tx.send(batch.clone())
            .map_err(|_| EngineError::Plan("the result collector has gone away".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema, Value};

    fn batch(rows: i64) -> Batch {
        let mut b = Batch::new(Schema::of(&[("x", DataType::Int)]).unwrap());
        for x in 0..rows {
            b.push_row(&[Value::Int(x)]).unwrap();
        }
        b
    }

    #[test]
    fn the_limit_counts_records_of_every_shard() {
        let (collector, rx) = Collector::new(8, 5);
        let mut a = CollectSink::new(collector.clone());
        let mut b = CollectSink::new(collector);
        a.write(&batch(2)).unwrap();
        b.write(&batch(3)).unwrap();
        let err = a.write(&batch(1)).unwrap_err().to_string();
        assert!(
            err.contains("collect sink") && err.contains("collect_records_max"),
            "{err}"
        );
        assert_eq!(rx.try_iter().map(|b| b.len()).sum::<usize>(), 5);
    }

    #[test]
    fn a_full_channel_holds_the_sender_until_the_receiver_takes_a_batch() {
        let (collector, rx) = Collector::new(1, 100);
        let mut sink = CollectSink::new(collector.clone());
        sink.write(&batch(1)).unwrap();
        assert!(collector.tx.is_full());
        assert_eq!(collector.tx.capacity(), Some(1));
        assert_eq!(rx.recv().unwrap().len(), 1);
        sink.write(&batch(2)).unwrap();
        assert_eq!(rx.recv().unwrap().len(), 2);
    }
}
