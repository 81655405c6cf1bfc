//! A client of the master cluster that works against any member.
//!
//! It sends each request to the leader it last saw, follows "not the leader"
//! hints, and moves on to the next seed when a member cannot be reached, all
//! within one overall deadline. It never resends a write whose outcome is
//! unknown (a commit timeout or a connection lost mid-request); it says so
//! with [`ClientError::OutcomeUnknown`], the one error after which the
//! write may or may not have been applied. Reads and heartbeats change
//! nothing, so any member failing them just means trying the next one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};

use sluice_security::token::Secret;
use sluice_security::Tls;

use crate::convert::{assignment_from_proto, output_from_proto};
use crate::model::{AgentAssignment, AgentId};
use crate::outcome::{CommandError, CommandOutput};
use crate::proto::master_client::MasterClient as MasterGrpc;
use crate::proto::*;
use crate::query::Query;
use crate::request::Request;
use crate::wire::{
    lazy_channel, COMMAND_ERROR_KEY, LEADER_API_KEY, MESSAGE_BYTES_MAX, NO_QUORUM_KEY, TOKEN_KEY,
};

/// A master's id in the Raft group.
pub type NodeId = u64;

/// Pause before retrying when no leader is known (an election is running).
const NO_LEADER_RETRY_MS: u64 = 25;
/// How long a peer that failed like a non-Sluice endpoint has to say who it is.
const ENDPOINT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A gRPC client of one master's admin API (connects lazily; over mutual
/// TLS when `tls` is given).
pub fn admin_client(addr: &str, tls: Option<&Tls>) -> Result<MasterGrpc<Channel>, String> {
    lazy_channel(addr, tls)
        .map(|ch| MasterGrpc::new(ch).max_decoding_message_size(MESSAGE_BYTES_MAX))
}

/// Why a request to the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No member could be reached at all.
    #[error("could not reach any master (tried {tried}): {detail}")]
    Unreachable { tried: String, detail: String },
    /// Members answered but none was or knew the leader before the deadline.
    #[error("no leader within {waited_ms} ms (is a majority of masters up?): {detail}")]
    NoLeader { waited_ms: u64, detail: String },
    /// The state machine refused the command; nothing changed.
    #[error("rejected: {0}")]
    Rejected(CommandError),
    /// A member was reached and answered with an error; nothing changed.
    #[error("{addr}: {message}")]
    Failed {
        addr: String,
        code: Code,
        message: String,
    },
    /// A write was sent but its outcome is unknown: it may or may not be
    /// applied (a commit timeout, a connection lost mid-request).
    #[error("{addr}: {message}")]
    OutcomeUnknown { addr: String, message: String },
    /// The client was given something it cannot use.
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// Whether a write that failed with this error may still be applied.
    /// Every other error means the request changed nothing.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClientError::OutcomeUnknown { .. })
    }
}

/// Whether a request may be sent again after it failed mid-way: reads and
/// heartbeats change nothing, so a failure there only means "try the next
/// member"; a write's failure mid-way leaves its outcome unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idempotent,
    Write,
}

/// The outcome of a committed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub log_index: u64,
    pub output: CommandOutput,
    /// A created ACL token's secret (shown once).
    pub secret: Option<String>,
}

/// A client of the whole cluster.
#[derive(Debug)]
pub struct MasterClient {
    seeds: Vec<String>,
    timeout: Duration,
    tls: Option<Tls>,
    /// The ACL token every call carries (never printed by `Debug`).
    token: Option<Secret>,
    leader: Mutex<Option<String>>,
    channels: Mutex<HashMap<String, MasterGrpc<Channel>>>,
}

enum Outcome<T> {
    Done(T),
    /// Try this address next (a leader hint).
    Redirect(String),
    /// Try the next seed.
    Next(String),
    /// Wait a moment, then try again.
    Wait(String),
    /// Refused with nothing changed (no quorum): safe to retry; this error is
    /// the answer if the deadline passes first.
    Retry(ClientError),
    Fail(ClientError),
}

