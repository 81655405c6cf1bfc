//! One peer process: its TCP connection, and the two I/O threads that serve it with blocking
//! socket calls. The writer thread drains the rings of this process's shards into frames (as
//! far as the peer's credits allow) and returns credits for what this process's shards
//! consumed; the reader thread decodes frames into the rings of this process's shards and
//! applies the peer's credits. Shard threads never touch the socket.
//!
//! Credits (see [`crate::runtime::remote::credit`]) guarantee that the reader always has room
//! for what arrives, so it never stops reading and one slow channel cannot stall the others.
//!
//! HOT PATH (I/O threads): frames are encoded into and decoded from reused buffers, all frames
//! ready in one round go out in one `write`; emptied batches go back for reuse. No locks.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rtrb::{Consumer, Producer, RingBuffer};

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef};
use crate::runtime::checkpoint::{CheckpointMessage, ShardEvent};
use crate::runtime::exchange::Message;
use crate::runtime::remote::credit::{RecvLedger, SendCredits};
use crate::runtime::remote::endpoint::{RemoteReceiver, RemoteSender};
use crate::runtime::remote::frame::{
    decode, decode_rows, encode_checkpoint, encode_control, encode_data, ChannelId, Frame,
    FRAME_BYTES_MAX, MESSAGE_ROWS_MAX, ROWS_PER_FRAME_MAX,
};
use crate::runtime::remote::link::{Link, LinkReader, LinkWriter};

/// Messages the writer takes from one channel per round, so one busy channel cannot starve
/// the others.
const MESSAGES_PER_CHANNEL_ROUND_MAX: usize = 8;
/// Bytes of frames gathered before a `write`.
const WRITE_BUFFER_BYTES_MAX: usize = 1 << 20;
/// Buffer of the reader.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// How long an idle writer sleeps before it looks at its rings and the abort flag again
/// (it is woken at once when there is work).
const WRITER_PARK: Duration = Duration::from_millis(5);
/// How long a write may block before the peer counts as stuck. Credits keep the peer's
/// reader draining the socket, so a write blocks this long only if the peer hangs.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the I/O threads of all peers share with the job.
#[derive(Debug)]
pub struct IoShared {
    /// The job's abort flag: set on any failure; I/O threads then close their connection.
    pub abort: Arc<AtomicBool>,
    /// The caller's cancel flag: I/O threads close their connection once it is set.
    pub cancel: Arc<AtomicBool>,
    /// The first I/O failure, reported as the job's error.
    pub error: Mutex<Option<EngineError>>,
}

impl IoShared {
    /// Whether the job is stopping anyway (failed elsewhere or cancelled).
    fn stopping(&self) -> bool {
        self.abort.load(Ordering::Relaxed) || self.cancel.load(Ordering::Relaxed)
    }

    fn fail(&self, e: EngineError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.abort.store(true, Ordering::Relaxed);
    }
}

/// The writer's end of a channel to the peer.
struct Outgoing {
    id: ChannelId,
    ring: Consumer<Message>,
    returned: Producer<Batch>,
    credits: Arc<SendCredits>,
    ended: bool,
}

/// The reader's end of a channel from the peer.
struct Incoming {
    id: ChannelId,
    ring: Producer<Message>,
    returned: Consumer<Batch>,
    schema: SchemaRef,
    partial: Option<Batch>,
    ended: bool,
}

/// The writer's view of a channel from the peer: what to return as credits.
struct Grant {
    id: ChannelId,
    ledger: Arc<RecvLedger>,
    granted: u64,
}

/// The shard-side ends for one peer, to be handed to the local shards.
pub struct PeerEnds {
    /// Senders by channel (from a local shard to a shard of the peer).
    pub senders: Vec<(ChannelId, RemoteSender)>,
    /// Receivers by channel (from a shard of the peer to a local shard).
    pub receivers: Vec<(ChannelId, RemoteReceiver)>,
}

/// The running I/O threads of one peer.
pub struct PeerIo {
    addr: SocketAddr,
    stream: TcpStream,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// The checkpoint coordinators' link over one peer connection.
pub struct PeerCheckpoints {
    /// What this process's coordinator sends the peer's; the writer keeps the connection
    /// open until this channel closes (the coordinator ended).
    pub outbox: Receiver<CheckpointMessage>,
    /// Where the peer's coordinator's messages go.
    pub inbox: Sender<ShardEvent>,
}

impl PeerIo {
    /// The writer thread, to wake when there is something to send.
    pub fn writer(&self) -> std::thread::Thread {
        self.writer.thread().clone()
    }

