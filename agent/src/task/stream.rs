//! Stream tasks: the shards of an engine job placed on this agent, run
//! together on one dedicated thread (never on a tokio worker) that the
//! engine's pinned shard threads are started from.
//!
//! The thread first restricts itself to the cores granted to the job's
//! tasks here; the engine pins shard i to the i-th core of the calling
//! thread's affinity mask, so the shards land on exactly the granted cores.
//!
//! A job whose tasks all sit on this agent runs locally with the job's
//! parallelism. A job spread over several agents runs this agent's share
//! through the engine's remote exchange: the job's tasks are numbered into
//! engine shards by (agent id, task index), so every agent holds a
//! contiguous shard range and computes the same layout.
//!
//! With a task user (an agent running as root with `--task-user`), every
//! file the job opens is opened with the user's permissions: the job's thread
//! switches its own file-system credentials to the user's before anything
//! else (planning looks at the job's files, the checkpoint storage is opened
//! there), and the engine runs the same switch first on every shard thread
//! and on the checkpoint coordinator ([`ThreadStart`]); the threads those
//! start inherit it. File-system credentials belong to one thread, so the
//! rest of the agent stays root. The RocksDB state backend is refused there:
//! RocksDB writes files from background threads shared by the whole process.
//!
//! Stopping: every task of the share holds the same [`StreamStop`]; a stop
//! request (the job cancelled or moved, the agent shutting down) cancels the
//! engine job, whose shards and data-plane threads end within milliseconds;
//! the tasks are then reported as the request says (Killed, or Lost on
//! shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_api::client::{ClientError, MasterClient};
use sluice_api::model::{AgentId, CheckpointInfo, JobId, TaskState};
use sluice_api::outcome::CommandError;
use sluice_api::Request;
use sluice_engine::runtime::coordinator::CheckpointMetadata;
use sluice_engine::runtime::remote::ExchangeTls;
use sluice_engine::runtime::{CheckpointHooks, CompletionError, RemoteExchangeConfig, ThreadStart};
use sluice_engine::spec::StateBackend;
use sluice_engine::{EngineError, JobControl};

use super::{send, Events, RecordChange, Running, StreamStop};
use crate::sys;

/// How long the shards of a spread job wait for every peer to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a job's engine shards run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLayout {
    /// This agent's shards.
    pub local: Range<u32>,
    /// Every other agent's shards.
    pub peers: Vec<(AgentId, Range<u32>)>,
}

/// Numbers a job's tasks into engine shards so each agent gets a
/// contiguous range: agents in id order, their tasks in task order.
pub fn shard_layout(placement: &[Option<AgentId>], me: AgentId) -> Result<ShardLayout, String> {
    let mut by_agent: BTreeMap<AgentId, u32> = BTreeMap::new();
    for (task, agent) in placement.iter().enumerate() {
        let agent = agent.ok_or_else(|| format!("task {task} of the job is not placed"))?;
        *by_agent.entry(agent).or_default() += 1;
    }
    let mut next = 0u32;
    let mut local = None;
    let mut peers = Vec::new();
    for (agent, count) in by_agent {
        let range = next..next + count;
        next += count;
        if agent == me {
            local = Some(range);
        } else {
            peers.push((agent, range));
        }
    }
    let local = local.ok_or_else(|| format!("no task of the job is placed on agent {me}"))?;
    Ok(ShardLayout { local, peers })
}

/// The data-plane port of job `job` within `ports` (every agent agrees).
pub fn job_port(job: JobId, ports: &std::ops::RangeInclusive<u16>) -> u16 {
    let len = u64::from(ports.end().saturating_sub(*ports.start())) + 1;
    ports.start() + (job % len) as u16
}

/// Everything needed to run this agent's share of a stream job.
/// How the job's checkpoints complete: through the masters, for this run of the job.
#[derive(Debug, Clone)]
pub struct CheckpointLink {
    /// The job's run (its checkpoints are accepted only from it).
    pub attempt: u64,
    /// The checkpoint this run resumes from.
    pub restore_from: Option<u64>,
    /// The job's latest completed checkpoint.
    pub last_completed: Option<u64>,
    /// The masters.
    pub client: Arc<MasterClient>,
    /// The agent's runtime, to call the masters from the engine's coordinator thread.
    pub runtime: tokio::runtime::Handle,
}

