//! The leader lease: how long after a majority last acknowledged it a
//! leader may still act as one.
//!
//! openraft 0.9 leaders never step down by themselves: a leader cut off
//! from its peers keeps `ServerState::Leader` until it hears a higher term,
//! while the majority elects another. If it kept answering agents'
//! heartbeats, the new leader would never hear from those agents and would
//! mark them Lost. So a leader acts (answers heartbeats and reads, accepts
//! writes, schedules) only while it holds a lease that starts when a
//! majority acknowledged a message it sent.
//!
//! Why the lease is safe: a follower refuses to vote for anyone for
//! `election_timeout_max` after it last heard from its leader, and a
//! candidate campaigns only after `election_timeout_min` without hearing
//! from it. Every such message was sent no earlier than the latest
//! quorum-acknowledged one, so no other leader can be elected earlier than
//! `election_timeout_min` after the acknowledged send. The lease is one
//! heartbeat interval shorter than that, which leaves a margin for clock
//! rate differences between machines and for the delay between openraft
//! computing its metrics and this module reading them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::watch;

use crate::config::MasterConfig;
use crate::types::{NodeId, Raft};

/// What the lease knows: the leader's term and when a quorum last
/// acknowledged it (estimated from openraft's `millis_since_quorum_ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Acked {
    term: u64,
    at: Option<Instant>,
    /// The last log index when this member became leader of `term` (every
    /// entry committed before its term is at or below it), and how far it
    /// has applied: until it has applied that far its state may miss a
    /// committed change (a revoked token, a removed role), so it does not
    /// answer from it.
    caught_up: CatchUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct CatchUp {
    needed: u64,
    applied: u64,
}

/// Why this member may not act as leader now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// This member does not lead (or leads another term than asked).
    #[error("member {id} is not the leader")]
    NotLeader { id: NodeId },
    /// This member leads but no majority has acknowledged it recently.
    #[error(
        "no quorum: master {id} leads term {term} but {}; \
         it does not act as leader until a majority answers",
        match since_ack_ms {
            Some(ms) => format!("a majority of masters has not acknowledged it for {ms} ms (lease {lease_ms} ms)"),
            None => "no majority of masters has acknowledged it yet".to_owned(),
        }
    )]
    Lapsed {
        id: NodeId,
        term: u64,
        since_ack_ms: Option<u64>,
        lease_ms: u64,
    },
    /// A new leader still applying entries committed before its term.
    #[error(
        "master {id} leads term {term} but is still applying earlier terms' entries \
         (applied {applied} of {needed}); it does not act as leader until it has"
    )]
    CatchingUp {
        id: NodeId,
        term: u64,
        applied: u64,
        needed: u64,
    },
}

/// A leader's lease, kept current from openraft's metrics by a task.
#[derive(Debug)]
pub struct LeaderLease {
    id: NodeId,
    lease: Duration,
    acked: Mutex<Acked>,
}

impl LeaderLease {
    /// The lease length for `config`: one heartbeat shorter than the
    /// minimum election timeout (see the module docs for why).
    pub fn duration_for(config: &MasterConfig) -> Duration {
        Duration::from_millis(
            config
                .election_timeout_min_ms
                .saturating_sub(config.heartbeat_interval_ms)
                .max(1),
        )
    }

    /// Starts tracking `raft`'s lease until `stop` turns true.
    pub fn start(raft: &Raft, config: &MasterConfig, stop: watch::Receiver<bool>) -> Arc<Self> {
        let lease = Arc::new(Self {
            id: config.id,
            lease: Self::duration_for(config),
            acked: Mutex::new(Acked::NONE),
        });
        tokio::spawn(track(raft.metrics(), lease.clone(), stop));
        lease
    }

    /// The lease length.
    pub fn duration(&self) -> Duration {
        self.lease
    }

    /// Succeeds with the leader's term while this member leads and holds
    /// the lease.
    pub fn check(&self) -> Result<u64, LeaseError> {
        let acked = *self.acked.lock().unwrap_or_else(|p| p.into_inner());
        self.judge(acked, Instant::now())
    }