    /// Closes the connection at once (after a failure), unblocking both threads.
    pub fn close(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Waits for both threads.
    pub fn join(self) -> Result<(), EngineError> {
        let panicked = |what: &str| EngineError::Peer {
            addr: self.addr.to_string(),
            message: format!("the {what} thread panicked"),
        };
        self.reader.join().map_err(|_| panicked("reader"))?;
        self.writer.join().map_err(|_| panicked("writer"))?;
        Ok(())
    }
}

/// Dense numbering of the channels between two shard ranges.
struct ChannelIndex {
    edges: u32,
    from: Range<u32>,
    to: Range<u32>,
}

impl ChannelIndex {
    fn len(&self) -> usize {
        self.edges as usize * self.from.len() * self.to.len()
    }

    fn ids(&self) -> impl Iterator<Item = ChannelId> + '_ {
        (0..self.edges).flat_map(move |edge| {
            self.from
                .clone()
                .flat_map(move |from| self.to.clone().map(move |to| ChannelId { edge, from, to }))
        })
    }

    fn index(&self, c: ChannelId) -> Option<usize> {
        if c.edge >= self.edges || !self.from.contains(&c.from) || !self.to.contains(&c.to) {
            return None;
        }
        let (f, t) = (
            (c.from - self.from.start) as usize,
            (c.to - self.to.start) as usize,
        );
        Some((c.edge as usize * self.from.len() + f) * self.to.len() + t)
    }
}

/// How a peer's channels are laid out.
pub struct PeerPlan<'a> {
    /// The peer's address (for messages).
    pub addr: SocketAddr,
    /// The connected, handshaken link.
    pub link: Link,
    /// Shards of this process.
    pub local: Range<u32>,
    /// Shards of the peer.
    pub remote: Range<u32>,
    /// Schema of each exchange edge.
    pub edge_schemas: &'a [SchemaRef],
    /// Ring capacity per channel, in messages (also the initial credit).
    pub capacity: usize,
    /// The checkpoint coordinators' link, for a job taking checkpoints.
    pub checkpoints: Option<PeerCheckpoints>,
}

fn peer_error(addr: SocketAddr, message: impl Into<String>) -> EngineError {
    EngineError::Peer {
        addr: addr.to_string(),
        message: message.into(),
    }
}

