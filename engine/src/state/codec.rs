//! The encoding of operator snapshots: a format version byte, then the operator's name and
//! its state in postcard (serde), so a checkpoint read by another build or restored into
//! another operator is refused with a message rather than misread.
//!
//! Operators keep their snapshot structs private; they implement [`StateFormat`] for them,
//! freeze a copy of their state in a [`Snapshot`] at a barrier, and read it back in `restore`
//! with [`decode`]. Anything wrong with the bytes is an [`EngineError::Checkpoint`] naming
//! the operator, never a panic.
#![forbid(unsafe_code)]

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::EngineError;
use crate::record::{Batch, Column, SchemaRef};
use crate::state::FrozenState;

/// A snapshot struct of one operator.
pub trait StateFormat: Serialize + DeserializeOwned + Send + 'static {
    /// The format version, written first; bumped when the struct changes incompatibly.
    const VERSION: u8;

    /// Approximately how many bytes of memory the state holds.
    fn state_bytes(&self) -> u64;
}

/// What a frozen state is serialised from: a [`StateFormat`] itself, or a view of state
/// shared with the live operator (chunked rows) that serialises exactly as the operator's
/// [`StateFormat`] struct deserialises.
pub trait FrozenFormat: Serialize + Send + 'static {
    /// The format version of the struct it serialises as.
    const VERSION: u8;

    /// Approximately how many bytes of memory the state holds.
    fn frozen_bytes(&self) -> u64;
}

impl<T: StateFormat> FrozenFormat for T {
    const VERSION: u8 = <T as StateFormat>::VERSION;

    fn frozen_bytes(&self) -> u64 {
        self.state_bytes()
    }
}

/// An operator's frozen state, serialised with postcard when the checkpoint is written.
#[derive(Debug)]
pub struct Snapshot<T> {
    /// The name of the operator the state belongs to (its `name()`).
    pub operator: &'static str,
    /// The state.
    pub state: T,
}

impl<T: FrozenFormat> Snapshot<T> {
    /// Freezes `state` of `operator`, boxed as the operator hooks return it.
    pub fn frozen(operator: &'static str, state: T) -> crate::state::Frozen {
        Box::new(Self { operator, state })
    }
}

/// Appends `state` of `operator` as [`decode`] reads it: `version`, then the operator's
/// name and the state in postcard.
pub fn encode_snapshot<T: Serialize + ?Sized>(
    operator: &str,
    version: u8,
    state: &T,
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    out.push(version);
    postcard::to_io(&(operator, state), out).map_err(|e| {
        EngineError::Checkpoint(format!("{operator}: cannot serialise the state: {e}"))
    })?;
    Ok(())
}

/// Marks the format versions of state kept in the RocksDB backend (the in-memory formats
/// stay below it), so that a checkpoint taken with the other backend is named as such.
pub const ROCKSDB_FORMATS: u8 = 0x80;

impl<T: FrozenFormat> FrozenState for Snapshot<T> {
    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EngineError> {
        encode_snapshot(self.operator, T::VERSION, &self.state, out)
    }

    fn size_bytes(&self) -> u64 {
        self.state.frozen_bytes()
    }
}

/// Returns the error `"{operator}: {message}"`.
pub fn corrupt(operator: &str, message: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!("{operator}: {message}"))
}

