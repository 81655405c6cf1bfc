//! TCP source: newline-delimited NDJSON or CSV received through io_uring. Shard 0 listens on
//! the address; other shards' splits are empty (key_by spreads the records). The split ends
//! after `connections` connections have been accepted and closed (0: never).
//!
//! HOT PATH: lines inside a received chunk are parsed in place; only a line spanning two
//! receives is copied, into the connection's reused buffer. No locks, no per-record logging.

use std::net::SocketAddr;

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef};
use crate::source::parse::{Format, LineParser};
use crate::source::{position, DeadLetters, Source, SourceStatus};
use crate::sys::{TcpEvent, UringTcpServer};

/// Per-connection state: which connection it is (counted from 1 in accept order; slots are
/// reused), the unfinished line and bytes received so far.
#[derive(Debug, Default)]
struct ConnState {
    number: u64,
    carry: Vec<u8>,
    received: u64,
    /// The 1-based line the unfinished line is on.
    line: u64,
}

/// One shard's split of a TCP source.
#[derive(Debug)]
pub struct TcpSource {
    schema: SchemaRef,
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

#[allow(clippy::too_many_arguments)]
fn line(
    parser: &mut LineParser,
    name: &str,
    (conn, line_no): (u64, u64),
    offset: u64,
    bytes: &[u8],
    out: &mut Batch,
    dead: &mut DeadLetters,
) -> Result<(), EngineError> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    if let Err(reason) = parser.parse(bytes, out) {
        let at = position(&format!("{name}#{conn}"), offset, Some(line_no));
        dead.push(at, reason, bytes)?;
    }
    Ok(())
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
            ..
        } = self;
        let Some(server) = server.as_mut() else {
            return Ok(SourceStatus::Exhausted);
        };
        let events = server.poll(&mut |event| match event {
            TcpEvent::Accepted(id) => {
                *accepted += 1;
                if conns.len() <= id {
                    conns.resize_with(id + 1, ConnState::default);
                }
                let c = &mut conns[id];
                c.number = *accepted;
                c.received = 0;
                c.line = 1;
                c.carry.clear();
                Ok(())
            }
            TcpEvent::Data(id, mut data) => {
                let c = &mut conns[id];
                while let Some(n) = data.iter().position(|b| *b == b'\n') {
                    let start = c.received - c.carry.len() as u64;
                    if c.carry.is_empty() {
                        line(
                            parser,
                            name,
                            (c.number, c.line),
                            start,
                            &data[..n],
                            out,
                            dead,
                        )?;
                    } else {
                        c.carry.extend_from_slice(&data[..n]);
                        line(parser, name, (c.number, c.line), start, &c.carry, out, dead)?;
                        c.carry.clear();
                    }
                    c.received += n as u64 + 1;
                    c.line += 1;
                    data = &data[n + 1..];
                }
                c.carry.extend_from_slice(data);
                c.received += data.len() as u64;
                Ok(())
            }
            TcpEvent::Closed(id) => {
                let c = &mut conns[id];
                if !c.carry.is_empty() {
                    let start = c.received - c.carry.len() as u64;
                    line(parser, name, (c.number, c.line), start, &c.carry, out, dead)?;
                    c.carry.clear();
                }
                Ok(())
            }
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
