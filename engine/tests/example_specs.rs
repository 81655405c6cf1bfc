//! The example job specs in `examples/jobs` stay valid.

use sluice_engine::spec::load_spec_file;

#[test]
fn every_example_spec_plans() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load_spec_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn the_wordcount_example_counts_words() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs");
    let mut plan = load_spec_file(&dir.join("wordcount.toml")).unwrap();
    plan.spec.sinks = vec![sluice_engine::spec::SinkSpec::Collect];
    let report = sluice_engine::runtime::run_plan(plan).unwrap();
    let mut rows: Vec<String> = report
        .collected_rows()
        .iter()
        .map(|r| format!("{}={}", r[0], r[1]))
        .collect();
    rows.sort();
    assert_eq!(rows, ["IS=2", "ROSE=3"]);
}
