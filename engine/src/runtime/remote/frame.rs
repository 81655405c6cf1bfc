//! The wire format of the remote exchange: length-prefixed frames on one TCP connection per
//! process pair. All integers are little-endian.
//!
//! ```text
//! frame     := len:u32 body                      (len = bytes of body, at most FRAME_BYTES_MAX)
//! body      := kind:u8 payload
//! HELLO     := magic:[u8;4] version:u16 fingerprint:u64 shards:u32 first:u32 end:u32
//! DATA      := channel last:u8 rows:u32 column*    (one column per field of the edge schema)
//! WATERMARK := channel watermark:i64
//! IDLE      := channel
//! END       := channel
//! CREDIT    := channel messages:u32
//! BARRIER   := channel checkpoint:u64
//! CHECKPOINT:= message (a CheckpointMessage in postcard: the coordinators' protocol)
//! channel   := edge:u32 from:u32 to:u32
//! column    := int/timestamp: rows × i64 | float: rows × f64 bits | bool: rows × u8
//!            | string: rows × len:u32, then the bytes of all strings
//! ```
//!
//! A batch larger than [`ROWS_PER_FRAME_MAX`] rows goes as several DATA frames; all but the
//! last have `last = 0`, and the receiver reassembles them into one batch (one message).
//!
//! Decoding never trusts the peer: every length is checked against the frame, strings must be
//! UTF-8, and any violation is a [`FrameError`], never a panic.
//!
//! HOT PATH (I/O threads): encoding and decoding work column by column into reused buffers.
#![forbid(unsafe_code)]

use std::ops::Range;

use crate::record::{Batch, Column};
use crate::runtime::checkpoint::CheckpointMessage;

/// The largest frame body accepted or produced, in bytes.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// The most rows one DATA frame carries; larger batches are split.
pub const ROWS_PER_FRAME_MAX: usize = 4096;
/// The most rows one reassembled message may have (bounds what a peer can make us buffer).
pub const MESSAGE_ROWS_MAX: usize = 1 << 24;
/// Identifies the protocol in HELLO.
pub const MAGIC: [u8; 4] = *b"SLEX";
/// Protocol version in HELLO.
pub const VERSION: u16 = 1;

const KIND_HELLO: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_WATERMARK: u8 = 3;
const KIND_IDLE: u8 = 4;
const KIND_END: u8 = 5;
const KIND_CREDIT: u8 = 6;
const KIND_BARRIER: u8 = 7;
const KIND_CHECKPOINT: u8 = 8;

/// One channel of an exchange: edge `edge`, from shard `from` to shard `to` (global shard
/// numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelId {
    /// Exchange edge of the plan.
    pub edge: u32,
    /// Sending shard.
    pub from: u32,
    /// Receiving shard.
    pub to: u32,
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "edge {} shard {} -> {}", self.edge, self.from, self.to)
    }
}

/// What a process says about itself when a connection opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Fingerprint of the job plan; both ends must run the same plan.
    pub fingerprint: u64,
    /// Shards of the whole job.
    pub shards: u32,
    /// The shards the sender runs.
    pub local: Range<u32>,
}

/// A decoded frame; DATA keeps its columns undecoded until the receiver knows the schema.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// Connection handshake.
    Hello(Hello),
    /// Rows of a batch.
    Data {
        /// The channel.
        channel: ChannelId,
        /// Whether this frame completes the batch.
        last: bool,
        /// Number of rows.
        rows: usize,
        /// The encoded columns.
        columns: &'a [u8],
    },
    /// A watermark.
    Watermark(ChannelId, i64),
    /// The sender is idle.
    Idle(ChannelId),
    /// A checkpoint barrier on a channel.
    Barrier(ChannelId, u64),
    /// The sender sends nothing more on this channel.
    End(ChannelId),
    /// The receiver has room for `n` more messages on this channel.
    Credit(ChannelId, u32),
    /// Between the processes' checkpoint coordinators (not on a channel).
    Checkpoint(CheckpointMessage),
}

/// A frame that breaks the protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame ended before a field it announced.
    #[error("frame truncated: needed {needed} more bytes at offset {at}")]
    Truncated {
        /// Offset in the frame body.
        at: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// The frame is larger than [`FRAME_BYTES_MAX`].
    #[error("frame of {0} bytes exceeds the limit of {FRAME_BYTES_MAX}")]
    TooLarge(usize),
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Something else is malformed.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Reads fields off a frame body, failing on truncation.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(FrameError::Truncated {
                at: self.at,
                needed: n.saturating_sub(self.bytes.len() - self.at),
            });
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn channel(&mut self) -> Result<ChannelId, FrameError> {
        Ok(ChannelId {
            edge: self.u32()?,
            from: self.u32()?,
            to: self.u32()?,
        })
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    fn finish(&self) -> Result<(), FrameError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(FrameError::Malformed(format!(
                "{} trailing bytes",
                self.bytes.len() - self.at
            )))
        }
    }
}

