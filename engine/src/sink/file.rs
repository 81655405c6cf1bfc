//! File sink: writes NDJSON lines or CSV records (RFC 4180 quoting) through a buffered
//! writer.
//!
//! In a job that takes checkpoints the sink is exactly-once, by two-phase commit. Records go
//! to a staging file beside the output (`PATH.inprogress`); at checkpoint barrier `N` the
//! staging file is renamed `PATH.pending-N` and the checkpoint's coordinator fsyncs it (and its
//! directory) before the checkpoint can complete (phase one: durable, not visible);
//! when checkpoint `N` completes, every pending file up to `N` is appended to `PATH` in order,
//! `PATH` is fsynced, and only then is the pending file deleted (phase two). The checkpoint
//! records the output's published length and the pending files with their sizes, so a restore
//! can finish a commit a crash interrupted (a pending file still there is appended at its
//! offset; one already gone was published), cut off whatever a later, uncompleted checkpoint
//! published, and delete staging files that no completed checkpoint covers. `PATH` therefore
//! only ever grows by whole checkpoints' output, and after any number of crashes holds exactly
//! the output of an uninterrupted run.
//!
//! HOT PATH: rows are formatted into one reused string per batch; one buffered write per
//! batch. No per-record allocation, no locks, no logging.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
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
    /// Where records are written: the output itself, or (exactly-once) the staging file.
    out: BufWriter<File>,
    line: String,
    /// The two-phase commit state of an exactly-once sink.
    tx: Option<Tx>,
}

/// Two-phase commit state.
#[derive(Debug)]
struct Tx {
    /// The published output, opened for writing at `published`.
    output: File,
    /// Bytes of the output published so far.
    published: u64,
    /// Bytes written to the staging file since the last barrier.
    staged: u64,
    /// Pre-committed, unpublished files: checkpoint id and size, oldest first.
    pending: VecDeque<(u64, u64)>,
    /// Whether `begin` ran.
    begun: bool,
}

/// Format version of an exactly-once file sink's checkpoint state.
const TX_STATE_FORMAT: u64 = 1;
/// Checkpoint id under which `finish` publishes the output after the last barrier.
const FINAL_COMMIT: u64 = u64::MAX;

fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".inprogress");
    PathBuf::from(name)
}

fn pending_path(path: &Path, checkpoint: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".pending-{checkpoint}"));
    PathBuf::from(name)
}

