//! TCP source: NDJSON lines or CSV records (RFC 4180, so a quoted field may hold line
//! breaks) received through io_uring. Shard 0 listens on the address; other shards' splits
//! are empty (key_by spreads the records). The split ends after `connections` connections
//! have been accepted and closed (0: never). A UTF-8 byte-order mark at the start of a
//! connection is dropped. A malformed record is a dead letter at `tcp:ADDR#N: byte B (line
//! L)`, for connection N (counted from 1) and the record's first byte and line in it; an
//! NDJSON line longer than [`LINE_BYTES_MAX`] is one too, and the rest of it is skipped.
//!
//! HOT PATH: NDJSON lines inside a received chunk are parsed in place; only a line spanning
//! two receives is copied, into the connection's reused buffer; CSV field bytes are copied
//! once by `csv-core` into the connection's reused buffer. No locks, no per-record logging.

use std::net::SocketAddr;

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef};
use crate::source::csv::{CsvRecords, CsvStep};
use crate::source::file::{LINE_BYTES_MAX, UTF8_BOM};
use crate::source::parse::{Format, LineParser};
use crate::source::{position, DeadLetters, Source, SourceStatus};
use crate::sys::{TcpEvent, UringTcpServer};

/// `ConnState::bom` once the start of a connection is decided (a mark dropped, or none).
const BOM_DECIDED: usize = UTF8_BOM.len();

/// Per-connection state: which connection it is (counted from 1 in accept order; slots are
/// reused), how much of a byte-order mark its first bytes matched, bytes received so far, and
/// the unfinished record.
#[derive(Debug, Default)]
struct ConnState {
    number: u64,
    bom: usize,
    received: u64,
    /// NDJSON: the unfinished line, the 1-based line it is on, and whether the rest of an
    /// over-long line is being skipped.
    carry: Vec<u8>,
    line: u64,
    overlong: bool,
    /// CSV: the record reader.
    csv: Option<CsvRecords>,
}

/// Where a connection's records go.
struct Records<'a> {
    parser: &'a mut LineParser,
    name: &'a str,
    out: &'a mut Batch,
    dead: &'a mut DeadLetters,
}

impl Records<'_> {
    fn dead(
        &mut self,
        (conn, offset, line): (u64, u64, u64),
        reason: String,
        raw: &[u8],
    ) -> Result<(), EngineError> {
        let at = position(&format!("{}#{conn}", self.name), offset, Some(line));
        self.dead.push(at, reason, raw)
    }

    /// Parses one complete NDJSON line found at `at` (connection, offset, line).
    fn line(&mut self, at: (u64, u64, u64), bytes: &[u8]) -> Result<(), EngineError> {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match self.parser.parse(bytes, self.out) {
            Ok(()) => Ok(()),
            Err(reason) => self.dead(at, reason, bytes),
        }
    }

    /// Stores the record `csv` completed; `input` is what its last read was given.
    fn csv(&mut self, conn: u64, csv: &mut CsvRecords, input: &[u8]) -> Result<(), EngineError> {
        if csv.is_blank(input) {
            return Ok(());
        }
        match self.parser.store_csv(csv, self.out) {
            Ok(()) => Ok(()),
            Err(reason) => {
                let at = (conn, csv.start(), csv.line());
                self.dead(at, reason, csv.raw(input))
            }
        }
    }
}

impl ConnState {
    /// Starts connection `number` in this slot.
    fn open(&mut self, number: u64, format: Format, fields: usize) {
        self.number = number;
        self.bom = 0;
        self.received = 0;
        self.carry.clear();
        self.line = 1;
        self.overlong = false;
        if format == Format::Csv {
            self.csv
                .get_or_insert_with(|| CsvRecords::new(fields))
                .reset();
        }
    }

    /// Takes received bytes: drops a byte-order mark at the very start (it may come in
    /// pieces, so its first bytes are held back until it is complete or is not one), then
    /// reads records.
    fn receive(&mut self, mut data: &[u8], to: &mut Records<'_>) -> Result<(), EngineError> {
        if self.bom < BOM_DECIDED {
            let held = self.bom;
            let mut i = 0;
            while self.bom < BOM_DECIDED && i < data.len() && data[i] == UTF8_BOM[self.bom] {
                self.bom += 1;
                i += 1;
            }
            if self.bom == BOM_DECIDED {
                self.received += BOM_DECIDED as u64;
                data = &data[i..];
            } else if i == data.len() {
                return Ok(());
            } else {
                // Not a byte-order mark: the bytes held back (and matched here) are data.
                let matched = self.bom;
                self.bom = BOM_DECIDED;
                debug_assert!(matched >= held);
                self.records(&UTF8_BOM[..matched], to)?;
                data = &data[i..];
            }
        }
        self.records(data, to)
    }

