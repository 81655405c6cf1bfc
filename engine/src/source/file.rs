//! File source: NDJSON or CSV read through io_uring. A file is split across shards by byte
//! range; a record belongs to the split that holds its first byte, so a record spanning a
//! split boundary is read exactly once (by the earlier split, which reads past its end to
//! finish it). Blank lines are not records and are skipped; a malformed line goes to the
//! dead-letter output with its position: `path: byte N`, plus `(line L)` in the split that
//! starts at the beginning of the file (the only one that counts lines).
//!
//! HOT PATH: lines inside a chunk are parsed in place; only a line spanning two chunks is
//! copied, into a reused buffer. No per-record allocation, no locks, no logging.

use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef, BATCH_RECORDS_MAX};
use crate::source::parse::{Format, LineParser};
use crate::source::{position, DeadLetters, Source, SourceStatus};
use crate::sys::UringReader;

/// The file format of a file source (NDJSON or CSV).
pub type FileFormat = Format;

/// Longest accepted line; longer lines are dead letters.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// One shard's byte range of a file.
#[derive(Debug)]
pub struct FileSource {
    schema: SchemaRef,
    lines: Lines,
    reader: UringReader,
    /// Offset of `reader.current()[0]`.
    chunk_offset: u64,
    /// Position inside the current chunk.
    pos: usize,
    /// Bytes of a line that started in an earlier chunk.
    carry: Vec<u8>,
    /// Offset where the line being read starts.
    line_start: u64,
    /// Its 1-based line number, known when the split starts at the beginning of the file.
    line: Option<u64>,
    /// True while skipping the tail of the previous split's last line.
    skipping: bool,
    /// True while skipping the rest of an over-long line.
    overlong: bool,
    end: u64,
    done: bool,
}

/// Turns complete lines into records or dead letters.
#[derive(Debug)]
struct Lines {
    path: PathBuf,
    parser: LineParser,
    skip_header: bool,
}

impl Lines {
    fn finish(
        &mut self,
        line: &[u8],
        line_start: u64,
        line_no: Option<u64>,
        out: &mut Batch,
        dead: &mut DeadLetters,
    ) -> Result<(), EngineError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.skip_header {
            self.skip_header = false;
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if let Err(reason) = self.parser.parse(line, out) {
            let at = position(&self.path.display().to_string(), line_start, line_no);
            dead.push(at, reason, line)?;
        }
        Ok(())
    }
}

impl FileSource {
    /// Opens split `shard` of `shards` of `path`.
    pub fn open(
        path: &Path,
        format: Format,
        schema: SchemaRef,
        csv_header: bool,
        shard: usize,
        shards: usize,
    ) -> Result<Self, EngineError> {
        let size = std::fs::metadata(path)
            .map_err(|e| EngineError::io(path, e))?
            .len();
        let (start, end) = split_range(size, shard, shards);
        // Reading from the byte before the split tells whether a line starts exactly at it.
        let read_from = start.saturating_sub(1);
        Ok(Self {
            lines: Lines {
                path: path.to_path_buf(),
                parser: LineParser::new(format, schema.clone()),
                skip_header: csv_header && start == 0 && format == Format::Csv,
            },
            schema,
            reader: UringReader::open(path, read_from)?,
            chunk_offset: read_from,
            pos: 0,
            carry: Vec::new(),
            line_start: read_from,
            line: (start == 0).then_some(1),
            skipping: start > 0,
            overlong: false,
            end,
            done: start >= end,
        })
    }
}

/// Returns the byte range `[start, end)` of split `shard` of `shards` for a file of `size`.
pub fn split_range(size: u64, shard: usize, shards: usize) -> (u64, u64) {
    let at = |i: usize| (u128::from(size) * i as u128 / shards.max(1) as u128) as u64;
    (at(shard), at(shard + 1))
}

impl Source for FileSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        while out.len() < BATCH_RECORDS_MAX && !self.done {
            if self.pos >= self.reader.current().len() {
                self.chunk_offset += self.reader.current().len() as u64;
                self.pos = 0;
                if !self.reader.advance()? {
                    // End of file: a last line without a newline is still a record.
                    self.done = true;
                    if !self.skipping && !self.overlong && !self.carry.is_empty() {
                        let (at, line) = (self.line_start, self.line);
                        self.lines.finish(&self.carry, at, line, out, dead)?;
                    }
                    break;
                }
                continue;
            }
            let chunk = self.reader.current();
            let rest = &chunk[self.pos..];
            let newline = rest.iter().position(|b| *b == b'\n');
            let piece_end = newline.map_or(rest.len(), |n| n);
            if self.skipping || self.overlong {
                if let Some(n) = newline {
                    self.pos += n + 1;
                    self.line_start = self.chunk_offset + self.pos as u64;
                    if let Some(line) = &mut self.line {
                        *line += 1;
                    }
                    if self.overlong {
                        self.overlong = false;
                    }
                    self.skipping = false;
                    if self.line_start >= self.end {
                        self.done = true;
                    }
                } else {
                    self.pos = chunk.len();
                }
                continue;
            }
            if self.carry.len() + piece_end > LINE_BYTES_MAX {
                let reason = format!("line longer than {LINE_BYTES_MAX} bytes");
                let head = &rest[..piece_end.min(64)];
                let path = self.lines.path.display().to_string();
                dead.push(position(&path, self.line_start, self.line), reason, head)?;
                self.carry.clear();
                self.overlong = true;
                continue;
            }
            match newline {
                Some(n) => {
                    let next_start = self.chunk_offset + (self.pos + n + 1) as u64;
                    let (at, line) = (self.line_start, self.line);
                    if self.carry.is_empty() {
                        // The whole line is inside this chunk: parse it in place.
                        self.lines.finish(&rest[..n], at, line, out, dead)?;
                    } else {
                        self.carry.extend_from_slice(&rest[..n]);
                        self.lines.finish(&self.carry, at, line, out, dead)?;
                        self.carry.clear();
                    }
                    self.pos += n + 1;
                    self.line_start = next_start;
                    if let Some(line) = &mut self.line {
                        *line += 1;
                    }
                    if self.line_start >= self.end {
                        self.done = true;
                    }
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    self.pos = chunk.len();
                }
            }
        }
        Ok(if self.done {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}
