//! Latency recording in HDR histograms, and the classic `.hgrm` format.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram can hold: one hour, in nanoseconds.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
/// Significant decimal digits kept (0.1 % relative precision).
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Percentile iteration steps per halving of the distance to 100 %, as in
/// HdrHistogram's `outputPercentileDistribution`.
const HGRM_TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One point of a percentile curve: the latency at or below which `quantile`
/// of the samples lie.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentilePoint {
    /// In `[0, 1]`; 1 for the maximum.
    pub quantile: f64,
    pub value_ns: u64,
}

/// A latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
            .expect("constant bounds are valid");
        Self { histogram }
    }

    /// Records one latency; values past the bound are clamped to it.
    pub fn record(&mut self, latency: Duration) {
        let ns = clamp_ns(latency);
        self.histogram.saturating_record(ns);
    }

    /// Records a latency, and the samples an open-loop load would have taken
    /// while this one was stalled (coordinated-omission correction).
    pub fn record_corrected(&mut self, latency: Duration, expected_interval: Duration) {
        let ns = clamp_ns(latency);
        let interval = u64::try_from(expected_interval.as_nanos()).unwrap_or(0);
        // Cannot fail: the value is clamped to the histogram's bounds.
        let _ = self.histogram.record_correct(ns, interval);
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// The usual percentiles, in microseconds.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            count: h.len(),
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1_000.0,
        }
    }

    /// The percentile curve as HdrHistogram's percentile iterator walks it
    /// (five steps per halving of the distance to 100 %): the same points the
    /// `.hgrm` file lists, in increasing quantile order, ending at the maximum
    /// with quantile 1. Empty for an empty histogram.
    pub fn percentile_curve(&self) -> Vec<PercentilePoint> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        self.histogram
            .iter_quantiles(HGRM_TICKS_PER_HALF_DISTANCE)
            .map(|step| PercentilePoint {
                quantile: step.quantile_iterated_to(),
                value_ns: step.value_iterated_to(),
            })
            .collect()
    }

    /// The histogram as HdrHistogram's classic percentile text, values in
    /// milliseconds, readable by the standard HdrHistogram plotter.
    pub fn to_hgrm(&self) -> String {
        const SCALE: f64 = 1_000_000.0; // ns -> ms
        let h = &self.histogram;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut count = 0u64;
        for step in h.iter_quantiles(HGRM_TICKS_PER_HALF_DISTANCE) {
            let value = step.value_iterated_to() as f64 / SCALE;
            let quantile = step.quantile_iterated_to();
            count += step.count_since_last_iteration();
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.3} {quantile:>2.12} {count:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {quantile:>2.12} {count:>10}");
            }
        }
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            h.mean() / SCALE,
            h.stdev() / SCALE
        );
        let _ = writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            h.max() as f64 / SCALE,
            h.len()
        );
        let _ = writeln!(
            out,
            "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
            h.buckets(),
            h.distinct_values()
        );
        out
    }
}

/// A latency in nanoseconds, clamped to what the histogram holds.
fn clamp_ns(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_NS_MAX)
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new();
        for ms in 1..=1000u64 {
            r.record(Duration::from_micros(ms * 1000));
        }
        let s = r.summary();
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1 %.
        assert!((s.p50_us - 500_000.0).abs() <= 500.0, "{s:?}");
        assert!((s.p99_us - 990_000.0).abs() <= 990.0, "{s:?}");
        assert!((s.max_us - 1_000_000.0).abs() <= 1000.0, "{s:?}");
    }

    #[test]
    fn hgrm_has_the_classic_header_rows_and_footer() {
        let mut r = Recorder::new();
        for us in [100u64, 200, 300, 400, 5000] {
            r.record(Duration::from_micros(us));
        }
        let text = r.to_hgrm();
        let mut lines = text.lines();
        let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() >= 5);
        // Values and percentiles never decrease; the last row is the max at 100 %.
        for pair in rows.windows(2) {
            assert!(
                pair[1][0] >= pair[0][0] && pair[1][1] >= pair[0][1],
                "{pair:?}"
            );
        }
        let last = rows.last().unwrap();
        assert!((last[0] - 5.0).abs() < 0.01, "max 5 ms, got {last:?}");
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 5.0);
        assert!(text.contains("#[Mean    ="), "{text}");
        assert!(text.contains("Total count    =            5]"), "{text}");
    }

    #[test]
    fn percentile_curve_matches_the_hgrm_rows() {
        let mut r = Recorder::new();
        assert!(r.percentile_curve().is_empty());
        for us in 1..=10_000u64 {
            r.record(Duration::from_micros(us));
        }
        let curve = r.percentile_curve();
        let rows = r
            .to_hgrm()
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .count();
        assert_eq!(curve.len(), rows);
        assert!(curve
            .windows(2)
            .all(|w| w[1].quantile >= w[0].quantile && w[1].value_ns >= w[0].value_ns));
        let last = curve.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.value_ns, r.histogram().max());
    }

    #[test]
    fn coordinated_omission_correction_adds_the_missed_samples() {
        let mut r = Recorder::new();
        r.record_corrected(Duration::from_millis(10), Duration::from_millis(1));
        // One real sample of 10 ms stands for the 9 that should have been sent meanwhile.
        assert_eq!(r.len(), 10);
    }
}
