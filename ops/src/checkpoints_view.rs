//! What `sluice job checkpoints` shows: a stream job's checkpoints as the masters record them
//! (completed ones kept, the one in progress, the latest failed ones) in one table by id.

use sluice_consensus::state::Job;
use sluice_consensus::units::format_duration_ms;

use crate::output::table;

/// What `job checkpoints` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CheckpointsView {
    job: u64,
    attempt: u64,
    restored_from: Option<u64>,
    /// The checkpoint being taken, if any.
    in_progress: Option<sluice_consensus::state::CheckpointStarted>,
    completed: Vec<sluice_consensus::state::CheckpointInfo>,
    /// Failed checkpoints of the job's runs.
    failed: u64,
    /// The latest failed ones, oldest first.
    failures: Vec<sluice_consensus::state::CheckpointFailure>,
}

impl CheckpointsView {
    /// The view of `job`'s checkpoints.
    pub fn of(job: &Job) -> Self {
        Self {
            job: job.id,
            attempt: job.attempt,
            restored_from: job.restore_from,
            in_progress: job.checkpoint_in_progress.clone(),
            completed: job.checkpoints.clone(),
            failed: job.checkpoints_failed,
            failures: job.failed_checkpoints.clone(),
        }
    }
}

/// Prints `v` as a table.
pub fn print_checkpoints(v: &CheckpointsView) {
    match v.restored_from {
        Some(id) => println!(
            "job {}: run {} resumed from checkpoint {id}",
            v.job, v.attempt
        ),
        None => println!("job {}: run {} started afresh", v.job, v.attempt),
    }
    println!(
        "completed (kept): {}, in progress: {}, failed: {}",
        v.completed.len(),
        u8::from(v.in_progress.is_some()),
        v.failed
    );
    if v.completed.is_empty() && v.in_progress.is_none() && v.failures.is_empty() {
        return;
    }
    // One row per checkpoint, by id: (id, status, triggered, duration, size, alignment).
    let mut rows: Vec<(u64, [String; 6])> = Vec::new();
    for c in &v.completed {
        let alignment = c.alignment_us.iter().copied().max().unwrap_or(0);
        rows.push((
            c.id,
            [
                c.id.to_string(),
                "completed".into(),
                format_unix_ms(c.triggered_ms),
                format_duration_ms(c.duration_ms),
                c.bytes.to_string(),
                format!("{:.3} ms", alignment as f64 / 1000.0),
            ],
        ));
    }
    if let Some(p) = &v.in_progress {
        let so_far = now_ms().saturating_sub(p.triggered_ms);
        rows.push((
            p.id,
            [
                p.id.to_string(),
                "in progress".into(),
                format_unix_ms(p.triggered_ms),
                format!("{} so far", format_duration_ms(so_far)),
                "-".into(),
                "-".into(),
            ],
        ));
    }
    for f in &v.failures {
        let (triggered, duration) = match f.triggered_ms {
            Some(t) => (
                format_unix_ms(t),
                format_duration_ms(f.failed_ms.saturating_sub(t)),
            ),
            None => ("-".into(), "-".into()),
        };
        let why = sluice_consensus::text::escape_controls(&f.reason);
        rows.push((
            f.id,
            [
                f.id.to_string(),
                format!("failed: {why}"),
                triggered,
                duration,
                "-".into(),
                "-".into(),
            ],
        ));
    }
    rows.sort_by_key(|(id, _)| *id);
    let mut t = table(&[
        "id",
        "status",
        "triggered",
        "duration",
        "size",
        "alignment per shard (max)",
    ]);
    for (_, row) in rows {
        t.add_row(row.to_vec());
    }
    println!("{t}");
}

/// The time now in Unix ms.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A Unix time in ms as UTC `YYYY-MM-DD HH:MM:SS.mmm`.
pub(crate) fn format_unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod checkpoint_view_tests {
    use super::*;

    #[test]
    fn unix_times_print_as_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_unix_ms(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29 00:00:00.000");
    }
}
