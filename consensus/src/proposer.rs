//! Batches concurrent commands into Raft entries (group commit).
//!
//! openraft 0.9 waits for each log append's fsync before it takes the next
//! client write, so one command per entry caps a leader at one write per
//! fsync. The proposer queues commands from every caller, and whenever a
//! proposal slot is free it puts everything queued (up to
//! [`PROPOSAL_COMMANDS_MAX`]) into one entry. Under load, batches grow on
//! their own; a lone writer still gets its entry at once.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{Command, CommandResult, Proposal};
use crate::types::{MasterNode, NodeId, Raft};

/// Most commands in one Raft entry.
pub const PROPOSAL_COMMANDS_MAX: usize = 1024;
/// Most proposals handed to Raft and not yet answered.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 2;
/// Most commands waiting for a proposal; callers wait when it is full.
pub const QUEUE_COMMANDS_MAX: usize = 16 * 1024;

const _: () = assert!(PROPOSAL_COMMANDS_MAX * PROPOSALS_IN_FLIGHT_MAX <= QUEUE_COMMANDS_MAX * 4);

/// A command applied by the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Index of the entry that carried it.
    pub log_index: u64,
    /// What the state machine said (a rejection changed nothing).
    pub result: CommandResult,
}

/// Why a command was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_node: Option<MasterNode>,
    },
    #[error("{0}")]
    Refused(String),
    #[error("Raft has stopped: {0}")]
    Stopped(String),
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, MasterNode>>> for ProposeError {
    fn from(err: RaftError<NodeId, ClientWriteError<NodeId, MasterNode>>) -> Self {
        match err {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Self::NotLeader {
                leader_id: f.leader_id,
                leader_node: f.leader_node,
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Self::Refused(e.to_string())
            }
            RaftError::Fatal(e) => Self::Stopped(e.to_string()),
        }
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Applied, ProposeError>>,
}

/// Handle to a master's proposer task; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proposer")
    }
}

impl Proposer {
    /// Starts the batching task for `raft`; it ends when every handle is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_COMMANDS_MAX);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes one command and waits until it is applied (or refused).
    pub async fn propose(&self, command: Command) -> Result<Applied, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposeError::Stopped("proposer stopped".into()))?;
        answer
            .await
            .map_err(|_| ProposeError::Stopped("proposal dropped".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    let mut batch = Vec::with_capacity(PROPOSAL_COMMANDS_MAX);
    loop {
        // Wait for a free slot first: while all are busy, commands keep
        // queueing and the next proposal carries all of them.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, PROPOSAL_COMMANDS_MAX).await == 0 {
            return;
        }
        let pending = std::mem::replace(&mut batch, Vec::with_capacity(PROPOSAL_COMMANDS_MAX));
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) =
                pending.into_iter().map(|p| (p.command, p.reply)).unzip();
            match raft.client_write(Proposal(commands)).await {
                Ok(written) => {
                    let index = written.log_id.index;
                    debug_assert_eq!(
                        written.data.0.len(),
                        replies.len(),
                        "one result per command"
                    );
                    for (reply, result) in replies.into_iter().zip(written.data.0) {
                        let _ = reply.send(Ok(Applied {
                            log_index: index,
                            result,
                        }));
                    }
                }
                Err(err) => {
                    let err = ProposeError::from(err);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}
