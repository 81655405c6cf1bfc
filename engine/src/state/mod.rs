//! Operator state for checkpoints: what a snapshot is, and how it is written.
//!
//! At a checkpoint barrier a stateful operator freezes its state ([`FrozenState`]): the shard
//! pays only for that (copy-on-write, or a copy of flat arrays), and the frozen copy is
//! serialised and uploaded on another thread while the shard goes on.
#![forbid(unsafe_code)]

use crate::error::EngineError;

/// An operator's state as of a checkpoint barrier, detached from the live state.
pub trait FrozenState: Send {
    /// Appends the serialised state to `out`; the operator's `restore` reads it back.
    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EngineError>;

    /// Approximately how many bytes of memory the frozen state holds (for reports).
    fn size_bytes(&self) -> u64;
}

/// A boxed frozen state.
pub type Frozen = Box<dyn FrozenState>;

pub mod codec;
pub mod keyed;
pub mod rows;

pub use codec::{decode, Snapshot, StateFormat};
pub use keyed::{KeyRefused, KeyedSnapshot, KeyedState, KEYED_STATE_KEYS_MAX};
