//! Group commit: one WAL fsync for many log appends.
//!
//! An append writes its entries to RocksDB without syncing and hands its
//! completion callback to the flusher thread. The thread takes every callback
//! queued so far, fsyncs the WAL once, and only then completes them. A
//! callback is queued after its write returned, so the fsync that follows its
//! dequeue covers its entries: openraft is never told an entry is durable
//! before it is.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use rocksdb::DB;

/// Upper bound on callbacks completed by one fsync, so one slow round cannot
/// hold an unbounded amount of acknowledgements.
pub const FLUSH_BATCH_MAX: usize = 4096;

type Completion = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Handle to the flusher thread; the thread stops when the last handle drops, and that
/// drop waits for it, so the database it holds is closed before the owner goes on (a
/// RocksDB still open in a thread at process exit aborts the process).
#[derive(Clone)]
pub struct WalFlusher {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Completion>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once it has completed what is queued.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl std::fmt::Debug for WalFlusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalFlusher")
    }
}

impl WalFlusher {
    pub(crate) fn start(db: Arc<DB>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Completion>();
        let thread = thread::Builder::new()
            .name("sluice-wal-sync".to_owned())
            .spawn(move || run(&db, &rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Some(tx),
                thread: Some(thread),
            }),
        })
    }

    /// Runs `done` once everything written to the WAL before this call is on disk.
    pub(crate) fn after_sync(&self, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        let Some(tx) = &self.inner.tx else {
            return done(Err(io::Error::other("WAL flusher thread has stopped")));
        };
        if let Err(mpsc::SendError(done)) = tx.send(Box::new(done)) {
            done(Err(io::Error::other("WAL flusher thread has stopped")));
        }
    }
}

fn run(db: &DB, rx: &mpsc::Receiver<Completion>) {
    let mut pending: Vec<Completion> = Vec::with_capacity(FLUSH_BATCH_MAX);
    while let Ok(first) = rx.recv() {
        pending.push(first);
        while pending.len() < FLUSH_BATCH_MAX {
            match rx.try_recv() {
                Ok(next) => pending.push(next),
                Err(_) => break,
            }
        }
        let result = db.flush_wal(true).map_err(|e| e.into_string());
        for done in pending.drain(..) {
            done(result.clone().map_err(io::Error::other));
        }
    }
}
