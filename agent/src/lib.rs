//! The Sluice agent daemon: it offers a machine's cores, memory and disk to
//! the masters and runs what they place on it.
//!
//! - [`Agent::start`] detects resources ([`resources`]), registers (keeping
//!   its id and resources in the data dir, [`identity`]), and starts the
//!   loops of [`agent`]: heartbeats to the leader, reconciliation of what is
//!   placed here against what runs here ([`reconcile`], a pure function),
//!   and the status sender.
//! - [`task`] runs command tasks (processes with cgroup v2 limits where the
//!   host delegates them) and stream tasks (a job's shards on the engine, on
//!   a dedicated thread).
//! - [`journal`]: every task status update is journaled in RocksDB before it
//!   is sent and resent until acknowledged, across restarts.
//! - [`api`]: the agent's own gRPC API on [`AgentConfig::api_addr`]
//!   (published as the agent attribute `sluice.api_addr`): command tasks'
//!   stdout and stderr, fetched or followed with [`task_logs`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_agent::AgentError> {
//! use sluice_agent::{Agent, AgentConfig};
//! let config = AgentConfig::new(vec!["127.0.0.1:7001".into()], "/var/lib/sluice/agent".into());
//! let agent = Agent::start(config).await?;
//! println!("agent {} running", agent.id());
//! agent.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! `unsafe` is denied everywhere except in [`sys`] (statvfs, kill,
//! sched_setaffinity, a thread's file-system credentials through libc).

#![deny(unsafe_code)]

pub mod agent;
pub mod api;
mod beat;
pub mod config;
pub mod error;
pub mod identity;
pub mod journal;
pub mod reconcile;
pub mod resources;
pub mod sys;
pub mod task;

pub use agent::{Agent, AgentHandle};
pub use api::{task_logs, LogStream};
pub use config::AgentConfig;
pub use error::AgentError;
