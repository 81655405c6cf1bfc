//! The agent's own gRPC API (`proto/agent.proto`), served on
//! [`crate::AgentConfig::api_addr`] and published to the masters as the
//! agent attribute [`crate::config::API_ADDR_ATTRIBUTE`].
//!
//! It serves command tasks' output ([`server`]); [`task_logs`] is the client
//! the CLI calls with the address it read from the agent's record.

pub mod client;
pub mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use client::{task_logs, task_logs_within, LogDeadlines, CONNECT_TIMEOUT};
/// Status codes of [`crate::AgentError::AgentApi`].
pub use tonic::Code;

use crate::config::API_ADDR_ATTRIBUTE;

/// Code generated from `proto/agent.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("sluice.agent.v1");
}

/// Which output of a command task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    /// The name on the wire, which is also the file's name in the task dir.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogStream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Self::Stdout),
            "stderr" => Ok(Self::Stderr),
            other => Err(format!(
                "unknown output stream {other:?}: use \"stdout\" or \"stderr\""
            )),
        }
    }
}

/// The API address an agent published (its attribute
/// [`API_ADDR_ATTRIBUTE`]), from the attributes of its record on the
/// masters (`sluice_api::model::Agent::attributes`).
pub fn published_api_addr(attributes: &BTreeMap<String, String>) -> Option<&str> {
    attributes.get(API_ADDR_ATTRIBUTE).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip_and_others_are_refused() {
        for s in [LogStream::Stdout, LogStream::Stderr] {
            assert_eq!(s.as_str().parse::<LogStream>(), Ok(s));
        }
        let err = "../stdout".parse::<LogStream>().unwrap_err();
        assert!(err.contains("use \"stdout\" or \"stderr\""), "{err}");
    }
}
