//! The client side of the agent API, for the CLI.

use std::time::Duration;

use sluice_security::{Role, Tls};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tonic::transport::Endpoint;
use tonic::Status;

use super::proto::agent_api_client::AgentApiClient;
use super::proto::TaskLogsRequest;
use super::LogStream;
use crate::error::AgentError;

/// How long [`task_logs`] tries to connect to the agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The deadline of a `TaskLogs` call that does not follow: the whole
/// output so far, however large, at a modest pace.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// A following call's deadline between two messages: the agent sends an
/// empty chunk every [`crate::api::server::FOLLOW_KEEPALIVE`] while the task
/// is quiet, so silence this long means the agent stopped answering.
pub const FOLLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
const _: () =
    assert!(FOLLOW_IDLE_TIMEOUT.as_secs() >= 3 * crate::api::server::FOLLOW_KEEPALIVE.as_secs());

/// Writes command task `job`.`task`'s `stream` (its whole output so far, or
/// its last `tail_bytes` bytes) from the agent whose API listens on
/// `agent_api_addr` (`HOST:PORT`, as published in its attribute
/// [`crate::config::API_ADDR_ATTRIBUTE`]) to `out`, flushing after every
/// chunk, carrying the caller's ACL `token` (the agent asks the masters
/// whether it may read the job). With `follow`, keeps writing new output as the task produces it and
/// returns once the task has ended and all of it is written.
///
/// Every call has a deadline: [`FETCH_TIMEOUT`] for the whole call without
/// `follow`; with it, [`FOLLOW_IDLE_TIMEOUT`] between two messages (the
/// agent keeps a quiet stream alive), since a followed task may run for days.
///
/// Errors: [`AgentError::AgentUnreachable`] when no connection is made within
/// [`CONNECT_TIMEOUT`]; [`AgentError::AgentApi`] when the agent refuses the
/// request or the stream breaks (`code` is `NotFound` for a task that has not
/// run on that agent, `Unavailable` when the agent stopped meanwhile,
/// `DeadlineExceeded` past a deadline); [`AgentError::Output`] when `out`
/// fails.
#[allow(clippy::too_many_arguments)]
pub async fn task_logs(
    agent_api_addr: &str,
    tls: Option<&Tls>,
    token: Option<&str>,
    job: u64,
    task: u32,
    stream: LogStream,
    tail_bytes: Option<u64>,
    follow: bool,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), AgentError> {
    let deadlines = LogDeadlines::default();
    task_logs_within(
        agent_api_addr,
        tls,
        token,
        job,
        task,
        stream,
        tail_bytes,
        follow,
        deadlines,
        out,
    )
    .await
}

/// The deadlines of one `TaskLogs` call.
#[derive(Debug, Clone, Copy)]
pub struct LogDeadlines {
    /// The whole call, without `follow`.
    pub fetch: Duration,
    /// Between two messages (and until the first answer), with `follow`.
    pub idle: Duration,
}

impl Default for LogDeadlines {
    fn default() -> Self {
        Self {
            fetch: FETCH_TIMEOUT,
            idle: FOLLOW_IDLE_TIMEOUT,
        }
    }
}

/// [`task_logs`] with other deadlines than the defaults.
#[allow(clippy::too_many_arguments)]
pub async fn task_logs_within(
    agent_api_addr: &str,
    tls: Option<&Tls>,
    token: Option<&str>,
    job: u64,
    task: u32,
    stream: LogStream,
    tail_bytes: Option<u64>,
    follow: bool,
    deadlines: LogDeadlines,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), AgentError> {
    let LogDeadlines { fetch, idle } = deadlines;
    let addr = agent_api_addr.trim();
    let unreachable = |reason: String| AgentError::AgentUnreachable {
        addr: addr.to_owned(),
        reason,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_some() && addr.contains("://") && !addr.starts_with("https://") {
        return Err(unreachable(format!(
            "the agent publishes a plain-text API address ({addr}) and TLS is configured here; \
             refusing to send the request without TLS"
        )));
    }
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("{scheme}://{addr}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| unreachable(format!("not a valid HOST:PORT address ({e})")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        // Only an agent's certificate is accepted at the other end.
        endpoint = endpoint
            .tls_config(tls.client_config(Role::Agent))
            .map_err(|e| unreachable(format!("TLS settings: {e}")))?;
    }
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
        Err(_) => {
            return Err(unreachable(format!(
                "no connection within {CONNECT_TIMEOUT:?}"
            )))
        }
    };
    let api_error = |status: Status| {
        // tonic reports its own expiry of the call's deadline as Cancelled.
        let expired =
            status.code() == tonic::Code::Cancelled && status.message().contains("Timeout expired");
        AgentError::AgentApi {
            addr: addr.to_owned(),
            code: if expired {
                tonic::Code::DeadlineExceeded
            } else {
                status.code()
            },
            message: if expired {
                format!("no complete answer within {fetch:?}: the agent stopped answering")
            } else if status.message().is_empty() {
                status.code().description().to_owned()
            } else {
                status.message().to_owned()
            },
        }
    };
    let request = TaskLogsRequest {
        job,
        task,
        stream: stream.as_str().to_owned(),
        offset: 0,
        tail_bytes,
        follow,
    };
    let mut request = tonic::Request::new(request);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| unreachable("the ACL token is not a valid header value".into()))?;
        request
            .metadata_mut()
            .insert(sluice_api::wire::TOKEN_KEY, value);
    }
    let whole_call = (!follow).then(|| tokio::time::Instant::now() + fetch);
    if !follow {
        request.set_timeout(fetch);
    }
    let first_answer = if follow { idle } else { fetch };
    let expired = |what: &str, after: Duration| {
        api_error(Status::deadline_exceeded(format!(
            "{what} within {after:?}: the agent stopped answering"
        )))
    };
    let mut chunks = tokio::time::timeout(
        first_answer,
        AgentApiClient::new(channel).task_logs(request),
    )
    .await
    .map_err(|_| expired("no answer", first_answer))?
    .map_err(api_error)?
    .into_inner();
    loop {
        let next = match whole_call {
            Some(deadline) => tokio::time::timeout_at(deadline, chunks.message())
                .await
                .map_err(|_| expired("the output did not arrive", fetch))?,
            None => tokio::time::timeout(idle, chunks.message())
                .await
                .map_err(|_| expired("no output and no keepalive", idle))?,
        };
        let Some(chunk) = next.map_err(api_error)? else {
            return Ok(());
        };
        if chunk.data.is_empty() {
            continue;
        }
        out.write_all(&chunk.data)
            .await
            .map_err(AgentError::Output)?;
        out.flush().await.map_err(AgentError::Output)?;
    }
}

/// An error with its causes (tonic's transport errors say little alone).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
