//! A blob store in a local (or shared, e.g. NFS-mounted) directory: `file:///DIR`.
//!
//! A put writes a temporary file beside the target, fsyncs it, renames it over the target
//! and fsyncs the directory, so a reader sees a whole blob or none, and a put that returned
//! survives a crash.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::blob::{check_path, BlobError, BlobStore};

/// Files being written carry this suffix until they are renamed into place.
const PARTIAL_SUFFIX: &str = ".partial";

/// The file a put of `target` writes before renaming it into place.
fn partial_of(target: &std::path::Path) -> PathBuf {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("blob");
    target.with_file_name(format!("{name}{PARTIAL_SUFFIX}"))
}

/// A directory of blobs.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Opens (creating it if needed) the store rooted at `root`.
    pub fn new(root: PathBuf) -> Result<Self, BlobError> {
        fs::create_dir_all(&root).map_err(|e| BlobError::Io {
            store: format!("file://{}", root.display()),
            op: "create",
            path: String::new(),
            reason: e.to_string(),
        })?;
        Ok(Self { root })
    }

    fn io(&self, op: &'static str, path: &str, e: std::io::Error) -> BlobError {
        BlobError::Io {
            store: self.url(),
            op,
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }

    fn full(&self, path: &str) -> Result<PathBuf, BlobError> {
        check_path(&self.url(), path)?;
        Ok(self.root.join(path))
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl BlobStore for DirStore {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn put(&self, path: &str, data: &[u8]) -> Result<(), BlobError> {
        let target = self.full(path)?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| self.io("put", path, e))?;
        let partial = partial_of(&target);
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&partial)?;
            file.write_all(data)?;
            file.sync_all()?;
            fs::rename(&partial, &target)?;
            fsync_dir(&dir)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&partial);
            self.io("put", path, e)
        })
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, BlobError> {
        let target = self.full(path)?;
        fs::read(&target).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::NotFound {
                store: self.url(),
                path: path.to_owned(),
            },
            _ => self.io("get", path, e),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut found = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io("list", prefix, e))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| self.io("list", prefix, e))?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                if rel.ends_with(PARTIAL_SUFFIX) || !rel.starts_with(prefix) {
                    continue;
                }
                found.push(rel);
            }
        }
        Ok(found)
    }

    fn delete(&self, path: &str) -> Result<(), BlobError> {
        let target = self.full(path)?;
        // What a put of this path killed before its rename left goes with it.
        for file in [partial_of(&target), target.clone()] {
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io("delete", path, e)),
            }
        }
        // The directory a delete leaves empty goes too (a store has paths, not directories:
        // a deleted checkpoint leaves no husk); one still holding something stays. Only the
        // blob's own directory: a put creating a sibling higher up is never raced.
        if let Some(d) = target.parent().filter(|d| *d != self.root) {
            let _ = fs::remove_dir(d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().join("chk")).unwrap();
        store.put("job-1/chk-3/shard-0", b"a").unwrap();
        store.put("job-1/chk-3/shard-1", b"bb").unwrap();
        store.put("job-2/chk-1/shard-0", b"c").unwrap();
        assert_eq!(store.get("job-1/chk-3/shard-1").unwrap(), b"bb");
        let mut listed = store.list("job-1/").unwrap();
        listed.sort();
        assert_eq!(listed, ["job-1/chk-3/shard-0", "job-1/chk-3/shard-1"]);
        store.delete("job-1/chk-3/shard-0").unwrap();
        store.delete("job-1/chk-3/shard-0").unwrap();
        assert!(matches!(
            store.get("job-1/chk-3/shard-0"),
            Err(BlobError::NotFound { .. })
        ));
        store.delete("job-1/chk-3/shard-1").unwrap();
        assert!(
            !dir.path().join("chk/job-1/chk-3").exists(),
            "an emptied directory goes"
        );
        assert!(dir.path().join("chk/job-2/chk-1").exists());
        assert!(store.put("../escape", b"x").is_err());
        assert!(store.put("/abs", b"x").is_err());
    }

    #[test]
    fn a_delete_takes_what_a_killed_put_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().to_path_buf()).unwrap();
        // A put killed before its rename leaves only the partial file, which no list shows.
        let partial = dir.path().join("job/chk-2/shard-0.partial");
        fs::create_dir_all(partial.parent().unwrap()).unwrap();
        fs::write(&partial, b"half").unwrap();
        assert!(store.list("job/").unwrap().is_empty());
        store.delete("job/chk-2/shard-0").unwrap();
        assert!(!partial.exists());
        assert!(!dir.path().join("job/chk-2").exists(), "nothing is left");
    }
}
