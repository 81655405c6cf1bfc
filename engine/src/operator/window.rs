//! Window kinds and the assignment of a timestamp to windows.
//!
//! Semantics (event time, epoch milliseconds): a window `[start, end)` fires when the
//! watermark reaches `end - 1`. With allowed lateness `L`, its state is kept until the
//! watermark reaches `end - 1 + L`; a record arriving while `watermark < end - 1 + L` updates
//! the window and re-fires it, a record arriving later (late by `L` or more) goes to the late
//! side output. With `L = 0` a window is final when it fires.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The shape of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window length.
        size_ms: i64,
    },
    /// Fixed-size windows starting every `slide_ms` (hopping).
    Sliding {
        /// Window length.
        size_ms: i64,
        /// Distance between window starts.
        slide_ms: i64,
    },
    /// Per-key windows that close after `gap_ms` without records.
    Session {
        /// Inactivity gap.
        gap_ms: i64,
    },
}

/// The most windows one record may fall into (`size_ms / slide_ms`).
pub const WINDOWS_PER_RECORD_MAX: i64 = 1000;

impl WindowKind {
    /// Checks sizes and returns `(size, slide)` for fixed windows, `None` for sessions.
    pub fn validate(&self) -> Result<Option<(i64, i64)>, EngineError> {
        let bad = |m: &str| Err(EngineError::Plan(format!("window {self:?}: {m}")));
        match *self {
            Self::Tumbling { size_ms } if size_ms > 0 => Ok(Some((size_ms, size_ms))),
            Self::Sliding { size_ms, slide_ms } if size_ms > 0 && slide_ms > 0 => {
                if slide_ms > size_ms {
                    return bad("slide_ms must not exceed size_ms");
                }
                if size_ms / slide_ms > WINDOWS_PER_RECORD_MAX {
                    return bad("size_ms / slide_ms must be at most 1000");
                }
                Ok(Some((size_ms, slide_ms)))
            }
            Self::Session { gap_ms } if gap_ms > 0 => Ok(None),
            _ => bad("sizes must be positive"),
        }
    }
}

/// Returns the start of the latest fixed window (of the given `slide`) containing `ts`.
pub fn last_start(ts: i64, slide: i64) -> i64 {
    ts.saturating_sub(ts.rem_euclid(slide))
}

/// Returns the starts of all windows of `size`/`slide` that contain `ts`, latest first.
pub fn starts(ts: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let last = last_start(ts, slide);
    let lowest = ts.saturating_sub(size);
    // Checked arithmetic: timestamps at the ends of the i64 range must not overflow.
    (0..).map_while(move |k: i64| {
        let start = last.checked_sub(k.checked_mul(slide)?)?;
        (start > lowest).then_some(start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_cover_a_timestamp() {
        let got: Vec<_> = starts(10_500, 10_000, 2_000).collect();
        assert_eq!(got, [10_000, 8_000, 6_000, 4_000, 2_000]);
        let got: Vec<_> = starts(-1, 10, 10).collect();
        assert_eq!(got, [-10]);
        assert_eq!(starts(9, 10, 10).collect::<Vec<_>>(), [0]);
        // No window fits below i64::MIN: such a record has no window (and is late).
        assert_eq!(starts(i64::MIN, 10, 5).count(), 0);
        assert_eq!(starts(i64::MAX, 10, 5).count(), 2);
    }

    #[test]
    fn bad_windows_are_rejected() {
        assert!(WindowKind::Tumbling { size_ms: 0 }.validate().is_err());
        assert!(WindowKind::Sliding {
            size_ms: 5,
            slide_ms: 10
        }
        .validate()
        .is_err());
        assert!(WindowKind::Sliding {
            size_ms: 1_000_000,
            slide_ms: 1
        }
        .validate()
        .is_err());
        assert_eq!(WindowKind::Session { gap_ms: 3 }.validate().unwrap(), None);
    }
}
