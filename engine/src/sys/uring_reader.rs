//! Sequential reads of a file through the shard's own io_uring, double-buffered: while the
//! caller parses one chunk, the kernel fills the other.
//!
//! Ownership rule: a buffer handed to the kernel belongs to the ring until its completion is
//! reaped. The reader never touches an in-flight buffer, and on drop waits for the
//! completion (or, if waiting fails, leaks the buffer rather than free memory the kernel may
//! still write).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use io_uring::{opcode, types, IoUring};

use crate::error::EngineError;

/// Bytes per read.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Submission queue entries per reader ring (at most one read is in flight).
const RING_ENTRIES: u32 = 4;

/// A double-buffered sequential reader.
pub struct UringReader {
    ring: IoUring,
    file: File,
    /// The file's path, for errors.
    path: PathBuf,
    bufs: [Box<[u8]>; 2],
    /// Buffer index and file offset of the read in flight.
    in_flight: Option<(usize, u64)>,
    /// Buffer index and length of the chunk the caller may look at.
    current: Option<(usize, usize)>,
    next_offset: u64,
    eof: bool,
}

impl std::fmt::Debug for UringReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringReader")
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

impl UringReader {
    /// Opens `path` for reading from byte `offset`; refuses anything but a regular file.
    pub fn open(path: &Path, offset: u64) -> Result<Self, EngineError> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let meta = file.metadata().map_err(|e| EngineError::io(path, e))?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "is a directory, not a file"
            } else {
                "is not a regular file"
            };
            return Err(EngineError::io(path, io::Error::other(what)));
        }
        let ring = IoUring::new(RING_ENTRIES).map_err(EngineError::Uring)?;
        Ok(Self {
            ring,
            file,
            path: path.to_path_buf(),
            bufs: [
                vec![0; READ_CHUNK_BYTES].into(),
                vec![0; READ_CHUNK_BYTES].into(),
            ],
            in_flight: None,
            current: None,
            next_offset: offset,
            eof: false,
        })
    }

    /// Returns the chunk made current by the last successful [`Self::advance`].
    pub fn current(&self) -> &[u8] {
        match self.current {
            Some((i, len)) => &self.bufs[i][..len],
            None => &[],
        }
    }

    /// Makes the next chunk current; returns false at end of file.
    pub fn advance(&mut self) -> Result<bool, EngineError> {
        if self.eof {
            self.current = None;
            return Ok(false);
        }
        let free = self.current.map_or(0, |(i, _)| 1 - i);
        self.current = None;
        if self.in_flight.is_none() {
            self.submit(free)?;
        }
        let (buf, offset, n) = self.wait()?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.next_offset = offset + n as u64;
        self.current = Some((buf, n));
        // Prefetch into the other buffer while the caller parses this one.
        self.submit(1 - buf)?;
        Ok(true)
    }

    fn submit(&mut self, buf: usize) -> Result<(), EngineError> {
        debug_assert!(self.in_flight.is_none(), "one read in flight at a time");
        debug_assert!(
            self.current.is_none_or(|(c, _)| c != buf),
            "buffer in use by the caller"
        );
        let target = &mut self.bufs[buf];
        let entry = opcode::Read::new(
            types::Fd(self.file.as_raw_fd()),
            target.as_mut_ptr(),
            target.len() as u32,
        )
        .offset(self.next_offset)
        .build()
        .user_data(buf as u64);
        // SAFETY: the entry points into `self.bufs[buf]`, a heap buffer owned by `self` that is
        // neither read nor written nor freed until its completion is reaped (`in_flight` marks
        // it; `Drop` waits for it), and at `self.file`'s descriptor, which stays open as long.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| EngineError::Uring(io::Error::other("submission queue full")))?;
        self.in_flight = Some((buf, self.next_offset));
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(EngineError::Uring(e)),
            }
        }
    }

    /// Waits for the read in flight; returns its buffer, offset and byte count.
    fn wait(&mut self) -> Result<(usize, u64, usize), EngineError> {
        let Some((buf, offset)) = self.in_flight else {
            return Err(EngineError::Uring(io::Error::other("no read in flight")));
        };
        loop {
            if let Some(cqe) = self.ring.completion().next() {
                self.in_flight = None;
                debug_assert_eq!(cqe.user_data(), buf as u64);
                let res = cqe.result();
                if res < 0 {
                    let e = io::Error::from_raw_os_error(-res);
                    return Err(EngineError::io(&self.path, e));
                }
                return Ok((buf, offset, res as usize));
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(EngineError::Uring(e)),
            }
        }
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        if let Some((buf, _)) = self.in_flight {
            if self.wait().is_err() {
                // The kernel may still own the buffer: leak it instead of freeing it.
                let leaked = std::mem::replace(&mut self.bufs[buf], Box::new([]));
                std::mem::forget(leaked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_a_file_in_chunks_from_an_offset() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..READ_CHUNK_BYTES * 2 + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        f.write_all(&data).unwrap();
        let mut r = UringReader::open(f.path(), 5).unwrap();
        let mut got = Vec::new();
        while r.advance().unwrap() {
            got.extend_from_slice(r.current());
        }
        assert_eq!(got, &data[5..]);
        assert!(!r.advance().unwrap());
    }

    #[test]
    fn a_directory_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = UringReader::open(dir.path(), 0).unwrap_err().to_string();
        assert!(
            err.contains(&dir.path().display().to_string()) && err.contains("directory"),
            "{err}"
        );
    }

    #[test]
    fn dropping_mid_read_is_safe() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[1u8; 1000]).unwrap();
        let mut r = UringReader::open(f.path(), 0).unwrap();
        assert!(r.advance().unwrap());
        assert_eq!(r.current().len(), 1000);
        drop(r);
    }
}
