//! File source: NDJSON or CSV read through io_uring. A file is split across shards by byte
//! range; a record belongs to the split that holds its first byte, so that at any parallelism
//! every record is read exactly once:
//!
//! - NDJSON: a record is a line (JSON strings hold no raw line breaks), so a split starts at
//!   the first line that begins at or after its start (it reads from the byte before its start
//!   to tell), and the split before it reads past its end to finish its last line.
//! - CSV: a quoted field may hold line breaks, so no byte in the middle of a file tells
//!   whether a record starts there. Every split therefore parses from the top of the file (a
//!   known record boundary) with the same quote-aware reader ([`CsvRecords`]), skips without
//!   converting the records that start before its range, and stops at the first record that
//!   starts at or after its end. All splits see the same record boundaries, hence each record
//!   once; the price is that split `k` of `n` scans the `k/n` of the file before its range.
//!
//! A UTF-8 byte-order mark at the top of the file is no part of any record: splits are cut
//! from the byte after it. Blank lines are not records. A CSV file's header (with `header`)
//! is its first record, whichever split holds it. A malformed record goes to the dead-letter
//! output with its position, `path: byte N (line L)`: every CSV split knows lines, and of the
//! NDJSON splits the one that starts at the top of the file.
//!
//! HOT PATH: NDJSON lines inside a chunk are parsed in place and only a line spanning two
//! chunks is copied, into a reused buffer; CSV field bytes are copied once by `csv-core` into a
//! reused buffer. No per-record allocation, no locks, no logging.

use std::io::Read;
use std::path::Path;

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef, BATCH_RECORDS_MAX};
use crate::source::csv::{CsvRecords, CsvStep};
use crate::source::parse::{Format, LineParser};
use crate::source::{
    decode_position, encode_position, position, DeadLetters, Source, SourceStatus,
};

/// Tags a file source position.
const POSITION_TAG: u8 = 1;
use crate::sys::UringReader;

/// The file format of a file source (NDJSON or CSV).
pub type FileFormat = Format;

/// Longest accepted NDJSON line; longer lines are dead letters (CSV records have
/// [`crate::source::csv::CSV_RECORD_BYTES_MAX`]).
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// The UTF-8 byte-order mark.
pub const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// One shard's byte range of a file.
#[derive(Debug)]
pub struct FileSource {
    schema: SchemaRef,
    path: std::path::PathBuf,
    /// The path, as dead-letter positions show it.
    name: String,
    parser: LineParser,
    reader: UringReader,
    /// Offset of `reader.current()[0]`.
    chunk_offset: u64,
    /// Position inside the current chunk.
    pos: usize,
    /// The split's byte range: it reads the records whose first byte is in it.
    start: u64,
    end: u64,
    done: bool,
    framing: Framing,
}

#[derive(Debug)]
enum Framing {
    Lines(Lines),
    Csv {
        records: Box<CsvRecords>,
        /// Whether the next record is the file's first, and whether that one is a header.
        first: bool,
        header: bool,
    },
}

/// NDJSON line state.
#[derive(Debug)]
struct Lines {
    /// Bytes of a line that started in an earlier chunk.
    carry: Vec<u8>,
    /// Offset where the line being read starts.
    line_start: u64,
    /// Its 1-based line number, known when the split starts at the top of the file.
    line: Option<u64>,
    /// True while skipping the tail of the previous split's last line.
    skipping: bool,
    /// True while skipping the rest of an over-long line.
    overlong: bool,
}

/// Returns where the records of `path` start: after a UTF-8 byte-order mark, if there is one.
fn data_start(path: &Path) -> Result<u64, EngineError> {
    let mut head = [0u8; 3];
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EngineError::io(path, e)),
        }
    }
    Ok(if &head[..got] == UTF8_BOM { 3 } else { 0 })
}

