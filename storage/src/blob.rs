//! Checkpoint storage: a flat namespace of immutable blobs (`put` whole, `get` whole),
//! addressed by `/`-separated paths under a store's root, and the sealed envelope every
//! checkpoint file is written in.
//!
//! Stores are named by URL and opened with [`open`]:
//!
//! - `file:///var/lib/sluice/checkpoints`: a local or shared directory (`blob_dir.rs`).
//! - `s3://bucket/prefix`: a bucket, and a key prefix in it, of AWS S3 or any
//!   S3-compatible service ([`S3Store`], `blob_s3.rs`), with credentials, region and endpoint
//!   from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//!   `AWS_ENDPOINT_URL` or `SLUICE_S3_ENDPOINT`, `AWS_ALLOW_HTTP=true`; see [`S3Settings`]).
//!
//! A store must outlive the agent that writes to it: a checkpoint is only worth something if
//! another agent can read it after this one is gone.
//!
//! The API is blocking: it is called from the checkpoint coordinator's thread and agent tasks,
//! never from a shard's hot loop. Every operation of a remote store is bounded by a timeout,
//! so a store that cannot be reached fails the call ([`BlobError::Io`]) instead of hanging it.
//!
//! Sealing: [`seal`] frames a payload as `MAGIC (4) | FORMAT (2) | length (8, LE) | crc32
//! (4, LE) | payload`; [`unseal`] checks every part and says which is wrong, so a truncated or
//! corrupt checkpoint file is detected, never restored from.

use std::fmt;
use std::sync::Arc;

pub use crate::blob_s3::S3Store;
pub use crate::blob_s3_settings::{S3Settings, S3_LIST_PAGE_KEYS_MAX, S3_OP_TIMEOUT_MS_DEFAULT};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The URL names no store this build can open, or is malformed.
    #[error("checkpoint storage {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The blob does not exist.
    #[error("{store}: no blob at {path:?}")]
    NotFound { store: String, path: String },
    /// The store could not be reached or refused the operation.
    #[error("{store}: {op} {path:?}: {reason}")]
    Io {
        store: String,
        op: &'static str,
        path: String,
        reason: String,
    },
    /// A sealed blob is truncated or corrupt.
    #[error("{path:?}: {reason}")]
    Corrupt { path: String, reason: String },
}

/// A store of immutable blobs.
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// The store's URL, for messages.
    fn url(&self) -> String;

    /// Writes `data` at `path` durably and atomically: once this returns, a reader sees all
    /// of it or (before) nothing. Replaces a blob already there.
    fn put(&self, path: &str, data: &[u8]) -> Result<(), BlobError>;

    /// Reads the whole blob at `path`.
    fn get(&self, path: &str) -> Result<Vec<u8>, BlobError>;

    /// The paths of every blob under `prefix` (a path prefix ending in `/`, or empty for
    /// all), in no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;

    /// Deletes the blob at `path`; deleting a missing blob is not an error.
    fn delete(&self, path: &str) -> Result<(), BlobError>;
}

/// A shared handle to a store.
pub type SharedBlobStore = Arc<dyn BlobStore>;

/// Identifies a sealed checkpoint file.
pub const SEAL_MAGIC: [u8; 4] = *b"SLCK";
/// Version of the envelope layout.
pub const SEAL_FORMAT: u16 = 1;
/// Bytes before the payload.
pub const SEAL_HEADER_BYTES: usize = 4 + 2 + 8 + 4;

/// Frames `payload` with a magic, a format version, its length and its crc32.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_HEADER_BYTES + payload.len());
    out.extend_from_slice(&SEAL_MAGIC);
    out.extend_from_slice(&SEAL_FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a sealed blob read from `path` and returns its payload.
pub fn unseal<'a>(path: &str, sealed: &'a [u8]) -> Result<&'a [u8], BlobError> {
    let corrupt = |reason: String| BlobError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if sealed.len() < SEAL_HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {SEAL_HEADER_BYTES}-byte header (truncated)",
            sealed.len()
        )));
    }
    let (header, payload) = sealed.split_at(SEAL_HEADER_BYTES);
    if header[..4] != SEAL_MAGIC {
        return Err(corrupt("not a Sluice checkpoint file (bad magic)".into()));
    }
    let format = u16::from_le_bytes([header[4], header[5]]);
    if format != SEAL_FORMAT {
        return Err(corrupt(format!(
            "envelope format {format}, this build reads {SEAL_FORMAT}"
        )));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[6..14]);
    let len = u64::from_le_bytes(len);
    if len != payload.len() as u64 {
        return Err(corrupt(format!(
            "header says {len} payload bytes, the file holds {} (truncated or appended to)",
            payload.len()
        )));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[14..18]);
    let (want, got) = (u32::from_le_bytes(crc), crc32fast::hash(payload));
    if want != got {
        return Err(corrupt(format!(
            "checksum mismatch (crc32 {got:08x}, expected {want:08x}): the file is corrupt"
        )));
    }
    Ok(payload)
}

/// Opens the store named by `url`; an `s3://` store takes its settings from the environment
/// ([`S3Settings::from_env`]).
pub fn open(url: &str) -> Result<SharedBlobStore, BlobError> {
    let bad = |reason: &str| BlobError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file:// URL needs an absolute path (file:///dir)"));
        }
        return Ok(Arc::new(crate::blob_dir::DirStore::new(path.into())?));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Store::open(url, &S3Settings::from_env())?));
    }
    Err(bad("unknown scheme: use file:///DIR or s3://BUCKET/PREFIX"))
}

/// Checks a blob path: relative, `/`-separated, no empty, `.` or `..` parts.
pub(crate) fn check_path(store: &str, path: &str) -> Result<(), BlobError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(BlobError::Io {
            store: store.to_owned(),
            op: "check",
            path: path.to_owned(),
            reason: "a blob path is relative, with no empty, `.` or `..` parts".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_come_back_and_damage_is_named() {
        let sealed = seal(b"state");
        assert_eq!(unseal("p", &sealed).unwrap(), b"state");
        let truncated = &sealed[..sealed.len() - 1];
        assert!(unseal("p", truncated)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(unseal("p", &flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(unseal("p", b"SL")
            .unwrap_err()
            .to_string()
            .contains("header"));
        let mut other = sealed;
        other[0] = b'X';
        assert!(unseal("p", &other)
            .unwrap_err()
            .to_string()
            .contains("magic"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(open("file://relative").is_err());
        assert!(open("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("unknown scheme"));
        for url in ["s3://", "s3:///prefix"] {
            let e = open(url).unwrap_err();
            assert!(matches!(e, BlobError::BadUrl { .. }), "{e}");
            assert!(e.to_string().contains("no bucket"), "{e}");
        }
    }
}
