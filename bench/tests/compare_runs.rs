//! `compare` on synthetic summaries: a doubled latency is a regression, a
//! higher throughput an improvement, and bad files are named in errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_bench::compare::{
    compare, compare_with_threshold, render_comparison, Metric, Verdict, DEFAULT_THRESHOLD,
};
use sluice_bench::machine::Machine;
use sluice_bench::recorder::LatencySummary;
use sluice_bench::report::{Progress, ScenarioResult, Summary};

fn latency(p50_us: f64) -> LatencySummary {
    LatencySummary {
        count: 10_000,
        min_us: p50_us / 2.0,
        p50_us,
        p90_us: p50_us * 2.0,
        p99_us: p50_us * 4.0,
        p999_us: p50_us * 8.0,
        max_us: p50_us * 16.0,
        mean_us: p50_us * 1.2,
    }
}

fn scenario(name: &str, lat: Option<LatencySummary>, ops: Option<f64>) -> ScenarioResult {
    ScenarioResult {
        name: name.to_owned(),
        description: "synthetic".to_owned(),
        latency: lat,
        ops_per_sec: ops,
        per_cpu_second: None,
        hgrm: None,
        plot: None,
    }
}

fn machine(cores: usize) -> Machine {
    Machine {
        cores,
        cpu_model: "Synthetic CPU".to_owned(),
        kernel: "6.1.0".to_owned(),
        memory_bytes: 8 << 30,
        hostname: "bench-host".to_owned(),
    }
}

fn write(dir: &Path, file: &str, scenarios: Vec<ScenarioResult>, cores: usize) -> PathBuf {
    let summary = Summary {
        suite: "raft".to_owned(),
        started_at_unix_s: 1_700_000_000,
        machine: machine(cores),
        scenarios,
        notes: Vec::new(),
        overlays: Vec::new(),
    };
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).unwrap()).unwrap();
    path
}

/// Old and new runs: `slow` doubles its latency, `fast` gains 50 % throughput,
/// `steady` moves by 5 %, `gone` and `added` exist on one side only.
fn pair(dir: &Path, new_cores: usize) -> (PathBuf, PathBuf) {
    let old = write(
        dir,
        "old.json",
        vec![
            scenario("raft.commit.slow", Some(latency(1000.0)), Some(500.0)),
            scenario("raft.commit.fast", None, Some(10_000.0)),
            scenario("raft.commit.steady", Some(latency(200.0)), Some(100.0)),
            scenario("raft.gone", None, Some(1.0)),
        ],
        2,
    );
    let new = write(
        dir,
        "new.json",
        vec![
            scenario("raft.commit.slow", Some(latency(2000.0)), Some(500.0)),
            scenario("raft.commit.fast", None, Some(15_000.0)),
            scenario("raft.commit.steady", Some(latency(210.0)), Some(95.0)),
            scenario("raft.added", None, Some(1.0)),
        ],
        new_cores,
    );
    (old, new)
}