/// Parses a complete NDJSON line, or records it as a dead letter.
#[allow(clippy::too_many_arguments)]
fn finish_line(
    parser: &mut LineParser,
    name: &str,
    line: &[u8],
    line_start: u64,
    line_no: Option<u64>,
    out: &mut Batch,
    dead: &mut DeadLetters,
) -> Result<(), EngineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    if let Err(reason) = parser.parse(line, out) {
        dead.push(position(name, line_start, line_no), reason, line)?;
    }
    Ok(())
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
        let first = data_start(path)?.min(size);
        let (start, end) = split_range(size - first, shard, shards);
        let (start, end) = (first + start, first + end);
        let (read_from, framing) = match format {
            Format::Ndjson => {
                // Reading from the byte before the split tells whether a line starts at it.
                let read_from = if start > first { start - 1 } else { start };
                let lines = Lines {
                    carry: Vec::new(),
                    line_start: read_from,
                    line: (start == first).then_some(1),
                    skipping: start > first,
                    overlong: false,
                };
                (read_from, Framing::Lines(lines))
            }
            Format::Csv => {
                let csv = Framing::Csv {
                    records: Box::new(CsvRecords::new(schema.len())),
                    first: true,
                    header: csv_header,
                };
                (first, csv)
            }
        };
        Ok(Self {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            parser: LineParser::new(format, schema.clone()),
            schema,
            reader: UringReader::open(path, read_from)?,
            chunk_offset: read_from,
            pos: 0,
            start,
            end,
            done: start >= end,
            framing,
        })
    }

    /// Moves to the next chunk when the current one is used up; returns false at the end of
    /// the file.
    fn next_chunk(&mut self) -> Result<bool, EngineError> {
        if self.pos < self.reader.current().len() {
            return Ok(true);
        }
        self.chunk_offset += self.reader.current().len() as u64;
        self.pos = 0;
        self.reader.advance()
    }

    fn poll_lines(&mut self, out: &mut Batch, dead: &mut DeadLetters) -> Result<(), EngineError> {
        while out.len() < BATCH_RECORDS_MAX && !self.done {
            if !self.next_chunk()? {
                // End of file: a last line without a newline is still a record.
                self.done = true;
                let Framing::Lines(l) = &mut self.framing else {
                    break;
                };
                if !l.skipping && !l.overlong && !l.carry.is_empty() {
                    let (at, line) = (l.line_start, l.line);
                    finish_line(&mut self.parser, &self.name, &l.carry, at, line, out, dead)?;
                }
                break;
            }
            let Self {
                reader,
                framing: Framing::Lines(l),
                parser,
                name,
                pos,
                chunk_offset,
                end,
                done,
                ..
            } = self
            else {
                break;
            };
            let chunk = reader.current();
            let rest = &chunk[*pos..];
            let newline = rest.iter().position(|b| *b == b'\n');
            let piece_end = newline.map_or(rest.len(), |n| n);
            if l.skipping || l.overlong {
                if let Some(n) = newline {
                    *pos += n + 1;
                    l.line_start = *chunk_offset + *pos as u64;
                    if let Some(line) = &mut l.line {
                        *line += 1;
                    }
                    l.overlong = false;
                    l.skipping = false;
                    if l.line_start >= *end {
                        *done = true;
                    }
                } else {
                    *pos = chunk.len();
                }
                continue;
            }
            if l.carry.len() + piece_end > LINE_BYTES_MAX {
                let reason = format!("line longer than {LINE_BYTES_MAX} bytes");
                let head = &rest[..piece_end.min(64)];
                dead.push(position(name, l.line_start, l.line), reason, head)?;
                l.carry.clear();
                l.overlong = true;
                continue;
            }
            match newline {
                Some(n) => {
                    let next_start = *chunk_offset + (*pos + n + 1) as u64;
                    let (at, line) = (l.line_start, l.line);
                    if l.carry.is_empty() {
                        // The whole line is inside this chunk: parse it in place.
                        finish_line(parser, name, &rest[..n], at, line, out, dead)?;
                    } else {
                        l.carry.extend_from_slice(&rest[..n]);
                        finish_line(parser, name, &l.carry, at, line, out, dead)?;
                        l.carry.clear();
                    }
                    *pos += n + 1;
                    l.line_start = next_start;
                    if let Some(line) = &mut l.line {
                        *line += 1;
                    }
                    if l.line_start >= *end {
                        *done = true;
                    }
                }
                None => {
                    l.carry.extend_from_slice(rest);
                    *pos = chunk.len();
                }
            }
        }
        Ok(())
    }

    fn poll_csv(&mut self, out: &mut Batch, dead: &mut DeadLetters) -> Result<(), EngineError> {
        while out.len() < BATCH_RECORDS_MAX && !self.done {
            let more = self.next_chunk()?;
            let Self {
                reader,
                framing:
                    Framing::Csv {
                        records,
                        first,
                        header,
                    },
                parser,
                name,
                pos,
                chunk_offset,
                start,
                end,
                done,
                ..
            } = self
            else {
                break;
            };
            let input = if more {
                &reader.current()[*pos..]
            } else {
                &[][..]
            };
            let step = if more {
                let (step, used) = records.read(input, *chunk_offset + *pos as u64, *end);
                *pos += used;
                step
            } else {
                // End of file: a last record without a terminator is still a record.
                *done = true;
                if records.finish() {
                    CsvStep::Record
                } else {
                    CsvStep::NeedInput
                }
            };
            match step {
                CsvStep::NeedInput => continue,
                CsvStep::Stop => {
                    *done = true;
                    continue;
                }
                CsvStep::Record => {}
            }
            if std::mem::take(first) && *header {
                continue;
            }
            // Records before the range belong to earlier splits; a record never starts at or
            // after `end` here, since reading stops there.
            if records.start() < *start || records.is_blank(input) {
                continue;
            }
            if let Err(reason) = parser.store_csv(records, out) {
                let at = position(name, records.start(), Some(records.line()));
                dead.push(at, reason, records.raw(input))?;
            }
        }
        Ok(())
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

    /// Between polls the split always stands at a record boundary (a poll returns when its
    /// batch is full, right after a record, or at the end), so the position is the next byte
    /// to read, the line there (0: unknown) and the framing's flags.
    fn position(&self) -> Option<Vec<u8>> {
        let at = self.chunk_offset + self.pos as u64;
        let (line, flags) = match &self.framing {
            Framing::Lines(l) => (
                l.line.unwrap_or(0),
                u64::from(l.skipping) | u64::from(l.overlong) << 1,
            ),
            Framing::Csv { records, first, .. } => (records.cursor_line(), u64::from(*first)),
        };
        let done = u64::from(self.done);
        Some(encode_position(POSITION_TAG, &[at, line, flags, done]))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), EngineError> {
        let what = format!("file source {}", self.name);
        let [at, line, flags, done] = decode_position::<4>(&what, POSITION_TAG, position)?;
        let size = std::fs::metadata(&self.path)
            .map_err(|e| EngineError::io(&self.path, e))?
            .len();
        if at > size {
            return Err(EngineError::Checkpoint(format!(
                "{what}: the checkpoint resumes at byte {at}, but the file has {size} bytes \
                 (was it replaced?)"
            )));
        }
        match &mut self.framing {
            Framing::Lines(l) => {
                if flags > 3 {
                    return Err(EngineError::Checkpoint(format!("{what}: bad line flags")));
                }
                l.carry.clear();
                l.line_start = at;
                l.line = (line > 0).then_some(line);
                l.skipping = flags & 1 != 0;
                l.overlong = flags & 2 != 0;
            }
            Framing::Csv { records, first, .. } => {
                if !records.between_records() || flags > 1 {
                    return Err(EngineError::Checkpoint(format!("{what}: bad CSV flags")));
                }
                records.resume_at_line(line);
                *first = flags == 1;
            }
        }
        self.reader = UringReader::open(&self.path, at)?;
        self.chunk_offset = at;
        self.pos = 0;
        self.done = done != 0;
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        match self.framing {
            Framing::Lines(_) => self.poll_lines(out, dead)?,
            Framing::Csv { .. } => self.poll_csv(out, dead)?,
        }
        Ok(if self.done {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}