/// Reads back a state written by [`Snapshot::write_to`](FrozenState::write_to) for
/// `operator`; refuses empty, truncated or corrupt bytes, another format version, another
/// operator's state and trailing bytes.
pub fn decode<T: StateFormat>(operator: &str, bytes: &[u8]) -> Result<T, EngineError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(corrupt(
            operator,
            format!(
                "the checkpoint state is empty; expected a snapshot in format version {}",
                T::VERSION
            ),
        ));
    };
    if (version ^ T::VERSION) & ROCKSDB_FORMATS != 0 {
        let backend = |v: u8| {
            if v & ROCKSDB_FORMATS != 0 {
                "rocksdb"
            } else {
                "memory"
            }
        };
        return Err(corrupt(
            operator,
            format!(
                "the checkpoint holds state_backend = \"{}\" state, this job's state_backend \
                 is \"{}\" (a checkpoint restores only with the backend it was taken with)",
                backend(version),
                backend(T::VERSION)
            ),
        ));
    }
    if version != T::VERSION {
        return Err(corrupt(
            operator,
            format!(
                "the checkpoint state is in format version {version}, this build reads \
                 version {}",
                T::VERSION
            ),
        ));
    }
    let undecodable = |e: postcard::Error| {
        corrupt(
            operator,
            format!(
                "the checkpoint state ({} bytes) does not decode: {e} (truncated or corrupt)",
                bytes.len()
            ),
        )
    };
    // The name is read first, so another operator's state is named as such rather than
    // reported as undecodable.
    let (name, rest): (String, &[u8]) = postcard::take_from_bytes(body).map_err(undecodable)?;
    if name != operator {
        return Err(corrupt(
            operator,
            format!("the checkpoint state belongs to a `{name}` operator (another plan?)"),
        ));
    }
    let (state, rest): (T, &[u8]) = postcard::take_from_bytes(rest).map_err(undecodable)?;
    if !rest.is_empty() {
        return Err(corrupt(
            operator,
            format!(
                "{} bytes follow the end of the checkpoint state (corrupt)",
                rest.len()
            ),
        ));
    }
    Ok(state)
}

/// Refuses a state whose configuration `what` (as recorded in the checkpoint) differs from
/// the operator's own.
pub fn expect_same<T: PartialEq + Debug>(
    operator: &str,
    what: &str,
    checkpoint: &T,
    here: &T,
) -> Result<(), EngineError> {
    if checkpoint == here {
        return Ok(());
    }
    Err(corrupt(
        operator,
        format!(
            "the checkpoint's {what} is {checkpoint:?} but this operator's is {here:?} (a \
             checkpoint of another plan?)"
        ),
    ))
}

/// Rebuilds a batch of `schema` from checkpointed columns, checking their types and
/// lengths; `what` names the batch in errors.
pub fn restore_batch(
    operator: &str,
    what: &str,
    schema: &SchemaRef,
    columns: Vec<Column>,
) -> Result<Batch, EngineError> {
    Batch::from_columns(schema.clone(), columns).map_err(|e| {
        let m = match e {
            EngineError::Plan(m) => m,
            other => other.to_string(),
        };
        corrupt(operator, format!("{what}: {m}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Counts {
        values: Vec<i64>,
    }

    impl StateFormat for Counts {
        const VERSION: u8 = 3;

        fn state_bytes(&self) -> u64 {
            (self.values.len() * 8) as u64
        }
    }

    fn written(operator: &'static str, values: Vec<i64>) -> Vec<u8> {
        let mut bytes = Vec::new();
        let frozen = Snapshot::frozen(operator, Counts { values });
        assert_eq!(frozen.size_bytes(), 16);
        frozen.write_to(&mut bytes).unwrap();
        bytes
    }

    fn message(r: Result<Counts, EngineError>) -> String {
        match r {
            Err(EngineError::Checkpoint(m)) => m,
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
    }

    #[test]
    fn a_state_reads_back_and_bad_bytes_are_refused() {
        let bytes = written("op", vec![1, -7]);
        assert_eq!(bytes[0], 3, "the version comes first");
        let back: Counts = decode("op", &bytes).unwrap();
        assert_eq!(back.values, [1, -7]);

        let m = message(decode("op", &[]));
        assert!(m.starts_with("op: ") && m.contains("empty"), "{m}");
        let m = message(decode("op", &[4]));
        assert!(m.contains("version 4") && m.contains("version 3"), "{m}");
        for cut in 1..bytes.len() {
            let m = message(decode("op", &bytes[..cut]));
            assert!(m.contains("does not decode"), "cut {cut}: {m}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(message(decode("op", &longer)).contains("1 bytes follow"));
        let m = message(decode("other", &bytes));
        assert!(m.starts_with("other: ") && m.contains("`op`"), "{m}");
    }

    #[test]
    fn a_different_configuration_is_named() {
        assert!(expect_same("window", "aggregate count", &2, &2).is_ok());
        let err = expect_same("window", "aggregate count", &2, &3).unwrap_err();
        let m = err.to_string();
        assert!(
            m.contains("window: the checkpoint's aggregate count is 2") && m.contains("is 3"),
            "{m}"
        );
    }
}
