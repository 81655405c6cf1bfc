//! `TaskLogs` of the agent API against three real masters and a real agent:
//! a command task's stdout and stderr fetched, tailed and followed over
//! gRPC, bad requests refused, the API address published to the masters.

mod common;

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::*;
use sluice_agent::api::proto::agent_api_client::AgentApiClient;
use sluice_agent::api::proto::TaskLogsRequest;
use sluice_agent::api::{published_api_addr, Code};
use sluice_agent::config::API_ADDR_ATTRIBUTE;
use sluice_agent::{task_logs, Agent, AgentError, LogStream};
use sluice_consensus::state::{JobId, JobState, TaskState};
use tokio::io::AsyncReadExt;

/// Deadline of every single wait in these tests.
const WITHIN: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(WITHIN, fut)
        .await
        .with_context(|| format!("timed out after {WITHIN:?} waiting for {what}"))
}

/// Task 0 of `job`'s output as `task_logs` writes it.
async fn fetch(
    addr: &str,
    job: JobId,
    stream: LogStream,
    tail: Option<u64>,
    follow: bool,
) -> Result<String, AgentError> {
    let mut out = Vec::new();
    task_logs(addr, None, None, job, 0, stream, tail, follow, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

async fn wait_running(cluster: &Cluster, job: JobId) -> Result<()> {
    cluster
        .wait_job(job, WITHIN, |j| {
            j.tasks
                .first()
                .is_some_and(|t| t.state == TaskState::Running)
        })
        .await?;
    Ok(())
}

/// Reads from `r` until what was read ends with `want`.
async fn read_until(r: &mut tokio::io::DuplexStream, got: &mut String, want: &str) -> Result<()> {
    let mut buf = [0u8; 256];
    while !got.ends_with(want) {
        let n = within("output", r.read(&mut buf)).await??;
        if n == 0 {
            bail!("output ended before {want:?}; got {got:?}");
        }
        got.push_str(std::str::from_utf8(&buf[..n])?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_followed_fetched_and_tailed_and_the_address_is_published() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let record = cluster.agent(agent.id()).await?;
    let addr = agent.api_addr().to_string();
    assert_eq!(
        record.attributes.get(API_ADDR_ATTRIBUTE),
        Some(&addr),
        "{record:#?}"
    );
    assert_eq!(published_api_addr(&record.attributes), Some(addr.as_str()));
    assert_ne!(agent.api_addr().port(), 0);

    let id = cluster
        .submit(
            "lines",
            command(&["sh", "-c", "echo one; sleep 1; echo two"]),
        )
        .await?;
    wait_running(&cluster, id).await?;
    // Follow: everything, ending once the task has.
    let followed = within(
        "the follow to end",
        fetch(&addr, id, LogStream::Stdout, None, true),
    )
    .await??;
    assert_eq!(followed, "one\ntwo\n");
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    // After the end: everything, the tail, and the (empty) stderr.
    let all = within(
        "the fetch",
        fetch(&addr, id, LogStream::Stdout, None, false),
    )
    .await??;
    assert_eq!(all, "one\ntwo\n");
    let tail = within(
        "the tail",
        fetch(&addr, id, LogStream::Stdout, Some(4), false),
    )
    .await??;
    assert_eq!(tail, "two\n");
    let tail = within(
        "the tail",
        fetch(&addr, id, LogStream::Stdout, Some(1 << 20), true),
    )
    .await??;
    assert_eq!(tail, "one\ntwo\n");
    let err = within("stderr", fetch(&addr, id, LogStream::Stderr, None, true)).await??;
    assert_eq!(err, "");

    // Stderr.
    let id = cluster
        .submit(
            "errors",
            command(&["sh", "-c", "echo out; echo oops >&2; echo again >&2"]),
        )
        .await?;
    cluster.wait_ended(id).await?;
    let err = within("stderr", fetch(&addr, id, LogStream::Stderr, None, false)).await??;
    assert_eq!(err, "oops\nagain\n");
    let err = within(
        "stderr",
        fetch(&addr, id, LogStream::Stderr, Some(6), false),
    )
    .await??;
    assert_eq!(err, "again\n");
    let out = within("stdout", fetch(&addr, id, LogStream::Stdout, None, true)).await??;
    assert_eq!(out, "out\n");

    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_sends_output_as_it_is_written() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let data_dir = root.path().join("agent");
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    let addr = agent.api_addr().to_string();
    // The task waits for the test between its two lines.
    let script = "echo one; while [ ! -e go ]; do sleep 0.05; done; echo two >&2; echo two";
    let id = cluster
        .submit("gated", command(&["sh", "-c", script]))
        .await?;
    wait_running(&cluster, id).await?;
    let (mut writer, mut reader) = tokio::io::duplex(1 << 16);
    let follow = {
        let addr = addr.clone();
        tokio::spawn(async move {
            task_logs(
                &addr,
                None,
                None,
                id,
                0,
                LogStream::Stdout,
                None,
                true,
                &mut writer,
            )
            .await
        })
    };
    let mut got = String::new();
    read_until(&mut reader, &mut got, "one\n").await?;
    assert!(
        !follow.is_finished(),
        "the follow ended while the task runs"
    );
    std::fs::write(
        data_dir.join("tasks").join(format!("{id}.0")).join("go"),
        "",
    )?;
    read_until(&mut reader, &mut got, "two\n").await?;
    within("the follow to end", follow).await???;
    assert_eq!(got, "one\ntwo\n");
    // The writer is gone with the follow: nothing more comes.
    let mut rest = String::new();
    within("the end of output", reader.read_to_string(&mut rest)).await??;
    assert_eq!(rest, "");
    let job = cluster.wait_ended(id).await?;
    assert_eq!(job.state, JobState::Finished, "{job:#?}");
    let err = within("stderr", fetch(&addr, id, LogStream::Stderr, None, false)).await??;
    assert_eq!(err, "two\n");

    // A follow of a task that never ends stops with the agent.
    let id = cluster
        .submit("forever", command(&["sh", "-c", script]))
        .await?;
    wait_running(&cluster, id).await?;
    let (mut writer, mut reader) = tokio::io::duplex(1 << 16);
    let follow = tokio::spawn(async move {
        task_logs(
            &addr,
            None,
            None,
            id,
            0,
            LogStream::Stdout,
            None,
            true,
            &mut writer,
        )
        .await
    });
    let mut got = String::new();
    read_until(&mut reader, &mut got, "one\n").await?;
    within("the agent to stop", agent.shutdown()).await?;
    match within("the follow to end", follow).await?? {
        Ok(()) => {}
        Err(AgentError::AgentApi {
            code: Code::Unavailable,
            ..
        }) => {}
        Err(e) => bail!("unexpected end of a follow: {e}"),
    }
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_clear_errors() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let agent = Agent::start(cluster.agent_config(root.path().join("agent"))).await?;
    let addr = agent.api_addr().to_string();

    // A job the masters do not know (they are asked before anything is read).
    match within(
        "the fetch",
        fetch(&addr, 999, LogStream::Stdout, None, true),
    )
    .await?
    {
        Err(AgentError::AgentApi {
            code: Code::NotFound,
            message,
            ..
        }) => {
            assert!(message.contains("unknown job 999"), "{message}");
        }
        other => bail!("expected NOT_FOUND, got {other:?}"),
    }
    // A task whose process never started: its directory has no output.
    let id = cluster
        .submit("missing", command(&["/no/such/binary"]))
        .await?;
    cluster.wait_ended(id).await?;
    match within(
        "the fetch",
        fetch(&addr, id, LogStream::Stderr, None, false),
    )
    .await?
    {
        Err(AgentError::AgentApi {
            code: Code::NotFound,
            message,
            ..
        }) => {
            assert!(message.contains("never started"), "{message}");
        }
        other => bail!("expected NOT_FOUND, got {other:?}"),
    }

    // Raw requests the typed client cannot make.
    let mut client = AgentApiClient::connect(format!("http://{addr}")).await?;
    let request = |stream: &str, offset: u64, tail_bytes: Option<u64>| TaskLogsRequest {
        job: id,
        task: 0,
        stream: stream.into(),
        offset,
        tail_bytes,
        follow: false,
    };
    for stream in ["../../SLUICE_AGENT", "stdin", ""] {
        let status = within("the request", client.task_logs(request(stream, 0, None)))
            .await?
            .expect_err("a bad stream name is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("use \"stdout\" or \"stderr\""),
            "{status:?}"
        );
    }
    let status = within(
        "the request",
        client.task_logs(request("stdout", 3, Some(2))),
    )
    .await?
    .expect_err("offset and tail together are refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not both"), "{status:?}");

    // An address where no agent listens names the address.
    let nobody = format!("127.0.0.1:{}", free_port()?);
    match within(
        "the fetch",
        fetch(&nobody, id, LogStream::Stdout, None, false),
    )
    .await?
    {
        Err(e @ AgentError::AgentUnreachable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&nobody), "{text}");
        }
        other => bail!("expected an unreachable agent, got {other:?}"),
    }
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_serves_and_follows_the_task_it_adopted() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cluster = Cluster::start(root.path()).await?;
    let data_dir = root.path().join("agent");
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    let first_addr = agent.api_addr();
    let script = "echo one; while [ ! -e go ]; do sleep 0.05; done; echo two";
    let id = cluster
        .submit("adopted", command(&["sh", "-c", script]))
        .await?;
    wait_running(&cluster, id).await?;
    // The task keeps running while no agent does; a new agent adopts it.
    agent.stop_leaving_tasks().await;
    let agent = Agent::start(cluster.agent_config(data_dir.clone())).await?;
    let addr = agent.api_addr().to_string();
    // Re-registration published the new address.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let record = cluster.agent(agent.id()).await?;
        if published_api_addr(&record.attributes) == Some(addr.as_str()) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{addr} not published in {WITHIN:?} (the old one was {first_addr}): {record:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut writer, mut reader) = tokio::io::duplex(1 << 16);
    let follow = {
        let addr = addr.clone();
        tokio::spawn(async move {
            task_logs(
                &addr,
                None,
                None,
                id,
                0,
                LogStream::Stdout,
                None,
                true,
                &mut writer,
            )
            .await
        })
    };
    let mut got = String::new();
    read_until(&mut reader, &mut got, "one\n").await?;
    assert!(
        !follow.is_finished(),
        "the follow ended while the adopted task runs"
    );
    std::fs::write(
        data_dir.join("tasks").join(format!("{id}.0")).join("go"),
        "",
    )?;
    read_until(&mut reader, &mut got, "two\n").await?;
    within("the follow to end", follow).await???;
    assert_eq!(got, "one\ntwo\n");
    cluster.wait_ended(id).await?;
    agent.shutdown().await;
    cluster.shutdown().await
}

/// An agent API that accepts connections but never answers: every call
/// ends at its deadline (the whole call without follow, between messages
/// with it) instead of hanging the CLI for ever.
#[tokio::test]
async fn a_silent_agent_api_times_out() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let deadlines = sluice_agent::api::LogDeadlines {
        fetch: Duration::from_millis(500),
        idle: Duration::from_millis(500),
    };
    for follow in [false, true] {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let err = within(
            "the call to time out",
            sluice_agent::api::task_logs_within(
                &addr,
                None,
                None,
                1,
                0,
                LogStream::Stdout,
                None,
                follow,
                deadlines,
                &mut out,
            ),
        )
        .await?
        .expect_err("a silent peer cannot answer");
        match &err {
            AgentError::AgentApi { code, .. } => {
                assert_eq!(*code, Code::DeadlineExceeded, "follow {follow}: {err}")
            }
            other => bail!("follow {follow}: expected a deadline, got {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    held.abort();
    Ok(())
}