/// Fsyncs the directory holding `path`, so that a rename or a removal in it is durable.
fn sync_dir_of(path: &Path) -> Result<(), EngineError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(dir, e))
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
            tx: None,
        })
    }

    /// Opens `path` for appending (at-least-once outputs of a job resuming from a
    /// checkpoint, such as the late side output).
    pub fn appending(path: &Path, format: Format) -> Result<Self, EngineError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| EngineError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            format,
            out: BufWriter::new(file),
            line: String::new(),
            tx: None,
        })
    }

    /// Opens an exactly-once sink on `path` (see the module doc). Nothing is truncated or
    /// published until [`Sink::begin`] says whether the job starts afresh or resumes.
    pub fn exactly_once(path: &Path, format: Format) -> Result<Self, EngineError> {
        let output = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| EngineError::io(path, e))?;
        let staging = staging_path(path);
        let file = File::create(&staging).map_err(|e| EngineError::io(&staging, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            format,
            out: BufWriter::new(file),
            line: String::new(),
            tx: Some(Tx {
                output,
                published: 0,
                staged: 0,
                pending: VecDeque::new(),
                begun: false,
            }),
        })
    }

    /// Removes pending files of this output that `keep` does not hold.
    fn remove_stale_pending(&self, keep: &[u64]) -> Result<(), EngineError> {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(());
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = format!("{name}.pending-");
        let entries = std::fs::read_dir(&dir).map_err(|e| EngineError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| EngineError::io(&dir, e))?;
            let file = entry.file_name();
            let Some(id) = file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .and_then(|id| id.parse::<u64>().ok())
            else {
                continue;
            };
            if !keep.contains(&id) {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(|e| EngineError::io(&p, e))?;
            }
        }
        Ok(())
    }

    /// Appends pending file `checkpoint` (of `size` bytes) to the output at `at`.
    fn publish(&mut self, checkpoint: u64, size: u64, at: u64) -> Result<(), EngineError> {
        let pending = pending_path(&self.path, checkpoint);
        let Some(tx) = &mut self.tx else {
            return Ok(());
        };
        let io = |e| EngineError::io(&self.path, e);
        let mut input = File::open(&pending).map_err(|e| EngineError::io(&pending, e))?;
        let len = input
            .metadata()
            .map_err(|e| EngineError::io(&pending, e))?
            .len();
        if len != size {
            return Err(EngineError::Checkpoint(format!(
                "{}: holds {len} bytes, the checkpoint recorded {size}",
                pending.display()
            )));
        }
        tx.output.set_len(at).map_err(io)?;
        tx.output.seek(SeekFrom::Start(at)).map_err(io)?;
        std::io::copy(&mut input, &mut tx.output).map_err(io)?;
        tx.output.sync_data().map_err(io)?;
        tx.published = at + size;
        std::fs::remove_file(&pending).map_err(|e| EngineError::io(&pending, e))
    }

    /// Resumes from a checkpoint's state (see the module doc).
    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = |why: &str| {
            EngineError::Checkpoint(format!(
                "file sink {}: checkpoint state {why}",
                self.path.display()
            ))
        };
        let words: Vec<u64> = state
            .chunks(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        if !state.len().is_multiple_of(8) || words.len() < 3 || words[0] != TX_STATE_FORMAT {
            return Err(bad("is not an exactly-once file sink's"));
        }
        let (published, count) = (words[1], words[2]);
        if words.len() as u64 != 3 + 2 * count {
            return Err(bad("is truncated"));
        }
        let on_disk = std::fs::metadata(&self.path)
            .map_err(|e| EngineError::io(&self.path, e))?
            .len();
        if on_disk < published {
            return Err(EngineError::Checkpoint(format!(
                "file sink {}: the output holds {on_disk} bytes, but the checkpoint had                  published {published} (was it truncated or replaced?)",
                self.path.display()
            )));
        }
        let mut at = published;
        let mut keep = Vec::new();
        for pair in words[3..].chunks(2) {
            let (id, size) = (pair[0], pair[1]);
            if pending_path(&self.path, id).exists() {
                self.publish(id, size, at)?;
            } else if on_disk < at + size {
                return Err(EngineError::Checkpoint(format!(
                    "file sink {}: the output of checkpoint {id} is neither pending nor                      published",
                    self.path.display()
                )));
            }
            at += size;
            keep.push(id);
        }
        let io = |e| EngineError::io(&self.path, e);
        let Some(tx) = &mut self.tx else {
            return Ok(());
        };
        // Whatever a later, uncompleted checkpoint published is not covered: cut it off.
        tx.output.set_len(at).map_err(io)?;
        tx.output.seek(SeekFrom::Start(at)).map_err(io)?;
        tx.output.sync_data().map_err(io)?;
        tx.published = at;
        self.remove_stale_pending(&[])?;
        sync_dir_of(&self.path)
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
        if let Some(tx) = &mut self.tx {
            tx.staged += self.line.len() as u64;
        }
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| EngineError::io(&self.path, e))
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        if self.tx.is_some() {
            // The end of the input publishes everything after the last barrier.
            self.pre_commit(FINAL_COMMIT)?;
            return self.commit(FINAL_COMMIT);
        }
        self.out.flush().map_err(|e| EngineError::io(&self.path, e))
    }

    fn begin(&mut self, restored: Option<&[u8]>) -> Result<(), EngineError> {
        match self.tx.as_mut() {
            None => return Ok(()),
            Some(tx) if tx.begun => {
                return Err(EngineError::Checkpoint(format!(
                    "file sink {}: begun twice",
                    self.path.display()
                )))
            }
            Some(tx) => tx.begun = true,
        }
        match restored {
            Some(state) => self.recover(state),
            None => {
                // A fresh start: nothing of an earlier run is published or pending.
                if let Some(tx) = &mut self.tx {
                    let io = |e| EngineError::io(&self.path, e);
                    tx.output.set_len(0).map_err(io)?;
                    tx.output.seek(SeekFrom::Start(0)).map_err(io)?;
                    tx.published = 0;
                }
                self.remove_stale_pending(&[])?;
                sync_dir_of(&self.path)
            }
        }
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, EngineError> {
        let Some(tx) = &mut self.tx else {
            self.out
                .flush()
                .map_err(|e| EngineError::io(&self.path, e))?;
            return Ok(Vec::new());
        };
        let staging = staging_path(&self.path);
        let io = |e| EngineError::io(&staging, e);
        if tx.staged > 0 {
            self.out.flush().map_err(io)?;
            let pending = pending_path(&self.path, checkpoint);
            std::fs::rename(&staging, &pending).map_err(io)?;
            if checkpoint == FINAL_COMMIT {
                // The end of the input publishes at once: durable here and now.
                self.out.get_ref().sync_data().map_err(io)?;
                sync_dir_of(&self.path)?;
            }
            tx.pending.push_back((checkpoint, tx.staged));
            tx.staged = 0;
            self.out = BufWriter::new(File::create(&staging).map_err(io)?);
        }
        let mut state = Vec::with_capacity(24 + 16 * tx.pending.len());
        for word in [TX_STATE_FORMAT, tx.published, tx.pending.len() as u64] {
            state.extend_from_slice(&word.to_le_bytes());
        }
        for (id, size) in &tx.pending {
            state.extend_from_slice(&id.to_le_bytes());
            state.extend_from_slice(&size.to_le_bytes());
        }
        Ok(state)
    }

    /// Every pending file: those of checkpoints that failed stay in later checkpoints' state,
    /// and an fsync of a file already durable costs next to nothing.
    fn unsynced(&self) -> Vec<PathBuf> {
        match &self.tx {
            Some(tx) => tx
                .pending
                .iter()
                .map(|(id, _)| pending_path(&self.path, *id))
                .collect(),
            None => Vec::new(),
        }
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), EngineError> {
        loop {
            let Some(tx) = &mut self.tx else {
                return Ok(());
            };
            match tx.pending.front().copied() {
                Some((id, size)) if id <= checkpoint => {
                    let at = tx.published;
                    self.publish(id, size, at)?;
                    if let Some(tx) = &mut self.tx {
                        tx.pending.pop_front();
                    }
                }
                _ => break,
            }
        }
        if checkpoint == FINAL_COMMIT {
            let staging = staging_path(&self.path);
            std::fs::remove_file(&staging).map_err(|e| EngineError::io(&staging, e))?;
            sync_dir_of(&self.path)?;
        }
        Ok(())
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

    fn rows(values: &[i64]) -> Batch {
        let schema = Schema::of(&[("n", DataType::Int)]).unwrap();
        let mut batch = Batch::new(schema);
        for v in values {
            batch.push_row(&[Value::Int(*v)]).unwrap();
        }
        batch
    }

    /// Two-phase commit: only completed checkpoints are published, and a restore finishes an
    /// interrupted commit or takes back what a later checkpoint published.
    #[test]
    fn an_exactly_once_sink_publishes_whole_checkpoints_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let read = || std::fs::read_to_string(&path).unwrap();
        let mut sink = FileSink::exactly_once(&path, Format::Csv).unwrap();
        sink.begin(None).unwrap();
        sink.write(&rows(&[1, 2])).unwrap();
        let s1 = sink.pre_commit(1).unwrap();
        sink.write(&rows(&[3])).unwrap();
        let s2 = sink.pre_commit(2).unwrap();
        sink.write(&rows(&[4])).unwrap();
        assert_eq!(
            read(),
            "",
            "nothing is published before a checkpoint completes"
        );
        sink.commit(1).unwrap();
        assert_eq!(read(), "1\n2\n");
        sink.commit(2).unwrap();
        assert_eq!(read(), "1\n2\n3\n");
        drop(sink); // a crash: record 4 was staged only
                    // Resuming from checkpoint 1 takes back what checkpoint 2 published.
        let mut again = FileSink::exactly_once(&path, Format::Csv).unwrap();
        again.begin(Some(&s1)).unwrap();
        assert_eq!(read(), "1\n2\n");
        again.write(&rows(&[3])).unwrap();
        let _ = again.pre_commit(2).unwrap();
        drop(again); // a crash before the commit of 2
                     // Resuming from checkpoint 2 (as first taken: checkpoint 1 pending then, published
                     // since) publishes its pending part once.
        let mut third = FileSink::exactly_once(&path, Format::Csv).unwrap();
        third.begin(Some(&s2)).unwrap();
        assert_eq!(read(), "1\n2\n3\n");
        third.write(&rows(&[4])).unwrap();
        third.finish().unwrap();
        assert_eq!(read(), "1\n2\n3\n4\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out.csv"], "staging files are gone");
        // A state of something else is refused.
        let mut other = FileSink::exactly_once(&path, Format::Csv).unwrap();
        let err = other.begin(Some(b"garbage!")).unwrap_err().to_string();
        assert!(err.contains("file sink"), "{err}");
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
