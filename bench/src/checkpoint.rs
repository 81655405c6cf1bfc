//! `sluice bench checkpoint`: what checkpoints cost a running job.
//!
//! Nexmark q5 (hot items: sliding windows, max, join back) and q7 (highest bid: tumbling
//! windows, join) run to completion on two shards three ways — checkpoints off, every 10 s and
//! every 1 s (into a `file://` store in a temporary directory), `--repeats` times interleaved
//! (each repetition starting at the next setting) — and report events per CPU-second of the shard threads (median), the throughput cost against
//! "off" (the median of each repetition's ratio to its own "off", and every ratio), and the
//! checkpoints' duration, shard pause (freezing state) and alignment time (p50 / p99 / max).
//!
//! The same cost in instructions (`checkpoint.<query>.<backend>.instructions`, see
//! [`instructions`]): q5 and q7 on one shard under callgrind, state in memory and in RocksDB,
//! a measure that the machine's load does not move (needs valgrind; a note says so without).
//!
//! Large keyed state (`checkpoint.large_state`, and `checkpoint.large_state_rocksdb` with the
//! state in RocksDB, whose checkpoints store only the files new since the last): bids counted
//! per auction at full speed, a checkpoint every 1 s, with the bytes each stored and the pause.
//!
//! Pause (`checkpoint.pause`): bids counted per (auction, bidder) pair, about one key per bid,
//! so each shard's keyed state grows past 100 MB in memory; every shard's pause is reported
//! against the size of the state it froze, and the pause over states of 100 MB and more.
//!
//! Recovery (`checkpoint.recovery`): a `sluice run` process running a checkpointed job (bids
//! counted per auction into an exactly-once file sink, a checkpoint every 100 ms) is SIGKILLed
//! and started again, `--trials` times; each trial times the restart to the first output the
//! resumed run commits (the output file growing past what was committed before the kill):
//! process start, restore, and the first checkpoint after it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use sluice_engine::bench::{nexmark_spec, NexmarkBenchConfig, NexmarkQuery};
use sluice_engine::runtime::coordinator::{CheckpointOutcome, CheckpointRecord, CheckpointReport};

use crate::report::{self, Report};

mod instructions;

#[derive(Debug, Args, Clone)]
pub struct CheckpointBenchArgs {
    /// A short smoke run (the intervals scaled down to 100 ms and 20 ms).
    #[arg(long)]
    pub quick: bool,
    /// Generator events per run [default: 100000000, quick: 400000].
    #[arg(long)]
    pub events: Option<u64>,
    /// Output directory [default: bench-results/checkpoint-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Kill-and-recover trials [default: 20, quick: 3].
    #[arg(long)]
    pub trials: Option<usize>,
    /// Runs of each q5/q7 setting, interleaved; throughput is the median [default: 3, quick: 1].
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Only the cost in instructions (q5 and q7 under callgrind, memory and RocksDB state).
    #[arg(long)]
    pub instructions_only: bool,
}

/// The per-key sequence-check job (as Flink's semantics-check jobs): Nexmark bids (`events`,
/// 0 for unbounded, at `rate` per second, 0 for full speed) counted per `key` (an int
/// expression over the bid's fields: `auction` counts per auction), each key's running count
/// written to an exactly-once CSV file sink at `out` (one part per shard), a checkpoint every
/// `interval_ms` into `store` (a directory), with `settings` (more top-level spec lines).
/// Shared by the checkpoint benches and the kill tests.
#[allow(clippy::too_many_arguments)]
pub fn counting_job(
    name: &str,
    parallelism: usize,
    (events, rate): (u64, u64),
    interval_ms: u64,
    store: &std::path::Path,
    out: &std::path::Path,
    settings: &str,
    key: &str,
) -> String {
    format!(
        r#"
name = "{name}"
parallelism = {parallelism}
checkpoint_interval_ms = {interval_ms}
checkpoint_storage = "file://{store}"
{settings}

[[source]]
kind = "nexmark"
table = "bid"
events = {events}
rate_per_sec = {rate}

[[operator]]
map = ["{key} AS auction", "1 AS one"]

[[operator]]
key_by = "auction"

[[operator]]
reduce = {{ column = "one", fn = "sum" }}

[[sink]]
kind = "file"
path = "{out}"
format = "csv"
"#,
        store = store.display(),
        out = out.display(),
    )
}

