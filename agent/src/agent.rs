//! The running agent: registration, the heartbeat and reconciliation loop,
//! the journal writer and the status sender.
//!
//! One tokio task (the main loop) owns the running tasks and is the only
//! writer of the journal: runners send it [`TaskEvent`]s, it journals each
//! (fsynced) and wakes the sender. Heartbeats run as spawned requests whose
//! replies come back to the main loop, which first journals every event
//! already sent, then reconciles. The sender resends unacknowledged updates
//! in order until the masters acknowledge them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_api::model::{
    AgentAssignment, AgentId, AgentSpec, Assignment, JobKind, TaskState, TaskUpdate,
};
use sluice_api::outcome::{CommandError, CommandOutput};
use sluice_api::Request;
use sluice_api::{ClientError, MasterClient};

use crate::beat::{heartbeat, Beat};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::api::server::{self as api_server, ApiServer};
use crate::config::{AgentConfig, API_ADDR_ATTRIBUTE, DATA_ADDR_ATTRIBUTE, DATA_PORTS_ATTRIBUTE};
use crate::error::AgentError;
use crate::identity::Identity;
use crate::journal::{Journal, TaskKey};
use crate::reconcile::reconcile;
use crate::resources;
use crate::sys;
use crate::task::cgroup::Cgroups;
use crate::task::command::{self, CommandLaunch};
use crate::task::stream::{self, StreamLaunch};
use crate::task::{Events, LiveTasks, RecordChange, Running, StopRequest, TaskEvent, TaskKind};
use sluice_engine::runtime::remote::ExchangeTls;

/// Pause between attempts to reach the masters while registering or
/// resending updates.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between resends of unacknowledged updates.
const RESEND_PAUSE_MAX: Duration = Duration::from_secs(2);

/// The agent daemon.
#[derive(Debug)]
pub struct Agent;

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    id: AgentId,
    api_addr: SocketAddr,
    stop: watch::Sender<Option<StopMode>>,
    main: JoinHandle<()>,
    api: ApiServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopMode {
    /// Stop every task, then the agent.
    KillTasks,
    /// Stop the agent only; command tasks keep running for a later agent on
    /// the same data dir to adopt (as after an agent crash or upgrade).
    LeaveTasks,
}

impl AgentHandle {
    /// The id the masters know this agent by.
    pub fn id(&self) -> AgentId {
        self.id
    }

    /// Where the agent's API (task logs) listens, as published to the
    /// masters in the attribute [`API_ADDR_ATTRIBUTE`].
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Stops the agent and its tasks; every status event already produced is
    /// journaled before this returns. The masters mark the agent Lost once it
    /// stays silent past their timeout.
    pub async fn shutdown(self) {
        self.stop_with(StopMode::KillTasks).await;
    }

    /// Stops the agent but leaves its command tasks running, as a crash
    /// would; an agent started later on the same data dir adopts them.
    pub async fn stop_leaving_tasks(self) {
        self.stop_with(StopMode::LeaveTasks).await;
    }

    async fn stop_with(self, mode: StopMode) {
        let _ = self.stop.send(Some(mode));
        if let Err(e) = self.main.await {
            tracing::error!(%e, "agent main loop ended abnormally");
        }
        // After the tasks stopped, so that following their output ends with
        // their last bytes rather than an error.
        self.api.shutdown().await;
    }
}

