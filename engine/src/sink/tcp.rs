//! TCP sink: NDJSON or CSV lines to one TCP peer per shard. Writes block the shard when the
//! peer reads slowly, which is backpressure all the way to the sources.
//!
//! HOT PATH: rows are formatted into one reused string per batch and sent with one write per
//! batch, unbuffered, so a record never waits for later ones to fill a buffer. No per-record
//! allocation, no locks, no logging.

use std::io::Write;
use std::net::TcpStream;

use crate::error::EngineError;
use crate::record::Batch;
use crate::sink::file::format_rows;
use crate::sink::Sink;
use crate::source::Format;

/// Sends rows to a TCP peer.
#[derive(Debug)]
pub struct TcpSink {
    addr: String,
    format: Format,
    out: TcpStream,
    line: String,
}

impl TcpSink {
    /// Connects to `addr`.
    pub fn connect(addr: &str, format: Format) -> Result<Self, EngineError> {
        let stream = TcpStream::connect(addr).map_err(|e| EngineError::io(addr, e))?;
        // Batches are already coalesced; Nagle would only add delay.
        stream
            .set_nodelay(true)
            .map_err(|e| EngineError::io(addr, e))?;
        Ok(Self {
            addr: addr.to_owned(),
            format,
            out: stream,
            line: String::new(),
        })
    }
}

impl Sink for TcpSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.line.clear();
        format_rows(batch, self.format, &mut self.line);
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| EngineError::io(&self.addr, e))
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.out.flush().map_err(|e| EngineError::io(&self.addr, e))
    }

    /// At least once: what was written before the barrier is flushed out; after a restore,
    /// what followed the checkpoint is sent again.
    fn pre_commit(&mut self, _checkpoint: u64) -> Result<Vec<u8>, EngineError> {
        self.finish()?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a helper thread plays the peer
mod tests {
    use super::*;
    use crate::record::{DataType, Schema, Value};
    use std::io::Read;

    #[test]
    fn sends_lines_to_the_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        });
        let schema = Schema::of(&[("w", DataType::String), ("n", DataType::Int)]).unwrap();
        let mut batch = Batch::new(schema);
        batch
            .push_row(&[Value::Str("a,\"b\""), Value::Int(1)])
            .unwrap();
        let mut sink = TcpSink::connect(&addr, Format::Csv).unwrap();
        sink.write(&batch).unwrap();
        sink.finish().unwrap();
        drop(sink);
        assert_eq!(reader.join().unwrap(), "\"a,\"\"b\"\"\",1\n");
    }
}
