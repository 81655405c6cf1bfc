//! CSV records (RFC 4180) read incrementally with `csv-core`: quoted fields, doubled quotes,
//! delimiters and line breaks inside quotes, and `\n`, `\r\n` or `\r` record terminators.
//! Input comes in pieces (file chunks, TCP receives); a record may span any number of them.
//!
//! A record starts at its first byte that is not a record terminator (blank lines between
//! records are not records), and that offset is the record's position: readers that split a
//! file by byte range agree on it because they all parse from the top of the file (see
//! [`crate::source::file`]). The reader also counts lines, so every record has its 1-based
//! line.
//!
//! HOT PATH: `csv-core`'s DFA copies each record's field bytes into one reused buffer; no
//! per-record allocation (buffers grow to the largest record, at most
//! [`CSV_RECORD_BYTES_MAX`]), no locks, no logging. Raw bytes are kept only for a record that
//! spans pieces (at most [`DEAD_LETTER_RAW_BYTES_MAX`] of them, for its dead letter).
//!
//! ```
//! use sluice_engine::source::csv::{CsvRecords, CsvStep};
//!
//! let mut csv = CsvRecords::new(3);
//! let input = b"1,\"a, \"\"b\"\"\"\r\n\n2,\"two\nlines\"";
//! let (step, used) = csv.read(input, 0, u64::MAX);
//! assert_eq!(step, CsvStep::Record);
//! assert_eq!(csv.field(1), b"a, \"b\"");
//! let (step, _) = csv.read(&input[used..], used as u64, u64::MAX);
//! assert_eq!(step, CsvStep::NeedInput, "the last record has no terminator yet");
//! assert!(csv.finish());
//! assert_eq!((csv.fields(), csv.field(1), csv.line()), (2, &b"two\nlines"[..], 3));
//! ```

use csv_core::{ReadRecordResult, Reader};

use crate::source::dead_letter::DEAD_LETTER_RAW_BYTES_MAX;

/// The most field bytes one CSV record may have; a longer one is read to its end and
/// rejected.
pub const CSV_RECORD_BYTES_MAX: usize = 1 << 20;

/// Field bytes a reader starts with (it grows to the largest record).
const FIELD_BYTES_INITIAL: usize = 4096;

/// What [`CsvRecords::read`] stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvStep {
    /// A record is complete (see [`CsvRecords::fields`] and friends).
    Record,
    /// The next record starts at or after the stop offset; none of it was used.
    Stop,
    /// The input is used up inside or between records: give more, or call
    /// [`CsvRecords::finish`] at the end.
    NeedInput,
}

/// Why a complete record cannot be used whatever its fields hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvProblem {
    /// It has more fields than the reader keeps.
    TooManyFields,
    /// Its fields hold more than [`CSV_RECORD_BYTES_MAX`] bytes.
    TooLong,
}

/// Reads CSV records from a stream of pieces.
pub struct CsvRecords {
    core: Reader,
    /// Field bytes of the record being read, and how many are used.
    bytes: Vec<u8>,
    nbytes: usize,
    /// Field ends (relative to the record) of the record, and how many are used.
    ends: Vec<usize>,
    nends: usize,
    in_record: bool,
    problem: Option<CsvProblem>,
    /// 1-based line the reader is on, and the record's first line.
    cursor_line: u64,
    record_line: u64,
    /// Stream offset of the record's first byte.
    start: u64,
    /// The record's raw bytes from earlier pieces (at most `DEAD_LETTER_RAW_BYTES_MAX`).
    raw: Vec<u8>,
    /// Where the record starts in the current piece, if it starts in it, and where it ends.
    raw_from: Option<usize>,
    raw_to: usize,
}

impl std::fmt::Debug for CsvRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRecords")
            .field("line", &self.cursor_line)
            .field("in_record", &self.in_record)
            .finish()
    }
}