#[test]
fn a_doubled_latency_is_a_regression_and_more_throughput_an_improvement() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = pair(dir.path(), 2);
    let c = compare(&old, &new).unwrap();
    assert_eq!(c.threshold, DEFAULT_THRESHOLD);
    assert!(c.has_regressions());

    for metric in [
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::P999,
        Metric::Max,
    ] {
        let m = c.metric("raft.commit.slow", metric).unwrap();
        assert_eq!(m.verdict, Verdict::Regression, "{metric}");
        assert!((m.ratio.unwrap() - 2.0).abs() < 1e-9, "{metric}");
    }
    assert_eq!(
        c.metric("raft.commit.slow", Metric::OpsPerSec)
            .unwrap()
            .verdict,
        Verdict::Same
    );
    let fast = c.metric("raft.commit.fast", Metric::OpsPerSec).unwrap();
    assert_eq!(fast.verdict, Verdict::Improvement);
    assert_eq!((fast.old, fast.new), (Some(10_000.0), Some(15_000.0)));
    assert!((fast.ratio.unwrap() - 1.5).abs() < 1e-9);
    // Latency-free scenarios list no latency metrics.
    assert!(c.metric("raft.commit.fast", Metric::P50).is_none());

    // Within 10 %: the same.
    for metric in [Metric::P50, Metric::OpsPerSec] {
        assert_eq!(
            c.metric("raft.commit.steady", metric).unwrap().verdict,
            Verdict::Same
        );
    }
    assert_eq!(c.only_in_old, ["raft.gone"]);
    assert_eq!(c.only_in_new, ["raft.added"]);
    assert_eq!(c.count(Verdict::Regression), 5);
    assert_eq!(c.improvements().count(), 1);
    assert!(c.machine_differences.is_empty());
    assert!(c.warnings.is_empty());

    let text = render_comparison(&c);
    println!("{text}");
    assert!(text.contains("REGRESSION"), "{text}");
    assert!(text.contains("2.00x"), "{text}");
    assert!(text.contains("+100.0%"), "{text}");
    assert!(text.contains("improved"), "{text}");
    assert!(text.contains("only in old: raft.gone"), "{text}");
    assert!(text.contains("only in new: raft.added"), "{text}");
    assert!(text.contains("5 regression(s), 1 improvement(s)"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
}

#[test]
fn a_tighter_threshold_catches_smaller_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = pair(dir.path(), 2);
    let c = compare_with_threshold(&old, &new, 0.02).unwrap();
    let steady = |m| c.metric("raft.commit.steady", m).unwrap().verdict;
    assert_eq!(steady(Metric::P50), Verdict::Regression);
    assert_eq!(steady(Metric::OpsPerSec), Verdict::Regression);
    // An improvement needs the reverse: the same files swapped.
    let back = compare_with_threshold(&new, &old, 0.02).unwrap();
    let steady = |m| back.metric("raft.commit.steady", m).unwrap().verdict;
    assert_eq!(steady(Metric::P50), Verdict::Improvement);
    assert_eq!(steady(Metric::OpsPerSec), Verdict::Improvement);

    for bad in [0.0, 1.0, -0.1, f64::NAN] {
        let err = compare_with_threshold(&old, &new, bad).unwrap_err();
        assert!(err.to_string().contains("threshold"), "{err}");
    }
}

#[test]
fn identical_runs_have_no_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = pair(dir.path(), 2);
    let c = compare(&old, &old).unwrap();
    assert!(!c.has_regressions());
    assert!(c
        .scenarios
        .iter()
        .flat_map(|s| &s.metrics)
        .all(|m| m.verdict == Verdict::Same && m.ratio == Some(1.0)));
}

#[test]
fn different_machines_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = pair(dir.path(), 8);
    let c = compare(&old, &new).unwrap();
    assert_eq!(c.machine_differences, ["cores: 2 -> 8"]);
    let text = render_comparison(&c);
    assert!(
        text.contains("WARNING: the runs are from different machines"),
        "{text}"
    );
    assert!(text.contains("2 cores, Synthetic CPU"), "{text}");
    assert!(text.contains("8 cores, Synthetic CPU"), "{text}");
}

#[test]
fn bad_files_are_named_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = pair(dir.path(), 2);

    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    json["scenarios"][2]["latency"]["p99_us"] = "fast".into();
    let bad = dir.path().join("bad-field.json");
    std::fs::write(&bad, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = format!("{:#}", compare(&good, &bad).unwrap_err());
    assert!(err.contains("bad-field.json"), "{err}");
    assert!(err.contains("scenarios[2].latency.p99_us"), "{err}");

    json["scenarios"][2]["latency"]["p99_us"] = 1.0.into();
    json.as_object_mut().unwrap().remove("machine");
    std::fs::write(&bad, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = format!("{:#}", compare(&good, &bad).unwrap_err());
    assert!(
        err.contains("bad-field.json") && err.contains("`machine`"),
        "{err}"
    );

    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "hello").unwrap();
    let err = format!("{:#}", compare(&not_json, &good).unwrap_err());
    assert!(err.contains("not.json"), "{err}");

    let missing = dir.path().join("missing.json");
    let err = format!("{:#}", compare(&good, &missing).unwrap_err());
    assert!(err.contains("missing.json"), "{err}");
}

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn progress_counts_steps_and_times_them() {
    let out = Captured::default();
    let mut p = Progress::with_writer("raft", 2, Box::new(out.clone()));
    p.step("fdatasync floor");
    p.step("commits");
    p.step("failover");
    assert_eq!(p.done(), 2);
    p.finish();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(lines[0], "[1/2] fdatasync floor ...");
    assert!(
        lines[1].starts_with("[1/2] fdatasync floor done in "),
        "{text}"
    );
    assert!(lines[1].contains(" s (total "), "{text}");
    assert_eq!(lines[2], "[2/2] commits ...");
    // A step past the announced total raises it rather than printing 3/2.
    assert_eq!(lines[4], "[3/3] failover ...");
    assert!(lines[6].starts_with("raft: 3 steps in "), "{text}");
}