    fn records(&mut self, data: &[u8], to: &mut Records<'_>) -> Result<(), EngineError> {
        match self.csv.as_mut() {
            Some(csv) => {
                let mut data = data;
                while !data.is_empty() {
                    let (step, used) = csv.read(data, self.received, u64::MAX);
                    if step == CsvStep::Record {
                        to.csv(self.number, csv, data)?;
                    }
                    self.received += used as u64;
                    data = &data[used..];
                    if step != CsvStep::Record {
                        break;
                    }
                }
                Ok(())
            }
            None => self.lines(data, to),
        }
    }

    fn lines(&mut self, mut data: &[u8], to: &mut Records<'_>) -> Result<(), EngineError> {
        loop {
            let newline = data.iter().position(|b| *b == b'\n');
            let start = self.received - self.carry.len() as u64;
            let at = (self.number, start, self.line);
            let Some(n) = newline else {
                if !self.overlong && self.carry.len() + data.len() > LINE_BYTES_MAX {
                    let head = if self.carry.is_empty() {
                        data
                    } else {
                        &self.carry[..]
                    };
                    let reason = format!("line longer than {LINE_BYTES_MAX} bytes");
                    to.dead(at, reason, &head[..head.len().min(64)])?;
                    self.carry.clear();
                    self.overlong = true;
                }
                if !self.overlong {
                    self.carry.extend_from_slice(data);
                }
                self.received += data.len() as u64;
                return Ok(());
            };
            if self.overlong {
                self.overlong = false;
            } else if self.carry.len() + n > LINE_BYTES_MAX {
                let head = if self.carry.is_empty() {
                    data
                } else {
                    &self.carry[..]
                };
                let reason = format!("line longer than {LINE_BYTES_MAX} bytes");
                to.dead(at, reason, &head[..head.len().min(64)])?;
                self.carry.clear();
            } else if self.carry.is_empty() {
                to.line(at, &data[..n])?;
            } else {
                self.carry.extend_from_slice(&data[..n]);
                to.line(at, &self.carry)?;
                self.carry.clear();
            }
            self.received += n as u64 + 1;
            self.line += 1;
            data = &data[n + 1..];
        }
    }

    /// The peer closed: what is left is a last record without a terminator.
    fn close(&mut self, to: &mut Records<'_>) -> Result<(), EngineError> {
        if self.bom < BOM_DECIDED {
            // A stream that is only the start of a byte-order mark: those bytes are data.
            let held = self.bom;
            self.bom = BOM_DECIDED;
            self.records(&UTF8_BOM[..held], to)?;
        }
        match self.csv.as_mut() {
            Some(csv) => {
                if csv.finish() {
                    to.csv(self.number, csv, &[])?;
                }
            }
            None => {
                if !self.overlong && !self.carry.is_empty() {
                    let start = self.received - self.carry.len() as u64;
                    let carry = std::mem::take(&mut self.carry);
                    to.line((self.number, start, self.line), &carry)?;
                    self.carry = carry;
                    self.carry.clear();
                }
            }
        }
        Ok(())
    }
}

/// One shard's split of a TCP source.
#[derive(Debug)]
pub struct TcpSource {
    schema: SchemaRef,
    format: Format,
    server: Option<UringTcpServer>,
    parser: LineParser,
    conns: Vec<ConnState>,
    connections_max: u64,
    accepted: u64,
    name: String,
}

impl TcpSource {
    /// Creates split `shard`; shard 0 listens on `addr`.
    pub fn bind(
        addr: SocketAddr,
        format: Format,
        schema: SchemaRef,
        connections_max: u64,
        shard: usize,
    ) -> Result<Self, EngineError> {
        let server = if shard == 0 {
            Some(UringTcpServer::bind(addr)?)
        } else {
            None
        };
        Ok(Self {
            parser: LineParser::new(format, schema.clone()),
            schema,
            format,
            server,
            conns: Vec::new(),
            connections_max,
            accepted: 0,
            name: format!("tcp:{addr}"),
        })
    }

    /// Returns the address shard 0 listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.local_addr().ok())
    }
}