fn is_terminator(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

impl CsvRecords {
    /// Creates a reader keeping up to `fields_max` fields of a record (a record with more is
    /// read whole and flagged [`CsvProblem::TooManyFields`]).
    pub fn new(fields_max: usize) -> Self {
        Self {
            core: Reader::new(),
            bytes: vec![0; FIELD_BYTES_INITIAL],
            nbytes: 0,
            // One more slot than kept, so that "one field too many" is seen.
            ends: vec![0; fields_max + 1],
            nends: 0,
            in_record: false,
            problem: None,
            cursor_line: 1,
            record_line: 1,
            start: 0,
            raw: Vec::new(),
            raw_from: None,
            raw_to: 0,
        }
    }

    /// Whether the reader stands between records (a checkpoint can resume there).
    pub fn between_records(&self) -> bool {
        !self.in_record
    }

    /// The 1-based line the reader is on.
    pub fn cursor_line(&self) -> u64 {
        self.cursor_line
    }

    /// Forgets everything and goes on at line `line` of a stream read from a record
    /// boundary (a checkpoint's position).
    pub fn resume_at_line(&mut self, line: u64) {
        self.reset();
        self.cursor_line = line.max(1);
        self.record_line = self.cursor_line;
    }

    /// Forgets everything, for a new stream (keeps the buffers).
    pub fn reset(&mut self) {
        self.core.reset();
        self.nbytes = 0;
        self.nends = 0;
        self.in_record = false;
        self.problem = None;
        self.cursor_line = 1;
        self.record_line = 1;
        self.raw.clear();
        self.raw_from = None;
    }

    /// Reads from `input`, the piece of the stream at offset `offset`, until a record is
    /// complete, the next record would start at or after `stop_at`, or the piece is used up.
    /// Returns what it stopped at and how many bytes of `input` it used.
    pub fn read(&mut self, input: &[u8], offset: u64, stop_at: u64) -> (CsvStep, usize) {
        let mut i = 0;
        if !self.in_record {
            // Record terminators between records (blank lines) belong to no record.
            while i < input.len() && is_terminator(input[i]) {
                self.cursor_line += u64::from(input[i] == b'\n');
                i += 1;
            }
            if i == input.len() {
                return (CsvStep::NeedInput, i);
            }
            let at = offset + i as u64;
            if at >= stop_at {
                return (CsvStep::Stop, i);
            }
            self.in_record = true;
            self.start = at;
            self.record_line = self.cursor_line;
            self.nbytes = 0;
            self.nends = 0;
            self.problem = None;
            self.raw.clear();
            self.raw_from = Some(i);
        }
        loop {
            let lines_before = self.core.line();
            let (result, nin, nout, nend) = self.core.read_record(
                &input[i..],
                &mut self.bytes[self.nbytes..],
                &mut self.ends[self.nends..],
            );
            self.cursor_line += self.core.line() - lines_before;
            i += nin;
            self.nbytes += nout;
            self.nends += nend;
            match result {
                ReadRecordResult::Record => {
                    self.in_record = false;
                    self.raw_to = i;
                    return (CsvStep::Record, i);
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => {
                    let from = self.raw_from.take().unwrap_or(0);
                    self.keep_raw(&input[from..]);
                    return (CsvStep::NeedInput, i);
                }
                ReadRecordResult::OutputFull => self.grow(),
                ReadRecordResult::OutputEndsFull => {
                    // Past the fields kept: go on reading the record to its end, reusing
                    // the slots; the record is rejected.
                    self.problem.get_or_insert(CsvProblem::TooManyFields);
                    self.nends = 0;
                }
            }
        }
    }

    /// Ends the stream: completes a last record that has no terminator and returns whether
    /// there was one.
    pub fn finish(&mut self) -> bool {
        if !self.in_record {
            return false;
        }
        loop {
            let (result, _, nout, nend) = self.core.read_record(
                &[],
                &mut self.bytes[self.nbytes..],
                &mut self.ends[self.nends..],
            );
            self.nbytes += nout;
            self.nends += nend;
            match result {
                ReadRecordResult::OutputEndsFull => {
                    self.problem.get_or_insert(CsvProblem::TooManyFields);
                    self.nends = 0;
                }
                ReadRecordResult::OutputFull => self.grow(),
                _ => break,
            }
        }
        self.in_record = false;
        self.raw_from = None;
        true
    }

    /// Makes room for more field bytes, or starts discarding them past the limit.
    fn grow(&mut self) {
        if self.bytes.len() >= CSV_RECORD_BYTES_MAX {
            self.problem = Some(CsvProblem::TooLong);
            self.nbytes = 0;
        } else {
            let len = (self.bytes.len() * 2).min(CSV_RECORD_BYTES_MAX);
            self.bytes.resize(len, 0);
        }
    }

    fn keep_raw(&mut self, bytes: &[u8]) {
        let room = DEAD_LETTER_RAW_BYTES_MAX.saturating_sub(self.raw.len());
        self.raw.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Returns the number of fields of the complete record.
    pub fn fields(&self) -> usize {
        self.nends
    }

    /// Returns the field bytes of the complete record, all fields one after the other.
    pub fn field_bytes(&self) -> &[u8] {
        &self.bytes[..self.nbytes.min(self.bytes.len())]
    }

    /// Returns where field `i` ends in [`Self::field_bytes`].
    pub fn field_end(&self, i: usize) -> usize {
        self.ends[i]
    }

    /// Returns field `i` of the complete record.
    pub fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Returns why the complete record cannot be used, if it cannot.
    pub fn problem(&self) -> Option<CsvProblem> {
        self.problem
    }

    /// Returns the stream offset of the complete record's first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Returns the 1-based line the complete record starts on.
    pub fn line(&self) -> u64 {
        self.record_line
    }

    /// Returns the complete record's raw bytes (at most [`DEAD_LETTER_RAW_BYTES_MAX`] of
    /// them, without its terminator); `input` is the piece the last `read` was given (any
    /// slice after [`Self::finish`]).
    pub fn raw<'a>(&'a mut self, input: &'a [u8]) -> &'a [u8] {
        let raw = match self.raw_from {
            Some(from) => &input[from..self.raw_to],
            None => {
                if self.raw_to > 0 && self.raw_to <= input.len() {
                    let to = self.raw_to;
                    self.raw_to = 0;
                    self.keep_raw(&input[..to]);
                }
                &self.raw[..]
            }
        };
        let end = raw
            .iter()
            .rposition(|b| !is_terminator(*b))
            .map_or(0, |p| p + 1);
        &raw[..end.min(DEAD_LETTER_RAW_BYTES_MAX)]
    }

    /// Returns whether the complete record is blank: one unquoted field of whitespace (a
    /// line of spaces is not a record; `""` is a record with one empty field).
    pub fn is_blank(&mut self, input: &[u8]) -> bool {
        self.nends == 1
            && self.problem.is_none()
            && self.field(0).iter().all(u8::is_ascii_whitespace)
            && !self.raw(input).contains(&b'"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` in pieces of `piece` bytes; returns every record's fields, start and line.
    fn records(text: &[u8], piece: usize, fields_max: usize) -> Vec<(Vec<String>, u64, u64)> {
        let mut csv = CsvRecords::new(fields_max);
        let mut got = Vec::new();
        let take = |csv: &CsvRecords| {
            let fields = (0..csv.fields())
                .map(|i| String::from_utf8_lossy(csv.field(i)).into_owned())
                .collect();
            (fields, csv.start(), csv.line())
        };
        for (n, chunk) in text.chunks(piece).enumerate() {
            let offset = (n * piece) as u64;
            let mut used = 0;
            loop {
                let (step, k) = csv.read(&chunk[used..], offset + used as u64, u64::MAX);
                used += k;
                match step {
                    CsvStep::Record => got.push(take(&csv)),
                    CsvStep::NeedInput => break,
                    CsvStep::Stop => unreachable!("no stop offset"),
                }
            }
        }
        if csv.finish() {
            got.push(take(&csv));
        }
        got
    }

    #[test]
    fn quotes_terminators_and_pieces() {
        let text = b"a,\"b,\"\"c\"\"\"\r\n\r\n\"multi\nline\",x\n\"\",\n\rlast,\"\"";
        let expected = vec![
            (vec!["a".to_owned(), "b,\"c\"".to_owned()], 0, 1),
            (vec!["multi\nline".to_owned(), "x".to_owned()], 15, 3),
            (vec![String::new(), String::new()], 30, 5),
            (vec!["last".to_owned(), String::new()], 35, 6),
        ];
        for piece in [1, 2, 3, 7, 100] {
            assert_eq!(records(text, piece, 4), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn too_many_fields_and_too_long_records_are_flagged_and_read_whole() {
        let mut csv = CsvRecords::new(2);
        let (step, used) = csv.read(b"1,2,3,4\n5,6\n", 0, u64::MAX);
        assert_eq!(step, CsvStep::Record);
        assert_eq!(csv.problem(), Some(CsvProblem::TooManyFields));
        let (step, _) = csv.read(&b"1,2,3,4\n5,6\n"[used..], used as u64, u64::MAX);
        assert_eq!(step, CsvStep::Record);
        assert_eq!((csv.problem(), csv.field(1)), (None, &b"6"[..]));

        let long = format!("\"{}\"\nnext\n", "x".repeat(CSV_RECORD_BYTES_MAX + 10));
        let mut csv = CsvRecords::new(2);
        let (step, used) = csv.read(long.as_bytes(), 0, u64::MAX);
        assert_eq!(
            (step, csv.problem()),
            (CsvStep::Record, Some(CsvProblem::TooLong))
        );
        assert_eq!(csv.raw(long.as_bytes()).len(), DEAD_LETTER_RAW_BYTES_MAX);
        let (step, _) = csv.read(&long.as_bytes()[used..], used as u64, u64::MAX);
        assert_eq!((step, csv.field(0)), (CsvStep::Record, &b"next"[..]));
    }

    #[test]
    fn a_record_starting_at_the_stop_offset_is_left_alone() {
        let mut csv = CsvRecords::new(2);
        let input = b"a\n\nb\n";
        let (step, used) = csv.read(input, 100, 103);
        assert_eq!((step, used), (CsvStep::Record, 2));
        let (step, k) = csv.read(&input[used..], 102, 103);
        // The blank line is skipped; `b` starts at 103.
        assert_eq!((step, k), (CsvStep::Stop, 1));
    }

    #[test]
    fn raw_bytes_of_a_record_spanning_pieces() {
        let mut csv = CsvRecords::new(2);
        let (a, b) = (&b"x,\"y"[..], &b"z\"\n"[..]);
        assert_eq!(csv.read(a, 0, u64::MAX).0, CsvStep::NeedInput);
        assert_eq!(csv.read(b, 4, u64::MAX).0, CsvStep::Record);
        assert_eq!(csv.raw(b), b"x,\"yz\"");
        assert!(!csv.is_blank(b));
        let mut csv = CsvRecords::new(2);
        assert_eq!(csv.read(b"   \n", 0, u64::MAX).0, CsvStep::Record);
        assert!(csv.is_blank(b"   \n"));
        assert_eq!(csv.read(b"\"\"\n", 0, u64::MAX).0, CsvStep::Record);
        assert!(!csv.is_blank(b"\"\"\n"), "a quoted empty field is a record");
    }
}
