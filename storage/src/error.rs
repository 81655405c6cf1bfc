//! Errors of this crate that are not openraft's `StorageError`.

use std::path::PathBuf;

/// Why a member's data directory could not be opened.
///
/// Every variant names the directory and says what to do, because these reach
/// an operator who started a member with the wrong flags.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data dir {path} belongs to member {found}, not member {requested}: \
         start member {found} with it, or give member {requested} its own data dir"
    )]
    WrongMember {
        path: PathBuf,
        found: u64,
        requested: u64,
    },
    #[error(
        "data dir {path} is not empty and is not a Sluice master data dir \
         (no {marker} file): refusing to touch it; pass an empty or new directory"
    )]
    Foreign { path: PathBuf, marker: &'static str },
    #[error("data dir {path}: identity file {file} is corrupt: {reason}")]
    CorruptIdentity {
        path: PathBuf,
        file: &'static str,
        reason: String,
    },
    #[error("data dir {path}: RocksDB: {source}")]
    Rocks {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
}
