//! Plan-time checks of the files a job reads and writes, so that a job that would destroy its
//! own input, or that cannot read it, fails before anything runs (also under `--check`).
//!
//! Every input (file sources of the job and of its streams) must be an existing regular file.
//! Every output file (file sinks and a file late sink, one part per shard when parallelism is
//! above one, and the dead-letter file, also one part per shard) must not be a directory,
//! must not be an input — compared by canonical path and by device and inode, so symlinks and
//! hard links are caught too — and must not be another output.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::spec::job::{part_path, JobSpec, SinkSpec, SourceSpec};
use crate::spec::plan::SpecItem;

/// One file the job touches.
struct Place {
    what: &'static str,
    path: PathBuf,
    /// The canonical path (of the file, or of its directory plus its name if it does not
    /// exist yet).
    canonical: Option<PathBuf>,
    /// Device and inode, if the file exists.
    id: Option<(u64, u64)>,
}

impl Place {
    fn new(what: &'static str, path: PathBuf) -> Self {
        let canonical = path.canonicalize().ok().or_else(|| {
            let name = path.file_name()?;
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Some(dir.canonicalize().ok()?.join(name))
        });
        let id = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        Self {
            what,
            path,
            canonical,
            id,
        }
    }

    fn same_file(&self, other: &Self) -> bool {
        self.id.is_some() && self.id == other.id
            || self.canonical.is_some() && self.canonical == other.canonical
    }
}

fn error(item: SpecItem, message: String) -> (SpecItem, EngineError) {
    (item, EngineError::Plan(message))
}

/// The inputs of `spec`: every file source of the job and of its streams.
fn inputs(spec: &JobSpec) -> Vec<(SpecItem, &Path)> {
    let main = spec
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| (SpecItem::Source(i), s));
    let streams = spec
        .streams
        .iter()
        .enumerate()
        .flat_map(|(i, st)| st.sources.iter().map(move |s| (SpecItem::Stream(i), s)));
    main.chain(streams)
        .filter_map(|(item, s)| match s {
            SourceSpec::File { path, .. } => Some((item, path.as_path())),
            _ => None,
        })
        .collect()
}

/// Checks that every input is a readable regular file and that no output overwrites an
/// input, is a directory, or is written twice.
pub fn check_files(spec: &JobSpec) -> Result<(), (SpecItem, EngineError)> {
    let mut read = Vec::new();
    for (item, path) in inputs(spec) {
        let meta = std::fs::metadata(path).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist".to_owned()
            } else {
                format!("cannot be read: {e}")
            };
            error(item, format!("input file {} {why}", path.display()))
        })?;
        if meta.is_dir() {
            return Err(error(
                item,
                format!(
                    "input {} is a directory; a file source reads one file",
                    path.display()
                ),
            ));
        }
        if !meta.is_file() {
            return Err(error(
                item,
                format!(
                    "input {} is not a regular file (a file source reads by offset)",
                    path.display()
                ),
            ));
        }
        read.push(Place::new("input", path.to_path_buf()));
    }
    let shards = spec.parallelism;
    let mut written: Vec<Place> = Vec::new();
    let sinks = spec
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (SpecItem::Sink(i), "sink", s))
        .chain(
            spec.late_sink
                .iter()
                .map(|s| (SpecItem::LateSink, "late sink", s)),
        );
    let mut outputs: Vec<(SpecItem, &'static str, PathBuf)> = Vec::new();
    for (item, what, sink) in sinks {
        if let SinkSpec::File { path, .. } = sink {
            outputs.extend((0..shards).map(|s| (item, what, part_path(path, s, shards))));
        }
    }
    if let Some(path) = &spec.dead_letter {
        let what = "dead-letter file";
        outputs
            .extend((0..shards).map(|s| (SpecItem::DeadLetter, what, part_path(path, s, shards))));
    }
    for (item, what, path) in outputs {
        if path.is_dir() {
            let inside = read.iter().find(|r| {
                r.canonical
                    .as_ref()
                    .zip(path.canonicalize().ok())
                    .is_some_and(|(c, d)| c.starts_with(d))
            });
            let note = inside.map_or_else(String::new, |r| {
                format!(" (it holds the input {})", r.path.display())
            });
            return Err(error(
                item,
                format!(
                    "{what} {} is a directory{note}; give a file path",
                    path.display()
                ),
            ));
        }
        let place = Place::new(what, path);
        if let Some(input) = read.iter().find(|r| r.same_file(&place)) {
            return Err(error(
                item,
                format!(
                    "{what} {} is the job's input {}; writing it would destroy the input \
                     before it is read: write to another file",
                    place.path.display(),
                    input.path.display()
                ),
            ));
        }
        if let Some(other) = written.iter().find(|w| w.same_file(&place)) {
            return Err(error(
                item,
                format!(
                    "{what} {} is also the {} {}; every output needs its own file",
                    place.path.display(),
                    other.what,
                    other.path.display()
                ),
            ));
        }
        written.push(place);
    }
    Ok(())
}