/// Creates the channels to and from one peer and starts its I/O threads.
pub fn start_peer(
    plan: PeerPlan<'_>,
    shared: Arc<IoShared>,
) -> Result<(PeerIo, PeerEnds), EngineError> {
    let PeerPlan {
        addr,
        link,
        local,
        remote,
        edge_schemas,
        capacity,
        checkpoints,
    } = plan;
    let (outbox, inbox) = match checkpoints {
        Some(c) => (Some(c.outbox), Some(c.inbox)),
        None => (None, None),
    };
    let edges = u32::try_from(edge_schemas.len())
        .map_err(|_| EngineError::Limit("too many exchange edges".into()))?;
    let out_index = ChannelIndex {
        edges,
        from: local.clone(),
        to: remote.clone(),
    };
    let in_index = ChannelIndex {
        edges,
        from: remote,
        to: local,
    };
    let mut outgoing = Vec::with_capacity(out_index.len());
    let mut sender_parts = Vec::with_capacity(out_index.len());
    for id in out_index.ids() {
        let (tx, rx) = RingBuffer::new(capacity);
        let (ret_tx, ret_rx) = RingBuffer::new(capacity);
        outgoing.push(Outgoing {
            id,
            ring: rx,
            returned: ret_tx,
            credits: Arc::new(SendCredits::new(capacity as u64)),
            ended: false,
        });
        sender_parts.push((id, tx, ret_rx));
    }
    let credits: Vec<_> = outgoing.iter().map(|o| o.credits.clone()).collect();
    let mut incoming = Vec::with_capacity(in_index.len());
    let mut grants = Vec::with_capacity(in_index.len());
    let mut receiver_parts = Vec::with_capacity(in_index.len());
    for id in in_index.ids() {
        let (tx, rx) = RingBuffer::new(capacity);
        let (ret_tx, ret_rx) = RingBuffer::new(capacity);
        let ledger = Arc::new(RecvLedger::new());
        incoming.push(Incoming {
            id,
            ring: tx,
            returned: ret_rx,
            schema: edge_schemas[id.edge as usize].clone(),
            partial: None,
            ended: false,
        });
        grants.push(Grant {
            id,
            ledger: ledger.clone(),
            granted: 0,
        });
        receiver_parts.push((id, rx, ret_tx, ledger));
    }
    let incoming_open = Arc::new(AtomicUsize::new(incoming.len()));
    let (mut read_half, stream, keep) = link
        .split()
        .map_err(|e| peer_error(addr, format!("cannot share the connection: {e}")))?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| peer_error(addr, format!("cannot set a write timeout: {e}")))?;
    let writer = {
        let (shared, open) = (shared.clone(), incoming_open.clone());
        std::thread::Builder::new()
            .name(format!("sluice-tx-{addr}"))
            .spawn(move || {
                let mut w = Writer {
                    addr,
                    stream,
                    outgoing,
                    grants,
                    incoming_open: open,
                    shared: shared.clone(),
                    buf: Vec::with_capacity(WRITE_BUFFER_BYTES_MAX),
                    outbox,
                };
                if let Err(e) = w.run() {
                    shared.fail(e);
                    w.stream.abort();
                }
            })
            .map_err(|e| peer_error(addr, format!("cannot start the writer thread: {e}")))?
    };
    let writer_thread = writer.thread().clone();
    read_half.set_writer(writer_thread.clone());
    let reader_keep = keep
        .try_clone()
        .map_err(|e| peer_error(addr, format!("cannot share the connection: {e}")))?;
    let reader = {
        let (shared, wake) = (shared.clone(), writer_thread.clone());
        std::thread::Builder::new()
            .name(format!("sluice-rx-{addr}"))
            .spawn(move || {
                let mut r = Reader {
                    addr,
                    stream: BufReader::with_capacity(READ_BUFFER_BYTES, read_half),
                    keep: reader_keep,
                    incoming,
                    in_index,
                    credits,
                    out_index,
                    incoming_open,
                    writer: wake,
                    body: Vec::new(),
                    inbox,
                };
                let result = r.run();
                // Whatever ended the reader, the writer must look again (it may be done).
                r.writer.unpark();
                if let Err(e) = result {
                    // A connection closed because this process (or, when cancelled, the
                    // peer) stopped is not the cause.
                    if !shared.stopping() {
                        shared.fail(e);
                    }
                    r.keep.shutdown(Shutdown::Both).ok();
                    r.writer.unpark();
                }
            })
    };
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            shared.abort.store(true, Ordering::Relaxed);
            writer_thread.unpark();
            let _ = writer.join();
            return Err(peer_error(
                addr,
                format!("cannot start the reader thread: {e}"),
            ));
        }
    };
    let ends = PeerEnds {
        senders: sender_parts
            .into_iter()
            .map(|(id, ring, returned)| {
                let writer = writer_thread.clone();
                (
                    id,
                    RemoteSender {
                        ring,
                        returned,
                        writer,
                    },
                )
            })
            .collect(),
        receivers: receiver_parts
            .into_iter()
            .map(|(id, ring, returned, ledger)| {
                let writer = writer_thread.clone();
                (
                    id,
                    RemoteReceiver {
                        ring,
                        returned,
                        ledger,
                        writer,
                    },
                )
            })
            .collect(),
    };
    Ok((
        PeerIo {
            addr,
            stream: keep,
            reader,
            writer,
        },
        ends,
    ))
}

struct Writer {
    addr: SocketAddr,
    stream: LinkWriter,
    outgoing: Vec<Outgoing>,
    grants: Vec<Grant>,
    incoming_open: Arc<AtomicUsize>,
    shared: Arc<IoShared>,
    buf: Vec<u8>,
    /// The coordinator's messages to the peer; `None` once it closed (or without one).
    outbox: Option<Receiver<CheckpointMessage>>,
}

impl Writer {
    fn run(&mut self) -> Result<(), EngineError> {
        loop {
            if self.shared.stopping() {
                self.stream.abort();
                return Ok(());
            }
            let mut progress = false;
            for g in &mut self.grants {
                let n = g.ledger.to_grant(&mut g.granted);
                if n > 0 {
                    // At most one ring's capacity is outstanding, and rings are far smaller
                    // than u32::MAX (checked when the job starts).
                    let n = u32::try_from(n).unwrap_or(u32::MAX);
                    encode_control(&mut self.buf, &Frame::Credit(g.id, n));
                    progress = true;
                }
            }
            progress |= self.send_checkpoint_messages();
            for i in 0..self.outgoing.len() {
                progress |= self.drain(i)?;
                if self.buf.len() >= WRITE_BUFFER_BYTES_MAX {
                    self.flush()?;
                }
            }
            self.flush()?;
            let all_sent = self.outgoing.iter().all(|o| o.ended) && self.outbox.is_none();
            if all_sent && self.incoming_open.load(Ordering::Acquire) == 0 {
                // Everything is sent (the coordinator too is done) and nothing more will
                // arrive that needs credits.
                let _ = self.stream.finish();
                return Ok(());
            }
            if !progress {
                std::thread::park_timeout(WRITER_PARK);
            }
        }
    }

