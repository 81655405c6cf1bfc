//! The shard-side ends of remote channels: a bounded SPSC ring to (or from) the peer's I/O
//! threads, behind the same [`ExchangeSender`]/[`ExchangeReceiver`] traits as local rings.
//!
//! HOT PATH: one ring push or pop, one atomic add and one `unpark` (an atomic swap unless the
//! writer thread sleeps) per message. No locks, no allocation, no logging.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::thread::Thread;

use rtrb::{Consumer, Producer, PushError};

use crate::record::Batch;
use crate::runtime::exchange::{ExchangeReceiver, ExchangeSender, Message};
use crate::runtime::remote::credit::RecvLedger;

/// Sends to a shard in another process through this process's writer thread for that peer.
#[derive(Debug)]
pub struct RemoteSender {
    pub(crate) ring: Producer<Message>,
    pub(crate) returned: Consumer<Batch>,
    pub(crate) writer: Thread,
}

impl ExchangeSender for RemoteSender {
    fn try_send(&mut self, msg: Message) -> Result<(), Message> {
        self.ring.push(msg).map_err(|PushError::Full(msg)| msg)?;
        self.writer.unpark();
        Ok(())
    }

    fn take_recycled(&mut self) -> Option<Batch> {
        self.returned.pop().ok()
    }
}

/// Receives from a shard in another process through this process's reader thread for that
/// peer.
#[derive(Debug)]
pub struct RemoteReceiver {
    pub(crate) ring: Consumer<Message>,
    pub(crate) returned: Producer<Batch>,
    pub(crate) ledger: Arc<RecvLedger>,
    pub(crate) writer: Thread,
}

impl ExchangeReceiver for RemoteReceiver {
    fn try_recv(&mut self) -> Option<Message> {
        let msg = self.ring.pop().ok()?;
        // The slot is free again: the writer returns it to the sender as a credit.
        self.ledger.note_consumed();
        self.writer.unpark();
        Some(msg)
    }

    fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        // A full return ring means the reader has spares enough; the batch is dropped.
        let _ = self.returned.push(batch);
    }
}
