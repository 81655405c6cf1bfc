//! Serving `TaskLogs` from the task directories under the agent's data dir
//! (`data_dir/tasks/JOB.TASK/{stdout,stderr}`, see
//! [`crate::task::command::task_dir`]). The path is built from the numbers
//! of the request and a stream name checked against a fixed list, so no
//! request can reach outside the tasks directory.

use sluice_api::{ClientError, MasterClient, Query};
use sluice_security::tls::require_role;
use sluice_security::{Role, Tls};
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use super::proto::agent_api_server::{AgentApi, AgentApiServer};
use super::proto::{LogChunk, TaskLogsRequest};
use super::LogStream;
use crate::error::AgentError;
use crate::journal::TaskKey;
use crate::task::command::task_dir;
use crate::task::LiveTasks;

/// How often a followed file is checked for new bytes.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// A follower that got no bytes for this long gets an empty chunk, so its
/// idle deadline ([`crate::api::client::FOLLOW_IDLE_TIMEOUT`]) tells a quiet
/// task from an agent that stopped answering.
pub const FOLLOW_KEEPALIVE: Duration = Duration::from_secs(5);
/// Largest chunk sent at once.
pub const CHUNK_BYTES: usize = 64 << 10;
/// Chunks read ahead of a slow client, per request.
const CHUNKS_QUEUED: usize = 4;
/// How long a stopping agent waits for its API server to close connections.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// The API's listener, bound (so its address can be published) but not
/// serving yet.
#[derive(Debug)]
pub(crate) struct BoundApi {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Tls>,
}

/// Binds the API address (port 0: the kernel picks one). With `tls`, the
/// API serves mutual TLS and answers only client certificates.
pub(crate) async fn bind(addr: SocketAddr, tls: Option<Tls>) -> Result<BoundApi, AgentError> {
    let bind_error = |source| AgentError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok(BoundApi {
        listener,
        addr,
        tls,
    })
}

impl BoundApi {
    /// The address actually bound.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the API on the current runtime until [`ApiServer::shutdown`]
    /// (or until the [`ApiServer`] is dropped). `masters` is the agent's own
    /// client: each caller's token is checked by asking the masters with it.
    pub(crate) fn serve(
        self,
        data_dir: PathBuf,
        live: LiveTasks,
        masters: Arc<MasterClient>,
    ) -> Result<ApiServer, AgentError> {
        let (stop, stopped) = watch::channel(false);
        let service = LogService {
            data_dir,
            live,
            stop: stopped.clone(),
            tls: self.tls.clone(),
            masters,
        };
        let mut builder = match &self.tls {
            Some(tls) => tonic::transport::Server::builder()
                .tls_config(tls.server_config())
                .map_err(|e| AgentError::Config(format!("TLS on the agent API: {e}")))?,
            None => tonic::transport::Server::builder(),
        };
        let incoming = TcpIncoming::from(self.listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(10)));
        let mut stopped = stopped;
        let server = builder
            .add_service(AgentApiServer::new(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.wait_for(|&s| s).await;
            });
        let addr = self.addr;
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(%e, %addr, "agent API server failed");
            }
        });
        tracing::info!(%addr, tls = self.tls.is_some(), "agent API listening");
        Ok(ApiServer { stop, task })
    }
}

/// The running API server.
#[derive(Debug)]
pub(crate) struct ApiServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Ends every stream (followers get UNAVAILABLE), stops accepting and
    /// waits (a bounded time) for connections to close.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.task)
            .await
            .is_err()
        {
            tracing::warn!("agent API server did not stop in {SHUTDOWN_WAIT:?}; aborting it");
            abort.abort();
        }
    }
}

struct LogService {
    data_dir: PathBuf,
    live: LiveTasks,
    stop: watch::Receiver<bool>,
    tls: Option<Tls>,
    masters: Arc<MasterClient>,
}

