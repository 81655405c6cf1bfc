//! The bench suite tests itself: short `--quick` runs of each suite through
//! the `sluice` binary, whose `.hgrm`, JSON and SVG outputs must parse and
//! hold sane values. No test here asserts a speed.

use std::path::Path;
use std::time::Duration;

use sluice_bench::report::Summary;
use sluice_tests::sluice;

/// Runs `sluice bench ARGS --out DIR` and loads its summary.
async fn run_suite(args: &[&str], out: &Path) -> anyhow::Result<Summary> {
    let mut full: Vec<&str> = vec!["bench"];
    full.extend_from_slice(args);
    let out_str = out.to_str().expect("utf-8 temp path");
    full.extend_from_slice(&["--out", out_str]);
    let (ok, stdout, stderr) = sluice(&full, Duration::from_secs(600)).await?;
    assert!(ok, "sluice {}: {stderr}", full.join(" "));
    assert!(stdout.contains("files:"), "{stdout}");
    let json = std::fs::read_to_string(out.join("summary.json"))?;
    Ok(serde_json::from_str(&json)?)
}

/// Every histogram's files exist and parse: percentiles rise with the
/// percentile, values are positive and finite, the SVG is a plot.
fn check_outputs(summary: &Summary, out: &Path) -> anyhow::Result<()> {
    assert!(!summary.scenarios.is_empty());
    assert!(
        summary.machine.cores > 0,
        "machine described: {:?}",
        summary.machine
    );
    for s in &summary.scenarios {
        if let Some(ops) = s.ops_per_sec {
            assert!(ops.is_finite() && ops > 0.0, "{}: ops/s {ops}", s.name);
        }
        let Some(latency) = &s.latency else { continue };
        assert!(latency.count > 0, "{}", s.name);
        assert!(
            latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us,
            "{}: percentiles out of order: {latency:?}",
            s.name
        );
        let hgrm = std::fs::read_to_string(out.join(s.hgrm.as_ref().expect("hgrm file")))?;
        let mut last = (0.0f64, 0.0f64);
        let mut rows = 0;
        for line in hgrm.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(v), Some(p)) = (
                cols.first().and_then(|c| c.parse::<f64>().ok()),
                cols.get(1).and_then(|c| c.parse::<f64>().ok()),
            ) else {
                continue;
            };
            assert!(
                v >= last.0 && p >= last.1,
                "{}: .hgrm not monotonic at {line:?}",
                s.name
            );
            last = (v, p);
            rows += 1;
        }
        assert!(rows >= 2, "{}: .hgrm has {rows} rows", s.name);
        let svg = std::fs::read_to_string(out.join(s.plot.as_ref().expect("plot file")))?;
        assert!(
            svg.trim_start().starts_with("<svg") || svg.contains("<svg"),
            "{}",
            s.name
        );
        assert!(
            svg.contains("polyline") || svg.contains("<path"),
            "{}: no curve",
            s.name
        );
        assert!(
            svg.trim_end().ends_with("</svg>"),
            "{}: truncated svg",
            s.name
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_scheduler_suite_writes_sane_outputs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("scheduler");
    let summary = run_suite(&["scheduler", "--quick", "--placements", "2000"], &out).await?;
    check_outputs(&summary, &out)?;
    let names: Vec<&str> = summary.scenarios.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "scheduler.cycle.fcfs",
        "scheduler.cycle.drf.busy",
        "scheduler.placements",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_raft_suite_writes_sane_outputs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("raft");
    let summary = run_suite(
        &[
            "raft",
            "--quick",
            "--clients",
            "1,8",
            "--seconds",
            "0.5",
            "--failover-trials",
            "1",
        ],
        &out,
    )
    .await?;
    check_outputs(&summary, &out)?;
    assert!(summary.scenarios.iter().any(|s| s.name == "raft.fdatasync"));
    assert!(summary.scenarios.iter().any(|s| s.name == "raft.failover"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_engine_suite_writes_sane_outputs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("engine");
    let summary = run_suite(
        &[
            "engine",
            "--quick",
            "--queries",
            "q0,q5",
            "--events",
            "200000",
            "--rates",
            "10000",
            "--seconds",
            "0.5",
            "--no-search",
        ],
        &out,
    )
    .await?;
    check_outputs(&summary, &out)?;
    let q5 = summary
        .scenarios
        .iter()
        .find(|s| s.name.contains("q5"))
        .expect("q5 measured");
    assert!(q5.per_cpu_second.is_some_and(|v| v > 0.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_flags_a_regression_between_two_runs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_suite(&["scheduler", "--quick", "--placements", "0"], &a).await?;
    // Make a second run whose cycle is 3x slower, as a regression would be.
    let mut slower: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json"))?)?;
    for s in slower["scenarios"].as_array_mut().expect("scenarios") {
        if let Some(p99) = s["latency"]["p99_us"].as_f64() {
            s["latency"]["p99_us"] = (p99 * 3.0).into();
        }
    }
    std::fs::create_dir_all(&b)?;
    std::fs::write(b.join("summary.json"), serde_json::to_vec(&slower)?)?;
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (ok, stdout, _) = sluice(&["bench", "compare", a_s, b_s], Duration::from_secs(30)).await?;
    assert!(!ok, "a regression exits non-zero: {stdout}");
    assert!(stdout.contains("REGRESS"), "{stdout}");
    let (ok, stdout, _) = sluice(&["bench", "compare", a_s, a_s], Duration::from_secs(30)).await?;
    assert!(ok, "{stdout}");
    let (ok, _, stderr) = sluice(
        &["bench", "compare", a_s, "/nonexistent"],
        Duration::from_secs(30),
    )
    .await?;
    assert!(!ok && stderr.contains("nonexistent"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_exchange_suite_writes_sane_outputs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("exchange");
    let summary = run_suite(&["exchange", "--quick", "--events", "100000"], &out).await?;
    check_outputs(&summary, &out)?;
    for name in ["exchange.none", "exchange.local", "exchange.tcp"] {
        let s = summary
            .scenarios
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            s.per_cpu_second.is_some_and(|v| v.is_finite() && v > 0.0),
            "{name}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_checkpoint_suite_takes_checkpoints() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("checkpoint");
    let summary = run_suite(&["checkpoint", "--quick"], &out).await?;
    check_outputs(&summary, &out)?;
    for q in ["q5", "q7"] {
        for label in ["off", "10s", "1s"] {
            let name = format!("checkpoint.{q}.{label}");
            let s = summary
                .scenarios
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(
                s.per_cpu_second.is_some_and(|v| v.is_finite() && v > 0.0),
                "{name}"
            );
        }
        // The shortest interval took checkpoints and none failed.
        let short = format!("checkpoint.{q}.1s");
        let s = summary.scenarios.iter().find(|s| s.name == short).unwrap();
        assert!(
            !s.description.contains(" 0 completed") && s.description.contains(" 0 failed"),
            "{}",
            s.description
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_failover_suite_writes_sane_outputs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("failover");
    let summary = run_suite(
        &[
            "failover",
            "--quick",
            "--trials",
            "1",
            "--seconds",
            "2",
            "--rate",
            "2000",
        ],
        &out,
    )
    .await?;
    check_outputs(&summary, &out)?;
    for name in [
        "failover.commit",
        "failover.stream.before",
        "failover.stream.during",
    ] {
        assert!(
            summary
                .scenarios
                .iter()
                .any(|s| s.name == name && s.latency.is_some()),
            "{name} missing"
        );
    }
    assert!(
        summary.notes.iter().any(|n| n.contains("placed 1 time(s)")),
        "{:?}",
        summary.notes
    );
    Ok(())
}