/// Checks the committed output of [`counting_job`] in `files`: for every auction the counts
/// are 1..n with no gap and no duplicate, and `bids` bids are counted in all. Returns the
/// number counted.
pub fn check_counts(files: &[std::path::PathBuf], bids: u64) -> Result<usize> {
    use anyhow::{ensure, Context};
    let mut per_key: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for path in files {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        for line in text.lines() {
            let (k, n) = line.split_once(',').context("a line without a comma")?;
            per_key.entry(k.parse()?).or_default().push(n.parse()?);
        }
    }
    let mut total = 0;
    for (key, seq) in &per_key {
        for (i, n) in seq.iter().enumerate() {
            ensure!(
                *n == i as i64 + 1,
                "auction {key}: count {} is {n} (a gap or a duplicate): {:?}",
                i + 1,
                &seq[i.saturating_sub(3)..(i + 3).min(seq.len())]
            );
        }
        total += seq.len();
    }
    ensure!(
        total as u64 == bids,
        "{total} bids counted, {bids} expected"
    );
    Ok(total)
}

/// The files under job `job`'s shared directory of a `file://` checkpoint store at `store`
/// that no checkpoint's list (`chk-N/shard-S.shared`, in any checkpoint directory) names:
/// files retention would never delete. A list that cannot be read is an error.
pub fn unlisted_shared_files(store: &std::path::Path, job: &str) -> Result<Vec<String>> {
    use anyhow::Context;
    let job_dir = store.join(job);
    let mut listed = std::collections::BTreeSet::new();
    for chk in std::fs::read_dir(&job_dir).with_context(|| job_dir.display().to_string())? {
        let chk = chk?.path();
        let is_checkpoint = chk
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("chk-"));
        if !is_checkpoint || !chk.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&chk)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("shared") {
                continue;
            }
            let sealed = std::fs::read(&path)?;
            let list = sluice_storage::blob::unseal(&path.display().to_string(), &sealed)?;
            let list: Vec<String> =
                postcard::from_bytes(list).with_context(|| path.display().to_string())?;
            listed.extend(list);
        }
    }
    let mut unlisted = Vec::new();
    let mut dirs = vec![job_dir.join("shared")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.strip_prefix(store)?.to_string_lossy().into_owned();
            // A put killed before its rename leaves `NAME.partial`, deleted with `NAME`.
            let object = name.strip_suffix(".partial").unwrap_or(&name);
            if !listed.contains(object) {
                unlisted.push(name);
            }
        }
    }
    Ok(unlisted)
}

/// Bytes of the files under `dir`, recursively (0 if it is missing).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn committed_bytes(dir: &std::path::Path) -> u64 {
    (0..2)
        .map(|s| std::fs::metadata(dir.join(format!("counts.csv.{s}"))).map_or(0, |m| m.len()))
        .sum()
}

