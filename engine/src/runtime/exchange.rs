//! Exchanges between shards. A sender/receiver pair carries [`Message`]s from one shard to
//! another; inside a process each pair is a bounded lock-free SPSC ring (rtrb), and the
//! shards of a process form a full mesh. A full ring hands the message back: that is
//! backpressure, and the producer stops reading its input until the ring has room. A remote
//! shard (another agent, over TCP) plugs in behind the same two traits.
//!
//! HOT PATH: one ring push or pop per batch or watermark; no locks, no allocation, no
//! logging.

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use crate::record::Batch;

/// What flows through an exchange, in order.
#[derive(Debug)]
pub enum Message {
    /// Records.
    Data(Batch),
    /// Event time of the sender advanced to this watermark.
    Watermark(i64),
    /// The sender has seen no input for its idle timeout; do not wait for its watermark.
    Idle,
    /// Checkpoint barrier: everything the sender sent before it belongs to checkpoint `id`,
    /// everything after to later ones.
    Barrier(u64),
    /// The sender will send nothing more.
    End,
}

/// The sending end of an exchange channel.
pub trait ExchangeSender: Send {
    /// Sends `msg`, or hands it back if the channel is full.
    fn try_send(&mut self, msg: Message) -> Result<(), Message>;

    /// Returns an emptied batch the receiver handed back for reuse, if any.
    fn take_recycled(&mut self) -> Option<Batch> {
        None
    }
}

/// The receiving end of an exchange channel.
pub trait ExchangeReceiver: Send {
    /// Returns the next message, if one is there.
    fn try_recv(&mut self) -> Option<Message>;

    /// Hands a processed batch back to the sender for reuse (dropped if it cannot be).
    fn recycle(&mut self, batch: Batch) {
        drop(batch);
    }
}

/// The sending end of an in-process ring, with the ring returning emptied batches.
#[derive(Debug)]
pub struct LocalSender {
    data: Producer<Message>,
    returned: Consumer<Batch>,
}

/// The receiving end of an in-process ring.
#[derive(Debug)]
pub struct LocalReceiver {
    data: Consumer<Message>,
    returned: Producer<Batch>,
}

impl ExchangeSender for LocalSender {
    fn try_send(&mut self, msg: Message) -> Result<(), Message> {
        self.data.push(msg).map_err(|PushError::Full(msg)| msg)
    }

    fn take_recycled(&mut self) -> Option<Batch> {
        self.returned.pop().ok()
    }
}

impl ExchangeReceiver for LocalReceiver {
    fn try_recv(&mut self) -> Option<Message> {
        self.data.pop().ok()
    }

    fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        // A full return ring just means the sender has enough spares; the batch is dropped.
        let _ = self.returned.push(batch);
    }
}

/// Creates an in-process channel holding at most `capacity_batches` messages (and as many
/// returned batches).
pub fn local_channel(capacity_batches: usize) -> (LocalSender, LocalReceiver) {
    let (data_tx, data_rx) = RingBuffer::new(capacity_batches.max(1));
    let (returned_tx, returned_rx) = RingBuffer::new(capacity_batches.max(1));
    (
        LocalSender {
            data: data_tx,
            returned: returned_rx,
        },
        LocalReceiver {
            data: data_rx,
            returned: returned_tx,
        },
    )
}

/// Senders of each shard (`[from][to]`) and receivers of each shard (`[to][from]`).
pub type Mesh = (
    Vec<Vec<Box<dyn ExchangeSender>>>,
    Vec<Vec<Box<dyn ExchangeReceiver>>>,
);

/// Creates a full mesh of rings between `shards` shards.
pub fn local_mesh(shards: usize, capacity_batches: usize) -> Mesh {
    let mut senders: Vec<Vec<Box<dyn ExchangeSender>>> = (0..shards).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<Option<Box<dyn ExchangeReceiver>>>> = (0..shards)
        .map(|_| (0..shards).map(|_| None).collect())
        .collect();
    for (from, row) in senders.iter_mut().enumerate() {
        for to_receivers in receivers.iter_mut() {
            let (tx, rx) = local_channel(capacity_batches);
            row.push(Box::new(tx));
            to_receivers[from] = Some(Box::new(rx));
        }
    }
    let receivers = receivers
        .into_iter()
        .map(|r| r.into_iter().flatten().collect())
        .collect();
    (senders, receivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ring_hands_the_message_back() {
        let (mut tx, mut rx) = local_channel(2);
        assert!(tx.try_send(Message::Watermark(1)).is_ok());
        assert!(tx.try_send(Message::Watermark(2)).is_ok());
        let Err(Message::Watermark(3)) = tx.try_send(Message::Watermark(3)) else {
            panic!("a full ring must return the message");
        };
        assert!(matches!(rx.try_recv(), Some(Message::Watermark(1))));
        assert!(tx.try_send(Message::Watermark(3)).is_ok());
        assert!(matches!(rx.try_recv(), Some(Message::Watermark(2))));
        assert!(matches!(rx.try_recv(), Some(Message::Watermark(3))));
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn batches_come_back_for_reuse() {
        use crate::record::{DataType, Schema, Value};
        let schema = Schema::of(&[("x", DataType::Int)]).unwrap();
        let mut batch = Batch::new(schema);
        batch.push_row(&[Value::Int(1)]).unwrap();
        let (mut tx, mut rx) = local_channel(1);
        assert!(tx.take_recycled().is_none());
        assert!(tx.try_send(Message::Data(batch)).is_ok());
        let Some(Message::Data(batch)) = rx.try_recv() else {
            panic!("no data")
        };
        rx.recycle(batch);
        let back = tx.take_recycled().unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn mesh_connects_every_pair() {
        let (mut senders, mut receivers) = local_mesh(3, 1);
        for (from, row) in senders.iter_mut().enumerate() {
            for (to, tx) in row.iter_mut().enumerate() {
                assert!(tx
                    .try_send(Message::Watermark((from * 10 + to) as i64))
                    .is_ok());
            }
        }
        for (to, row) in receivers.iter_mut().enumerate() {
            for (from, rx) in row.iter_mut().enumerate() {
                let Some(Message::Watermark(w)) = rx.try_recv() else {
                    panic!("missing message")
                };
                assert_eq!(w, (from * 10 + to) as i64);
            }
        }
    }
}
