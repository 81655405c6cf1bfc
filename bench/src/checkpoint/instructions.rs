//! `checkpoint.<query>.instructions`: what checkpoints cost in instructions, a measure that
//! does not vary with the machine's load, where events per CPU-second on this VM vary by
//! ±30 % between identical runs, more than the ≤ 5 % to show.
//!
//! `sluice run` of a Nexmark query on one shard runs under callgrind (valgrind) with
//! checkpoints off and with one every `interval`, counting the instructions of every thread
//! of the process: the shard's freeze, the coordinator serialising and storing state, the
//! sink's commits, RocksDB's own threads. Their difference over the checkpoints completed is
//! what one checkpoint costs; over the instructions the job runs per CPU-second (those of the
//! run without checkpoints over the CPU time of the same run natively, median of three), the
//! share of the CPU that one checkpoint a second takes.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// What `sluice run -o json` reports, in the part used here.
#[derive(Debug, Deserialize)]
struct RunJson {
    records_in: u64,
    checkpoints_completed: u64,
}

/// The cost of checkpoints in one query, from three runs.
#[derive(Debug)]
pub struct InstructionCost {
    /// Instructions without checkpoints, and with them.
    pub off: u64,
    pub on: u64,
    /// Checkpoints completed in the run with them.
    pub checkpoints: u64,
    /// Records the job read (each run reads the same).
    pub records: u64,
    /// CPU-seconds of the process without checkpoints, natively.
    pub cpu_s: f64,
}

impl InstructionCost {
    /// Instructions one checkpoint costs.
    pub fn per_checkpoint(&self) -> f64 {
        (self.on as f64 - self.off as f64) / self.checkpoints.max(1) as f64
    }

    /// The share (in %) of the job's CPU that one checkpoint every `seconds` takes.
    pub fn cost_percent(&self, seconds: f64) -> f64 {
        let per_cpu_second = self.off as f64 / self.cpu_s.max(1e-9);
        self.per_checkpoint() / (per_cpu_second * seconds) * 100.0
    }
}

/// `text` (a job spec) on one shard with `events` per source; refuses a spec without a
/// `parallelism` or `events` line to change.
pub fn one_shard(text: &str, events: u64) -> Result<String> {
    let (mut parallelism, mut sources) = (false, 0);
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            match key {
                "parallelism" => {
                    parallelism = true;
                    "parallelism = 1".to_string()
                }
                "events" => {
                    sources += 1;
                    format!("events = {events}")
                }
                _ => line.to_string(),
            }
        })
        .collect();
    ensure!(
        parallelism && sources > 0,
        "the job spec has no `parallelism` or no `events` line"
    );
    Ok(lines.join("\n"))
}

/// The total of the instructions in a callgrind output file.
fn callgrind_total(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{}: no instruction total", path.display()))
}

/// CPU-seconds of the children waited for so far (`cutime` and `cstime` of
/// `/proc/self/stat`, in the kernel's fixed 100 ticks a second).
fn children_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) in parentheses; `cutime` and
    // `cstime` are the 16th and 17th fields of the line, the 14th and 15th after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .context("/proc/self/stat has no children's CPU times")? as f64)
    };
    Ok((ticks(13)? + ticks(14)?) / 100.0)
}

/// Runs `command`, which prints `sluice run -o json`'s report last, and returns the report.
fn report_of(mut command: Command) -> Result<RunJson> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The job's stdout sink prints before the report, which starts on a line of its own.
    let text = String::from_utf8_lossy(&out.stdout);
    let report = text.rfind("\n{").map_or(&text[..], |at| &text[at + 1..]);
    serde_json::from_str(report).with_context(|| format!("the report of {command:?}: {report}"))
}

/// Measures the checkpoints of job spec `spec` (a file in `dir`), one every `interval_ms`
/// into a store in `dir`, with `extra` arguments to `sluice run`.
pub fn measure(
    dir: &Path,
    spec: &Path,
    interval_ms: u64,
    extra: &[&str],
) -> Result<InstructionCost> {
    if Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        bail!("valgrind is not installed (as root: apt-get install -y valgrind)");
    }
    let bin = crate::procs::sluice_bin()?;
    let sluice = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(["run", "-o", "json"])
            .args(extra)
            .args(args)
            .arg(spec);
        c
    };
    let mut cpu = Vec::new();
    for _ in 0..3 {
        let before = children_cpu()?;
        report_of(sluice(&[]))?;
        cpu.push(children_cpu()? - before);
    }
    cpu.sort_by(f64::total_cmp);
    let store = format!("file://{}", dir.join("store").display());
    let interval = format!("{interval_ms}ms");
    let mut counted = Vec::new();
    for (k, args) in [
        vec![],
        vec![
            "--checkpoint-interval",
            interval.as_str(),
            "--checkpoint-storage",
            store.as_str(),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.join(format!("callgrind.{k}"));
        let mut c = Command::new("valgrind");
        c.args(["--tool=callgrind", "--fair-sched=yes"])
            .arg(format!("--callgrind-out-file={}", file.display()))
            .arg(&bin)
            .args(["run", "-o", "json"])
            .args(extra)
            .args(&args)
            .arg(spec);
        let report = report_of(c)?;
        counted.push((callgrind_total(&file)?, report));
    }
    let (on, with) = counted.pop().context("no run with checkpoints")?;
    let (off, without) = counted.pop().context("no run without checkpoints")?;
    ensure!(
        without.records_in == with.records_in,
        "the runs read {} and {} records",
        without.records_in,
        with.records_in
    );
    ensure!(with.checkpoints_completed > 0, "no checkpoint completed");
    Ok(InstructionCost {
        off,
        on,
        checkpoints: with.checkpoints_completed,
        records: with.records_in,
        cpu_s: cpu[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_put_on_one_shard_or_refused() {
        let text =
            "name = \"q\"\nparallelism = 2\n[[source]]\nevents = 5\n[[stream.source]]\nevents = 5";
        let one = one_shard(text, 9).unwrap();
        assert_eq!(one.matches("events = 9").count(), 2);
        assert!(one.contains("parallelism = 1") && !one.contains("parallelism = 2"));
        assert!(one_shard("name = \"q\"\n[[source]]\nevents = 5", 9).is_err());
    }

    #[test]
    fn the_cost_is_the_share_of_a_cpu_second() {
        let cost = InstructionCost {
            off: 1_000,
            on: 1_100,
            checkpoints: 10,
            records: 5,
            cpu_s: 1.0,
        };
        assert_eq!(cost.per_checkpoint(), 10.0);
        assert!((cost.cost_percent(1.0) - 1.0).abs() < 1e-9);
        assert!((cost.cost_percent(10.0) - 0.1).abs() < 1e-9);
    }
}