/// Adds `checkpoint.<query>.<backend>.instructions` for q5 and q7 with state in memory and
/// in RocksDB (see [`instructions`]); a scenario that cannot run (no valgrind) is a note.
fn instruction_costs(
    report: &mut Report,
    progress: &mut report::Progress,
    quick: bool,
) -> Result<()> {
    let events = if quick { 100_000 } else { 1_000_000 };
    let jobs = [
        (
            "q5",
            include_str!("../../engine/examples/jobs/nexmark_q5.toml"),
        ),
        (
            "q7",
            include_str!("../../engine/examples/jobs/nexmark_q7.toml"),
        ),
    ];
    for (query, text) in jobs {
        for backend in ["memory", "rocksdb"] {
            progress.step(format!("{query}, {backend} state, under callgrind"));
            let dir = tempfile::tempdir()?;
            let spec = dir.path().join("job.toml");
            std::fs::write(&spec, instructions::one_shard(text, events)?)?;
            let state_dir = dir.path().join("state").display().to_string();
            let extra: &[&str] = match backend {
                "rocksdb" => &["--state-backend", "rocksdb", "--state-dir", &state_dir],
                _ => &[],
            };
            let name = format!("checkpoint.{query}.{backend}.instructions");
            let interval_ms = 20;
            match instructions::measure(dir.path(), &spec, interval_ms, extra) {
                Ok(c) => report.add(
                    &name,
                    &format!(
                        "Nexmark {query} on 1 shard, {} records, state in {backend}, all threads \
                         under callgrind: {} instructions without checkpoints, {} with {} (one \
                         every {interval_ms} ms) -> {:.1} M per checkpoint; natively the job runs \
                         {:.0} M instructions per CPU-second (median of 3 runs, {:.2} s): one \
                         checkpoint a second costs {:.2} % of its CPU, one every 10 s {:.3} %",
                        c.records,
                        c.off,
                        c.on,
                        c.checkpoints,
                        c.per_checkpoint() / 1e6,
                        c.off as f64 / c.cpu_s.max(1e-9) / 1e6,
                        c.cpu_s,
                        c.cost_percent(1.0),
                        c.cost_percent(10.0),
                    ),
                    None,
                    None,
                )?,
                Err(e) => report.note(format!("{name}: not measured: {e:#}")),
            }
        }
    }
    Ok(())
}

