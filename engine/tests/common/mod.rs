//! Shared by the checkpoint tests.

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
