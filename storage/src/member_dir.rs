//! The data directory of one master: an identity file plus one RocksDB.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::error::DirError;

/// Name of the file that marks a directory as a Sluice master's and says whose.
pub const IDENTITY_FILE: &str = "SLUICE_MEMBER";
/// 2: Raft entries carry the API split's commands (`RegisterAgent` with its
/// token) and ACL tokens their agent; format 1 logs do not decode as those.
const FORMAT_VERSION: u32 = 2;

/// Column family holding Raft log entries, keyed by big-endian index.
pub(crate) const CF_LOG: &str = "log";
/// Column family holding the vote, the committed log id and the purge point.
pub(crate) const CF_META: &str = "meta";
/// Column family holding the current state-machine snapshot.
pub(crate) const CF_SNAPSHOT: &str = "snapshot";

/// Who a data directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberIdentity {
    pub node_id: u64,
}

/// An opened member data directory.
///
/// Opening checks the identity file so that a member is never started on
/// another member's data or on a directory Sluice did not create.
#[derive(Clone)]
pub struct MemberDir {
    path: PathBuf,
    identity: MemberIdentity,
    db: Arc<DB>,
}

impl std::fmt::Debug for MemberDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberDir")
            .field("path", &self.path)
            .field("identity", &self.identity)
            .finish()
    }
}

impl MemberDir {
    /// Opens (creating if new) the data dir of member `node_id`.
    pub fn open(path: impl AsRef<Path>, node_id: u64) -> Result<Self, DirError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| DirError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&path).map_err(io)?;
        let identity = match read_identity(&path)? {
            Some(found) if found.node_id != node_id => {
                return Err(DirError::WrongMember {
                    path,
                    found: found.node_id,
                    requested: node_id,
                })
            }
            Some(found) => found,
            None => {
                let empty = fs::read_dir(&path).map_err(io)?.next().is_none();
                if !empty {
                    return Err(DirError::Foreign {
                        path,
                        marker: IDENTITY_FILE,
                    });
                }
                let identity = MemberIdentity { node_id };
                write_identity(&path, identity).map_err(io)?;
                identity
            }
        };
        let db = open_db(&path.join("rocksdb")).map_err(|source| DirError::Rocks {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            identity,
            db: Arc::new(db),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn identity(&self) -> MemberIdentity {
        self.identity
    }

    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }
}

fn open_db(path: &Path) -> Result<DB, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // The log is written sequentially and read mostly at its tail; a modest
    // memtable keeps recent entries in memory without a large footprint.
    opts.set_write_buffer_size(32 << 20);
    opts.set_max_background_jobs(2);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let cfs = [CF_LOG, CF_META, CF_SNAPSHOT]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    DB::open_cf_descriptors(&opts, path, cfs)
}

fn read_identity(dir: &Path) -> Result<Option<MemberIdentity>, DirError> {
    let file = dir.join(IDENTITY_FILE);
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DirError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |reason: String| DirError::CorruptIdentity {
        path: dir.to_path_buf(),
        file: IDENTITY_FILE,
        reason,
    };
    let mut node_id = None;
    let mut format = None;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| corrupt(format!("line {line:?} is not key=value")))?;
        match key.trim() {
            "format" => format = value.trim().parse::<u32>().ok(),
            "node_id" => node_id = value.trim().parse::<u64>().ok(),
            _ => {}
        }
    }
    match (format, node_id) {
        (Some(FORMAT_VERSION), Some(node_id)) => Ok(Some(MemberIdentity { node_id })),
        (Some(other), Some(_)) => Err(corrupt(format!(
            "format {other} is not supported (this build reads format {FORMAT_VERSION})"
        ))),
        _ => Err(corrupt("missing format or node_id".to_owned())),
    }
}

fn write_identity(dir: &Path, identity: MemberIdentity) -> std::io::Result<()> {
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    writeln!(
        file,
        "# Sluice master data dir. Do not copy it to another member."
    )?;
    writeln!(file, "format={FORMAT_VERSION}")?;
    writeln!(file, "node_id={}", identity.node_id)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(IDENTITY_FILE))?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_with_the_same_id_works() {
        let dir = tempfile::tempdir().unwrap();
        let first = MemberDir::open(dir.path(), 7).unwrap();
        drop(first);
        let again = MemberDir::open(dir.path(), 7).unwrap();
        assert_eq!(again.identity(), MemberIdentity { node_id: 7 });
    }

    #[test]
    fn another_members_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(MemberDir::open(dir.path(), 1).unwrap());
        let err = MemberDir::open(dir.path(), 2).unwrap_err();
        assert!(
            matches!(
                err,
                DirError::WrongMember {
                    found: 1,
                    requested: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("belongs to member 1"), "{err}");
    }

    #[test]
    fn a_foreign_non_empty_dir_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("important.txt"), b"user data").unwrap();
        let err = MemberDir::open(dir.path(), 1).unwrap_err();
        assert!(matches!(err, DirError::Foreign { .. }), "{err}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("important.txt")]);
    }

    #[test]
    fn a_corrupt_identity_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"node_id=banana\n").unwrap();
        let err = MemberDir::open(dir.path(), 1).unwrap_err();
        assert!(matches!(err, DirError::CorruptIdentity { .. }), "{err}");
    }
}
