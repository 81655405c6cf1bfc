//! Credit-based flow control of one remote channel, so that one TCP connection can carry many
//! channels without one full channel blocking the others.
//!
//! The receiver's ring for a channel holds `capacity` messages. The sender starts with
//! `capacity` credits and spends one per message; the receiving process counts the messages
//! its shard has taken out of the ring ([`RecvLedger`]) and its writer thread returns them as
//! credits in CREDIT frames. So the messages in flight plus those in the ring never exceed
//! `capacity`: the receiving reader thread always has room for what arrives and never stops
//! reading the connection, and a slow receiver stops its sender (backpressure) channel by
//! channel. Nothing is dropped and nothing grows without bound.
//!
//! HOT PATH: one atomic read-modify-write per message on each side.
#![forbid(unsafe_code)]

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// The sender's credits for one channel: spent by the writer thread, added by the reader
/// thread when a CREDIT frame arrives.
#[derive(Debug)]
pub struct SendCredits {
    available: AtomicU64,
}

impl SendCredits {
    /// Starts with `initial` credits (the receiver's ring capacity).
    pub fn new(initial: u64) -> Self {
        Self {
            available: AtomicU64::new(initial),
        }
    }

    /// Spends one credit if there is one. Only the writer thread calls this, so a credit seen
    /// by the load is still there for the subtraction (others only add).
    pub fn try_take(&self) -> bool {
        if self.available.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.available.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Adds `n` credits granted by the receiver.
    pub fn add(&self, n: u64) {
        // A peer granting absurd amounts only hurts itself; saturate instead of wrapping.
        let _ = self
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                Some(a.saturating_add(n))
            });
    }

    /// Returns the credits left.
    pub fn available(&self) -> u64 {
        self.available.load(Ordering::Acquire)
    }
}

/// The receiver's count of messages its shard took out of a channel's ring.
#[derive(Debug, Default)]
pub struct RecvLedger {
    consumed: AtomicU64,
}

impl RecvLedger {
    /// Creates a ledger with nothing consumed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one message taken out of the ring (shard thread, after the pop).
    pub fn note_consumed(&self) {
        self.consumed.fetch_add(1, Ordering::Release);
    }

    /// Returns how many credits to grant now, given `granted` so far, and adds them to
    /// `granted` (writer thread).
    pub fn to_grant(&self, granted: &mut u64) -> u64 {
        let consumed = self.consumed.load(Ordering::Acquire);
        let n = consumed - *granted;
        *granted = consumed;
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn credits_are_spent_and_granted() {
        let credits = SendCredits::new(2);
        assert!(credits.try_take());
        assert!(credits.try_take());
        assert!(!credits.try_take());
        let ledger = RecvLedger::new();
        let mut granted = 0;
        assert_eq!(ledger.to_grant(&mut granted), 0);
        ledger.note_consumed();
        assert_eq!(ledger.to_grant(&mut granted), 1);
        assert_eq!(ledger.to_grant(&mut granted), 0);
        credits.add(1);
        assert_eq!(credits.available(), 1);
        credits.add(u64::MAX);
        assert_eq!(credits.available(), u64::MAX);
    }
}

/// Loom model of the whole protocol with the real credit types: a writer spends credits to
/// put messages on the "wire" and turns consumed messages into grants, a reader moves
/// messages into the receiver's bounded ring and applies grants, and the shard consumes from
/// the ring. Every thread takes a bounded number of steps (so the model is finite); in every
/// interleaving the ring never overflows, messages arrive in order, and no credit is lost or
/// made up. Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p sluice-engine --lib credit` (use a separate target
/// dir: the cfg rebuilds every dependency).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};
    use std::collections::VecDeque;

    const CAPACITY: u64 = 1;
    const MESSAGES: u64 = 2;
    const STEPS: usize = 3;

    #[derive(Default)]
    struct Wire {
        data: VecDeque<u64>,
        grants: VecDeque<u64>,
    }

    #[test]
    fn the_ring_never_overflows_and_no_credit_is_lost() {
        loom::model(|| {
            let credits = Arc::new(SendCredits::new(CAPACITY));
            let ledger = Arc::new(RecvLedger::new());
            let wire = Arc::new(Mutex::new(Wire::default()));
            let ring = Arc::new(Mutex::new(VecDeque::new()));

            let writer = {
                let (credits, ledger, wire) = (credits.clone(), ledger.clone(), wire.clone());
                loom::thread::spawn(move || {
                    let (mut next, mut granted) = (0, 0);
                    for _ in 0..STEPS {
                        if next < MESSAGES && credits.try_take() {
                            wire.lock().unwrap().data.push_back(next);
                            next += 1;
                        }
                        let n = ledger.to_grant(&mut granted);
                        if n > 0 {
                            wire.lock().unwrap().grants.push_back(n);
                        }
                    }
                    granted
                })
            };
            let reader = {
                let (credits, wire, ring) = (credits.clone(), wire.clone(), ring.clone());
                loom::thread::spawn(move || {
                    for _ in 0..STEPS {
                        let (msg, grant) = {
                            let mut w = wire.lock().unwrap();
                            (w.data.pop_front(), w.grants.pop_front())
                        };
                        if let Some(m) = msg {
                            let mut r = ring.lock().unwrap();
                            assert!((r.len() as u64) < CAPACITY, "ring overflow");
                            r.push_back(m);
                        }
                        if let Some(n) = grant {
                            credits.add(n);
                        }
                    }
                })
            };
            let mut consumed = 0;
            for _ in 0..STEPS {
                let m = ring.lock().unwrap().pop_front();
                if let Some(m) = m {
                    assert_eq!(m, consumed, "out of order");
                    ledger.note_consumed();
                    consumed += 1;
                }
            }
            let granted = writer.join().unwrap();
            reader.join().unwrap();
            // Conservation: every credit is available, in a message on the wire or in the
            // ring, consumed but not yet granted, or in a grant on the wire.
            let w = wire.lock().unwrap();
            let held = credits.available()
                + w.data.len() as u64
                + ring.lock().unwrap().len() as u64
                + (consumed - granted)
                + w.grants.iter().sum::<u64>();
            assert_eq!(held, CAPACITY, "credits lost or made up");
        });
    }
}
