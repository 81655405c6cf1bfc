//! Watermark generation with bounded out-of-orderness, and idleness by processing time.
//!
//! HOT PATH: `observe` runs once per batch over its timestamp column; no allocation, no
//! locks, no logging.

use std::time::{Duration, Instant};

/// The watermark before any record: nothing is known yet.
pub const WATERMARK_MIN: i64 = i64::MIN;
/// The final watermark: event time has ended (bounded input exhausted).
pub const WATERMARK_END: i64 = i64::MAX;

/// Tracks the largest timestamp seen and derives the watermark
/// `max_ts - out_of_orderness - 1`: records up to `out_of_orderness` behind the largest
/// timestamp are still on time.
#[derive(Clone, Debug)]
pub struct WatermarkGenerator {
    out_of_orderness_ms: i64,
    max_ts: i64,
    ended: bool,
    idle_timeout: Option<Duration>,
    last_record_at: Instant,
}

impl WatermarkGenerator {
    /// Creates a generator; `idle_timeout_ms = 0` disables idleness.
    pub fn new(out_of_orderness_ms: i64, idle_timeout_ms: u64, now: Instant) -> Self {
        Self {
            out_of_orderness_ms: out_of_orderness_ms.max(0),
            max_ts: WATERMARK_MIN,
            ended: false,
            idle_timeout: (idle_timeout_ms > 0).then(|| Duration::from_millis(idle_timeout_ms)),
            last_record_at: now,
        }
    }

    /// Accounts for a batch of timestamps that arrived at `now`.
    pub fn observe(&mut self, timestamps: impl Iterator<Item = i64>, now: Instant) {
        let mut any = false;
        for ts in timestamps {
            any = true;
            self.max_ts = self.max_ts.max(ts);
        }
        if any {
            self.last_record_at = now;
        }
    }

    /// Moves the largest timestamp seen up to `ts` (processing time: the wall clock).
    pub fn advance_to(&mut self, ts: i64) {
        self.max_ts = self.max_ts.max(ts);
    }

    /// Marks the input as exhausted: the watermark becomes [`WATERMARK_END`].
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The largest timestamp seen, for a checkpoint (event time resumes from it on restore).
    pub fn max_seen(&self) -> i64 {
        self.max_ts
    }

    /// Resumes from a checkpoint: as if timestamps up to `max_ts` had been seen.
    pub fn restore_max_seen(&mut self, max_ts: i64) {
        self.max_ts = self.max_ts.max(max_ts);
    }

    /// Returns the current watermark.
    pub fn watermark(&self) -> i64 {
        if self.ended {
            WATERMARK_END
        } else if self.max_ts == WATERMARK_MIN {
            WATERMARK_MIN
        } else {
            self.max_ts
                .saturating_sub(self.out_of_orderness_ms)
                .saturating_sub(1)
        }
    }

    /// Returns whether no record arrived for the idle timeout (never, without a timeout).
    pub fn is_idle(&self, now: Instant) -> bool {
        !self.ended
            && self
                .idle_timeout
                .is_some_and(|t| now.saturating_duration_since(self.last_record_at) >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness() {
        let t0 = Instant::now();
        let mut g = WatermarkGenerator::new(5, 0, t0);
        assert_eq!(g.watermark(), WATERMARK_MIN);
        g.observe([10, 30, 20].into_iter(), t0);
        assert_eq!(g.watermark(), 24, "a record at 25 is still on time");
        g.observe([25].into_iter(), t0);
        assert_eq!(
            g.watermark(),
            24,
            "out-of-order records do not move the watermark back"
        );
        assert!(!g.is_idle(t0 + Duration::from_secs(3600)));
        g.end();
        assert_eq!(g.watermark(), WATERMARK_END);
    }

    #[test]
    fn idleness_follows_processing_time() {
        let t0 = Instant::now();
        let mut g = WatermarkGenerator::new(0, 100, t0);
        assert!(!g.is_idle(t0 + Duration::from_millis(99)));
        assert!(g.is_idle(t0 + Duration::from_millis(100)));
        g.observe([1].into_iter(), t0 + Duration::from_millis(150));
        assert!(!g.is_idle(t0 + Duration::from_millis(200)));
    }
}
