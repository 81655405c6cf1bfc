//! The caller's thread hook (`JobControl::and_thread_start`): it runs first on every shard
//! thread and on the checkpoint coordinator, and a hook that fails fails the job with its
//! message before the shard has opened anything.

use std::path::Path;
use std::sync::{Arc, Mutex};

use sluice_engine::runtime::{run_plan_with, JobControl, ThreadStart};
use sluice_engine::spec::load_spec;
use sluice_engine::EngineError;

/// Four records on two shards into `sink`, with `settings` at the top of the spec.
fn job(settings: &str, sink: &str) -> String {
    format!(
        r#"name = "hooked"
parallelism = 2
pin_cores = false
{settings}

[[source]]
kind = "values"
fields = [{{ name = "n", type = "int" }}]
rows = [[1], [2], [3], [4]]

[[sink]]
{sink}
"#
    )
}

#[test]
fn the_hook_runs_first_on_every_shard_and_on_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "checkpoint_storage = \"file://{}\"\ncheckpoint_interval_ms = 50",
        dir.path().join("checkpoints").display()
    );
    let threads = Arc::new(Mutex::new(Vec::new()));
    let seen = threads.clone();
    let hook = ThreadStart::new(move || {
        let name = std::thread::current().name().map(str::to_owned);
        seen.lock().unwrap().push(name.unwrap_or_default());
        Ok(())
    });
    let control = JobControl::new().and_thread_start(hook);
    let plan = load_spec(&job(&settings, "kind = \"collect\"")).unwrap();
    let report = run_plan_with(plan, &control).unwrap();
    assert_eq!(report.collected_rows().len(), 4, "{report:?}");
    let mut threads = threads.lock().unwrap().clone();
    threads.sort();
    assert_eq!(
        threads,
        ["sluice-checkpoints", "sluice-shard-0", "sluice-shard-1"],
        "the hook ran on other threads, or not once on each"
    );
}

#[test]
fn a_failing_hook_fails_the_job_before_a_shard_opens_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let sink = format!("kind = \"file\"\npath = \"{}\"", out.display());
    let hook = ThreadStart::new(|| Err("no credentials for this thread".to_owned()));
    let control = JobControl::new().and_thread_start(hook);
    let plan = load_spec(&job("", &sink)).unwrap();
    match run_plan_with(plan, &control) {
        Err(EngineError::Shard { message, .. }) => {
            assert!(
                message.contains("no credentials for this thread"),
                "{message}"
            )
        }
        other => panic!("the job did not fail with the hook's error: {other:?}"),
    }
    for part in 0..2 {
        let file = format!("{}.{part}", out.display());
        assert!(!Path::new(&file).exists(), "{file} was created");
    }
}
