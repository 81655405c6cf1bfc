//! Job specs that would destroy or cannot read their input fail at plan time (`--check` and
//! run alike), name the file and the place in the spec, and change nothing on disk.

use std::path::{Path, PathBuf};

use sluice_engine::{check_job_file, run_job_file, EngineError};

const INPUT: &str = "{\"id\":1}\n{\"id\":2}\n";

/// Writes `in.ndjson` and a job reading it with `rest` appended (sinks, tables); top-level
/// keys go first.
fn job(dir: &Path, parallelism: usize, rest: &str) -> PathBuf {
    job_with(dir, parallelism, "", rest)
}

fn job_with(dir: &Path, parallelism: usize, top: &str, rest: &str) -> PathBuf {
    std::fs::write(dir.join("in.ndjson"), INPUT).unwrap();
    let spec = format!(
        r#"
parallelism = {parallelism}
{top}
[[source]]
kind = "file"
path = "in.ndjson"
fields = [{{ name = "id", type = "int" }}]
{rest}
"#
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// Checks that both `--check` and a run refuse the job with a spec error containing every
/// piece of `expected`, and that the input is unchanged.
fn refused(dir: &Path, spec: &Path, expected: &[&str]) {
    for (what, result) in [
        ("check", check_job_file(spec).err()),
        ("run", run_job_file(spec).err()),
    ] {
        let err = result.unwrap_or_else(|| panic!("{what}: the job was accepted"));
        assert!(matches!(err, EngineError::Spec { .. }), "{what}: {err}");
        let text = err.to_string();
        for piece in expected {
            assert!(
                text.contains(piece),
                "{what}: {text} should contain {piece}"
            );
        }
    }
    let input = dir.join("in.ndjson");
    if input.is_file() {
        assert_eq!(
            std::fs::read_to_string(input).unwrap(),
            INPUT,
            "input changed"
        );
    }
}

const SINK_ON_INPUT: &str = r#"
[[sink]]
kind = "file"
path = "in.ndjson"
"#;

#[test]
fn a_sink_on_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = job(dir.path(), 1, SINK_ON_INPUT);
    refused(
        dir.path(),
        &spec,
        &["[[sink]] #1", "line 9", "in.ndjson", "input"],
    );
}

#[test]
fn a_sink_reaching_the_input_through_a_link_or_another_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    job(d, 1, "");
    std::os::unix::fs::symlink(d.join("in.ndjson"), d.join("sym.ndjson")).unwrap();
    std::fs::hard_link(d.join("in.ndjson"), d.join("hard.ndjson")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    for path in [
        "sym.ndjson",
        "hard.ndjson",
        "sub/../in.ndjson",
        "./in.ndjson",
    ] {
        let sink = format!("[[sink]]\nkind = \"file\"\npath = \"{path}\"\n");
        let spec = job(d, 1, &sink);
        refused(d, &spec, &["[[sink]] #1", path, "input"]);
    }
}

#[test]
fn a_late_sink_or_dead_letter_file_on_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blackhole = "[[sink]]\nkind = \"blackhole\"\n";
    let spec = job_with(dir.path(), 1, "dead_letter = \"in.ndjson\"", blackhole);
    refused(
        dir.path(),
        &spec,
        &["dead_letter", "line 3", "in.ndjson", "input"],
    );
    let top = "late_sink = { kind = \"file\", path = \"in.ndjson\" }";
    let spec = job_with(dir.path(), 1, top, blackhole);
    refused(
        dir.path(),
        &spec,
        &["late_sink", "line 3", "in.ndjson", "input"],
    );
}

#[test]
fn a_shard_part_file_on_the_input_is_refused() {
    // With two shards the sink `in` writes `in.0` and `in.1`; the input is `in.ndjson`, so
    // a sink named `in` with the input renamed to `in.1` is caught.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = job(d, 2, "[[sink]]\nkind = \"file\"\npath = \"in\"\n");
    std::fs::rename(d.join("in.ndjson"), d.join("in.1")).unwrap();
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"in.ndjson\"", "\"in.1\"");
    std::fs::write(&spec, text).unwrap();
    refused(d, &spec, &["[[sink]] #1", "in.1", "input"]);
    assert_eq!(std::fs::read_to_string(d.join("in.1")).unwrap(), INPUT);
}

#[test]
fn two_outputs_on_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[[sink]]\nkind = \"file\"\npath = \"out.ndjson\"\n";
    let spec = job_with(dir.path(), 1, "dead_letter = \"out.ndjson\"", rest);
    refused(dir.path(), &spec, &["out.ndjson", "own file"]);
}

#[test]
fn a_sink_that_is_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The sink is the directory that holds the input.
    let sink = format!("[[sink]]\nkind = \"file\"\npath = \"{}\"\n", d.display());
    let spec = job(d, 1, &sink);
    refused(d, &spec, &["[[sink]] #1", "is a directory", "in.ndjson"]);
}

#[test]
fn a_missing_or_directory_input_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = job(d, 1, "[[sink]]\nkind = \"blackhole\"\n");
    std::fs::remove_file(d.join("in.ndjson")).unwrap();
    refused(
        d,
        &spec,
        &["[[source]] #1", "line 4", "in.ndjson", "does not exist"],
    );
    std::fs::create_dir(d.join("in.ndjson")).unwrap();
    refused(d, &spec, &["[[source]] #1", "in.ndjson", "is a directory"]);
}

#[test]
fn a_negative_out_of_orderness_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rest = "[watermark]\ncolumn = \"id\"\nout_of_orderness_ms = -5\n\n[[sink]]\nkind = \"blackhole\"\n";
    let spec = job(d, 1, rest);
    let text = std::fs::read_to_string(&spec).unwrap();
    let line = text.lines().position(|l| l == "[watermark]").unwrap() + 1;
    let at = format!("line {line}");
    refused(d, &spec, &["[watermark]", "out_of_orderness_ms", "-5", &at]);
}
