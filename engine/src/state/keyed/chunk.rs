//! The chunks of a [`KeyedState`](super::KeyedState): up to [`KEYED_CHUNK_SLOTS`](super::KEYED_CHUNK_SLOTS) slots each,
//! the state's own or shared with checkpoints behind an `Arc` (copy-on-write at chunk
//! granularity, no atomic operation on a read).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::record::{Column, DataType};

/// Up to [`KEYED_CHUNK_SLOTS`](super::KEYED_CHUNK_SLOTS) consecutive slots: their keys and `width` values each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyChunk<S> {
    /// The keys, in slot order.
    pub keys: Column,
    /// The values, the chunk's slot `i` owning `values[i * width .. (i + 1) * width]`.
    pub values: Vec<S>,
}

impl<S> KeyChunk<S> {
    pub(super) fn empty(key_type: DataType) -> Self {
        Self {
            keys: Column::new(key_type),
            values: Vec::new(),
        }
    }

    pub(super) fn state_bytes(&self, value_heap_bytes: &impl Fn(&S) -> u64) -> u64 {
        let values = (self.values.capacity() * std::mem::size_of::<S>()) as u64;
        let heap: u64 = self.values.iter().map(value_heap_bytes).sum();
        self.keys.state_bytes() + values + heap
    }
}

/// A chunk of a live state: its own, or shared with checkpoints that froze it. Reading
/// either costs no atomic operation; the first write after a checkpoint takes the chunk back,
/// copying it only if that checkpoint still holds it.
#[derive(Clone, Debug)]
pub(super) enum Part<S> {
    Owned(KeyChunk<S>),
    Shared(Arc<KeyChunk<S>>),
}

impl<S> Part<S> {
    #[inline(always)]
    pub(super) fn get(&self) -> &KeyChunk<S> {
        match self {
            Self::Owned(chunk) => chunk,
            Self::Shared(chunk) => chunk,
        }
    }
}

impl<S: Clone> Part<S> {
    #[inline(always)]
    pub(super) fn get_mut(&mut self) -> &mut KeyChunk<S> {
        if let Self::Shared(_) = self {
            self.take_back();
        }
        match self {
            Self::Owned(chunk) => chunk,
            // Not reached: a shared chunk was made owned just above.
            Self::Shared(chunk) => Arc::make_mut(chunk),
        }
    }

    /// Makes a shared chunk the state's own again: the first write after a checkpoint.
    #[cold]
    fn take_back(&mut self) {
        if let Self::Shared(shared) = self {
            let empty = Self::Owned(KeyChunk::empty(shared.keys.data_type()));
            *self = Self::Owned(std::mem::replace(self, empty).into_owned());
        }
    }

    /// Returns the chunk as a checkpoint keeps it, shared from now on (no copy).
    pub(super) fn share(&mut self) -> Arc<KeyChunk<S>> {
        let shared = match self {
            Self::Shared(chunk) => return Arc::clone(chunk),
            Self::Owned(chunk) => {
                let empty = KeyChunk::empty(chunk.keys.data_type());
                Arc::new(std::mem::replace(chunk, empty))
            }
        };
        *self = Self::Shared(Arc::clone(&shared));
        shared
    }

    pub(super) fn into_owned(self) -> KeyChunk<S> {
        match self {
            Self::Owned(chunk) => chunk,
            Self::Shared(chunk) => Arc::try_unwrap(chunk).unwrap_or_else(|s| (*s).clone()),
        }
    }
}
