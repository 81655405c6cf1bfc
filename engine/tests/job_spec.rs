//! Job spec files: running one end to end, and rejecting malformed ones before anything runs.

use sluice_engine::{run_job_file, EngineError};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_toml_job_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let spec = format!(
        r#"
name = "auctions"
parallelism = 2
pin_cores = true

[watermark]
column = "date_time"

[[source]]
kind = "nexmark"
events = 20000
seed = 11

[[operator]]
filter = "auction % 123 = 0"

[[operator]]
map = ["auction", "price * 0.908 AS price_eur", "date_time"]

[[operator]]
key_by = "auction"

[[operator]]
window = {{ kind = "tumbling", size_ms = 500, aggregate = ["count(*) AS bids", "max(price_eur) AS top"] }}

[[sink]]
kind = "file"
path = "{}"
"#,
        out.display()
    );
    let path = write(&dir, "job.toml", &spec);
    let report = run_job_file(&path).unwrap();
    assert_eq!(report.records_in, 20000 / 50 * 46);
    // Two shards write part files.
    let lines: usize = (0..2)
        .map(|s| {
            std::fs::read_to_string(format!("{}.{s}", out.display()))
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    assert_eq!(lines as u64, report.records_out);
    assert!(report.records_out > 0);
    let first = std::fs::read_to_string(format!("{}.0", out.display())).unwrap();
    let line = first
        .lines()
        .next()
        .unwrap_or("{\"auction\":0,\"window_start\":0}");
    assert!(
        line.contains("\"window_start\":") && line.contains("\"top\":"),
        "{line}"
    );
}

#[test]
fn a_malformed_spec_is_rejected_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.ndjson");
    let spec = format!(
        r#"
[[source]]
kind = "nexmark"
events = 1000

[[operator]]
map = ["auction", "price * 0.908 AS price_eur"]

[[operator]]
filter = "price_usd > 1"

[[sink]]
kind = "file"
path = "{}"
"#,
        out.display()
    );
    let path = write(&dir, "bad.toml", &spec);
    let err = run_job_file(&path).unwrap_err();
    let EngineError::Spec {
        line,
        column,
        message,
    } = &err
    else {
        panic!("{err}")
    };
    // Line 10 is `filter = "price_usd > 1"`; the expression starts in column 11.
    assert_eq!((*line, *column), (10, 11), "{err}");
    assert!(message.contains("unknown column `price_usd`"), "{err}");
    assert!(
        message.contains("auction int, price_eur float"),
        "lists what is available: {err}"
    );
    assert!(!out.exists(), "no sink may be created for a rejected spec");

    let path = write(
        &dir,
        "typo.toml",
        "[[source]]\nkind = \"nexmark\"\nevnts = 5\n[[sink]]\nkind = \"blackhole\"\n",
    );
    let err = run_job_file(&path).unwrap_err().to_string();
    assert!(err.contains("evnts") && err.contains("line"), "{err}");

    let err = run_job_file(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
}

#[test]
fn relative_paths_are_relative_to_the_spec_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "1,a\n2,b\n").unwrap();
    let spec = r#"
[[source]]
kind = "file"
path = "in.csv"
format = "csv"
fields = [{ name = "id", type = "int" }, { name = "name", type = "string" }]

[[sink]]
kind = "file"
path = "out.csv"
format = "csv"
"#;
    let path = write(&dir, "job.toml", spec);
    let report = run_job_file(&path).unwrap();
    assert_eq!(report.records_out, 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "1,a\n2,b\n"
    );
}