/// How long a checkpoint's completion may take to commit through the masters.
pub const CHECKPOINT_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

impl CheckpointLink {
    /// The engine hooks completing checkpoints of job `job` through the masters.
    fn hooks(&self, job: JobId) -> CheckpointHooks {
        let (client, runtime, attempt) = (self.client.clone(), self.runtime.clone(), self.attempt);
        let complete = move |meta: &CheckpointMetadata| -> Result<(), CompletionError> {
            let checkpoint = CheckpointInfo {
                id: meta.id,
                handles: meta.handles.iter().map(|h| h.path.clone()).collect(),
                triggered_ms: meta.triggered_at_ms.max(0) as u64,
                duration_ms: meta.duration_us / 1000,
                bytes: meta.handles.iter().map(|h| h.bytes).sum(),
                alignment_us: meta.alignment_us.clone(),
                completed_ms: 0,
            };
            let command = Request::CheckpointCompleted {
                job,
                attempt,
                checkpoint,
            };
            let written = runtime.block_on(async {
                tokio::time::timeout(CHECKPOINT_COMMIT_TIMEOUT, client.write(&command)).await
            });
            match written {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(ClientError::Rejected(
                    e @ (CommandError::StaleRun { .. } | CommandError::UnknownJob { .. }),
                ))) => Err(CompletionError::Fatal(e.to_string())),
                Ok(Err(e)) => Err(CompletionError::Failed(e.to_string())),
                Err(_) => Err(CompletionError::Failed(format!(
                    "the masters did not commit it within {CHECKPOINT_COMMIT_TIMEOUT:?}"
                ))),
            }
        };
        let (client, runtime) = (self.client.clone(), self.runtime.clone());
        let failed = move |id: u64, reason: &str| {
            let command = Request::CheckpointFailed {
                job,
                attempt,
                id,
                reason: reason.to_owned(),
            };
            // Best effort: the failure is counted in the engine's report either way.
            let written = runtime.block_on(async {
                tokio::time::timeout(CHECKPOINT_COMMIT_TIMEOUT, client.write(&command)).await
            });
            if !matches!(written, Ok(Ok(_))) {
                tracing::debug!(job, checkpoint = id, "could not report a failed checkpoint");
            }
        };
        let (client, runtime) = (self.client.clone(), self.runtime.clone());
        let triggered = move |id: u64, triggered_ms: i64| {
            let command = Request::CheckpointTriggered {
                job,
                attempt,
                id,
                triggered_ms: triggered_ms.max(0) as u64,
            };
            let client = client.clone();
            // Not waited for: the checkpoint goes on while the masters commit its start. A
            // report that loses the race with the checkpoint's end is refused, harmlessly.
            runtime.spawn(async move {
                let written =
                    tokio::time::timeout(CHECKPOINT_COMMIT_TIMEOUT, client.write(&command)).await;
                if !matches!(written, Ok(Ok(_))) {
                    tracing::debug!(
                        job,
                        checkpoint = id,
                        "could not report a checkpoint's start"
                    );
                }
            });
        };
        CheckpointHooks {
            complete: Box::new(complete),
            failed: Box::new(failed),
            triggered: Box::new(triggered),
            restore_from: self.restore_from,
            last_completed: self.last_completed,
            prefix: format!("job-{job}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamLaunch {
    pub job: JobId,
    /// Checkpoint completion through the masters.
    pub checkpoints: Option<CheckpointLink>,
    /// Checkpoint storage for a spec that names none (the agent's `--checkpoint-storage`).
    pub default_checkpoint_storage: Option<String>,
    /// Scratch directory of RocksDB state for a spec that names none (under the agent's
    /// data dir).
    pub default_state_dir: PathBuf,
    /// The user whose permissions the job's files are opened with (None: the agent's).
    pub user: Option<sys::User>,
    /// This agent's tasks of the job.
    pub tasks: Vec<u32>,
    /// The cores granted to those tasks.
    pub cores: BTreeSet<u32>,
    pub spec_toml: String,
    pub parallelism: u32,
    /// Set for a job spread over several agents.
    pub remote: Option<RemoteExchangeConfig>,
}

/// Peers' data-plane addresses, resolved for a spread job's layout.
pub fn remote_config(
    layout: &ShardLayout,
    listen: SocketAddr,
    peer_addrs: &BTreeMap<AgentId, SocketAddr>,
    tls: Option<ExchangeTls>,
) -> Result<RemoteExchangeConfig, String> {
    let peers = layout
        .peers
        .iter()
        .map(|(agent, range)| {
            peer_addrs
                .get(agent)
                .map(|addr| (range.clone(), *addr))
                .ok_or_else(|| format!("agent {agent} publishes no data-plane address"))
        })
        .collect::<Result<_, _>>()?;
    Ok(RemoteExchangeConfig {
        local_shards: layout.local.clone(),
        peers,
        listen,
        connect_timeout: CONNECT_TIMEOUT,
        tls,
    })
}

/// The exchange's TLS for an agent with this identity: it dials and accepts
/// only other agents of its cluster.
pub fn exchange_tls(tls: &sluice_security::Tls) -> Result<ExchangeTls, String> {
    let (client, server) = tls.rustls_configs().map_err(|e| e.to_string())?;
    let name = sluice_security::Role::Agent.name_in(tls.cluster());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| format!("{name}: {e}"))?;
    let checker = tls.clone();
    Ok(ExchangeTls {
        client,
        server,
        server_name,
        peer_check: std::sync::Arc::new(move |chain| match checker.peer_role(chain)? {
            sluice_security::Role::Agent => Ok(()),
            other => Err(format!(
                "{} certificate cannot join a job's exchange (needs an agent certificate)",
                other.with_article()
            )),
        }),
    })
}

/// How a run ended, other than finishing.
enum Stopped {
    /// Cancelled through its stop handle.
    Cancelled,
    /// Failed; the message says why.
    Failed(String),
}

/// Starts the job's shards on a dedicated thread; returns one handle per task.
pub fn start(launch: StreamLaunch, events: Events) -> Vec<((JobId, u32), Running)> {
    let done = Arc::new(AtomicBool::new(false));
    let stop = StreamStop::default();
    let keys: Vec<(JobId, u32)> = launch.tasks.iter().map(|&t| (launch.job, t)).collect();
    let handles = keys
        .iter()
        .map(|&key| (key, Running::stream(stop.clone(), done.clone())))
        .collect();
    let job = launch.job;
    let thread_events = events.clone();
    let thread_done = done.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("sluice-job-{job}"))
        .spawn(move || {
            let outcome = run(&launch, &thread_events, stop.control());
            let (state, message) = match outcome {
                Ok(message) => (TaskState::Finished, message),
                Err(Stopped::Failed(message)) => (TaskState::Failed, message),
                Err(Stopped::Cancelled) => match stop.request() {
                    Some(request) => (request.report_as, format!("stopped: {}", request.reason)),
                    None => (TaskState::Killed, "stopped".to_owned()),
                },
            };
            for &task in &launch.tasks {
                send(
                    &thread_events,
                    (job, task),
                    state,
                    message.clone(),
                    RecordChange::Ended,
                );
            }
            thread_done.store(true, Ordering::Release);
        });
    if let Err(e) = spawned {
        for &key in &keys {
            send(
                &events,
                key,
                TaskState::Failed,
                format!("cannot start the job's thread: {e}"),
                RecordChange::Ended,
            );
        }
        done.store(true, Ordering::Release);
    }
    handles
}

