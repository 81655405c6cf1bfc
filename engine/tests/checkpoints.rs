//! Checkpoints in one process and split across two: sources resume at their positions, a job stopped between or in
//! the middle of checkpoints resumes from its latest completed one, and its file output is
//! exactly-once: every key's running count is 1..n with no gap and no duplicate.
#![allow(clippy::disallowed_methods)] // the tests run jobs on helper threads

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_engine::record::{Batch, DataType, Schema, SchemaRef};
use sluice_engine::runtime::{run_plan_remote_with, run_plan_with, RemoteExchangeConfig};
use sluice_engine::source::{DeadLetters, FileSource, Format, Source, SourceStatus};
use sluice_engine::spec::load_spec;
use sluice_engine::{EngineError, JobControl};

use common::assert_exactly_once;

fn schema() -> SchemaRef {
    Schema::of(&[("id", DataType::Int), ("name", DataType::String)]).unwrap()
}

fn poll_ids(src: &mut FileSource, polls: Option<usize>, ids: &mut Vec<i64>) -> bool {
    let mut dead = DeadLetters::new(None).unwrap();
    let mut n = 0;
    loop {
        if polls.is_some_and(|p| n >= p) {
            return false;
        }
        n += 1;
        let mut batch = Batch::new(schema());
        let status = src.poll(&mut batch, &mut dead).unwrap();
        ids.extend((0..batch.len()).map(|r| batch.column(0).get_i64(r).unwrap()));
        if status == SourceStatus::Exhausted {
            return true;
        }
    }
}