/// Starts a frame of `kind` in `out`; returns where its length goes.
fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    at
}

/// Writes the length of the frame started at `at`.
fn end(out: &mut [u8], at: usize) -> Result<(), FrameError> {
    let len = out.len() - at - 4;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

fn put_channel(out: &mut Vec<u8>, c: ChannelId) {
    for v in [c.edge, c.from, c.to] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a HELLO frame.
pub fn encode_hello(out: &mut Vec<u8>, hello: &Hello) {
    let at = begin(out, KIND_HELLO);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&hello.fingerprint.to_le_bytes());
    for v in [hello.shards, hello.local.start, hello.local.end] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // A HELLO is a few dozen bytes, far below the limit.
    let _ = end(out, at);
}

/// Appends a WATERMARK, IDLE, END or CREDIT frame.
pub fn encode_control(out: &mut Vec<u8>, frame: &Frame<'_>) {
    let (kind, channel) = match frame {
        Frame::Watermark(c, _) => (KIND_WATERMARK, c),
        Frame::Idle(c) => (KIND_IDLE, c),
        Frame::End(c) => (KIND_END, c),
        Frame::Credit(c, _) => (KIND_CREDIT, c),
        Frame::Barrier(c, _) => (KIND_BARRIER, c),
        Frame::Hello(h) => return encode_hello(out, h),
        Frame::Checkpoint(m) => return encode_checkpoint(out, m),
        Frame::Data { .. } => {
            debug_assert!(false, "data frames are encoded by encode_data");
            return;
        }
    };
    let at = begin(out, kind);
    put_channel(out, *channel);
    match frame {
        Frame::Watermark(_, w) => out.extend_from_slice(&w.to_le_bytes()),
        Frame::Credit(_, n) => out.extend_from_slice(&n.to_le_bytes()),
        Frame::Barrier(_, id) => out.extend_from_slice(&id.to_le_bytes()),
        _ => {}
    }
    // Control frames are a few dozen bytes, far below the limit.
    let _ = end(out, at);
}

/// Appends a CHECKPOINT frame.
pub fn encode_checkpoint(out: &mut Vec<u8>, message: &CheckpointMessage) {
    let at = begin(out, KIND_CHECKPOINT);
    // Encoding into a Vec cannot fail; texts are bounded well below the frame limit.
    if postcard::to_io(message, &mut *out).is_err() {
        out.truncate(at);
        return;
    }
    let _ = end(out, at);
}

/// Appends rows `rows` of `batch` as one DATA frame (`rows.len() <= ROWS_PER_FRAME_MAX`).
/// On error (a frame over [`FRAME_BYTES_MAX`]) `out` is left as it was.
pub fn encode_data(
    out: &mut Vec<u8>,
    channel: ChannelId,
    batch: &Batch,
    rows: Range<usize>,
    last: bool,
) -> Result<(), FrameError> {
    debug_assert!(rows.len() <= ROWS_PER_FRAME_MAX, "caller splits batches");
    let at = begin(out, KIND_DATA);
    put_channel(out, channel);
    out.push(u8::from(last));
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for column in batch.columns() {
        match column {
            Column::Int(v) | Column::Timestamp(v) => {
                for x in &v[rows.clone()] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Column::Float(v) => {
                for x in &v[rows.clone()] {
                    out.extend_from_slice(&x.to_bits().to_le_bytes());
                }
            }
            Column::Bool(v) => out.extend(v[rows.clone()].iter().map(|b| u8::from(*b))),
            Column::Str(v) => {
                for r in rows.clone() {
                    out.extend_from_slice(&(v.byte_len(r) as u32).to_le_bytes());
                }
                out.extend_from_slice(v.packed(rows.clone()).as_bytes());
            }
        }
    }
    end(out, at).inspect_err(|_| out.truncate(at))
}

/// Decodes a frame body (without its length prefix).
pub fn decode(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    if body.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut c = Cursor { bytes: body, at: 0 };
    let frame = match c.u8()? {
        KIND_HELLO => {
            if c.array::<4>()? != MAGIC {
                return Err(FrameError::Malformed(
                    "not a sluice exchange connection (bad magic)".into(),
                ));
            }
            let version = c.u16()?;
            if version != VERSION {
                return Err(FrameError::Malformed(format!(
                    "protocol version {version}, this process speaks {VERSION}"
                )));
            }
            let fingerprint = c.u64()?;
            let shards = c.u32()?;
            let local = c.u32()?..c.u32()?;
            Frame::Hello(Hello {
                fingerprint,
                shards,
                local,
            })
        }
        KIND_DATA => {
            let channel = c.channel()?;
            let last = match c.u8()? {
                0 => false,
                1 => true,
                other => {
                    return Err(FrameError::Malformed(format!("last flag {other}")));
                }
            };
            let rows = c.u32()? as usize;
            if rows > ROWS_PER_FRAME_MAX {
                return Err(FrameError::Malformed(format!(
                    "{rows} rows in one frame, the limit is {ROWS_PER_FRAME_MAX}"
                )));
            }
            Frame::Data {
                channel,
                last,
                rows,
                columns: c.rest(),
            }
        }
        KIND_WATERMARK => {
            let channel = c.channel()?;
            Frame::Watermark(channel, c.u64()? as i64)
        }
        KIND_IDLE => Frame::Idle(c.channel()?),
        KIND_BARRIER => {
            let channel = c.channel()?;
            Frame::Barrier(channel, c.u64()?)
        }
        KIND_END => Frame::End(c.channel()?),
        KIND_CREDIT => {
            let channel = c.channel()?;
            Frame::Credit(channel, c.u32()?)
        }
        KIND_CHECKPOINT => {
            let (message, trailing): (CheckpointMessage, _) =
                postcard::take_from_bytes(c.rest())
                    .map_err(|e| FrameError::Malformed(format!("checkpoint message: {e}")))?;
            if !trailing.is_empty() {
                return Err(FrameError::Malformed(format!(
                    "{} trailing bytes after a checkpoint message",
                    trailing.len()
                )));
            }
            message.check().map_err(FrameError::Malformed)?;
            Frame::Checkpoint(message)
        }
        other => return Err(FrameError::UnknownKind(other)),
    };
    c.finish()?;
    Ok(frame)
}

/// Appends `rows` rows encoded in `columns` (the payload of a DATA frame) to `batch`, whose
/// schema says how to read them. On error `batch` is left as it was.
pub fn decode_rows(columns: &[u8], rows: usize, batch: &mut Batch) -> Result<(), FrameError> {
    let before = batch.len();
    let result = decode_columns(columns, rows, batch);
    match result {
        Ok(()) => {
            batch.commit_rows(rows);
            Ok(())
        }
        Err(e) => {
            batch.rollback_to(before);
            Err(e)
        }
    }
}

fn decode_columns(columns: &[u8], rows: usize, batch: &mut Batch) -> Result<(), FrameError> {
    let mut c = Cursor {
        bytes: columns,
        at: 0,
    };
    for column in batch.columns_mut() {
        match column {
            Column::Int(v) | Column::Timestamp(v) => {
                let bytes = c.take(rows * 8)?;
                v.extend(bytes.chunks_exact(8).map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    i64::from_le_bytes(a)
                }));
            }
            Column::Float(v) => {
                let bytes = c.take(rows * 8)?;
                v.extend(bytes.chunks_exact(8).map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_bits(u64::from_le_bytes(a))
                }));
            }
            Column::Bool(v) => {
                for b in c.take(rows)? {
                    match b {
                        0 => v.push(false),
                        1 => v.push(true),
                        other => {
                            return Err(FrameError::Malformed(format!("bool byte {other}")));
                        }
                    }
                }
            }
            Column::Str(v) => {
                let lens = c.take(rows * 4)?;
                let mut total = 0usize;
                for b in lens.chunks_exact(4) {
                    let mut a = [0u8; 4];
                    a.copy_from_slice(b);
                    total = total.saturating_add(u32::from_le_bytes(a) as usize);
                }
                let data = std::str::from_utf8(c.take(total)?)
                    .map_err(|e| FrameError::Malformed(format!("string column: {e}")))?;
                let mut at = 0;
                for b in lens.chunks_exact(4) {
                    let mut a = [0u8; 4];
                    a.copy_from_slice(b);
                    let len = u32::from_le_bytes(a) as usize;
                    let s = data.get(at..at + len).ok_or_else(|| {
                        FrameError::Malformed("string split inside a character".into())
                    })?;
                    v.push(s);
                    at += len;
                }
            }
        }
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema, Value};
    use crate::runtime::checkpoint::CHECKPOINT_MESSAGE_TEXT_MAX;

    fn schema() -> crate::record::SchemaRef {
        Schema::of(&[
            ("i", DataType::Int),
            ("f", DataType::Float),
            ("b", DataType::Bool),
            ("s", DataType::String),
            ("t", DataType::Timestamp),
        ])
        .unwrap()
    }

    fn body(buf: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - 4);
        &buf[4..]
    }

    const CH: ChannelId = ChannelId {
        edge: 1,
        from: 2,
        to: 3,
    };

    #[test]
    fn data_round_trips_in_chunks() {
        let mut batch = Batch::new(schema());
        for i in 0..10i64 {
            batch
                .push_row(&[
                    Value::Int(i - 5),
                    Value::Float(i as f64 / 3.0),
                    Value::Bool(i % 3 == 0),
                    Value::Str(["", "é", "abc", "日本"][i as usize % 4]),
                    Value::Timestamp(i * 1000),
                ])
                .unwrap();
        }
        let mut back = Batch::new(schema());
        for (rows, last) in [(0..4, false), (4..10, true)] {
            let mut buf = Vec::new();
            encode_data(&mut buf, CH, &batch, rows.clone(), last).unwrap();
            let Frame::Data {
                channel,
                last: l,
                rows: n,
                columns,
            } = decode(body(&buf)).unwrap()
            else {
                panic!("not data")
            };
            assert_eq!((channel, l, n), (CH, last, rows.len()));
            decode_rows(columns, n, &mut back).unwrap();
        }
        assert_eq!(back, batch);
    }

    #[test]
    fn control_frames_round_trip() {
        let hello = Hello {
            fingerprint: 77,
            shards: 4,
            local: 2..4,
        };
        for frame in [
            Frame::Hello(hello),
            Frame::Watermark(CH, -9),
            Frame::Idle(CH),
            Frame::Barrier(CH, 7),
            Frame::End(CH),
            Frame::Credit(CH, 5),
            Frame::Checkpoint(CheckpointMessage::Trigger { id: 3 }),
            Frame::Checkpoint(CheckpointMessage::Stored {
                id: 3,
                shard: 1,
                path: "job-4/chk-3/shard-1".into(),
                bytes: 99,
                alignment_us: 12,
                pause_us: 5,
                state_bytes: 1 << 20,
            }),
            Frame::Checkpoint(CheckpointMessage::Declined {
                id: 3,
                shard: 2,
                reason: "ended".into(),
                finished: true,
            }),
            Frame::Checkpoint(CheckpointMessage::Complete { id: 3 }),
        ] {
            let mut buf = Vec::new();
            encode_control(&mut buf, &frame);
            assert_eq!(decode(body(&buf)).unwrap(), frame);
        }
    }

    #[test]
    fn checkpoint_messages_are_checked() {
        let mut buf = Vec::new();
        encode_checkpoint(&mut buf, &CheckpointMessage::Complete { id: 1 });
        let mut trailing = body(&buf).to_vec();
        trailing.push(0);
        let err = decode(&trailing).unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
        let long = CheckpointMessage::Declined {
            id: 1,
            shard: 0,
            reason: "x".repeat(CHECKPOINT_MESSAGE_TEXT_MAX + 1),
            finished: false,
        };
        buf.clear();
        encode_checkpoint(&mut buf, &long);
        let err = decode(body(&buf)).unwrap_err();
        assert!(err.to_string().contains("the limit is 4096"), "{err}");
        assert!(decode(&[KIND_CHECKPOINT, 9]).is_err(), "no such message");
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut batch = Batch::new(schema());
        batch
            .push_row(&[
                Value::Int(1),
                Value::Float(1.0),
                Value::Bool(true),
                Value::Str("日本"),
                Value::Timestamp(1),
            ])
            .unwrap();
        let mut buf = Vec::new();
        encode_data(&mut buf, CH, &batch, 0..1, true).unwrap();
        let good = body(&buf).to_vec();
        // Every truncation and every single-byte corruption decodes to an error or to a
        // batch of the right shape; it never panics and never leaves a ragged batch.
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(Frame::Data { rows, columns, .. }) = decode(&bad) {
                    let mut into = Batch::new(schema());
                    if decode_rows(columns, rows, &mut into).is_err() {
                        assert!(into.is_empty());
                    }
                    assert!(into.columns().iter().all(|c| c.len() == into.len()));
                }
            }
        }
        assert_eq!(decode(&[9]), Err(FrameError::UnknownKind(9)));
        assert!(matches!(
            decode(&[KIND_END, 0, 0]),
            Err(FrameError::Truncated { .. })
        ));
    }
}