impl Source for TcpSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        let Self {
            server,
            parser,
            conns,
            accepted,
            name,
            format,
            schema,
            ..
        } = self;
        let Some(server) = server.as_mut() else {
            return Ok(SourceStatus::Exhausted);
        };
        let mut to = Records {
            parser,
            name,
            out,
            dead,
        };
        let events = server.poll(&mut |event| match event {
            TcpEvent::Accepted(id) => {
                *accepted += 1;
                if conns.len() <= id {
                    conns.resize_with(id + 1, ConnState::default);
                }
                conns[id].open(*accepted, *format, schema.len());
                Ok(())
            }
            TcpEvent::Data(id, data) => conns[id].receive(data, &mut to),
            TcpEvent::Closed(id) => conns[id].close(&mut to),
        })?;
        if self.connections_max > 0 && self.accepted >= self.connections_max {
            server.stop_accepting();
            if server.open_connections() == 0 {
                return Ok(SourceStatus::Exhausted);
            }
        }
        Ok(if events == 0 {
            SourceStatus::Pending
        } else {
            SourceStatus::Ready
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a helper thread plays the peer
mod tests {
    use super::*;
    use crate::record::{DataType, Schema};
    use std::io::Write;
    use std::time::{Duration, Instant};

    /// Feeds `pieces` to one connection and closes it; returns the ids read and the dead
    /// letters' positions and raw bytes.
    fn connection(format: Format, pieces: &[&[u8]]) -> (Vec<i64>, Vec<(String, String)>) {
        let schema = Schema::of(&[("id", DataType::Int)]).unwrap();
        let mut parser = LineParser::new(format, schema.clone());
        let mut out = Batch::new(schema.clone());
        let mut dead = DeadLetters::new(None).unwrap();
        let mut to = Records {
            parser: &mut parser,
            name: "tcp:test",
            out: &mut out,
            dead: &mut dead,
        };
        let mut c = ConnState::default();
        c.open(1, format, 1);
        for piece in pieces {
            c.receive(piece, &mut to).unwrap();
        }
        c.close(&mut to).unwrap();
        let ids = (0..out.len())
            .map(|r| out.column(0).get_i64(r).unwrap())
            .collect();
        let letters = dead
            .into_samples()
            .into_iter()
            .map(|d| (d.position, d.raw))
            .collect();
        (ids, letters)
    }

    #[test]
    fn a_byte_order_mark_in_pieces_is_dropped_and_a_false_start_is_data() {
        let (ids, dead) = connection(Format::Ndjson, &[b"\xef", b"\xbb", b"\xbf{\"id\":1}\n"]);
        assert_eq!((ids, dead.len()), (vec![1], 0));
        let (ids, dead) = connection(Format::Csv, &[b"\xef\xbb\xbf7\n8"]);
        assert_eq!((ids, dead.len()), (vec![7, 8], 0));
        // Two bytes of a mark, then not: those bytes belong to the first record.
        let (ids, dead) = connection(Format::Ndjson, &[b"\xef\xbb", b"x\n{\"id\":2}\n"]);
        assert_eq!(ids, [2]);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, "tcp:test#1: byte 0 (line 1)");
        assert!(dead[0].1.ends_with('x'), "{:?}", dead[0].1);
    }

    #[test]
    fn csv_records_span_receives_and_quoted_line_breaks() {
        let (ids, dead) = connection(Format::Csv, &[b"\"1\"\r\n\"", b"2\"\n\"3", b"\"\nx\n\"4\""]);
        assert_eq!(ids, [1, 2, 3, 4]);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, "tcp:test#1: byte 13 (line 4)");
    }

    #[test]
    fn an_endless_ndjson_line_is_one_dead_letter_not_a_growing_buffer() {
        let chunk = vec![b'x'; 64 * 1024];
        let mut pieces: Vec<&[u8]> = vec![&chunk[..]; LINE_BYTES_MAX / chunk.len() + 2];
        pieces.push(b"\n{\"id\":5}\n");
        let (ids, dead) = connection(Format::Ndjson, &pieces);
        assert_eq!(ids, [5]);
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(dead[0].0.ends_with("byte 0 (line 1)"), "{dead:?}");
    }

    #[test]
    fn receives_lines_across_connections_and_ends() {
        let schema = Schema::of(&[("id", DataType::Int)]).unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut src = TcpSource::bind(addr, Format::Ndjson, schema.clone(), 2, 0).unwrap();
        let addr = src.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            for chunk in [&b"{\"id\":1}\n{\"id\""[..], b":2}\nbad\n{\"id\":3}"] {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(chunk).unwrap();
            }
        });
        let mut dead = DeadLetters::new(None).unwrap();
        let mut out = Batch::new(schema);
        let deadline = Instant::now() + Duration::from_secs(20);
        while src.poll(&mut out, &mut dead).unwrap() != SourceStatus::Exhausted {
            assert!(Instant::now() < deadline, "the source did not end");
            std::thread::park_timeout(Duration::from_millis(1));
        }
        client.join().unwrap();
        let mut ids: Vec<_> = (0..out.len())
            .map(|r| out.column(0).get_i64(r).unwrap())
            .collect();
        ids.sort_unstable();
        // The first connection sends 1 and an unfinished line that its close makes
        // malformed; the second sends `:2` (malformed), `bad`, and 3.
        assert_eq!(ids, [1, 3]);
        assert_eq!(dead.count(), 3);
        let empty = TcpSource::bind(addr, Format::Ndjson, out.schema().clone(), 1, 1).unwrap();
        assert!(empty.local_addr().is_none());
    }
}
