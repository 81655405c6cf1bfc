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

    /// The objects of the checkpoint storage the written state refers to beyond its own
    /// bytes (files shared between checkpoints, see [`rocks`]); known once `write_to`
    /// returned. A shared object is deleted when no retained checkpoint refers to it.
    fn shared_objects(&self) -> SharedObjects {
        SharedObjects::default()
    }

    /// The paths of the objects `write_to` will refer to beyond its own bytes, known before
    /// it stores any of them: the coordinator lists them first, so that a process killed
    /// while storing them leaves no object that no checkpoint's list names.
    fn planned_shared_objects(&self) -> Result<Vec<String>, EngineError> {
        Ok(Vec::new())
    }
}

/// The objects shared between checkpoints that a written state refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedObjects {
    /// Their paths in the checkpoint storage.
    pub paths: Vec<String>,
    /// Bytes of those among them that this checkpoint stored (the others were stored by
    /// earlier checkpoints).
    pub new_bytes: u64,
}

/// A boxed frozen state.
pub type Frozen = Box<dyn FrozenState>;

pub mod codec;
pub mod keyed;
pub mod rocks;
pub mod rows;
pub mod store;

pub use codec::{decode, Snapshot, StateFormat};
pub use keyed::{KeyRefused, KeyedSnapshot, KeyedState, KEYED_STATE_KEYS_MAX};
pub use rocks::{CachedKeys, RocksBase, RocksEnv, RocksKeyed};
pub use store::KeyedStore;
