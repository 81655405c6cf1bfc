//! Typed errors of the engine.
//!
//! Errors a user can fix (a bad job spec, a bad expression, an unknown column) are kept apart
//! from I/O failures and from failures of the runtime itself, so callers can report the first
//! kind with its position and treat the others as fatal for the job.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// Everything that can go wrong while planning or running a job.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job spec is malformed; `line` and `column` are 1-based positions in the TOML text
    /// (0 when the spec was built in code and has no text).
    #[error("job spec error at line {line}, column {column}: {message}")]
    Spec {
        /// 1-based line in the spec file.
        line: usize,
        /// 1-based column in the spec file.
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An expression could not be parsed or does not type-check against its input schema.
    #[error("in expression `{expr}`: {message}")]
    Expr {
        /// The expression text as written by the user.
        expr: String,
        /// What was wrong with it.
        message: String,
    },
    /// A plan refers to something that does not fit (a column missing from a schema, two
    /// schemas that must match but do not).
    #[error("plan error: {0}")]
    Plan(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An io_uring operation failed.
    #[error("io_uring error: {0}")]
    Uring(#[source] std::io::Error),
    /// A bounded resource (keys per window, frame size, ...) would be exceeded; the message
    /// names the limit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A peer process of a job split across processes could not be reached.
    #[error("cannot reach exchange peer {addr}: {source}")]
    Unreachable {
        /// The peer's address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection to a peer process failed after it was made, or the peer broke the
    /// exchange protocol.
    #[error("exchange peer {addr}: {message}")]
    Peer {
        /// The peer's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A checkpoint could not be taken, written, read or restored from; the message says
    /// which checkpoint and why.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
    /// The RocksDB state backend failed (a disk error, or stored state that does not decode).
    #[error("state backend error: {0}")]
    State(String),
    /// The job was cancelled through its [`crate::runtime::JobControl`] before it ended.
    #[error("the job was cancelled")]
    Cancelled,
    /// A shard thread failed or panicked; the job was stopped.
    #[error("shard {shard} failed: {message}")]
    Shard {
        /// Index of the failed shard.
        shard: usize,
        /// Why it failed.
        message: String,
    },
}

impl EngineError {
    /// Builds an [`EngineError::Expr`] for `expr`.
    pub fn expr(expr: &str, message: impl Into<String>) -> Self {
        Self::Expr {
            expr: expr.to_owned(),
            message: message.into(),
        }
    }

    /// Builds an [`EngineError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
