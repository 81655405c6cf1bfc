//! The bench's output files, built from synthetic histograms: `.hgrm`
//! percentile files, SVG plots and `summary.json` parse and hold sane values.
//! No test here asserts a speed.

use std::path::Path;
use std::time::Duration;

use sluice_bench::compare::load_summary;
use sluice_bench::recorder::{PercentilePoint, Recorder};
use sluice_bench::report::{plot_family, Report, Summary};

/// A deterministic, long-tailed latency distribution: mostly near `base_us`,
/// with a tail up to ~100x.
fn synthetic(samples: u64, base_us: u64) -> Recorder {
    let mut r = Recorder::new();
    for i in 0..samples {
        // A cheap hash spreads the samples; the tail follows 1/(1-u).
        let u = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64) / (1u64 << 53) as f64;
        let factor = (1.0 / (1.0 - u * 0.99)).min(100.0);
        r.record(Duration::from_nanos(
            (base_us as f64 * 1000.0 * factor) as u64,
        ));
    }
    r
}

/// Rows of an `.hgrm` file: value (ms), percentile, total count.
fn hgrm_rows(text: &str) -> Vec<(f64, f64, u64)> {
    let mut lines = text.lines();
    let header: Vec<_> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    lines
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            assert!(f.len() == 3 || f.len() == 4, "bad row {l:?}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

/// The polylines of an SVG document, as point lists.
fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            n.attribute("points")
                .expect("polyline points")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

/// The texts of an SVG document, trimmed.
fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
        .collect()
}

fn build(dir: &Path) -> (Summary, Vec<(String, Recorder)>) {
    let recs = vec![
        ("raft.fdatasync".to_owned(), synthetic(500, 900)),
        ("raft.commit.inproc.c1".to_owned(), synthetic(20_000, 1_500)),
        ("raft.commit.grpc.c1".to_owned(), synthetic(20_000, 2_000)),
        ("raft.commit.grpc.c64".to_owned(), synthetic(50_000, 40)),
    ];
    let mut report = Report::new("raft", dir).unwrap();
    for (name, rec) in &recs {
        report
            .add(name, "synthetic", Some(rec), Some(1234.5))
            .unwrap();
    }
    report.add_throughput("engine.nexmark.q0", "synthetic throughput", 1e6, 2e6);
    report
        .add("raft.empty", "no samples", Some(&Recorder::new()), None)
        .unwrap();
    report.note("synthetic");
    (report.finish().unwrap(), recs)
}

#[test]
fn hgrm_files_parse_and_agree_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, recs) = build(dir.path());
    for (name, rec) in &recs {
        let s = summary.scenarios.iter().find(|s| &s.name == name).unwrap();
        let file = s.hgrm.as_deref().expect("an hgrm file");
        assert_eq!(file, format!("{name}.hgrm"));
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let rows = hgrm_rows(&text);
        assert!(rows.len() > 10, "{name}: {} rows", rows.len());
        for w in rows.windows(2) {
            assert!(w[1].0 >= w[0].0, "{name}: values decrease: {w:?}");
            assert!(w[1].1 >= w[0].1, "{name}: percentiles decrease: {w:?}");
            assert!(w[1].2 >= w[0].2, "{name}: counts decrease: {w:?}");
        }
        let last = rows.last().unwrap();
        assert_eq!(last.1, 1.0, "{name}");
        assert_eq!(last.2, rec.len(), "{name}");
        let max_ms = s.latency.unwrap().max_us / 1000.0;
        assert!((last.0 - max_ms).abs() <= max_ms * 0.001 + 0.001, "{name}");
        assert!(text.contains(&format!("Total count    = {:>12}]", rec.len())));
    }
}

