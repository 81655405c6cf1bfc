//! The leader's duties besides Raft: agent liveness and the scheduler.
//!
//! Heartbeats are not Raft entries: every master records the heartbeats it
//! receives in memory ([`Liveness`]), and only the leader acts on them. An
//! agent silent for longer than the timeout is marked Lost through Raft,
//! which returns its work to the queue. A member that has just become leader
//! has not heard from anyone yet, so it first waits a grace period for the
//! agents to find it: a master failover alone never marks agents Lost.
//!
//! A leader acts only while it holds its lease ([`LeaderLease`]): one cut
//! off from its peers stops scheduling and marking agents Lost, as it stops
//! answering heartbeats, and when the lease returns the agents get their
//! silence back (up to the grace period) before any is counted against them,
//! since they were refused meanwhile.
//!
//! The scheduler runs on the leader after each state change (and at least
//! once a second, for time-based decisions: SRTF, drain deadlines), and its
//! decisions are proposed as one batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use tokio::sync::watch;

use crate::command::Command;
use crate::config::MasterConfig;
use crate::lease::LeaderLease;
use crate::proposer::Proposer;
use crate::scheduler;
use crate::state::{AgentId, AgentState, ClusterState};
use crate::types::{Raft, StateHandle};

/// The leader's clock as stamped into commands: Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When each agent was last heard from, on this member.
#[derive(Debug, Default)]
pub struct Liveness {
    seen: Mutex<HashMap<AgentId, Instant>>,
}

impl Liveness {
    pub fn beat(&self, agent: AgentId) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent, Instant::now());
    }

    /// Agents the leader should mark Lost at `now`: live in `state`, and
    /// silent for longer than `timeout` counting from their last heartbeat,
    /// or from `since` (the start of this leadership plus the grace
    /// period) if that is later.
    pub fn silent(
        &self,
        state: &ClusterState,
        since: Instant,
        timeout: Duration,
        now: Instant,
    ) -> Vec<(AgentId, Duration)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        state
            .agents
            .values()
            .filter(|a| a.state != AgentState::Lost)
            .filter_map(|a| {
                let last = seen.get(&a.id).map_or(since, |&t| t.max(since));
                let silent = now.saturating_duration_since(last);
                (silent > timeout).then_some((a.id, silent))
            })
            .collect()
    }
}

/// Runs the leader duties until `stop` turns true.
pub(crate) async fn run(
    raft: Raft,
    proposer: Proposer,
    state: StateHandle,
    liveness: Arc<Liveness>,
    lease: Arc<LeaderLease>,
    config: Arc<MasterConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    loop {
        // Wait to lead.
        loop {
            if *stop.borrow() {
                return;
            }
            if metrics.borrow().state == ServerState::Leader {
                break;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.changed() => {}
            }
        }
        let term = metrics.borrow().current_term;
        let since = Instant::now() + Duration::from_millis(config.agent_grace_ms);
        tracing::info!(
            id = config.id,
            term,
            "leading: scheduler and agent liveness on"
        );
        let duties = Duties {
            raft: &raft,
            proposer: &proposer,
            state: &state,
            liveness: &liveness,
            lease: &lease,
            config: &config,
        };
        duties.lead(&mut stop, term, since).await;
        tracing::info!(id = config.id, term, "no longer leading");
    }
}

/// What a leader acts with.
struct Duties<'a> {
    raft: &'a Raft,
    proposer: &'a Proposer,
    state: &'a StateHandle,
    liveness: &'a Arc<Liveness>,
    lease: &'a LeaderLease,
    config: &'a MasterConfig,
}