impl Agent {
    /// Detects resources, registers with the masters (retrying until the
    /// register timeout), recovers tasks from the journal and starts the
    /// loops. Fails at once if the masters refuse the registration.
    pub async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
        config.validate().map_err(AgentError::Config)?;
        let task_user = resolve_task_user(&config)?;
        if config.tls.is_none() {
            tracing::warn!(
                "INSECURE: TLS is off (--insecure): the agent talks to the masters, serves task \
                 logs and exchanges stream records in plain text"
            );
        }
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(AgentError::io(&dir))?;
        let recorded = Identity::load(&dir)?;
        let mut spec = agent_spec(&config, recorded.as_ref())?;
        // Bound first: registration publishes the address actually bound.
        let api = api_server::bind(config.api_addr, config.tls.clone()).await?;
        let api_addr = api.addr();
        spec.attributes
            .insert(API_ADDR_ATTRIBUTE.into(), api_addr.to_string());
        let mut journal = Journal::open(&dir.join("journal"))?;
        let client = Arc::new(
            MasterClient::new(config.masters.clone(), config.request_timeout)?
                .with_tls(config.tls.clone())
                .with_token(config.token.as_ref().map(|t| t.expose().to_owned())),
        );
        let id = register(&client, &spec, config.register_timeout, recorded.as_ref()).await?;
        let identity = Identity::new(
            id,
            spec.hostname.clone(),
            spec.cores.clone(),
            spec.memory_bytes,
            spec.disk_bytes,
        );
        if recorded.as_ref() != Some(&identity) {
            identity.save(&dir)?;
        }
        let spec = AgentSpec {
            id: Some(id),
            ..spec
        };
        tracing::info!(id, cores = ?spec.cores, memory_bytes = spec.memory_bytes,
            disk_bytes = spec.disk_bytes, "agent registered");

        let cgroups = Cgroups::detect();
        if let Err(reason) = &cgroups {
            tracing::warn!(%reason, "cgroups v2 not usable: command tasks run without cpu and memory limits");
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let live = LiveTasks::default();
        let running = recover(&mut journal, id, &config, &events_tx, &live)?;
        let api = api.serve(dir.clone(), live.clone(), client.clone())?;

        let journal = Arc::new(Mutex::new(journal));
        let notify = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(None);
        let sender = tokio::spawn(send_updates(
            client.clone(),
            journal.clone(),
            notify.clone(),
            stop_rx.clone(),
        ));
        notify.notify_one();
        let main = MainLoop {
            id,
            spec,
            exchange_tls: config
                .tls
                .as_ref()
                .map(stream::exchange_tls)
                .transpose()
                .map_err(AgentError::Config)?,
            config,
            task_user,
            client,
            journal,
            notify,
            cgroups,
            running,
            live,
            events_tx,
            events_rx,
            sender,
        };
        let main = tokio::spawn(main.run(stop_rx));
        Ok(AgentHandle {
            id,
            api_addr,
            stop: stop_tx,
            main,
            api,
        })
    }
}

/// What the agent registers with: configured values first, then the ones
/// recorded at its first registration, then detected ones.
fn agent_spec(config: &AgentConfig, recorded: Option<&Identity>) -> Result<AgentSpec, AgentError> {
    let cores = match (&config.cores, recorded) {
        (Some(cores), _) => cores.clone(),
        (None, Some(r)) => r.cores.clone(),
        (None, None) => resources::detect_cores(),
    };
    let memory_bytes = match (config.memory_bytes, recorded) {
        (Some(m), _) => m,
        (None, Some(r)) => r.memory_bytes,
        (None, None) => resources::detect_memory_bytes().map_err(AgentError::Config)?,
    };
    let disk_bytes = match (config.disk_bytes, recorded) {
        (Some(d), _) => d,
        (None, Some(r)) => r.disk_bytes,
        (None, None) => {
            resources::detect_disk_bytes(&config.data_dir).map_err(AgentError::Config)?
        }
    };
    let hostname = match (&config.hostname, recorded) {
        (Some(h), _) => h.clone(),
        (None, Some(r)) => r.hostname.clone(),
        (None, None) => resources::detect_hostname(),
    };
    let mut attributes = config.attributes.clone();
    attributes.insert(DATA_ADDR_ATTRIBUTE.into(), config.data_addr.to_string());
    attributes.insert(
        DATA_PORTS_ATTRIBUTE.into(),
        format!("{}-{}", config.data_ports.start(), config.data_ports.end()),
    );
    Ok(AgentSpec {
        id: recorded.map(|r| r.id),
        hostname,
        cores,
        memory_bytes,
        disk_bytes,
        attributes,
    })
}