#[test]
fn summary_json_parses_and_holds_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, recs) = build(dir.path());
    let (path, loaded) = load_summary(dir.path()).unwrap();
    assert_eq!(path, dir.path().join("summary.json"));
    assert_eq!(loaded, summary);
    assert_eq!(loaded.suite, "raft");
    assert!(loaded.started_at_unix_s > 1_600_000_000);
    assert!(loaded.machine.cores >= 1);
    assert_eq!(loaded.notes, ["synthetic"]);
    assert_eq!(loaded.scenarios.len(), recs.len() + 2);
    for (name, rec) in &recs {
        let s = loaded.scenarios.iter().find(|s| &s.name == name).unwrap();
        let l = s.latency.expect("latency");
        assert_eq!(l.count, rec.len());
        assert!(l.min_us > 0.0);
        let ordered = [l.min_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us];
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{name}: {l:?}");
        assert!(
            l.mean_us >= l.min_us && l.mean_us <= l.max_us,
            "{name}: {l:?}"
        );
        assert_eq!(s.ops_per_sec, Some(1234.5));
        assert_eq!(s.plot.as_deref(), Some(format!("{name}.svg").as_str()));
    }
    let q0 = loaded
        .scenarios
        .iter()
        .find(|s| s.name == "engine.nexmark.q0")
        .unwrap();
    assert_eq!(
        (q0.latency, q0.hgrm.as_ref(), q0.plot.as_ref()),
        (None, None, None)
    );
    assert_eq!(q0.per_cpu_second, Some(2e6));
    // An empty histogram writes no files.
    let empty = loaded
        .scenarios
        .iter()
        .find(|s| s.name == "raft.empty")
        .unwrap();
    assert_eq!(
        (empty.latency, empty.hgrm.as_ref(), empty.plot.as_ref()),
        (None, None, None)
    );
    assert!(!dir.path().join("raft.empty.svg").exists());
    // The raw JSON has the field names the README documents.
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert!(raw["scenarios"][1]["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    assert_eq!(raw["scenarios"][1]["plot"], "raft.commit.inproc.c1.svg");
}

#[test]
fn each_histogram_gets_a_percentile_plot() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, recs) = build(dir.path());
    for (name, rec) in &recs {
        let s = summary.scenarios.iter().find(|s| &s.name == name).unwrap();
        let svg = std::fs::read_to_string(dir.path().join(s.plot.as_deref().unwrap())).unwrap();
        assert!(svg.trim_start().starts_with("<svg"), "{name}");
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
        let curve: Vec<PercentilePoint> = rec.percentile_curve();
        let lines = polylines(&svg);
        let line = lines
            .iter()
            .find(|l| l.len() == curve.len())
            .unwrap_or_else(|| {
                panic!(
                    "{name}: no polyline of {} points among {:?}",
                    curve.len(),
                    lines.iter().map(Vec::len).collect::<Vec<_>>()
                )
            });
        // Left to right, and upwards (SVG y grows downwards) as the percentile rises.
        for w in line.windows(2) {
            assert!(w[1].0 >= w[0].0 && w[1].1 <= w[0].1, "{name}: {w:?}");
        }
        let texts = texts(&svg);
        for label in ["0%", "90%", "99%", "Percentile"] {
            assert!(
                texts.iter().any(|t| t == label),
                "{name}: no {label:?} in {texts:?}"
            );
        }
        assert!(
            texts.iter().any(|t| t.starts_with("Latency (")),
            "{name}: {texts:?}"
        );
        // 20,000 samples reach the 99.99 % decade, 500 only the 99.9 % one.
        let reaches = |label: &str| texts.iter().any(|t| t == label);
        if rec.len() >= 20_000 {
            assert!(reaches("99.99%"), "{name}: {texts:?}");
        } else {
            assert!(reaches("99.9%") && !reaches("99.99%"), "{name}: {texts:?}");
        }
    }
}

#[test]
fn related_scenarios_share_an_overlay_plot() {
    assert_eq!(plot_family("raft.commit.grpc.c64"), "raft.commit");
    assert_eq!(plot_family("raft.failover"), "raft.failover");
    assert_eq!(plot_family("solo"), "solo");

    let dir = tempfile::tempdir().unwrap();
    let (summary, _) = build(dir.path());
    assert_eq!(summary.overlays.len(), 1, "{:?}", summary.overlays);
    let overlay = &summary.overlays[0];
    assert_eq!(overlay.family, "raft.commit");
    assert_eq!(overlay.file, "raft.commit.overlay.svg");
    assert_eq!(
        overlay.scenarios,
        [
            "raft.commit.inproc.c1",
            "raft.commit.grpc.c1",
            "raft.commit.grpc.c64"
        ]
    );
    let svg = std::fs::read_to_string(dir.path().join(&overlay.file)).unwrap();
    // Three curves plus their three legend swatches.
    let long = polylines(&svg).into_iter().filter(|l| l.len() > 10).count();
    assert_eq!(long, 3);
    let texts = texts(&svg);
    for name in &overlay.scenarios {
        assert!(texts.contains(name), "legend lacks {name}: {texts:?}");
    }
    // Keep the plots for a look when asked: SLUICE_BENCH_KEEP_PLOTS=DIR.
    if let Some(keep) = std::env::var_os("SLUICE_BENCH_KEEP_PLOTS") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), keep.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn summaries_without_plot_fields_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.json");
    std::fs::write(
        &path,
        r#"{"suite":"raft","started_at_unix_s":1700000000,
            "machine":{"cores":2,"cpu_model":"x","kernel":"6.1","memory_bytes":1,"hostname":"h"},
            "scenarios":[{"name":"a","description":"d","latency":null,"ops_per_sec":5.0,"hgrm":null}],
            "notes":[]}"#,
    )
    .unwrap();
    let (_, s) = load_summary(&path).unwrap();
    assert_eq!(s.scenarios[0].plot, None);
    assert_eq!(s.scenarios[0].per_cpu_second, None);
    assert!(s.overlays.is_empty());
}