impl Duties<'_> {
    /// Runs liveness checks and scheduling cycles while this member leads
    /// `term`; `since` is when agents' silence starts to count.
    async fn lead(&self, stop: &mut watch::Receiver<bool>, term: u64, mut since: Instant) {
        let interval = Duration::from_millis(self.config.schedule_interval_ms);
        let timeout = Duration::from_millis(self.config.agent_timeout_ms);
        let grace = Duration::from_millis(self.config.agent_grace_ms);
        let mut last_seen_change = u64::MAX;
        let mut last_cycle = Instant::now() - Duration::from_secs(3600);
        let mut lapsed_at: Option<Instant> = None;
        // A new leader holds no lease until its first quorum acknowledgement;
        // only a lease lost after that is worth a warning.
        let mut held_before = false;
        loop {
            {
                let m = self.raft.metrics();
                let m = m.borrow();
                if *stop.borrow() || m.state != ServerState::Leader || m.current_term != term {
                    return;
                }
            }
            let now = Instant::now();
            let held = self.lease.check().is_ok_and(|t| t == term);
            if !held {
                if lapsed_at.is_none() && held_before {
                    tracing::warn!(
                        id = self.config.id,
                        term,
                        "leader lease lapsed (no majority acknowledged this leader): \
                         not scheduling, not marking agents Lost"
                    );
                }
                lapsed_at.get_or_insert(now);
            } else {
                held_before = true;
                if let Some(lapsed) = lapsed_at.take() {
                    // Agents were refused while the lease was out: count
                    // their silence from now, plus as long as the lapse
                    // lasted (up to the grace period) to let them return.
                    let extra = now.saturating_duration_since(lapsed).min(grace);
                    since = since.max(now + extra);
                    tracing::info!(
                        id = self.config.id,
                        term,
                        lapsed_ms = now.saturating_duration_since(lapsed).as_millis() as u64,
                        "leader lease held again"
                    );
                }
                let (commands, cycled) = match self
                    .cycle(since, timeout, now, last_seen_change, last_cycle)
                    .await
                {
                    Some(c) => c,
                    None => return,
                };
                if let Some(change) = cycled {
                    last_seen_change = change;
                    last_cycle = now;
                }
                if !commands.is_empty() && self.lease.check().is_ok_and(|t| t == term) {
                    propose_all(self.proposer, commands).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One liveness check and scheduling cycle on a blocking thread; None
    /// if it panicked.
    async fn cycle(
        &self,
        since: Instant,
        timeout: Duration,
        now: Instant,
        last_seen_change: u64,
        last_cycle: Instant,
    ) -> Option<(Vec<Command>, Option<u64>)> {
        let state = self.state.clone();
        let liveness = self.liveness.clone();
        let cycle = tokio::task::spawn_blocking(move || {
            one_cycle(
                &state,
                &liveness,
                since,
                timeout,
                now,
                last_seen_change,
                last_cycle,
            )
        })
        .await;
        match cycle {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(%e, "scheduling cycle panicked");
                None
            }
        }
    }
}

/// Most placements one cycle makes: keeps a cycle (and the read lock it
/// holds on the state) short when many jobs wait.
pub const PLACEMENTS_PER_CYCLE_MAX: usize = 4096;

/// Liveness check plus, if the state changed or a second passed, a
/// scheduling cycle. Returns the commands, and the change index the cycle
/// saw if one ran. Runs on a blocking thread: a cycle over a large state
/// takes milliseconds.
fn one_cycle(
    state: &StateHandle,
    liveness: &Liveness,
    since: Instant,
    timeout: Duration,
    now: Instant,
    last_seen_change: u64,
    last_cycle: Instant,
) -> (Vec<Command>, Option<u64>) {
    {
        {
            let view = state.read();
            let mut commands: Vec<Command> = liveness
                .silent(&view.state, since, timeout, now)
                .into_iter()
                .map(|(id, silent)| Command::SetAgentState {
                    id,
                    state: AgentState::Lost,
                    reason: Some(format!(
                        "no heartbeat for {:.1} s (timeout {:.1} s)",
                        silent.as_secs_f64(),
                        timeout.as_secs_f64()
                    )),
                    now_ms: now_unix_ms(),
                })
                .collect();
            let changed = view.state.last_change_index != last_seen_change;
            let mut cycled = None;
            if changed || now.duration_since(last_cycle) >= Duration::from_secs(1) {
                cycled = Some(view.state.last_change_index);
                let started = Instant::now();
                let cycle = scheduler::schedule_bounded(
                    &view.state,
                    now_unix_ms(),
                    PLACEMENTS_PER_CYCLE_MAX,
                );
                if !cycle.is_empty() {
                    tracing::debug!(
                        placed = cycle.placed,
                        preempted = cycle.preempted,
                        moved = cycle.moved,
                        pending = cycle.pending,
                        took_us = started.elapsed().as_micros() as u64,
                        "scheduling cycle"
                    );
                }
                commands.extend(cycle.commands);
            }
            (commands, cycled)
        }
    }
}

/// Proposes commands concurrently (the proposer batches them into few
/// entries) and waits for all; rejections are decisions overtaken by
/// other changes and are retried by the next cycle.
async fn propose_all(proposer: &Proposer, commands: Vec<Command>) {
    let results =
        futures::future::join_all(commands.into_iter().map(|c| proposer.propose(c))).await;
    for result in results {
        match result {
            Ok(applied) => {
                if let Err(rejected) = applied.result {
                    tracing::debug!(%rejected, "scheduler decision refused at apply");
                }
            }
            Err(err) => {
                tracing::debug!(%err, "scheduler decisions not committed");
                return;
            }
        }
    }
}