/// Who command tasks run as, and whose permissions stream jobs open their
/// files with. An agent running as root needs a task user (an unprivileged
/// one) or an explicit `allow_root_tasks`; a task user needs an agent running
/// as root, to switch to it.
fn resolve_task_user(config: &AgentConfig) -> Result<Option<sys::User>, AgentError> {
    let root = sys::running_as_root();
    match &config.task_user {
        Some(name) => {
            if !root {
                return Err(AgentError::Config(format!(
                    "--task-user {name}: switching users needs an agent running as root; \
                     without --task-user, tasks run as the agent's own user"
                )));
            }
            let user = sys::lookup_user(name)
                .map_err(|e| AgentError::Config(format!("--task-user {name}: {e}")))?;
            if user.uid == 0 || user.gid == 0 {
                return Err(AgentError::Config(format!(
                    "--task-user {name} is root or in group root; name an unprivileged user \
                     (or pass --allow-root-tasks without --task-user to run tasks as root)"
                )));
            }
            tracing::info!(user = %user.name, uid = user.uid, gid = user.gid,
                "command tasks run as this user, and stream jobs open their files as it");
            Ok(Some(user))
        }
        None if root && !config.allow_root_tasks => Err(AgentError::Config(
            "the agent runs as root and would run command tasks and stream jobs as root: give \
             --task-user USER (an unprivileged user), or --allow-root-tasks to accept that"
                .into(),
        )),
        None => {
            if root {
                tracing::warn!("command tasks and stream jobs run as root (--allow-root-tasks)");
            }
            Ok(None)
        }
    }
}