    /// Encodes the coordinator's messages; returns whether there were any.
    fn send_checkpoint_messages(&mut self) -> bool {
        let Some(outbox) = &self.outbox else {
            return false;
        };
        let mut sent = false;
        loop {
            match outbox.try_recv() {
                Ok(message) => {
                    encode_checkpoint(&mut self.buf, &message);
                    sent = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.outbox = None;
                    break;
                }
            }
        }
        sent
    }

    /// Encodes what channel `i` has and may send; returns whether it sent anything.
    fn drain(&mut self, i: usize) -> Result<bool, EngineError> {
        let o = &mut self.outgoing[i];
        let mut sent = false;
        for _ in 0..MESSAGES_PER_CHANNEL_ROUND_MAX {
            if o.ended || o.ring.is_empty() || !o.credits.try_take() {
                break;
            }
            let Ok(msg) = o.ring.pop() else {
                // Unreachable: only this thread pops, and the ring was not empty. Give the
                // credit back rather than lose it.
                o.credits.add(1);
                break;
            };
            sent = true;
            match msg {
                Message::Data(mut batch) => {
                    if batch.len() > MESSAGE_ROWS_MAX {
                        return Err(EngineError::Limit(format!(
                            "a batch of {} rows on {} exceeds the remote exchange's limit of \
                             {MESSAGE_ROWS_MAX} rows per message",
                            batch.len(),
                            o.id
                        )));
                    }
                    let rows = batch.len();
                    let mut start = 0;
                    loop {
                        let end = (start + ROWS_PER_FRAME_MAX).min(rows);
                        let last = end == rows;
                        encode_data(&mut self.buf, o.id, &batch, start..end, last).map_err(
                            |e| EngineError::Limit(format!("{} rows {start}..{end}: {e}", o.id)),
                        )?;
                        if last {
                            break;
                        }
                        start = end;
                    }
                    batch.clear();
                    let _ = o.returned.push(batch);
                }
                Message::Watermark(w) => encode_control(&mut self.buf, &Frame::Watermark(o.id, w)),
                Message::Idle => encode_control(&mut self.buf, &Frame::Idle(o.id)),
                Message::Barrier(id) => encode_control(&mut self.buf, &Frame::Barrier(o.id, id)),
                Message::End => {
                    encode_control(&mut self.buf, &Frame::End(o.id));
                    o.ended = true;
                }
            }
        }
        Ok(sent)
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        let result = if self.buf.is_empty() {
            // Sends what TLS itself queued, if anything (nothing for TCP).
            self.stream.flush()
        } else {
            self.stream.write_all(&self.buf)
        };
        self.buf.clear();
        result.map_err(|e| {
            let message = if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut {
                format!("the peer read nothing for {WRITE_TIMEOUT:?}")
            } else {
                format!("sending failed: {e}")
            };
            peer_error(self.addr, message)
        })
    }
}

struct Reader {
    addr: SocketAddr,
    stream: BufReader<LinkReader>,
    /// The socket, to shut down on failure.
    keep: TcpStream,
    incoming: Vec<Incoming>,
    in_index: ChannelIndex,
    credits: Vec<Arc<SendCredits>>,
    out_index: ChannelIndex,
    incoming_open: Arc<AtomicUsize>,
    writer: std::thread::Thread,
    body: Vec<u8>,
    /// This process's coordinator, for the peer's checkpoint messages.
    inbox: Option<Sender<ShardEvent>>,
}

impl Reader {
    fn run(&mut self) -> Result<(), EngineError> {
        loop {
            if !self.read_frame()? {
                let open = self.incoming_open.load(Ordering::Acquire);
                return if open == 0 {
                    Ok(())
                } else {
                    Err(peer_error(
                        self.addr,
                        format!("the peer closed the connection with {open} channel(s) open"),
                    ))
                };
            }
            self.handle()?;
        }
    }

