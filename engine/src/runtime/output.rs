//! Where a stage's results go: an exchange to the next stage (partitioned per target shard,
//! with a bounded queue of messages a full ring handed back), or the job's sinks.
//!
//! Every message sent holds at most [`BATCH_RECORDS_MAX`] records: a larger batch (a firing
//! window's output) is cut into pieces while it is partitioned, which copies nothing extra.
//!
//! HOT PATH: one partition pass per batch; messages wait in queues bounded by what one input
//! batch produces (at most [`crate::operator::OUTPUT_RECORDS_PER_CALL_MAX`] records, and one
//! output batch for a firing), because a stage with waiting messages reads no more input.

use std::collections::VecDeque;

use crate::error::EngineError;
use crate::record::{hash::hash_value, hash::target_of, Batch, SchemaRef, BATCH_RECORDS_MAX};
use crate::runtime::exchange::{ExchangeSender, Message};
use crate::sink::Sink;
use crate::spec::plan::Exchange;

/// A stage's destination.
pub enum StageOutput {
    /// The next stage on every shard.
    Exchange {
        /// How records are routed.
        route: Exchange,
        /// One sender per target shard.
        senders: Vec<Box<dyn ExchangeSender>>,
        /// Per-target batches being filled.
        parts: Vec<Batch>,
        /// Per-target messages not yet accepted by their ring.
        pending: Vec<VecDeque<Message>>,
        /// Schema of the records sent.
        schema: SchemaRef,
        /// Reused per-row target shards.
        targets: Vec<u32>,
        /// The job's key groups.
        key_groups: usize,
    },
    /// The sinks.
    Sinks(Vec<Box<dyn Sink>>),
}

impl StageOutput {
    /// Creates an exchange output.
    pub fn exchange(
        route: Exchange,
        senders: Vec<Box<dyn ExchangeSender>>,
        schema: SchemaRef,
        key_groups: usize,
    ) -> Self {
        let n = senders.len();
        Self::Exchange {
            route,
            parts: (0..n).map(|_| Batch::new(schema.clone())).collect(),
            pending: (0..n).map(|_| VecDeque::new()).collect(),
            senders,
            schema,
            targets: Vec::new(),
            key_groups: key_groups.max(n),
        }
    }

    /// Sends or writes one batch; returns how many records went to sinks.
    pub fn emit(&mut self, batch: &Batch) -> Result<u64, EngineError> {
        match self {
            Self::Sinks(sinks) => {
                for sink in sinks.iter_mut() {
                    sink.write(batch)?;
                }
                Ok(batch.len() as u64)
            }
            Self::Exchange {
                route,
                parts,
                pending,
                schema,
                targets,
                senders,
                key_groups,
            } => {
                let n = parts.len();
                let mut from = 0;
                while from < batch.len() {
                    let rows = from..batch.len().min(from + BATCH_RECORDS_MAX);
                    from = rows.end;
                    match *route {
                        Exchange::Hash(key) if n > 1 => {
                            let column = batch.column(key);
                            targets.clear();
                            targets.extend(rows.clone().map(|row| {
                                target_of(hash_value(column.get(row)), *key_groups, n) as u32
                            }));
                            batch.scatter(rows, targets, parts);
                        }
                        Exchange::Hash(_) | Exchange::Single => parts[0].append_rows(batch, rows),
                    }
                    for ((part, queue), sender) in parts
                        .iter_mut()
                        .zip(pending.iter_mut())
                        .zip(senders.iter_mut())
                    {
                        if !part.is_empty() {
                            // Reuse a batch the receiver handed back; allocate only when none
                            // is.
                            let fresh = sender
                                .take_recycled()
                                .unwrap_or_else(|| Batch::new(schema.clone()));
                            let full = std::mem::replace(part, fresh);
                            queue.push_back(Message::Data(full));
                        }
                    }
                }
                Ok(0)
            }
        }
    }

    /// Queues `msg` (a watermark, idle or end marker) for every target.
    pub fn broadcast(&mut self, msg: impl Fn() -> Message) {
        if let Self::Exchange { pending, .. } = self {
            for queue in pending.iter_mut() {
                queue.push_back(msg());
            }
        }
    }

    /// Pushes queued messages into their rings; returns true when nothing is left waiting.
    pub fn flush(&mut self) -> bool {
        let Self::Exchange {
            senders, pending, ..
        } = self
        else {
            return true;
        };
        let mut all_sent = true;
        for (sender, queue) in senders.iter_mut().zip(pending.iter_mut()) {
            while let Some(msg) = queue.pop_front() {
                if let Err(msg) = sender.try_send(msg) {
                    queue.push_front(msg);
                    all_sent = false;
                    break;
                }
            }
        }
        all_sent
    }

    /// Flushes the sinks at the end of the job.
    pub fn finish(&mut self) -> Result<(), EngineError> {
        if let Self::Sinks(sinks) = self {
            for sink in sinks.iter_mut() {
                sink.finish()?;
            }
        }
        Ok(())
    }
}
