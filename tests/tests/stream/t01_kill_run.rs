//! Per-key sequence check (as Flink's semantics-check jobs): a job counting bids per auction
//! into an exactly-once file sink is run by `sluice run` and killed with SIGKILL at random
//! moments — between checkpoints, in the middle of one, in the middle of a sink commit —
//! and run again each time; the committed output must hold, for every auction, the counts
//! 1..n with no gap and no duplicate, and every bid once.
//!
//! The same check runs with the state in RocksDB (`state_backend = "rocksdb"` with a cache
//! of 100 keys, so most state is read from and written to RocksDB, and checkpoints are
//! incremental), and also checks that every shared file the checkpoints stored is named by
//! some checkpoint's list (so that retention can delete it), wherever the kills fell.
//!
//! `SLUICE_KILLS` sets the number of kills (default 20), `SLUICE_KILL_SEED` the seed and
//! `SLUICE_KILL_EVENTS` the generator events (default 300000; a long run needs more, since
//! the job must outlive the kills).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use sluice_bench::checkpoint::{check_counts, counting_job, unlisted_shared_files};
use sluice_bench::procs::sluice_bin;

fn events() -> u64 {
    std::env::var("SLUICE_KILL_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000)
}

/// The job, with `settings` (more top-level spec lines).
fn job(dir: &Path, rate: u64, settings: &str) -> String {
    counting_job(
        "kill-check",
        2,
        (events(), rate),
        100,
        &dir.join("checkpoints"),
        &dir.join("counts.csv"),
        settings,
        "auction",
    )
}

/// xorshift64*: the kill times, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn check_output(dir: &Path) -> Result<usize> {
    let parts: Vec<_> = (0..2)
        .map(|s| dir.join(format!("counts.csv.{s}")))
        .collect();
    check_counts(&parts, events() / 50 * 46)
}

#[test]
fn sigkilled_runs_resume_with_exactly_once_output() -> Result<()> {
    kill_and_check(|_| String::new())
}

#[test]
fn sigkilled_runs_on_rocksdb_state_resume_with_exactly_once_output() -> Result<()> {
    kill_and_check(|dir| {
        format!(
            "state_backend = \"rocksdb\"\nstate_cache_keys = 100\nstate_dir = \"{}\"",
            dir.join("state").display()
        )
    })
}

/// Kills runs of the job with the spec lines `settings(dir)`, then runs it to its end and
/// checks the output.
fn kill_and_check(settings: impl Fn(&Path) -> String) -> Result<()> {
    let kills: usize = std::env::var("SLUICE_KILLS").map_or(Ok(20), |v| v.parse())?;
    let seed: u64 = match std::env::var("SLUICE_KILL_SEED") {
        Ok(v) => v.parse()?,
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64
                | 1
        }
    };
    eprintln!("SLUICE_KILL_SEED={seed} SLUICE_KILLS={kills}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("job.toml");
    let settings = settings(dir.path());
    std::fs::write(&spec, job(dir.path(), 40_000, &settings))?;
    let bin = sluice_bin()?;
    let mut killed = 0;
    let mut ended_early = 0;
    while killed < kills {
        let mut child = Command::new(&bin)
            .args(["run", "-o", "json"])
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Up to half a second: several checkpoints (every 100 ms) and sink commits.
        let alive = Duration::from_millis(20 + rng.next() % 480);
        let deadline = Instant::now() + alive;
        let mut status = None;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait()? {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match status {
            Some(s) => {
                ensure!(s.success(), "`sluice run` failed: {s}");
                ended_early += 1;
                break;
            }
            None => {
                child.kill()?;
                child.wait()?;
                killed += 1;
            }
        }
    }
    // Then run to the end at full speed.
    std::fs::write(&spec, job(dir.path(), 0, &settings))?;
    let out = Command::new(&bin)
        .args(["run", "-o", "json"])
        .arg(&spec)
        .output()?;
    if !out.status.success() {
        bail!(
            "the last run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let counted = check_output(dir.path())?;
    eprintln!(
        "{killed} kills, ended early {ended_early}; the last run resumed from {}; {counted} bids \
         counted once each",
        report["restored_from_checkpoint"]
    );
    ensure!(
        killed == 0 || !report["restored_from_checkpoint"].is_null(),
        "the last run started afresh: {report}"
    );
    // Every shared file (RocksDB's SST files) is named by some checkpoint's list, whenever
    // the runs were killed: the list is stored before the files and deleted after them.
    let unlisted = unlisted_shared_files(&dir.path().join("checkpoints"), "kill-check")?;
    ensure!(
        unlisted.is_empty(),
        "shared files no checkpoint lists (never deleted): {unlisted:?}"
    );
    // Scratch the killed runs left is removed by the next run; the last removes its own.
    let state = dir.path().join("state");
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    ensure!(
        left.is_empty(),
        "state scratch left in {}: {left:?}",
        state.display()
    );
    Ok(())
}