impl MasterClient {
    /// A client seeded with any number of master API addresses (HOST:PORT).
    pub fn new(seeds: Vec<String>, timeout: Duration) -> Result<Self, ClientError> {
        if seeds.is_empty() {
            return Err(ClientError::Usage("no master address given".into()));
        }
        Ok(Self {
            seeds,
            timeout,
            tls: None,
            token: None,
            leader: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// Speaks mutual TLS with this identity (None: plain text).
    pub fn with_tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self.channels = Mutex::new(HashMap::new());
        self
    }

    /// Sends this ACL token with every call.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.map(Secret::from);
        self
    }

    /// A client like this one (same masters, identity and connections)
    /// that carries `token` instead: for a service that checks its own
    /// callers' tokens by asking the masters with them.
    pub fn for_caller(&self, token: Option<String>) -> Self {
        Self {
            seeds: self.seeds.clone(),
            timeout: self.timeout,
            tls: self.tls.clone(),
            token: token.map(Secret::from),
            leader: Mutex::new(
                self.leader
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            ),
            channels: Mutex::new(
                self.channels
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            ),
        }
    }

    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// A request with a deadline and this client's token.
    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(timeout);
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {}", token.expose()).parse() {
                req.metadata_mut().insert(TOKEN_KEY, value);
            }
        }
        req
    }

    fn grpc(&self, addr: &str) -> Result<MasterGrpc<Channel>, ClientError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = channels.get(addr) {
            return Ok(client.clone());
        }
        let client = admin_client(addr, self.tls.as_ref()).map_err(ClientError::Usage)?;
        channels.insert(addr.to_owned(), client.clone());
        Ok(client)
    }

    fn classify<T>(addr: &str, status: Status, kind: Kind) -> Outcome<T> {
        let meta = status.metadata();
        if let Some(json) = meta.get(COMMAND_ERROR_KEY).and_then(|v| v.to_str().ok()) {
            if let Ok(err) = serde_json::from_str::<CommandError>(json) {
                return Outcome::Fail(ClientError::Rejected(err));
            }
        }
        if let Some(api) = meta.get(LEADER_API_KEY).and_then(|v| v.to_str().ok()) {
            if api != addr {
                return Outcome::Redirect(api.to_owned());
            }
        }
        let failed = |status: &Status| ClientError::Failed {
            addr: addr.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        };
        match status.code() {
            Code::FailedPrecondition if status.message().contains("not the leader") => {
                Outcome::Wait(format!("{addr}: {}", status.message()))
            }
            Code::Unavailable if meta.get(NO_QUORUM_KEY).is_some() => {
                Outcome::Retry(failed(&status))
            }
            // A refused or failed connection: the request never arrived.
            Code::Unavailable if connect_failure(&status).is_some() => {
                Outcome::Next(format!("{addr}: {}", describe_transport(&status)))
            }
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                if kind == Kind::Idempotent =>
            {
                Outcome::Next(format!("{addr}: {}", describe_transport(&status)))
            }
            Code::Unavailable | Code::Unknown | Code::Cancelled => {
                Outcome::Fail(ClientError::OutcomeUnknown {
                    addr: addr.to_owned(),
                    message: format!(
                        "connection lost mid-request ({}); the outcome is unknown: the \
                         write may or may not be applied. Read the state to find out before \
                         retrying",
                        describe_transport(&status)
                    ),
                })
            }
            Code::DeadlineExceeded => Outcome::Fail(ClientError::OutcomeUnknown {
                addr: addr.to_owned(),
                message: status.message().to_owned(),
            }),
            _ => Outcome::Fail(failed(&status)),
        }
    }

    /// Runs `call` against the leader, following hints, until the deadline.
    async fn on_leader<T, F, Fut>(&self, kind: Kind, call: F) -> Result<T, ClientError>
    where
        F: Fn(MasterGrpc<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut seed = 0usize;
        let mut target = self
            .leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut last_problem = String::new();
        let mut any_reached = false;
        let mut misses_in_row = 0usize;
        // Seeds that refused the connection (nothing listens there) since a
        // member was last reached: when every seed refuses, waiting longer
        // would not help, so the call fails at once with the OS's reason.
        let mut refusals = std::collections::BTreeSet::new();
        let mut refused: Option<ClientError> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                if let Some(err) = refused {
                    return Err(err);
                }
                let waited_ms = self.timeout.as_millis() as u64;
                return Err(if any_reached {
                    ClientError::NoLeader {
                        waited_ms,
                        detail: last_problem,
                    }
                } else {
                    ClientError::Unreachable {
                        tried: self.seeds.join(", "),
                        detail: last_problem,
                    }
                });
            }
            let addr = target.take().unwrap_or_else(|| {
                seed = (seed + 1) % self.seeds.len();
                self.seeds[seed].clone()
            });
            let outcome = match call(self.grpc(&addr)?, deadline - now).await {
                Ok(reply) => Outcome::Done(reply.into_inner()),
                Err(status) => {
                    if connect_failure(&status) == Some(ConnectFailure::Refused) {
                        refusals.insert(addr.clone());
                    } else {
                        refusals.clear();
                    }
                    if let Some(err) = self.not_an_api_endpoint(&addr, &status).await {
                        return Err(err);
                    }
                    Self::classify(&addr, status, kind)
                }
            };
            match outcome {
                Outcome::Done(reply) => {
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
                    return Ok(reply);
                }
                Outcome::Redirect(leader) => {
                    any_reached = true;
                    target = Some(leader);
                }
                Outcome::Wait(problem) => {
                    any_reached = true;
                    last_problem = problem;
                    tokio::time::sleep(Duration::from_millis(NO_LEADER_RETRY_MS)).await;
                }
                Outcome::Next(problem) => {
                    last_problem = problem;
                    if !any_reached && self.seeds.iter().all(|s| refusals.contains(s)) {
                        return Err(ClientError::Unreachable {
                            tried: self.seeds.join(", "),
                            detail: last_problem,
                        });
                    }
                    misses_in_row += 1;
                    if misses_in_row.is_multiple_of(self.seeds.len()) {
                        tokio::time::sleep(Duration::from_millis(NO_LEADER_RETRY_MS)).await;
                    }
                    continue;
                }
                Outcome::Retry(err) => {
                    any_reached = true;
                    refused = Some(err);
                    // That member leads without a quorum: look elsewhere first.
                    self.leader
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take_if(|l| *l == addr);
                    tokio::time::sleep(Duration::from_millis(NO_LEADER_RETRY_MS * 4)).await;
                }
                Outcome::Fail(err) => return Err(err),
            }
            misses_in_row = 0;
        }
    }

    /// Makes a request and waits until it is applied.
    pub async fn write(&self, request: &Request) -> Result<Written, ClientError> {
        let message = WriteRequest::from(request);
        self.write_message(message).await
    }

    /// Sends a write message as given (checked by the master): for tests of
    /// what a master does with a malformed one.
    pub async fn write_message(&self, message: WriteRequest) -> Result<Written, ClientError> {
        let reply = self
            .on_leader(Kind::Write, |mut c, left| {
                let req = self.request(message.clone(), left);
                async move { c.write(req).await }
            })
            .await?;
        let output = output_from_proto(reply.output).map_err(|e| ClientError::Failed {
            addr: "leader".into(),
            code: Code::Internal,
            message: format!("undecodable write reply: {e}"),
        })?;
        Ok(Written {
            log_index: reply.log_index,
            output,
            secret: reply.secret,
        })
    }

    /// Reads the state: linearizable through the leader, or `stale` from the
    /// first seed that answers.
    pub async fn read(&self, query: &Query, stale: bool) -> Result<serde_json::Value, ClientError> {
        let message = ReadRequest::from(query);
        let reply = if stale {
            self.on_any(|mut c, left| {
                let req = self.request(
                    ReadRequest {
                        stale: true,
                        ..message.clone()
                    },
                    left,
                );
                async move { c.read(req).await }
            })
            .await?
        } else {
            self.on_leader(Kind::Idempotent, |mut c, left| {
                let req = self.request(message.clone(), left);
                async move { c.read(req).await }
            })
            .await?
        };
        crate::convert::answer_to_json(reply.result).map_err(|e| ClientError::Failed {
            addr: "master".into(),
            code: Code::Internal,
            message: format!("undecodable read reply: {e}"),
        })
    }

    /// When a call failed the way a peer that is not a Sluice master fails
    /// (a Raft port, an HTTP/1 server), asks that peer who it is: only if
    /// that fails the same way is the answer "not an API endpoint"; a
    /// master that answers had the call fail mid-way, which `classify`
    /// judges.
    async fn not_an_api_endpoint(&self, addr: &str, status: &Status) -> Option<ClientError> {
        let problem = looks_like_no_api(status)?;
        let req = self.request(InfoRequest {}, ENDPOINT_PROBE_TIMEOUT);
        // A channel of its own: the failed call may have left the cached
        // one's connection broken, which would fail the probe differently.
        match admin_client(addr, self.tls.as_ref()).ok()?.info(req).await {
            Ok(_) => None,
            // Such a peer often closes or resets the connection instead of
            // answering the probe; a master would have answered it.
            Err(probe)
                if looks_like_no_api(&probe).is_some()
                    || matches!(
                        probe.code(),
                        Code::Unavailable | Code::Cancelled | Code::Unknown
                    ) =>
            {
                Some(ClientError::Failed {
                    addr: addr.to_owned(),
                    code: status.code(),
                    message: problem,
                })
            }
            Err(_) => None,
        }
    }

    /// Runs `call` on the first seed that answers, in order.
    async fn on_any<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(MasterGrpc<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut problems = Vec::new();
        for addr in &self.seeds {
            let left = deadline.saturating_duration_since(Instant::now());
            match call(self.grpc(addr)?, left).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) => {
                    if let Some(err) = self.not_an_api_endpoint(addr, &status).await {
                        return Err(err);
                    }
                    match Self::classify::<()>(addr, status, Kind::Idempotent) {
                        Outcome::Fail(err) => return Err(err),
                        Outcome::Done(()) => unreachable!("classify never answers Done"),
                        Outcome::Retry(err) => problems.push(err.to_string()),
                        Outcome::Redirect(_) => problems.push(format!("{addr}: not the leader")),
                        Outcome::Next(problem) | Outcome::Wait(problem) => problems.push(problem),
                    }
                }
            }
        }
        Err(ClientError::Unreachable {
            tried: self.seeds.join(", "),
            detail: problems.join("; "),
        })
    }

    /// One member's identity.
    pub async fn info(&self, addr: &str) -> Result<MemberInfo, ClientError> {
        let req = self.request(InfoRequest {}, self.timeout);
        self.grpc(addr)?
            .info(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| reached_or_not(addr, s))
    }

    /// One member's own view of Raft.
    pub async fn status_of(&self, addr: &str) -> Result<StatusReply, ClientError> {
        let req = self.request(StatusRequest {}, self.timeout);
        self.grpc(addr)?
            .status(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| reached_or_not(addr, s))
    }

    /// The leader's view (with every member's replication progress).
    pub async fn leader_status(&self) -> Result<StatusReply, ClientError> {
        // Status never refuses, so ask around until a member says it leads.
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < self.timeout {
            let mut candidates: Vec<String> = self.seeds.clone();
            if let Some(leader) = self
                .leader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                candidates.insert(0, leader);
            }
            for addr in &candidates {
                match self.status_of(addr).await {
                    // A leader without its lease acts as none: keep looking.
                    Ok(status) if status.role == "leader" && status.lease_held != Some(false) => {
                        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr.clone());
                        return Ok(status);
                    }
                    Ok(status) => {
                        if let Some(leader) = status
                            .leader_id
                            .and_then(|id| status.members.iter().find(|m| m.id == id))
                        {
                            if let Ok(s) = self.status_of(&leader.api_addr).await {
                                if s.role == "leader" && s.lease_held != Some(false) {
                                    return Ok(s);
                                }
                            }
                        }
                        last = Some(Ok(status));
                    }
                    Err(e) => last = Some(Err(e)),
                }
            }
            tokio::time::sleep(Duration::from_millis(NO_LEADER_RETRY_MS * 4)).await;
        }
        match last {
            Some(Err(e)) => Err(e),
            _ => Err(ClientError::NoLeader {
                waited_ms: self.timeout.as_millis() as u64,
                detail: "no member reports being the leader".into(),
            }),
        }
    }

    /// Forms a cluster of the masters at `api_addrs` (each must be running and new).
    pub async fn init(&self, api_addrs: &[String]) -> Result<Vec<MemberInfo>, ClientError> {
        let mut members = Vec::with_capacity(api_addrs.len());
        for addr in api_addrs {
            let info = self.info(addr).await?;
            if info.initialized {
                return Err(ClientError::Usage(format!(
                    "master {} at {addr} already belongs to a cluster; nothing changed",
                    info.id
                )));
            }
            members.push(info);
        }
        let first = api_addrs
            .first()
            .ok_or_else(|| ClientError::Usage("no masters given".into()))?;
        let req = self.request(
            InitRequest {
                members: members.clone(),
            },
            self.timeout,
        );
        self.grpc(first)?
            .init(req)
            .await
            .map_err(|s| reached_or_not(first, s))?;
        Ok(members)
    }

    /// Adds the (running, new) master at `api_addr` as a voter.
    pub async fn add_master(&self, api_addr: &str) -> Result<MembershipReply, ClientError> {
        let member = self.info(api_addr).await?;
        self.on_leader(Kind::Write, |mut c, left| {
            let req = self.request(
                AddMasterRequest {
                    member: Some(member.clone()),
                },
                left.max(Duration::from_secs(60)),
            );
            async move { c.add_master(req).await }
        })
        .await
    }

    /// Removes master `id` from the cluster.
    pub async fn remove_master(&self, id: NodeId) -> Result<MembershipReply, ClientError> {
        self.on_leader(Kind::Write, |mut c, left| {
            let req = self.request(RemoveMasterRequest { id }, left);
            async move { c.remove_master(req).await }
        })
        .await
    }

    /// Sends an agent's heartbeat to the leader; returns the agent's state
    /// and the tasks placed on it.
    pub async fn heartbeat(&self, agent_id: AgentId) -> Result<AgentAssignment, ClientError> {
        let reply = self
            .on_leader(Kind::Idempotent, |mut c, left| {
                let req = self.request(
                    HeartbeatRequest {
                        agent_id: Some(agent_id),
                    },
                    left,
                );
                async move { c.heartbeat(req).await }
            })
            .await?;
        assignment_from_proto(reply.assignment).map_err(|e| ClientError::Failed {
            addr: "leader".into(),
            code: Code::Internal,
            message: format!("undecodable heartbeat reply: {e}"),
        })
    }

    /// Makes master `to` the leader.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<TransferLeaderReply, ClientError> {
        let reply = self
            .on_leader(Kind::Write, |mut c, left| {
                let req = self.request(
                    TransferLeaderRequest { to },
                    left.max(Duration::from_secs(10)),
                );
                async move { c.transfer_leader(req).await }
            })
            .await?;
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(reply)
    }
}

