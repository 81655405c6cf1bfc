//! Shared by the checkpoint tests.

use std::collections::BTreeMap;
use std::path::Path;

/// A job counting bids per auction (each auction's running count) on two shards into an
/// exactly-once CSV file `dir/counts.csv` (one part per shard), with a checkpoint every
/// `interval_ms` into `dir/checkpoints`; `events = 0` is unbounded and `rate = 0` full speed.
/// `settings` are more top-level spec lines.
pub fn counting_job(
    name: &str,
    dir: &Path,
    settings: &str,
    interval_ms: u64,
    (events, rate): (u64, u64),
) -> String {
    format!(
        r#"
name = "{name}"
parallelism = 2
checkpoint_interval_ms = {interval_ms}
checkpoint_storage = "file://{store}"
{settings}

[[source]]
kind = "nexmark"
table = "bid"
events = {events}
rate_per_sec = {rate}

[[operator]]
map = ["auction", "1 AS one"]

[[operator]]
key_by = "auction"

[[operator]]
reduce = {{ column = "one", fn = "sum" }}

[[sink]]
kind = "file"
path = "{out}"
format = "csv"
"#,
        store = dir.join("checkpoints").display(),
        out = dir.join("counts.csv").display(),
    )
}

/// Ids of the completed checkpoints (those with `_metadata`) in a job's store directory,
/// ascending; none while the directory is missing or not a directory.
pub fn completed_ids(job_dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(job_dir).map_or(Vec::new(), |entries| {
        entries
            .flatten()
            .filter(|e| e.path().join("_metadata").exists())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect()
    });
    ids.sort_unstable();
    ids
}

/// Checks the output of [`counting_job`] in `dir`: every auction's running count is 1..n
/// (no gap, no duplicate) and every bid of `events` is counted once.
pub fn assert_exactly_once(dir: &Path, events: u64) {
    let mut per_key: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for shard in 0..2 {
        let path = dir.join(format!("counts.csv.{shard}"));
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let (k, n) = line.split_once(',').unwrap();
            per_key
                .entry(k.parse().unwrap())
                .or_default()
                .push(n.parse().unwrap());
        }
    }
    let mut total = 0;
    for (key, seq) in &per_key {
        let want: Vec<i64> = (1..=seq.len() as i64).collect();
        assert_eq!(seq, &want, "auction {key}: a gap or a duplicate");
        total += seq.len();
    }
    // Bids are 46 of every 50 Nexmark events.
    assert_eq!(total as u64, events / 50 * 46, "every bid counted once");
}
