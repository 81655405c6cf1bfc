//! The Sluice admin API, for anything that talks to the masters: the CLI,
//! agents, benches, other programs.
//!
//! - [`proto`]: the `Master` gRPC service and its typed messages, one per
//!   operation (`proto/master.proto`).
//! - [`model`]: the records the API carries (agents, roles, jobs, their
//!   specs), with their validation.
//! - [`Request`] and [`Query`]: what a client may write and read; never the
//!   leader's own Raft commands. [`convert`] maps them to and from the wire.
//! - [`CommandOutput`] and [`CommandError`]: what a write produced or why it
//!   was refused.
//! - [`MasterClient`]: a client that works against any master and follows
//!   the leader; [`wire`]: metadata keys and channels.
//!
//! This crate links neither openraft nor RocksDB.

#![forbid(unsafe_code)]

pub mod client;
pub mod convert;
pub mod model;
pub mod outcome;
pub mod query;
pub mod request;
pub mod text;
pub mod units;
pub mod wire;

/// Code generated from `proto/master.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("sluice.v1");
}

pub use client::{ClientError, MasterClient, Written};
pub use convert::WireError;
pub use outcome::{CommandError, CommandOutput};
pub use query::Query;
pub use request::Request;