/// Registers (or re-registers), retrying unreachable masters until `timeout`.
async fn register(
    client: &MasterClient,
    spec: &AgentSpec,
    timeout: Duration,
    recorded: Option<&Identity>,
) -> Result<AgentId, AgentError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match client.write(&Request::RegisterAgent(spec.clone())).await {
            Ok(written) => {
                return match written.output {
                    CommandOutput::AgentRegistered { id, .. } => Ok(id),
                    other => Err(AgentError::Corrupt {
                        path: "registration reply".into(),
                        reason: format!("unexpected output {other:?}"),
                    }),
                }
            }
            Err(ClientError::Rejected(source)) => {
                let hint = match (&source, recorded) {
                    (CommandError::AgentResourcesMismatch { .. }, Some(r)) => format!(
                        "; this data dir belongs to agent {} registered with cores {:?}, \
                         {} bytes of memory and {} bytes of disk: start it with those, \
                         or use a new data dir to register as a new agent",
                        r.id, r.cores, r.memory_bytes, r.disk_bytes
                    ),
                    (CommandError::UnknownAgent { id }, _) => format!(
                        "; the masters do not know agent {id} (removed, or another cluster): \
                         use a new data dir to register as a new agent"
                    ),
                    (CommandError::AgentTokenBound { .. }, _) => {
                        "; each agent needs a token of its own: create one with \
                         `sluice acl token create --policy agent` and start this agent with it"
                            .into()
                    }
                    _ => String::new(),
                };
                return Err(AgentError::Refused { source, hint });
            }
            // A refused certificate or token will not be accepted later:
            // say so now instead of retrying until the deadline.
            Err(
                e @ ClientError::Failed {
                    code: tonic::Code::PermissionDenied | tonic::Code::Unauthenticated,
                    ..
                },
            ) => return Err(AgentError::Masters(e)),
            Err(e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(AgentError::Masters(e));
                }
                tracing::warn!(%e, "cannot register yet; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Finds the command tasks a previous agent left: adopts those still alive,
/// reports the others Lost (journaled here, sent once the loops run).
fn recover(
    journal: &mut Journal,
    id: AgentId,
    config: &AgentConfig,
    events: &Events,
    live: &LiveTasks,
) -> Result<HashMap<TaskKey, Running>, AgentError> {
    let ended: BTreeSet<TaskKey> = journal
        .pending()?
        .values()
        .filter(|u| u.state.is_ended())
        .map(|u| (u.job, u.task))
        .collect();
    let mut running = HashMap::new();
    for (key, record) in journal.tasks()? {
        if ended.contains(&key) {
            journal.remove_task(key)?;
        } else if crate::task::procfs::is_alive(record.pid, record.start_ticks) {
            tracing::info!(job = key.0, task = key.1, pid = record.pid, "adopting task");
            running.insert(
                key,
                command::adopt(key, record, config.kill_grace, events.clone(), live),
            );
        } else {
            journal.append(&TaskUpdate {
                job: key.0,
                task: key.1,
                agent: id,
                state: TaskState::Lost,
                message: Some(format!(
                    "process {} is gone after an agent restart; its exit status is unknown",
                    record.pid
                )),
            })?;
            journal.remove_task(key)?;
        }
    }
    Ok(running)
}

struct MainLoop {
    id: AgentId,
    spec: AgentSpec,
    config: AgentConfig,
    /// Who command tasks run as and stream jobs open files as (None: the
    /// agent).
    task_user: Option<sys::User>,
    /// The stream exchange's TLS (with the agent's identity).
    exchange_tls: Option<ExchangeTls>,
    client: Arc<MasterClient>,
    journal: Arc<Mutex<Journal>>,
    notify: Arc<Notify>,
    cgroups: Result<Cgroups, String>,
    running: HashMap<TaskKey, Running>,
    /// The command tasks still running, for the API's readers of their output.
    live: LiveTasks,
    events_tx: Events,
    events_rx: mpsc::UnboundedReceiver<TaskEvent>,
    sender: JoinHandle<()>,
}

impl MainLoop {
    async fn run(mut self, mut stop: watch::Receiver<Option<StopMode>>) {
        let (beat_tx, mut beat_rx) = mpsc::channel::<Beat>(1);
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight = false;
        let mut failures = 0u32;
        let mode = loop {
            tokio::select! {
                changed = stop.changed() => {
                    let mode = if changed.is_err() { Some(StopMode::KillTasks) } else { *stop.borrow() };
                    if let Some(mode) = mode { break mode; }
                }
                Some(event) = self.events_rx.recv() => self.journal_event(event),
                Some(beat) = beat_rx.recv() => {
                    in_flight = false;
                    while let Ok(event) = self.events_rx.try_recv() {
                        self.journal_event(event);
                    }
                    match beat.result {
                        Ok(assignment) => {
                            if failures > 0 {
                                tracing::info!(failures, "heartbeats answered again");
                            }
                            failures = 0;
                            self.reconcile(&assignment, &beat.peer_data);
                        }
                        Err(e) => {
                            failures += 1;
                            if failures == 1 || failures.is_power_of_two() {
                                tracing::warn!(%e, failures, "heartbeat failed; tasks keep running");
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    if !in_flight {
                        in_flight = true;
                        let client = self.client.clone();
                        let spec = self.spec.clone();
                        let tx = beat_tx.clone();
                        let id = self.id;
                        tokio::spawn(async move {
                            let _ = tx.send(heartbeat(&client, id, &spec).await).await;
                        });
                    }
                }
            }
        };
        self.stop_all(mode).await;
        let _ = self.sender.await;
        tracing::info!(id = self.id, "agent stopped");
    }

    fn journal_event(&mut self, event: TaskEvent) {
        let key = event.key;
        let update = TaskUpdate {
            job: key.0,
            task: key.1,
            agent: self.id,
            state: event.state,
            message: event.message,
        };
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            if let RecordChange::Started(record) = &event.record {
                journal.put_task(key, record)?;
            }
            journal.append(&update)?;
            if event.record == RecordChange::Ended {
                journal.remove_task(key)?;
            }
            Ok::<_, AgentError>(())
        })();
        drop(journal);
        match result {
            Ok(()) => {
                tracing::info!(job = key.0, task = key.1, state = ?update.state,
                    message = update.message.as_deref().unwrap_or(""), "task status");
                self.notify.notify_one();
            }
            // Not sent either: the update is never reported without being
            // journaled first. A restart reports the task from its record.
            Err(e) => {
                tracing::error!(%e, job = key.0, task = key.1, "cannot journal a task update")
            }
        }
    }

    fn unacknowledged(&self) -> BTreeSet<TaskKey> {
        let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        match journal.pending() {
            Ok(p) => p.values().map(|u| (u.job, u.task)).collect(),
            Err(e) => {
                tracing::error!(%e, "cannot read the journal");
                BTreeSet::new()
            }
        }
    }

    fn reconcile(
        &mut self,
        assignment: &AgentAssignment,
        peer_data: &BTreeMap<AgentId, Result<(IpAddr, std::ops::RangeInclusive<u16>), String>>,
    ) {
        self.running.retain(|_, r| !r.is_done());
        self.live.prune();
        let running: BTreeSet<TaskKey> = self.running.keys().copied().collect();
        let actions = reconcile(assignment, &running, &self.unacknowledged());
        for key in actions.stop {
            if let Some(task) = self.running.get_mut(&key) {
                if task.stop(StopRequest::unplaced()) {
                    tracing::info!(job = key.0, task = key.1, kind = ?task.kind,
                        "task no longer placed here; stopping it");
                }
            }
        }
        for key in actions.lost {
            self.journal_event(TaskEvent {
                key,
                state: TaskState::Lost,
                message: Some(
                    "the agent does not run this task (it restarted, or the task vanished)".into(),
                ),
                record: RecordChange::None,
            });
        }
        for a in actions.start_commands {
            let JobKind::Command {
                argv,
                cpus,
                memory_bytes,
                ..
            } = &a.kind
            else {
                continue;
            };
            let key = (a.job, a.task);
            let launch = CommandLaunch {
                key,
                argv: argv.clone(),
                cpus: *cpus,
                memory_bytes: *memory_bytes,
                dir: command::task_dir(&self.config.data_dir, key),
                cgroups: self.cgroups.clone(),
                kill_grace: self.config.kill_grace,
                user: self.task_user.clone(),
            };
            let task = command::start(launch, self.events_tx.clone(), &self.live);
            self.running.insert(key, task);
        }
        for (job, tasks) in actions.start_streams {
            match self.stream_launch(job, &tasks, peer_data) {
                Ok(launch) => {
                    for (key, handle) in stream::start(launch, self.events_tx.clone()) {
                        self.running.insert(key, handle);
                    }
                }
                Err(reason) => {
                    for a in &tasks {
                        self.journal_event(TaskEvent {
                            key: (a.job, a.task),
                            state: TaskState::Failed,
                            message: Some(format!("cannot start: {reason}")),
                            record: RecordChange::None,
                        });
                    }
                }
            }
        }
    }

    fn stream_launch(
        &self,
        job: u64,
        tasks: &[Assignment],
        peer_data: &BTreeMap<AgentId, Result<(IpAddr, std::ops::RangeInclusive<u16>), String>>,
    ) -> Result<StreamLaunch, String> {
        let first = tasks.first().ok_or("no tasks")?;
        let JobKind::Stream {
            spec_toml,
            parallelism,
            ..
        } = &first.kind
        else {
            return Err("not a stream job".into());
        };
        let layout = stream::shard_layout(&first.peers, self.id)?;
        if layout.local.len() != tasks.len() {
            return Err(format!(
                "{} of the job's tasks are placed here but only {} are staging",
                layout.local.len(),
                tasks.len()
            ));
        }
        let remote = if layout.peers.is_empty() {
            None
        } else {
            let mut addrs = BTreeMap::new();
            for (peer, _) in &layout.peers {
                let (ip, ports) = peer_data
                    .get(peer)
                    .ok_or_else(|| format!("no data-plane address of agent {peer}"))?
                    .clone()?;
                addrs.insert(*peer, SocketAddr::new(ip, stream::job_port(job, &ports)));
            }
            let listen = SocketAddr::new(
                self.config.data_addr,
                stream::job_port(job, &self.config.data_ports),
            );
            Some(stream::remote_config(
                &layout,
                listen,
                &addrs,
                self.exchange_tls.clone(),
            )?)
        };
        Ok(StreamLaunch {
            job,
            checkpoints: Some(stream::CheckpointLink {
                attempt: first.attempt,
                restore_from: first.restore_from,
                last_completed: first.last_checkpoint,
                client: self.client.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
            default_checkpoint_storage: self.config.checkpoint_storage.clone(),
            default_state_dir: self.config.data_dir.join("state"),
            user: self.task_user.clone(),
            tasks: tasks.iter().map(|a| a.task).collect(),
            cores: tasks
                .iter()
                .flat_map(|a| a.grant.cores.iter().copied())
                .collect(),
            spec_toml: spec_toml.clone(),
            parallelism: *parallelism,
            remote,
        })
    }

    /// Stops tasks (per `mode`), waits for them, journals their last events.
    /// Stream shards always stop: they are threads of this process, which a
    /// crash would end too; command tasks keep running in `LeaveTasks` mode.
    async fn stop_all(&mut self, mode: StopMode) {
        let stops = |t: &Running| mode == StopMode::KillTasks || t.kind == TaskKind::Stream;
        for task in self.running.values_mut().filter(|t| stops(t)) {
            task.stop(StopRequest::agent_shutdown());
        }
        let deadline =
            tokio::time::Instant::now() + self.config.kill_grace + Duration::from_secs(2);
        while self.running.values().any(|t| stops(t) && !t.is_done())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while let Ok(event) = self.events_rx.try_recv() {
            self.journal_event(event);
        }
    }
}

/// Sends journaled updates in order until each is acknowledged.
async fn send_updates(
    client: Arc<MasterClient>,
    journal: Arc<Mutex<Journal>>,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<Option<StopMode>>,
) {
    let mut pause = RETRY_PAUSE;
    loop {
        let pending = {
            let journal = journal.lock().unwrap_or_else(|p| p.into_inner());
            journal.pending()
        };
        let pending = match pending {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%e, "cannot read the journal");
                BTreeMap::new()
            }
        };
        let mut blocked = false;
        for (seq, update) in pending {
            if stop.borrow().is_some() {
                return;
            }
            let acknowledged = match client
                .write(&Request::UpdateTask {
                    update: update.clone(),
                })
                .await
            {
                Ok(_) => true,
                Err(ClientError::Rejected(CommandError::StaleTask { .. })) => {
                    tracing::debug!(
                        job = update.job,
                        task = update.task,
                        "stale update acknowledged"
                    );
                    true
                }
                // Retrying can never help: the job or task is gone, or the
                // update is malformed.
                Err(ClientError::Rejected(e)) => {
                    tracing::warn!(%e, job = update.job, task = update.task, "task update refused; dropped");
                    true
                }
                Err(e) => {
                    tracing::debug!(%e, "task update not delivered; will resend");
                    false
                }
            };
            if !acknowledged {
                blocked = true;
                break;
            }
            let journal = journal.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = journal.ack(seq) {
                tracing::error!(%e, seq, "cannot delete an acknowledged update");
            }
        }
        let wait = if blocked {
            pause = (pause * 2).min(RESEND_PAUSE_MAX);
            pause
        } else {
            pause = RETRY_PAUSE;
            RESEND_PAUSE_MAX
        };
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}
