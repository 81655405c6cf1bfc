//! File sink: writes NDJSON lines or CSV records (RFC 4180 quoting) through a buffered
//! writer.
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

/// Formats every row of `batch` into `out`, one line each (CSV records end with `\n`; a CSV
/// field holds line breaks only inside quotes).
///
/// CSV follows RFC 4180: a string field is quoted when `csv-core` says it must be (it holds a
/// comma, a double quote, `\r` or `\n`), when it is the only field of its row and empty (an
/// empty line would be no record), or when it starts with a byte-order mark; quotes inside are
/// doubled. Numbers and bools never need quotes.
pub fn format_rows(batch: &Batch, format: Format, out: &mut String) {
    let quoting = csv_core::Writer::new();
    let single = batch.columns().len() == 1;
    for row in 0..batch.len() {
        match format {
            Format::Ndjson => batch.write_json_row(row, out),
            Format::Csv => {
                for (i, column) in batch.columns().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match column.get(row) {
                        Value::Str(s)
                            if quoting.should_quote(s.as_bytes())
                                || (single && s.is_empty())
                                || s.starts_with('\u{feff}') =>
                        {
                            out.push('"');
                            for (k, piece) in s.split('"').enumerate() {
                                if k > 0 {
                                    out.push_str("\"\"");
                                }
                                out.push_str(piece);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema};
    use crate::source::csv::{CsvRecords, CsvStep};

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_needs_and_read_back_the_same() {
        let schema = Schema::of(&[("s", DataType::String), ("n", DataType::Int)]).unwrap();
        let values = [
            "plain",
            "a,b",
            "q\"uote",
            "cr\rx",
            "nl\nx",
            "crlf\r\n",
            "",
            " sp ",
            "\u{feff}bom",
        ];
        let mut batch = Batch::new(schema);
        for (n, s) in values.iter().enumerate() {
            batch
                .push_row(&[Value::Str(s), Value::Int(n as i64)])
                .unwrap();
        }
        let mut text = String::new();
        format_rows(&batch, Format::Csv, &mut text);
        assert!(
            text.starts_with("plain,0\n\"a,b\",1\n\"q\"\"uote\",2\n\"cr\rx\",3\n"),
            "{text}"
        );
        let mut csv = CsvRecords::new(2);
        let mut input = text.as_bytes();
        let mut offset = 0;
        let mut got = Vec::new();
        loop {
            let (step, used) = csv.read(input, offset, u64::MAX);
            if step == CsvStep::Record {
                got.push(String::from_utf8(csv.field(0).to_vec()).unwrap());
            }
            input = &input[used..];
            offset += used as u64;
            if step == CsvStep::NeedInput {
                break;
            }
        }
        assert_eq!(got, values);
    }

    #[test]
    fn an_empty_string_alone_in_its_row_is_quoted() {
        let schema = Schema::of(&[("s", DataType::String)]).unwrap();
        let mut batch = Batch::new(schema);
        batch.push_row(&[Value::Str("")]).unwrap();
        batch.push_row(&[Value::Str("x")]).unwrap();
        let mut text = String::new();
        format_rows(&batch, Format::Csv, &mut text);
        assert_eq!(text, "\"\"\nx\n");
    }
}
