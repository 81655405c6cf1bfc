//! Stream jobs on an agent running as root with a task user: every file a job opens is
//! opened with the user's permissions. A source only root may read fails the job, naming the
//! file, and so does checkpoint storage only root may write; a readable source and outputs
//! in the user's directory work, and what the job creates belongs to the user. A root agent
//! with neither a task user nor --allow-root-tasks runs no stream job: it does not start.
//! Real masters, real agent, real credentials.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use sluice_agent::Agent;
use sluice_consensus::state::{Job, JobState};

/// Names, some repeated, as NDJSON records.
const INPUT: &str = r#"{"id":1,"name":"ada"}
{"id":2,"name":"bo"}
{"id":3,"name":"ada"}
{"id":4,"name":"cy"}
{"id":5,"name":"bo"}
{"id":6,"name":"ada"}
"#;

/// A job counting the records of `input` per name into the file `out`, with `settings` at
/// the top of the spec.
fn spec(input: &Path, out: &Path, settings: &str) -> String {
    format!(
        r#"name = "names"
{settings}

[[source]]
kind = "file"
path = "{}"
fields = [{{ name = "id", type = "int" }}, {{ name = "name", type = "string" }}]

[[operator]]
key_by = "name"

[[operator]]
aggregate = ["count(*) AS n"]

[[sink]]
kind = "file"
path = "{}"
"#,
        input.display(),
        out.display()
    )
}

/// Checkpoint storage at `dir`, a checkpoint every second.
fn checkpoints_in(dir: &Path) -> String {
    format!(
        "checkpoint_storage = \"file://{}\"\ncheckpoint_interval_ms = 1000",
        dir.display()
    )
}

/// The sorted lines of `path`.
fn sorted_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    Ok(lines)
}

/// What the engine alone, in this (root) process, makes of `spec_toml` writing `out`.
fn reference(spec_toml: &str, out: &Path) -> Result<Vec<String>> {
    let mut spec = sluice_engine::spec::load::parse_spec(spec_toml)?;
    spec.parallelism = 1;
    spec.pin_cores = false;
    sluice_engine::run_job(spec)?;
    sorted_lines(out)
}

/// Why the job ended as it did: its reason and its tasks' last messages.
fn messages(job: &Job) -> String {
    let mut text = job.reason.clone().unwrap_or_default();
    for message in job.tasks.iter().filter_map(|t| t.message.as_deref()) {
        text.push('\n');
        text.push_str(message);
    }
    text
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_jobs_open_their_files_as_the_task_user() -> Result<()> {
    if !sluice_agent::sys::running_as_root() {
        eprintln!(
            "skipped: a task user needs an agent running as root, and this test runs as a user"
        );
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    // The task user must reach the files below (searching, not listing, the directory).
    set_mode(root.path(), 0o711)?;
    let cluster = Cluster::start(root.path()).await?;
    let nobody = sluice_agent::sys::lookup_user("nobody")?;

    // A root agent without a task user would open stream jobs' files as root: it is refused
    // as it is for command tasks, before it registers, so no job of either kind runs there.
    let mut as_root = cluster.agent_config(root.path().join("as-root"));
    as_root.allow_root_tasks = false;
    match Agent::start(as_root).await {
        Err(e) => {
            let e = e.to_string();
            ensure!(
                e.contains("would run command tasks and stream jobs as root")
                    && e.contains("--task-user"),
                "{e}"
            );
        }
        Ok(agent) => {
            agent.shutdown().await;
            bail!("a root agent without a task user or --allow-root-tasks started");
        }
    }

    let mut config = cluster.agent_config(root.path().join("agent"));
    config.allow_root_tasks = false;
    config.task_user = Some("nobody".into());
    let agent = Agent::start(config).await?;
    let input = root.path().join("input.ndjson");
    std::fs::write(&input, INPUT)?;
    set_mode(&input, 0o600)?;
    // Outputs go to a directory the task user owns.
    let out_dir = root.path().join("out");
    std::fs::create_dir(&out_dir)?;
    std::os::unix::fs::chown(&out_dir, Some(nobody.uid), Some(nobody.gid))?;

    // A source only root may read.
    let text = spec(&input, &out_dir.join("denied.ndjson"), "");
    let id = cluster.submit("unreadable", stream(&text, 1)).await?;
    let job = cluster.wait_ended(id).await?;
    let why = messages(&job);
    ensure!(job.state == JobState::Failed, "{job:#?}");
    ensure!(
        why.contains("Permission denied") && why.contains(&input.display().to_string()),
        "the failure does not say the input was unreadable: {why}"
    );

    // Readable now, but the job's checkpoint storage is in a directory only root may enter.
    set_mode(&input, 0o644)?;
    let locked = root.path().join("root-only");
    std::fs::create_dir(&locked)?;
    set_mode(&locked, 0o700)?;
    let store = locked.join("checkpoints");
    let text = spec(
        &input,
        &out_dir.join("unused.ndjson"),
        &checkpoints_in(&store),
    );
    let id = cluster.submit("unwritable", stream(&text, 1)).await?;
    let job = cluster.wait_ended(id).await?;
    let why = messages(&job);
    ensure!(job.state == JobState::Failed, "{job:#?}");
    ensure!(
        why.contains("Permission denied") && why.contains(&store.display().to_string()),
        "the failure does not say the checkpoint storage was unwritable: {why}"
    );
    ensure!(!store.exists(), "the checkpoint storage was created");

    // State in RocksDB is refused: its background threads are the whole agent's.
    let text = spec(
        &input,
        &out_dir.join("rocks.ndjson"),
        "state_backend = \"rocksdb\"",
    );
    let id = cluster.submit("rocks", stream(&text, 1)).await?;
    let job = cluster.wait_ended(id).await?;
    let why = messages(&job);
    ensure!(job.state == JobState::Failed, "{job:#?}");
    ensure!(
        why.contains("state_backend = \"rocksdb\" is not available"),
        "{why}"
    );

    // A readable source, outputs and checkpoint storage in the user's directory: the job
    // runs, and everything it created is the user's.
    let reference_out = root.path().join("reference.ndjson");
    let expected = reference(&spec(&input, &reference_out, ""), &reference_out)?;
    ensure!(expected.len() == 3, "three names: {expected:?}");
    let out = out_dir.join("counts.ndjson");
    let store = out_dir.join("checkpoints");
    let text = spec(&input, &out, &checkpoints_in(&store));
    let id = cluster.submit("readable", stream(&text, 1)).await?;
    let job = cluster.wait_ended(id).await?;
    ensure!(job.state == JobState::Finished, "{job:#?}");
    let got = sorted_lines(&out)?;
    ensure!(
        got == expected,
        "the job's output {got:?} differs from the engine's own run {expected:?}"
    );
    for made in [&out, &store] {
        let owner = std::fs::metadata(made)?.uid();
        ensure!(
            owner == nobody.uid,
            "{} belongs to uid {owner}, not to the task user ({})",
            made.display(),
            nobody.uid
        );
    }
    agent.shutdown().await;
    cluster.shutdown().await
}
