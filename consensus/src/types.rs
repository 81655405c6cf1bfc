//! openraft type configuration of the Sluice master.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Proposal, Response};

/// A master's id in the Raft group.
pub type NodeId = u64;

/// How to reach a master: its Raft address and its admin API address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterNode {
    pub raft_addr: String,
    pub api_addr: String,
}

impl fmt::Display for MasterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// The Raft types of the master group.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = NodeId,
        Node = MasterNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogStore = sluice_storage::RocksLogStore<TypeConfig>;
pub type StateMachine = sluice_storage::RocksStateMachine<TypeConfig, crate::state::ClusterState>;
pub type StateHandle = sluice_storage::StateHandle<TypeConfig, crate::state::ClusterState>;
