//! The keyed state of an operator whose state may outgrow memory (reduce, aggregate): in
//! memory ([`KeyedState`]) or in RocksDB behind a cache ([`RocksKeyed`]), chosen by the job's
//! `state_backend`, with one interface for the operator.
//!
//! HOT PATH: one enum match per lookup on top of the backend's own cost.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::EngineError;
use crate::record::hash::hash_value;
use crate::record::{DataType, Value};
use crate::state::{KeyedState, RocksEnv, RocksKeyed};

/// Keyed state in memory or in RocksDB.
#[derive(Debug)]
pub enum KeyedStore<S> {
    /// Every key in memory.
    Memory(KeyedState<S>),
    /// Keys in RocksDB, those in use cached in memory.
    Rocks(Box<RocksKeyed<S>>),
}

impl<S: Serialize + DeserializeOwned + Clone> KeyedStore<S> {
    /// State for keys of type `key_type`, `width` values each: in RocksDB when `rocks` says
    /// where, in memory otherwise.
    pub fn new(
        key_type: DataType,
        width: usize,
        rocks: Option<RocksEnv>,
    ) -> Result<Self, EngineError> {
        Ok(match rocks {
            None => Self::Memory(KeyedState::new(key_type, width)),
            Some(env) => Self::Rocks(Box::new(RocksKeyed::create(key_type, width, env)?)),
        })
    }

    /// Returns the type of the keys.
    pub fn key_type(&self) -> DataType {
        match self {
            Self::Memory(s) => s.key_type(),
            Self::Rocks(s) => s.key_type(),
        }
    }

    /// Makes room for `new_keys` keys before a batch (see [`RocksKeyed::reserve`]).
    pub fn reserve(&mut self, new_keys: usize) -> Result<(), EngineError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Rocks(s) => s.reserve(new_keys),
        }
    }

    /// Returns the slot of `key` (hash `hash`) and whether it is new, with values made by
    /// `init` if it is; errors name `operator`.
    pub fn slot_hashed(
        &mut self,
        operator: &str,
        hash: u64,
        key: Value<'_>,
        init: impl FnMut(usize) -> S,
    ) -> Result<(usize, bool), EngineError> {
        match self {
            Self::Memory(s) => s
                .slot_hashed(hash, key, init)
                .map_err(|e| e.in_operator(operator)),
            Self::Rocks(s) => s
                .slot_hashed(hash, key, init)
                .map_err(|e| prefixed(operator, e)),
        }
    }

    /// Returns the values of `key`, made by `init` if it is new; errors name `operator`.
    pub fn entry(
        &mut self,
        operator: &str,
        key: Value<'_>,
        init: impl FnMut(usize) -> S,
    ) -> Result<&mut [S], EngineError> {
        let (slot, _) = self.slot_hashed(operator, hash_value(key), key, init)?;
        Ok(self.values_mut(slot))
    }

    /// Returns the values of a slot [`Self::slot_hashed`] returned.
    pub fn values_mut(&mut self, slot: usize) -> &mut [S] {
        match self {
            Self::Memory(s) => s.values_mut(slot),
            Self::Rocks(s) => s.values_mut(slot),
        }
    }
}

/// `e` with `operator` named first.
pub(crate) fn prefixed(operator: &str, e: EngineError) -> EngineError {
    match e {
        EngineError::State(m) => EngineError::State(format!("{operator}: {m}")),
        EngineError::Checkpoint(m) => EngineError::Checkpoint(format!("{operator}: {m}")),
        other => other,
    }
}