/// Times SIGKILL → restart → first committed output, `trials` times.
fn recovery(trials: usize) -> Result<crate::recorder::Recorder> {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("job.toml");
    let text = counting_job(
        "recovery-bench",
        2,
        (0, 50_000),
        100,
        &dir.path().join("store"),
        &dir.path().join("counts.csv"),
        "",
        "auction",
    );
    std::fs::write(&spec, text)?;
    let bin = crate::procs::sluice_bin()?;
    let start = || -> Result<std::process::Child> {
        Ok(Command::new(&bin)
            .args(["run", "-o", "json"])
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let wait_growth = |past: u64, what: &str| -> Result<Duration> {
        let begun = Instant::now();
        while committed_bytes(dir.path()) <= past {
            if begun.elapsed() > Duration::from_secs(30) {
                bail!("no output committed within 30 s {what}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(begun.elapsed())
    };
    let mut child = start()?;
    wait_growth(0, "after the first start")?;
    let mut recorder = crate::recorder::Recorder::new();
    for _ in 0..trials {
        // Let it commit a little more, then kill it.
        let before = committed_bytes(dir.path());
        wait_growth(before, "before a kill")?;
        child.kill()?;
        child.wait()?;
        let committed = committed_bytes(dir.path());
        let restarted = Instant::now();
        child = start()?;
        wait_growth(committed, "after a restart")?;
        recorder.record(restarted.elapsed());
    }
    child.kill()?;
    child.wait()?;
    Ok(recorder)
}

struct Run {
    events: u64,
    wall: Duration,
    cpu: Duration,
    checkpoints: CheckpointReport,
}

impl Run {
    /// Events per CPU-second of the shard threads.
    fn per_cpu(&self) -> f64 {
        self.events as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    /// Events per second of wall time.
    fn per_sec(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The median of `values` (the mean of the middle two for an even count; 0 for none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn run_one(query: NexmarkQuery, events: u64, interval: Option<Duration>) -> Result<Run> {
    let config = NexmarkBenchConfig {
        query,
        events,
        parallelism: 2,
        seed: 7,
        pin_cores: true,
    };
    let mut spec = nexmark_spec(&config);
    let store = tempfile::tempdir()?;
    if let Some(interval) = interval {
        spec.checkpoint_interval_ms = Some(interval.as_millis().max(1) as u64);
        spec.checkpoint_storage = Some(format!("file://{}", store.path().display()));
    }
    let report = sluice_engine::run_job(spec)?;
    // q5 and q7 read the bids twice (once per pass); count one pass, as `bench engine` does.
    Ok(Run {
        events: report.records_in / 2,
        wall: report.elapsed,
        cpu: report.cpu_time(),
        checkpoints: report.checkpoints,
    })
}

/// The completed checkpoints of a report.
fn completed(report: &CheckpointReport) -> Vec<&CheckpointRecord> {
    report
        .history
        .iter()
        .filter(|c| c.outcome == CheckpointOutcome::Completed)
        .collect()
}

/// Runs the counting job, counting per `key`, over `events` bids at full speed with
/// `settings`, a checkpoint every `interval`, in a temporary directory (returned: the
/// checkpoints are in `store/`).
fn large_state(
    name: &str,
    settings: &str,
    key: &str,
    events: u64,
    interval: Duration,
) -> Result<(sluice_engine::JobReport, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let settings = format!(
        "{settings}\nstate_dir = \"{}\"",
        dir.path().join("state").display()
    );
    let text = counting_job(
        name,
        2,
        (events, 0),
        interval.as_millis() as u64,
        &dir.path().join("store"),
        &dir.path().join("counts.csv"),
        &settings,
        key,
    );
    let spec = sluice_engine::spec::load::parse_spec(&text)
        .map_err(|e| anyhow::anyhow!("benchmark job spec: {e}"))?;
    Ok((sluice_engine::run_job(spec)?, dir))
}

/// The key of the pause scenario: about one key per bid, so that the keyed state grows to
/// hundreds of megabytes per shard.
const PAUSE_KEY: &str = "auction * 1024 + bidder % 1024";

/// Bids in the pause scenario (each shard's state grows past 300 MB).
const PAUSE_EVENTS: u64 = 30_000_000;

/// Shard states at least this large (in memory) are the pause goal's (≤ 1 ms per 100 MB).
const PAUSE_STATE_BYTES: u64 = 100 << 20;

/// Describes the pause scenario: each shard's pause against its frozen state's size.
fn pause_description(checkpoints: &CheckpointReport, interval: Duration) -> String {
    let done = completed(checkpoints);
    let shards: Vec<(u64, Duration)> = done
        .iter()
        .flat_map(|c| c.state_bytes.iter().copied().zip(c.pause.iter().copied()))
        .collect();
    let largest = shards.iter().map(|(b, _)| *b).max().unwrap_or(0);
    let big: Vec<Duration> = shards
        .iter()
        .filter(|(bytes, _)| *bytes >= PAUSE_STATE_BYTES)
        .map(|(_, pause)| *pause)
        .collect();
    format!(
        "bids counted per {PAUSE_KEY} on 2 shards (in memory), a checkpoint every {interval:?}: \
         {} completed, duration p50/p99/max {}; shard state in memory up to {} MB; shard pause \
         p50/p99/max {} over every checkpoint, {} over the {} shard states of at least {} MB",
        done.len(),
        percentiles(done.iter().map(|c| c.duration).collect()),
        largest >> 20,
        percentiles(shards.iter().map(|(_, p)| *p).collect()),
        percentiles(big.clone()),
        big.len(),
        PAUSE_STATE_BYTES >> 20,
    )
}

fn percentiles(mut values: Vec<Duration>) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} / {} / {}",
        report::human_us(at(0.5).as_secs_f64() * 1e6),
        report::human_us(at(0.99).as_secs_f64() * 1e6),
        report::human_us(at(1.0).as_secs_f64() * 1e6)
    )
}

/// Runs the checkpoint suite and prints its table.
pub fn run(args: CheckpointBenchArgs) -> Result<()> {
    let events = args
        .events
        .unwrap_or(if args.quick { 400_000 } else { 100_000_000 });
    if events == 0 {
        bail!("--events must be positive");
    }
    let (long, short) = if args.quick {
        (Duration::from_millis(100), Duration::from_millis(20))
    } else {
        (Duration::from_secs(10), Duration::from_secs(1))
    };
    let out = report::out_dir_or_default(args.out.as_deref(), "checkpoint");
    let mut report = Report::new("checkpoint", &out)?;
    eprintln!("bench checkpoint: results in {}", out.display());
    let repeats = args
        .repeats
        .unwrap_or(if args.quick { 1 } else { 3 })
        .max(1);
    if args.instructions_only {
        let mut progress = report::Progress::new("checkpoint", 4);
        instruction_costs(&mut report, &mut progress, args.quick)?;
        progress.finish();
        return finish(report);
    }
    // q5 and q7 at three settings, each under callgrind on two backends, three large-state
    // runs, recovery.
    let callgrind = if args.quick { 0 } else { 4 };
    let mut progress = report::Progress::new("checkpoint", 2 * 3 * repeats + 4 + callgrind);
    let intervals = [("off", None), ("10s", Some(long)), ("1s", Some(short))];
    for (query, name) in [(NexmarkQuery::Q5, "q5"), (NexmarkQuery::Q7, "q7")] {
        // Repetitions interleave the three settings, so that drift in the machine's speed
        // falls on all of them, each starting at the next setting, so that no setting always
        // runs first; each setting is compared with "off" of the same repetition.
        let mut runs: Vec<Vec<Run>> = intervals.iter().map(|_| Vec::new()).collect();
        for rep in 1..=repeats {
            for k in (0..intervals.len()).map(|i| (i + rep - 1) % intervals.len()) {
                let (label, interval) = &intervals[k];
                progress.step(format!(
                    "{name}, checkpoints {label}, {events} events ({rep} of {repeats})"
                ));
                runs[k].push(run_one(query, events, *interval)?);
            }
        }
        for (k, (label, interval)) in intervals.iter().enumerate() {
            let per_cpu: Vec<f64> = runs[k].iter().map(Run::per_cpu).collect();
            let ratios: Vec<f64> = per_cpu
                .iter()
                .zip(&runs[0])
                .map(|(rate, off)| (rate / off.per_cpu() - 1.0) * 100.0)
                .collect();
            let histories: Vec<&CheckpointReport> =
                runs[k].iter().map(|r| &r.checkpoints).collect();
            let completed: Vec<&CheckpointRecord> =
                histories.iter().flat_map(|h| completed(h)).collect();
            let failed: u64 = histories.iter().map(|h| h.failed).sum();
            let description = match interval {
                None => format!("Nexmark {name} on 2 shards, no checkpoints (median of {repeats})"),
                Some(i) => format!(
                    "Nexmark {name} on 2 shards, a checkpoint every {i:?}: {:+.1} % events per \
                     CPU-second against off (median of {repeats} paired runs; each {}); {} \
                     completed, {failed} failed; duration p50/p99/max {}; shard pause {}; \
                     alignment {}; {} bytes each on average",
                    median(&ratios),
                    ratios
                        .iter()
                        .map(|r| format!("{r:+.1} %"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    completed.len(),
                    percentiles(completed.iter().map(|c| c.duration).collect()),
                    percentiles(
                        completed
                            .iter()
                            .flat_map(|c| c.pause.iter().copied())
                            .collect()
                    ),
                    percentiles(
                        completed
                            .iter()
                            .flat_map(|c| c.alignment.iter().copied())
                            .collect()
                    ),
                    completed.iter().map(|c| c.bytes).sum::<u64>() / completed.len().max(1) as u64,
                ),
            };
            let per_sec: Vec<f64> = runs[k].iter().map(Run::per_sec).collect();
            report.add_throughput(
                &format!("checkpoint.{name}.{label}"),
                &description,
                median(&per_sec),
                median(&per_cpu),
            );
        }
    }
    if args.quick {
        // Valgrind holds a core for minutes: the smoke run leaves it out.
        report.note("checkpoint.<query>.<backend>.instructions: left out of --quick (run --instructions-only)");
    } else {
        instruction_costs(&mut report, &mut progress, false)?;
    }
    // Large keyed state: every auction's running count (the keys grow with the events).
    let big_events = if args.quick { 1_000_000 } else { 30_000_000 };
    progress.step(format!(
        "large state: bids counted per auction, {big_events} events"
    ));
    let (big, _) = large_state("large-state-bench", "", "auction", big_events, short)?;
    let done = completed(&big.checkpoints);
    let largest = done.iter().map(|c| c.bytes).max().unwrap_or(0);
    report.add_throughput(
        "checkpoint.large_state",
        &format!(
            "bids counted per auction on 2 shards (keyed state grows with the auctions), a \
             checkpoint every {short:?}: {} completed, the largest {largest} bytes stored; \
             shard pause p50/p99/max {}; duration {}",
            done.len(),
            percentiles(done.iter().flat_map(|c| c.pause.iter().copied()).collect()),
            percentiles(done.iter().map(|c| c.duration).collect()),
        ),
        big.records_in as f64 / big.elapsed.as_secs_f64().max(1e-9),
        big.records_in as f64 / big.cpu_time().as_secs_f64().max(1e-9),
    );
    // The same job with its state in RocksDB: checkpoints store only new files.
    progress.step(format!(
        "large state in RocksDB: bids counted per auction, {big_events} events"
    ));
    let name = "large-state-rocksdb-bench";
    let rocksdb = "state_backend = \"rocksdb\"";
    let (big, store) = large_state(name, rocksdb, "auction", big_events, short)?;
    let done = completed(&big.checkpoints);
    let mut stored: Vec<u64> = done.iter().map(|c| c.bytes).collect();
    stored.sort_unstable();
    let shared = dir_bytes(&store.path().join("store").join(name).join("shared"));
    report.add_throughput(
        "checkpoint.large_state_rocksdb",
        &format!(
            "as checkpoint.large_state with state_backend = \"rocksdb\" (65536 keys cached per \
             shard): {} completed, {} failed; bytes stored per checkpoint p50 {} max {} (new \
             RocksDB files only) against {shared} bytes of files the retained checkpoints \
             share; shard pause p50/p99/max {}; duration {}",
            done.len(),
            big.checkpoints.failed,
            stored.get(stored.len() / 2).copied().unwrap_or(0),
            stored.last().copied().unwrap_or(0),
            percentiles(done.iter().flat_map(|c| c.pause.iter().copied()).collect()),
            percentiles(done.iter().map(|c| c.duration).collect()),
        ),
        big.records_in as f64 / big.elapsed.as_secs_f64().max(1e-9),
        big.records_in as f64 / big.cpu_time().as_secs_f64().max(1e-9),
    );
    // The shard's pause against the size of its state in memory: millions of keys.
    let pause_events = if args.quick { 2_000_000 } else { PAUSE_EVENTS };
    progress.step(format!(
        "pause: bids counted per {PAUSE_KEY}, {pause_events} events"
    ));
    // Checkpoints four times as often as the other runs, for more pauses to measure.
    let often = short / 4;
    let (run, _) = large_state("pause-bench", "", PAUSE_KEY, pause_events, often)?;
    report.add_throughput(
        "checkpoint.pause",
        &pause_description(&run.checkpoints, often),
        run.records_in as f64 / run.elapsed.as_secs_f64().max(1e-9),
        run.records_in as f64 / run.cpu_time().as_secs_f64().max(1e-9),
    );
    let trials = args.trials.unwrap_or(if args.quick { 3 } else { 20 });
    progress.step(format!("recovery: {trials} SIGKILLs of `sluice run`"));
    let recovered = recovery(trials)?;
    report.add(
        "checkpoint.recovery",
        "SIGKILL of a checkpointed `sluice run` job -> restart -> first output committed by the \
         resumed run (process start, restore from the latest checkpoint, next checkpoint at 100 ms)",
        Some(&recovered),
        None,
    )?;
    progress.finish();
    report.note("events are one pass of bids; CPU time is the shard threads' (getrusage), not the coordinator's, which serialises and stores the state off the shards");
    finish(report)
}

/// Writes the report and prints its table, scenarios and notes.
fn finish(report: Report) -> Result<()> {
    let out = report.out_dir().to_path_buf();
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    for s in &summary.scenarios {
        println!("{}: {}", s.name, s.description);
    }
    for note in &summary.notes {
        println!("note: {note}");
    }
    println!("files: {}", out.display());
    Ok(())
}