#[test]
fn a_file_split_resumes_at_its_position_in_both_formats() {
    for format in [Format::Ndjson, Format::Csv] {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for id in 0..30_000i64 {
            let name = "y".repeat((id % 23) as usize);
            match format {
                Format::Ndjson => writeln!(file, "{{\"id\":{id},\"name\":\"{name}\"}}").unwrap(),
                Format::Csv => writeln!(file, "{id},\"a\nb{name}\"").unwrap(),
            }
        }
        file.flush().unwrap();
        for shards in [1, 3] {
            let mut ids = Vec::new();
            for shard in 0..shards {
                let mut src =
                    FileSource::open(file.path(), format, schema(), false, shard, shards).unwrap();
                if poll_ids(&mut src, Some(2), &mut ids) {
                    continue;
                }
                let position = src.position().expect("a file source is replayable");
                let mut resumed =
                    FileSource::open(file.path(), format, schema(), false, shard, shards).unwrap();
                resumed.seek(&position).unwrap();
                assert!(poll_ids(&mut resumed, None, &mut ids));
            }
            ids.sort_unstable();
            assert_eq!(ids, (0..30_000).collect::<Vec<_>>(), "{format:?} x{shards}");
        }
        // A position of another source kind is refused, naming the source.
        let mut src = FileSource::open(file.path(), format, schema(), false, 0, 1).unwrap();
        let err = src.seek(&[2, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("file source"), "{err}");
    }
}

/// The per-key counting job of these tests.
fn counting_job(dir: &Path, interval_ms: u64, events: u64, rate: u64) -> String {
    common::counting_job("per-key-count", dir, "", interval_ms, (events, rate))
}

fn completed_checkpoints(dir: &Path) -> usize {
    completed_ids(dir).len()
}

/// Ids of the completed checkpoints of the counting job in `dir`'s store, ascending.
fn completed_ids(dir: &Path) -> Vec<u64> {
    common::completed_ids(&dir.join("checkpoints").join("per-key-count"))
}

fn run(text: &str, control: &JobControl) -> Result<sluice_engine::JobReport, EngineError> {
    run_plan_with(load_spec(text)?, control)
}

#[test]
fn a_stopped_job_resumes_from_its_last_checkpoint_with_exactly_once_output() {
    let dir = tempfile::tempdir().unwrap();
    let events = 60_000;
    let job = counting_job(dir.path(), 50, events, 40_000);
    // Stop the job three times, each time after it completed more checkpoints.
    for round in 1..=3 {
        let control = JobControl::new();
        let stopper = control.clone();
        let text = job.clone();
        let running = std::thread::spawn(move || run(&text, &control));
        wait_two_more_checkpoints(dir.path(), round, || running.is_finished());
        stopper.cancel();
        match running.join().unwrap() {
            Err(EngineError::Cancelled) => {}
            Ok(report) => panic!("round {round}: the job ended before the stop: {report:?}"),
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    let report = run(&job, &JobControl::new()).unwrap();
    assert!(report.checkpoints.restored_from.is_some(), "{report:?}");
    assert_exactly_once(dir.path(), events);
    // No staging file outlives the job.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pending-") || n.contains(".inprogress"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Waits until two more checkpoints than now completed (so a stop falls after, or in, a later
/// one), or `finished()`.
fn wait_two_more_checkpoints(dir: &Path, round: usize, finished: impl Fn() -> bool) {
    let want = completed_ids(dir).last().copied().unwrap_or(0) + 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed_ids(dir).last().copied().unwrap_or(0) < want && !finished() {
        assert!(
            Instant::now() < deadline,
            "round {round}: no checkpoint completed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `text` split in two processes' worth of runtimes, shard 0 in one (the checkpoint
/// lead) and shard 1 in the other, connected over loopback TCP; returns their threads.
fn run_split(text: &str, controls: [&JobControl; 2]) -> Vec<std::thread::JoinHandle<JobResult>> {
    let listeners = [0, 1].map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let addrs = listeners.each_ref().map(|l| l.local_addr().unwrap());
    let mut workers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let config = RemoteExchangeConfig {
            local_shards: i as u32..i as u32 + 1,
            peers: vec![(1 - i as u32..2 - i as u32, addrs[1 - i])],
            listen: addrs[i],
            connect_timeout: Duration::from_secs(20),
            tls: None,
        };
        let (text, control) = (text.to_owned(), controls[i].clone());
        workers.push(std::thread::spawn(move || {
            run_plan_remote_with(load_spec(&text)?, config, Some(listener), &control)
        }));
    }
    workers
}

type JobResult = Result<sluice_engine::JobReport, EngineError>;

/// A job split across two processes checkpoints in both (each stores its own shard's state,
/// the one with shard 0 completes the checkpoint); stopped three times, it resumes each time
/// in both from the latest completed checkpoint, and its output is exactly-once.
#[test]
fn a_job_split_across_processes_checkpoints_and_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = 60_000;
    let job = counting_job(dir.path(), 50, events, 40_000);
    for round in 1..=3 {
        let controls = [JobControl::new(), JobControl::new()];
        let workers = run_split(&job, [&controls[0], &controls[1]]);
        wait_two_more_checkpoints(dir.path(), round, || {
            workers.iter().any(|w| w.is_finished())
        });
        for c in &controls {
            c.cancel();
        }
        for (i, w) in workers.into_iter().enumerate() {
            match w.join().unwrap() {
                Err(EngineError::Cancelled) => {}
                Ok(r) => panic!("round {round}: worker {i} ended before the stop: {r:?}"),
                Err(e) => panic!("round {round}: worker {i}: {e}"),
            }
        }
    }
    // Every completed checkpoint names both shards' states, each stored by its own worker.
    let last = *completed_ids(dir.path()).last().unwrap();
    let chk = dir
        .path()
        .join(format!("checkpoints/per-key-count/chk-{last:020}"));
    assert!(chk.join("shard-0").exists() && chk.join("shard-1").exists());
    let controls = [JobControl::new(), JobControl::new()];
    let reports: Vec<_> = run_split(&job, [&controls[0], &controls[1]])
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    for (i, r) in reports.iter().enumerate() {
        assert!(
            r.checkpoints.restored_from.is_some(),
            "worker {i} started afresh: {r:?}"
        );
    }
    assert_eq!(
        reports[0].checkpoints.restored_from,
        reports[1].checkpoints.restored_from
    );
    assert!(reports[0].checkpoints.completed > 0, "{:?}", reports[0]);
    assert_exactly_once(dir.path(), events);
}

#[test]
fn a_damaged_checkpoint_is_skipped_for_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let events = 100_000;
    let control = JobControl::new();
    let stopper = control.clone();
    let text = counting_job(dir.path(), 50, events, 20_000);
    let running = std::thread::spawn(move || run(&text, &control));
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed_checkpoints(dir.path()) < 2 {
        assert!(Instant::now() < deadline, "no checkpoints");
        std::thread::sleep(Duration::from_millis(5));
    }
    stopper.cancel();
    assert!(matches!(
        running.join().unwrap(),
        Err(EngineError::Cancelled)
    ));
    // Flip a byte in the newest checkpoint's shard 1 state.
    let root = dir.path().join("checkpoints").join("per-key-count");
    let mut ids: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").exists())
        .collect();
    ids.sort();
    let shard_file = ids.last().unwrap().join("shard-1");
    let mut bytes = std::fs::read(&shard_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&shard_file, bytes).unwrap();
    // The job (now at full speed) resumes from the checkpoint before, saying why, and its
    // output is still exactly-once: what the damaged checkpoint published is taken back.
    let report = run(&counting_job(dir.path(), 50, events, 0), &JobControl::new()).unwrap();
    let skipped = report.checkpoints.skipped.join("\n");
    assert!(skipped.contains("checksum"), "{skipped}");
    let older: u64 = ids[ids.len() - 2]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("chk-")
        .parse()
        .unwrap();
    assert_eq!(report.checkpoints.restored_from, Some(older));
    assert_exactly_once(dir.path(), events);
}

/// Regression: a stage whose input ended kept its end marker queued while another stage of
/// its shard ran, and a join aligning a barrier could wait for that end forever (q7 with
/// frequent checkpoints hung about one run in ten). Every run must finish.
#[test]
fn jobs_whose_sources_end_during_checkpoints_finish() {
    let q7 = include_str!("../examples/jobs/nexmark_q7.toml")
        .replace("events = 1000000", "events = 400000")
        .replace("kind = \"stdout\"", "kind = \"blackhole\"");
    for run in 0..40 {
        let store = tempfile::tempdir().unwrap();
        let text = format!(
            "checkpoint_interval_ms = 2\ncheckpoint_storage = \"file://{}\"\n{q7}",
            store.path().display()
        );
        let job = std::thread::spawn(move || run_plan_with(load_spec(&text)?, &JobControl::new()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !job.is_finished() {
            assert!(
                Instant::now() < deadline,
                "run {run} did not finish: a deadlock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        job.join().unwrap().unwrap();
    }
}