    /// Reads one frame body into `self.body`; returns false at a clean end of the stream.
    fn read_frame(&mut self) -> Result<bool, EngineError> {
        let addr = self.addr;
        let io = |e: std::io::Error| peer_error(addr, format!("receiving failed: {e}"));
        let mut len = [0u8; 4];
        let first = loop {
            match self.stream.read(&mut len[..1]) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            }
        };
        if first == 0 {
            return Ok(false);
        }
        self.stream.read_exact(&mut len[1..]).map_err(io)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(peer_error(
                addr,
                format!("frame of {len} bytes exceeds the limit of {FRAME_BYTES_MAX}"),
            ));
        }
        self.body.resize(len, 0);
        self.stream.read_exact(&mut self.body).map_err(io)?;
        Ok(true)
    }

    fn handle(&mut self) -> Result<(), EngineError> {
        let addr = self.addr;
        let bad = |m: String| peer_error(addr, format!("protocol violation: {m}"));
        let frame = decode(&self.body).map_err(|e| bad(e.to_string()))?;
        let (channel, msg) = match frame {
            Frame::Credit(c, n) => {
                let i = self
                    .out_index
                    .index(c)
                    .ok_or_else(|| bad(format!("credit for unknown channel {c}")))?;
                self.credits[i].add(u64::from(n));
                self.writer.unpark();
                return Ok(());
            }
            Frame::Hello(_) => return Err(bad("a second HELLO".into())),
            Frame::Checkpoint(message) => {
                if let Some(shard) = message.shard() {
                    if !self.in_index.from.contains(&shard) {
                        return Err(bad(format!(
                            "a checkpoint message about shard {shard}, which the peer does not \
                             run"
                        )));
                    }
                }
                // A coordinator that already ended needs nothing more.
                if let Some(inbox) = &self.inbox {
                    let _ = inbox.send(ShardEvent::Peer(message));
                }
                return Ok(());
            }
            Frame::Data {
                channel,
                last,
                rows,
                columns,
            } => {
                let i = self
                    .in_index
                    .index(channel)
                    .ok_or_else(|| bad(format!("data for unknown channel {channel}")))?;
                let ch = &mut self.incoming[i];
                if ch.ended {
                    return Err(bad(format!("data after the end on {channel}")));
                }
                let (schema, returned) = (&ch.schema, &mut ch.returned);
                let batch = ch.partial.get_or_insert_with(|| {
                    returned
                        .pop()
                        .unwrap_or_else(|_| Batch::new(schema.clone()))
                });
                if batch.len() + rows > MESSAGE_ROWS_MAX {
                    return Err(bad(format!(
                        "a message of more than {MESSAGE_ROWS_MAX} rows on {channel}"
                    )));
                }
                decode_rows(columns, rows, batch).map_err(|e| bad(format!("{channel}: {e}")))?;
                if !last {
                    return Ok(());
                }
                let Some(batch) = ch.partial.take() else {
                    return Ok(());
                };
                (channel, Message::Data(batch))
            }
            Frame::Watermark(c, w) => (c, Message::Watermark(w)),
            Frame::Idle(c) => (c, Message::Idle),
            Frame::Barrier(c, id) => (c, Message::Barrier(id)),
            Frame::End(c) => (c, Message::End),
        };
        let i = self
            .in_index
            .index(channel)
            .ok_or_else(|| bad(format!("message for unknown channel {channel}")))?;
        let ch = &mut self.incoming[i];
        if ch.ended {
            return Err(bad(format!("message after the end on {channel}")));
        }
        if !matches!(msg, Message::Data(_)) && ch.partial.is_some() {
            return Err(bad(format!("a batch on {channel} was left incomplete")));
        }
        let is_end = matches!(msg, Message::End);
        if ch.ring.push(msg).is_err() {
            return Err(bad(format!("the peer sent beyond its credit on {}", ch.id)));
        }
        if is_end {
            ch.ended = true;
            self.incoming_open.fetch_sub(1, Ordering::AcqRel);
            self.writer.unpark();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_index_is_dense_and_checked() {
        let idx = ChannelIndex {
            edges: 2,
            from: 3..5,
            to: 0..3,
        };
        let all: Vec<_> = idx.ids().collect();
        assert_eq!(all.len(), idx.len());
        for (i, c) in all.iter().enumerate() {
            assert_eq!(idx.index(*c), Some(i));
        }
        let c = |edge, from, to| ChannelId { edge, from, to };
        assert_eq!(idx.index(c(2, 3, 0)), None);
        assert_eq!(idx.index(c(0, 2, 0)), None);
        assert_eq!(idx.index(c(0, 3, 3)), None);
    }
}
