//! The agent against three real masters: registration, placement, command
//! and stream tasks, failures, restarts.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use sluice_agent::{Agent, AgentError};
use sluice_consensus::state::{JobKind, JobState, TaskState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_task_runs_to_finish_with_its_output_kept() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let data_dir = root.path().join("agent");
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    let id = cluster
        .submit("hello", command(&["sh", "-c", "echo hi; echo oops >&2"]))
        .await?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    assert_eq!(job.tasks[0].state, TaskState::Finished);
    assert_eq!(job.tasks[0].message.as_deref(), Some("exited with code 0"));
    let dir = data_dir.join("tasks").join(format!("{id}.0"));
    assert_eq!(std::fs::read_to_string(dir.join("stdout"))?, "hi\n");
    assert_eq!(std::fs::read_to_string(dir.join("stderr"))?, "oops\n");
    let record = cluster.agent(agent.id()).await?;
    assert!(
        record.used_cores.is_empty() && record.tasks.is_empty(),
        "{record:#?}"
    );
    // A failing command fails its job with the exit code.
    let id = cluster
        .submit("bad-exit", command(&["sh", "-c", "exit 3"]))
        .await?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Failed);
    let message = job.tasks[0].message.clone().unwrap_or_default();
    assert!(message.contains("exited with code 3"), "{message}");
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_binary_fails_with_the_reason_and_frees_resources() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let id = cluster
        .submit("missing", command(&["/no/such/binary", "--flag"]))
        .await?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.tasks[0].state, TaskState::Failed);
    let message = job.tasks[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("\"/no/such/binary\" does not exist"),
        "{message}"
    );
    let record = cluster.agent(agent.id()).await?;
    assert!(record.used_cores.is_empty(), "{record:#?}");
    assert_eq!(record.used_memory_bytes, 0);
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_stream_job_runs_on_the_agent_and_writes_every_record() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let out = root.path().join("out.ndjson");
    let spec = format!(
        r#"name = "words"
[[source]]
kind = "values"
fields = [{{ name = "word", type = "string" }}, {{ name = "n", type = "int" }}]
rows = [["a", 1], ["b", 2], ["c", 3], ["d", 4], ["e", 5], ["f", 6]]

[[operator]]
filter = "n % 2 = 0"

[[sink]]
kind = "file"
path = "{}"
"#,
        out.display()
    );
    let id = cluster
        .submit(
            "words",
            JobKind::Stream {
                spec_toml: spec,
                parallelism: 2,
                memory_per_shard_bytes: 64 * MIB,
            },
        )
        .await?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    let mut lines = Vec::new();
    for shard in 0..2 {
        let text = std::fs::read_to_string(format!("{}.{shard}", out.display()))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    assert_eq!(
        lines,
        vec![
            r#"{"word":"b","n":2}"#,
            r#"{"word":"d","n":4}"#,
            r#"{"word":"f","n":6}"#
        ]
    );
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_loses_no_status_update() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cluster = Cluster::start(root.path()).await?;
    let data_dir = root.path().join("agent");
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    let agent_id = agent.id();
    let gate = root.path().join("gate");
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; echo finished",
        gate.display()
    );
    let id = cluster
        .submit("gated", command(&["sh", "-c", &script]))
        .await?;
    cluster
        .wait_job(id, Duration::from_secs(30), |j| {
            j.tasks[0].state == TaskState::Running
        })
        .await?;
    // With every master down, the task finishes: its update can only be
    // journaled, not delivered.
    cluster.stop().await?;
    std::fs::write(&gate, "")?;
    let stdout = data_dir
        .join("tasks")
        .join(format!("{id}.0"))
        .join("stdout");
    wait_for("the task to finish", Duration::from_secs(10), || {
        std::fs::read_to_string(&stdout).is_ok_and(|s| s == "finished\n")
    })
    .await?;
    agent.shutdown().await;
    cluster.restart().await?;
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    assert_eq!(agent.id(), agent_id, "a restarted agent keeps its id");
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    assert_eq!(job.tasks[0].message.as_deref(), Some("exited with code 0"));
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistration_with_other_resources_is_refused() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let data_dir = root.path().join("agent");
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    let id = agent.id();
    agent.shutdown().await;
    let mut config = cluster.agent_config(data_dir.clone());
    config.memory_bytes = Some(8192 * MIB);
    let err = Agent::start(config)
        .await
        .expect_err("contradicting resources must be refused");
    assert!(matches!(err, AgentError::Refused { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("memory_bytes 8589934592 != recorded 4294967296"),
        "{text}"
    );
    assert!(
        text.contains(&format!("this data dir belongs to agent {id}")),
        "{text}"
    );
    // The same resources are welcome again.
    let agent = Agent::start(cluster.agent_config(data_dir)).await?;
    assert_eq!(agent.id(), id);
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agents_command_task_is_placed_again_and_runs_elsewhere() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start_with(root.path(), |c| {
        c.agent_timeout_ms = 1_000;
        c.agent_grace_ms = 1_000;
    })
    .await?;
    let start = |name: &str| {
        let mut config = cluster.agent_config(root.path().join(name));
        config.hostname = Some(name.into());
        Agent::start(config)
    };
    let first = start("first").await?;
    let first_id = first.id();
    let gate = root.path().join("gate");
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; echo finished",
        gate.display()
    );
    let id = cluster
        .submit("gated", command(&["sh", "-c", &script]))
        .await?;
    let on = |agent: u64| {
        move |j: &sluice_consensus::state::Job| {
            j.tasks[0].state == TaskState::Running
                && j.tasks[0].grant.as_ref().is_some_and(|g| g.agent == agent)
        }
    };
    cluster
        .wait_job(id, Duration::from_secs(30), on(first_id))
        .await?;
    let second = start("second").await?;
    // The first agent goes away for good: the masters hear nothing more.
    first.shutdown().await;
    let job = cluster
        .wait_job(id, Duration::from_secs(30), on(second.id()))
        .await?;
    assert_eq!(job.state, JobState::Running);
    let lost = cluster.agent(first_id).await?;
    assert_eq!(
        lost.state,
        sluice_consensus::state::AgentState::Lost,
        "{lost:#?}"
    );
    std::fs::write(&gate, "")?;
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    let stdout = root
        .path()
        .join("second")
        .join("tasks")
        .join(format!("{id}.0"))
        .join("stdout");
    assert_eq!(std::fs::read_to_string(stdout)?, "finished\n");
    second.shutdown().await;
    cluster.shutdown().await
}
