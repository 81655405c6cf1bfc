//! The agent's errors.

use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_api::{ClientError, CommandError};

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable; nothing was started.
    #[error("invalid agent config: {0}")]
    Config(String),
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data dir holds something the agent cannot read.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The status journal (RocksDB) failed.
    #[error("status journal at {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    /// The masters refused the registration; nothing changed on them.
    #[error("registration refused: {source}{hint}")]
    Refused {
        source: CommandError,
        /// What the operator can do about it.
        hint: String,
    },
    /// The masters could not be reached or did not answer in time.
    #[error("masters unavailable: {0}")]
    Masters(#[from] ClientError),
    /// The agent's API could not listen on its address.
    #[error("cannot listen on agent API address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// An agent's API (e.g. for task logs) could not be reached in time.
    #[error("agent API at {addr} unreachable: {reason}")]
    AgentUnreachable { addr: String, reason: String },
    /// An agent's API answered with an error (`code` tells which:
    /// `NotFound` for a task that never ran there, `InvalidArgument`,
    /// `Unavailable` when the agent stopped meanwhile...).
    #[error("agent at {addr}: {message}")]
    AgentApi {
        addr: String,
        code: tonic::Code,
        message: String,
    },
    /// Task output could not be written where the caller asked.
    #[error("cannot write task output: {0}")]
    Output(std::io::Error),
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