/// The engine hook that gives the thread it runs on the file permissions of
/// `user` (see [`sys::set_thread_fs_user`]).
fn fs_user_hook(user: sys::User) -> ThreadStart {
    ThreadStart::new(move || {
        sys::set_thread_fs_user(&user).map_err(|e| {
            format!(
                "cannot open the job's files as task user {} (uid {}, gid {}): {e}",
                user.name, user.uid, user.gid
            )
        })
    })
}

/// Why a job with RocksDB state cannot run on an agent with a task user.
fn rocksdb_refused(user: &sys::User) -> String {
    format!(
        "state_backend = \"rocksdb\" is not available on this agent, which opens stream jobs' \
         files as task user {}: RocksDB writes its files from background threads that the whole \
         agent process shares, which cannot take the user's permissions; use the memory state \
         backend, or an agent that runs stream jobs as itself (not root, or --allow-root-tasks)",
        user.name
    )
}

/// Runs the shards until they end or `control` is cancelled; the message
/// says how it went.
fn run(launch: &StreamLaunch, events: &Events, control: &JobControl) -> Result<String, Stopped> {
    let mut spec = sluice_engine::spec::load::parse_spec(&launch.spec_toml)
        .map_err(|e| Stopped::Failed(format!("bad job spec: {e}")))?;
    spec.parallelism = launch.parallelism as usize;
    if spec.checkpoint_storage.is_none() {
        spec.checkpoint_storage = launch.default_checkpoint_storage.clone();
    }
    if spec.state_dir.is_none() {
        spec.state_dir = Some(launch.default_state_dir.clone());
    }
    // With a task user, this thread takes the user's file permissions before the engine
    // plans the job or opens anything, and so does every thread the engine starts for it.
    let as_user;
    let control = match &launch.user {
        Some(user) => {
            if spec.state_backend == StateBackend::Rocksdb {
                return Err(Stopped::Failed(rocksdb_refused(user)));
            }
            let hook = fs_user_hook(user.clone());
            hook.run().map_err(Stopped::Failed)?;
            as_user = control.and_thread_start(hook);
            &as_user
        }
        None => control,
    };
    let pinning = match sys::set_thread_affinity(&launch.cores) {
        Ok(()) => format!("pinned to cores {:?}", launch.cores),
        Err(e) => {
            spec.pin_cores = false;
            format!(
                "not pinned (cannot restrict to cores {:?}: {e})",
                launch.cores
            )
        }
    };
    let shards = match &launch.remote {
        Some(r) => format!("shards {:?} of {}", r.local_shards, launch.parallelism),
        None => format!("{} shards", launch.parallelism),
    };
    let access = match &launch.user {
        Some(user) => format!(", files opened as task user {}", user.name),
        None => String::new(),
    };
    for &task in &launch.tasks {
        send(
            events,
            (launch.job, task),
            TaskState::Running,
            format!("{shards}, {pinning}{access}"),
            RecordChange::None,
        );
    }
    // A job with checkpoint storage completes its checkpoints through the masters, which
    // also decide which checkpoint a run resumes from.
    let with_hooks;
    let control = match &launch.checkpoints {
        Some(link) if spec.checkpoint_storage.is_some() => {
            with_hooks = control.and_checkpoints(link.hooks(launch.job));
            &with_hooks
        }
        _ => control,
    };
    let report = match &launch.remote {
        Some(config) => {
            sluice_engine::api::run_job_remote_with(spec, config.clone(), None, control)
        }
        None => sluice_engine::api::run_job_with(spec, control),
    }
    .map_err(|e| match e {
        EngineError::Cancelled => Stopped::Cancelled,
        e => Stopped::Failed(format!("job failed: {e}")),
    })?;
    Ok(format!(
        "ended: {} records in, {} out, {} late, {} malformed, in {:.3} s",
        report.records_in,
        report.records_out,
        report.late_records,
        report.dead_letters,
        report.elapsed.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_gives_each_agent_a_contiguous_range() {
        let placement = [Some(2), Some(1), Some(2), Some(1), Some(3)];
        let l = shard_layout(&placement, 2).unwrap();
        assert_eq!(l.local, 2..4);
        assert_eq!(l.peers, vec![(1, 0..2), (3, 4..5)]);
        let l = shard_layout(&[Some(5), Some(5)], 5).unwrap();
        assert_eq!((l.local, l.peers), (0..2, vec![]));
        assert!(shard_layout(&[Some(1), None], 1).is_err());
        assert!(shard_layout(&[Some(1)], 2).is_err());
    }

    #[test]
    fn job_ports_stay_in_range() {
        let ports = 7100..=7109;
        assert_eq!(job_port(0, &ports), 7100);
        assert_eq!(job_port(13, &ports), 7103);
        assert_eq!(
            job_port(u64::MAX, &(1..=u16::MAX)),
            1 + (u64::MAX % 65535) as u16
        );
    }
}