    fn judge(&self, acked: Acked, now: Instant) -> Result<u64, LeaseError> {
        if acked.term == 0 {
            return Err(LeaseError::NotLeader { id: self.id });
        }
        let since = acked.at.map(|at| now.saturating_duration_since(at));
        match since {
            Some(since) if since < self.lease => {
                let CatchUp { needed, applied } = acked.caught_up;
                if applied < needed {
                    return Err(LeaseError::CatchingUp {
                        id: self.id,
                        term: acked.term,
                        applied,
                        needed,
                    });
                }
                Ok(acked.term)
            }
            _ => Err(LeaseError::Lapsed {
                id: self.id,
                term: acked.term,
                since_ack_ms: since.map(|d| d.as_millis() as u64),
                lease_ms: self.lease.as_millis() as u64,
            }),
        }
    }

    fn record(&self, acked: Acked) {
        *self.acked.lock().unwrap_or_else(|p| p.into_inner()) = acked;
    }

    fn recorded(&self) -> Acked {
        *self.acked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Acked {
    const NONE: Acked = Acked {
        term: 0,
        at: None,
        caught_up: CatchUp {
            needed: 0,
            applied: 0,
        },
    };
}

/// Records, on every metrics update (openraft sends one at least every
/// 1.5 heartbeat intervals), the term this member leads (0 when it does
/// not) and the estimated instant of its last quorum acknowledgement.
async fn track(
    mut metrics: watch::Receiver<openraft::RaftMetrics<NodeId, crate::types::MasterNode>>,
    lease: Arc<LeaderLease>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let acked = {
            let m = metrics.borrow_and_update();
            let now = Instant::now();
            if m.state == ServerState::Leader {
                let before = lease.recorded();
                let applied = m.last_applied.map_or(0, |l| l.index);
                let needed = if before.term == m.current_term {
                    before.caught_up.needed
                } else {
                    // Leader completeness: this member's log holds every
                    // entry committed before its term.
                    m.last_log_index.unwrap_or(0)
                };
                Acked {
                    term: m.current_term,
                    at: m
                        .millis_since_quorum_ack
                        .and_then(|ms| now.checked_sub(Duration::from_millis(ms))),
                    caught_up: CatchUp { needed, applied },
                }
            } else {
                Acked::NONE
            }
        };
        lease.record(acked);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
    lease.record(Acked::NONE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ms: u64) -> LeaderLease {
        LeaderLease {
            id: 7,
            lease: Duration::from_millis(ms),
            acked: Mutex::new(Acked::NONE),
        }
    }

    #[test]
    fn a_follower_holds_no_lease() {
        let l = lease(100);
        assert_eq!(l.check(), Err(LeaseError::NotLeader { id: 7 }));
    }

    #[test]
    fn the_lease_runs_from_the_last_quorum_ack() {
        let l = lease(100);
        let t0 = Instant::now();
        let acked = Acked {
            term: 3,
            at: Some(t0),
            ..Acked::NONE
        };
        assert_eq!(l.judge(acked, t0 + Duration::from_millis(99)), Ok(3));
        let err = l.judge(acked, t0 + Duration::from_millis(250)).unwrap_err();
        assert_eq!(
            err,
            LeaseError::Lapsed {
                id: 7,
                term: 3,
                since_ack_ms: Some(250),
                lease_ms: 100
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("no quorum") && text.contains("250 ms"),
            "{text}"
        );
    }

    #[test]
    fn a_new_leader_without_any_ack_holds_no_lease() {
        let l = lease(100);
        let err = l
            .judge(
                Acked {
                    term: 4,
                    ..Acked::NONE
                },
                Instant::now(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("no majority"), "{err}");
    }

    #[test]
    fn a_new_leader_acts_only_once_it_applied_earlier_terms() {
        let l = lease(100);
        let t0 = Instant::now();
        let behind = Acked {
            term: 5,
            at: Some(t0),
            caught_up: CatchUp {
                needed: 40,
                applied: 38,
            },
        };
        let err = l.judge(behind, t0).unwrap_err();
        assert!(err.to_string().contains("applied 38 of 40"), "{err}");
        let caught_up = Acked {
            caught_up: CatchUp {
                needed: 40,
                applied: 40,
            },
            ..behind
        };
        assert_eq!(l.judge(caught_up, t0), Ok(5));
    }

    #[test]
    fn the_lease_is_shorter_than_any_election() {
        let config = MasterConfig::new(1, "a:1".into(), "a:2".into(), "/tmp".into());
        let lease = LeaderLease::duration_for(&config);
        assert!(lease < Duration::from_millis(config.election_timeout_min_ms));
        assert!(lease >= Duration::from_millis(config.heartbeat_interval_ms));
    }
}