/// How a connection attempt failed (the request was never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectFailure {
    /// Nothing listens there: the OS refused the connection.
    Refused,
    /// Anything else: a timeout, no route, a DNS failure.
    Other,
}

/// The OS error underneath a transport failure, if any.
fn io_error(status: &Status) -> Option<&std::io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = err.source();
    }
    None
}

/// Whether a gRPC failure came from failing to connect, and how.
fn connect_failure(status: &Status) -> Option<ConnectFailure> {
    if status.code() != Code::Unavailable {
        return None;
    }
    // Only a failure to connect proves the request never left: an OS error
    // mid-request (a reset connection) leaves a write's outcome unknown.
    // ("connection" alone is no sign: "connection reset" comes mid-request.)
    let refused =
        io_error(status).is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    let text = error_chain(status).to_ascii_lowercase();
    if refused || text.contains("connection refused") {
        Some(ConnectFailure::Refused)
    } else if [
        "tcp connect error",
        "error trying to connect",
        "failed to connect",
        "dns error",
    ]
    .iter()
    .any(|sign| text.contains(sign))
    {
        Some(ConnectFailure::Other)
    } else {
        None
    }
}

/// A status's message followed by its sources'.
fn error_chain(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// A transport failure in words, with the OS's reason where there is one
/// (tonic's own message is often only "transport error").
fn describe_transport(status: &Status) -> String {
    let message = status.message();
    match io_error(status) {
        Some(io) if !message.contains(&io.to_string()) => {
            if message.is_empty() {
                io.to_string()
            } else {
                format!("{message}: {io}")
            }
        }
        _ if message.is_empty() => format!("{:?} with no message", status.code()),
        _ => message.to_owned(),
    }
}

/// Says so plainly when the peer answered but is not a Sluice master API:
/// a Raft port (it serves gRPC, but not the `Master` service), an HTTP/1
/// server or anything else that does not speak gRPC.
fn looks_like_no_api(status: &Status) -> Option<String> {
    let message = status.message().to_ascii_lowercase();
    if status.code() == Code::Unimplemented {
        return Some(
            "this address answers gRPC but is not a Sluice master API endpoint (a master's \
             Raft port? use the address given to --api-addr)"
                .to_owned(),
        );
    }
    let speaks_no_grpc = message.contains("h2 protocol error")
        || message.contains("http2 error")
        || message.contains("invalid content-type")
        || message.contains("frame with invalid size")
        || message.contains("malformed http response")
        || status.code() == Code::Internal && message.contains("protocol error");
    speaks_no_grpc.then(|| {
        format!(
            "this address does not speak gRPC ({}): it is not a Sluice master API endpoint \
             (use the address given to --api-addr)",
            status.message()
        )
    })
}

fn reached_or_not(addr: &str, status: Status) -> ClientError {
    if connect_failure(&status).is_some() {
        ClientError::Unreachable {
            tried: addr.to_owned(),
            detail: describe_transport(&status),
        }
    } else if let Some(problem) = looks_like_no_api(&status) {
        ClientError::Failed {
            addr: addr.to_owned(),
            code: status.code(),
            message: problem,
        }
    } else {
        ClientError::Failed {
            addr: addr.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
