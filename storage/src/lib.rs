//! RocksDB-backed storage for Sluice.
//!
//! This crate owns every byte Sluice keeps on disk for its masters:
//!
//! - [`RocksLogStore`]: the Raft log and the vote, implementing openraft's
//!   [`RaftLogStorage`](openraft::storage::RaftLogStorage). Appends are made
//!   durable (WAL fsync) before openraft is told they are, and several appends
//!   share one fsync (group commit, see [`flusher`]).
//! - [`RocksStateMachine`]: an in-memory replicated state whose durable form is
//!   the snapshot kept in RocksDB plus the log after it. The state's logic is
//!   supplied by the caller through [`StateLogic`], so this crate knows Raft only
//!   through openraft's storage traits.
//! - [`MemberDir`]: the data directory of one member, with the identity check
//!   that refuses to start a member on another member's data.
//! - [`state_db`]: the stream engine's RocksDB state backend (keyed state larger than
//!   memory, one database per stateful operator per shard) and its incremental checkpoints
//!   (SST files stored once and shared between checkpoints).
//! - [`blob`]: checkpoint storage (immutable blobs in a directory or an S3-compatible
//!   store) and the checksummed envelope checkpoint files are sealed in.
//!
//! Architecture invariant: nothing here interprets the replicated commands; the
//! consensus crate does.

#![forbid(unsafe_code)]

pub mod blob;
mod blob_dir;
mod blob_s3;
mod blob_s3_settings;
mod codec;
mod error;
pub mod flusher;
mod log_store;
mod member_dir;
pub mod state_db;
mod state_machine;

pub use error::DirError;
pub use log_store::RocksLogStore;
pub use member_dir::{MemberDir, MemberIdentity};
pub use state_machine::{RocksStateMachine, StateHandle, StateLogic, StateView};
