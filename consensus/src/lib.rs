//! The replicated master of Sluice.
//!
//! Three (or five) masters keep the cluster's allocation state — agents,
//! roles, and later jobs and placements — in a state machine replicated with
//! openraft, stored in RocksDB through `sluice-storage`, and talk gRPC.
//!
//! - [`types`]: the openraft type configuration.
//! - [`command`] and [`state`]: typed commands and their deterministic apply.
//! - [`network`]: the Raft transport (client side); [`raft_service`] its server.
//! - [`request`]: what clients may ask (never the leader's own commands);
//!   [`acl`]: the tokens that say who may ask what.
//! - [`admin`]: the `Master` gRPC service used by the CLI and other masters.
//! - [`node`]: one running master: storage, Raft, both servers.
//! - [`client`]: a client that works against any master and follows the leader.

#![forbid(unsafe_code)]

pub mod acl;
pub mod admin;
pub mod client;
pub mod command;
pub mod config;
pub mod leader;
pub mod lease;
pub mod network;
pub mod node;
pub mod proposer;
pub mod raft_service;
pub mod request;
pub mod scheduler;
pub mod state;
pub mod text;
pub mod types;
pub mod units;

/// Code generated from `proto/sluice.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("sluice.v1");
}

pub use client::{ClientError, MasterClient};
pub use command::{Command, CommandError, CommandOutput};
pub use config::MasterConfig;
pub use node::{MasterError, MasterHandle};
pub use request::Request;
pub use state::{ClusterState, Query};
pub use types::{MasterNode, NodeId};
