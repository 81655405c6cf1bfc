//! File sink: writes NDJSON or CSV lines through a buffered writer.
//!
//! HOT PATH: rows are formatted into one reused string per batch; one buffered write per
//! batch. No per-record allocation, no locks, no logging.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::record::{Batch, Value};
use crate::sink::Sink;
use crate::source::Format;

/// Appends rows to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    format: Format,
    out: BufWriter<File>,
    line: String,
}

impl FileSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path, format: Format) -> Result<Self, EngineError> {
        let file = File::create(path).map_err(|e| EngineError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            format,
            out: BufWriter::new(file),
            line: String::new(),
        })
    }
}

/// Formats every row of `batch` into `out`, one line each.
pub fn format_rows(batch: &Batch, format: Format, out: &mut String) {
    for row in 0..batch.len() {
        match format {
            Format::Ndjson => batch.write_json_row(row, out),
            Format::Csv => {
                for (i, column) in batch.columns().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match column.get(row) {
                        Value::Str(s) if s.contains([',', '"', '\n']) => {
                            out.push('"');
                            for c in s.chars() {
                                if c == '"' {
                                    out.push('"');
                                }
                                out.push(c);
                            }
                            out.push('"');
                        }
                        v => {
                            use std::fmt::Write as _;
                            let _ = write!(out, "{v}");
                        }
                    }
                }
            }
        }
        out.push('\n');
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.line.clear();
        format_rows(batch, self.format, &mut self.line);
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| EngineError::io(&self.path, e))
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.out.flush().map_err(|e| EngineError::io(&self.path, e))
    }
}