impl LogService {
    /// Lets a call about job `job` through if the masters let the caller's
    /// token read it: the agent keeps no ACL of its own, and asks the leader
    /// (a linearizable read, under its lease), so a token revoked or expired
    /// is refused here too, and a cluster without ACLs needs none. The
    /// masters' refusal is passed on as it is.
    async fn authorize(&self, token: Option<String>, job: u64) -> Result<(), Status> {
        let as_caller = self.masters.for_caller(token);
        match as_caller.read(&Query::Job { id: job }, false).await {
            Ok(_) => Ok(()),
            Err(ClientError::Failed { code, message, .. })
                if matches!(code, Code::PermissionDenied | Code::Unauthenticated) =>
            {
                Err(Status::new(code, message))
            }
            Err(ClientError::Failed {
                code: Code::NotFound,
                message,
                ..
            }) => Err(Status::not_found(message)),
            Err(e) => Err(Status::unavailable(format!(
                "cannot check the caller's token with the masters: {e}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl AgentApi for LogService {
    type TaskLogsStream = ReceiverStream<Result<LogChunk, Status>>;

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<Self::TaskLogsStream>, Status> {
        require_role(
            self.tls.as_ref(),
            &request,
            &[Role::Client],
            "read task logs",
        )?;
        let token = sluice_api::wire::bearer_token(request.metadata())?;
        self.authorize(token, request.get_ref().job).await?;
        let req = request.into_inner();
        let stream: LogStream = req.stream.parse().map_err(Status::invalid_argument)?;
        if req.tail_bytes.is_some() && req.offset != 0 {
            return Err(Status::invalid_argument(
                "give either offset or tail_bytes, not both",
            ));
        }
        let key: TaskKey = (req.job, req.task);
        let dir = task_dir(&self.data_dir, key);
        let path = dir.join(stream.as_str());
        // Checked before opening: a task not running by now has written all
        // its output already (or never will).
        let running = self.live.is_running(key);
        let file = open(&path).await?;
        if file.is_none() && !running {
            let (job, task) = key;
            return Err(if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
                Status::not_found(format!(
                    "task {job}.{task} has no {stream} on this agent: its process never \
                     started (its status says why)"
                ))
            } else {
                Status::not_found(format!(
                    "task {job}.{task} has not run on this agent (no command task output \
                     under {}); it may be placed on another agent, not started yet, or a \
                     stream task",
                    self.data_dir.join("tasks").display()
                ))
            });
        }
        let offset = match (req.tail_bytes, &file) {
            (Some(tail), Some(f)) => {
                let len = f
                    .metadata()
                    .await
                    .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?
                    .len();
                len.saturating_sub(tail)
            }
            (Some(_), None) => 0,
            (None, _) => req.offset,
        };
        let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
        let pump = Pump {
            key,
            path,
            file,
            offset,
            positioned: false,
            follow: req.follow,
            live: self.live.clone(),
            tx,
            stop: self.stop.clone(),
        };
        tokio::spawn(pump.run());
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Opens `path` for reading; None if it does not exist (yet). A task owns
/// its directory (with `--task-user`): a symlink or anything but a regular
/// file there is refused, so the agent never reads another file for it.
async fn open(path: &Path) -> Result<Option<File>, Status> {
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .await;
    match opened {
        Ok(f) => match f.metadata().await {
            Ok(m) if m.is_file() => Ok(Some(f)),
            _ => Err(Status::permission_denied(format!(
                "{} is not a regular file; refusing to read it",
                path.display()
            ))),
        },
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Status::permission_denied(format!(
            "{} is a symbolic link; refusing to follow it",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Status::internal(format!(
            "cannot open {}: {e}",
            path.display()
        ))),
    }
}

/// Sends one output file's bytes from `offset` to a client.
struct Pump {
    key: TaskKey,
    path: PathBuf,
    /// None until the file exists (a task just starting).
    file: Option<File>,
    /// Position in the file of the next byte to send.
    offset: u64,
    /// Whether `file` is at `offset`.
    positioned: bool,
    follow: bool,
    live: LiveTasks,
    tx: mpsc::Sender<Result<LogChunk, Status>>,
    stop: watch::Receiver<bool>,
}

/// Why a pump stopped early.
enum End {
    /// The client went away or the agent stops: nothing more to send.
    Quiet,
    /// Tell the client this, then stop.
    Error(Status),
}

impl Pump {
    async fn run(mut self) {
        let end = self.pump().await;
        if let Err(End::Error(status)) = end {
            let _ = self.tx.send(Err(status)).await;
        }
    }

    async fn pump(&mut self) -> Result<(), End> {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut last_sent = tokio::time::Instant::now();
        loop {
            // Checked before reading: once the task has ended, reading to the
            // end of the file sends everything it wrote.
            let running = self.follow && self.live.is_running(self.key);
            let offset = self.offset;
            self.send_available(&mut buf).await?;
            if !running {
                return Ok(());
            }
            if self.offset != offset {
                last_sent = tokio::time::Instant::now();
            } else if last_sent.elapsed() >= FOLLOW_KEEPALIVE {
                let keepalive = LogChunk {
                    data: Vec::new(),
                    offset: self.offset,
                };
                self.tx.send(Ok(keepalive)).await.map_err(|_| End::Quiet)?;
                last_sent = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = self.tx.closed() => return Err(End::Quiet),
                _ = self.stop.wait_for(|&s| s) => return Err(stopping()),
            }
        }
    }

    /// Sends what the file holds past `offset` now.
    async fn send_available(&mut self, buf: &mut [u8]) -> Result<(), End> {
        if self.file.is_none() {
            self.file = open(&self.path).await.map_err(End::Error)?;
        }
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let io_error = |e: std::io::Error| {
            End::Error(Status::internal(format!("{}: {e}", self.path.display())))
        };
        if !self.positioned {
            file.seek(SeekFrom::Start(self.offset))
                .await
                .map_err(io_error)?;
            self.positioned = true;
        }
        loop {
            let n = file.read(buf).await.map_err(io_error)?;
            if n == 0 {
                return Ok(());
            }
            let chunk = LogChunk {
                data: buf[..n].to_vec(),
                offset: self.offset,
            };
            self.offset += n as u64;
            tokio::select! {
                sent = self.tx.send(Ok(chunk)) => sent.map_err(|_| End::Quiet)?,
                _ = self.stop.wait_for(|&s| s) => return Err(stopping()),
            }
        }
    }
}

fn stopping() -> End {
    End::Error(Status::unavailable(
        "the agent is stopping; the task's output may be incomplete (fetch it again once the \
         agent is back)",
    ))
}
