//! Dead letters: malformed input records, counted and written with their source position.
//!
//! Each shard writes its own dead-letter file (the job's `dead_letter` path with one shard,
//! `path.N` for shard N otherwise, like a file sink), created empty when the shard starts, so
//! the file holds exactly the dead letters the job's report counts.
//!
//! Not on the hot path: only malformed records reach it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::record::value::write_json_string;

/// How many dead letters a shard keeps in memory for the job report.
pub const DEAD_LETTER_SAMPLES_MAX: usize = 100;
/// How many bytes of a malformed record are kept.
pub const DEAD_LETTER_RAW_BYTES_MAX: usize = 4096;

/// One malformed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Source name and position: the byte offset of the record's first byte and, where it is
    /// known, its 1-based line, e.g. `bids.ndjson: byte 1234 (line 17)` or
    /// `tcp:127.0.0.1:9000#2: byte 40 (line 3)` (connection 2). See [`position`].
    pub position: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw record (cut to [`DEAD_LETTER_RAW_BYTES_MAX`] bytes).
    pub raw: String,
}

/// Formats a dead letter's position: `source: byte N (line L)`, without the line when the
/// reader does not know it (a file split that starts in the middle of the file).
pub fn position(source: &str, byte: u64, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{source}: byte {byte} (line {line})"),
        None => format!("{source}: byte {byte}"),
    }
}

/// A shard's dead-letter output: counts everything, keeps samples, and writes every dead
/// letter as one NDJSON line to its file if one is configured.
#[derive(Debug)]
pub struct DeadLetters {
    count: u64,
    samples: Vec<DeadLetter>,
    file: Option<(PathBuf, File)>,
}

impl DeadLetters {
    /// Creates a dead-letter output writing to `path` (this shard's own file), which is
    /// created or truncated now.
    pub fn new(path: Option<&Path>) -> Result<Self, EngineError> {
        let file = match path {
            Some(p) => Some((
                p.to_path_buf(),
                File::create(p).map_err(|e| EngineError::io(p, e))?,
            )),
            None => None,
        };
        Ok(Self {
            count: 0,
            samples: Vec::new(),
            file,
        })
    }

    /// Like [`DeadLetters::new`], but appends to the file: a job resuming from a checkpoint
    /// keeps the dead letters of the run before (records replayed after the checkpoint may
    /// appear twice: dead letters are at least once).
    pub fn appending(path: Option<&Path>) -> Result<Self, EngineError> {
        let file = match path {
            Some(p) => Some((
                p.to_path_buf(),
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(p)
                    .map_err(|e| EngineError::io(p, e))?,
            )),
            None => None,
        };
        Ok(Self {
            count: 0,
            samples: Vec::new(),
            file,
        })
    }

    /// Records a malformed record.
    pub fn push(
        &mut self,
        position: String,
        reason: String,
        raw: &[u8],
    ) -> Result<(), EngineError> {
        self.count += 1;
        // Cut long records without splitting a character; invalid bytes show as U+FFFD.
        let mut cut = raw.len().min(DEAD_LETTER_RAW_BYTES_MAX);
        let max_cut = cut;
        while cut < raw.len() && cut > 0 && raw[cut] & 0xC0 == 0x80 && max_cut - cut < 3 {
            cut -= 1;
        }
        let raw = String::from_utf8_lossy(&raw[..cut]).into_owned();
        let letter = DeadLetter {
            position,
            reason,
            raw,
        };
        if let Some((path, file)) = &mut self.file {
            let mut line = String::from("{\"position\":");
            write_json_string(&letter.position, &mut line);
            line.push_str(",\"reason\":");
            write_json_string(&letter.reason, &mut line);
            line.push_str(",\"raw\":");
            write_json_string(&letter.raw, &mut line);
            line.push_str("}\n");
            file.write_all(line.as_bytes())
                .map_err(|e| EngineError::io(path.clone(), e))?;
        }
        if self.samples.len() < DEAD_LETTER_SAMPLES_MAX {
            self.samples.push(letter);
        }
        Ok(())
    }

    /// Returns how many dead letters were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the kept samples.
    pub fn into_samples(self) -> Vec<DeadLetter> {
        self.samples
    }
}
