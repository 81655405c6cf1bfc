//! Key by: partitions records by the hash of a key column. In a job this is an exchange
//! between shards; as an operator it splits one batch into one batch per target.
//!
//! HOT PATH: one hash and one row copy per record; no per-record allocation, locking or
//! logging.
//!
//! ```
//! use sluice_engine::operator::KeyBy;
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("auction", DataType::Int)]).unwrap();
//! let key_by = KeyBy::new(&schema, "auction").unwrap();
//! let mut input = Batch::new(schema.clone());
//! for a in 0..100 {
//!     input.push_row(&[Value::Int(a % 10)]).unwrap();
//! }
//! let mut parts = vec![Batch::new(schema.clone()), Batch::new(schema)];
//! key_by.partition(&input, &mut parts);
//! assert_eq!(parts[0].len() + parts[1].len(), 100);
//! ```

use crate::error::EngineError;
use crate::record::hash::{hash_value, target_of, KEY_GROUPS_DEFAULT};
use crate::record::{Batch, SchemaRef};

/// Routes each record to target `hash(key) → [0, targets)`.
#[derive(Clone, Debug)]
pub struct KeyBy {
    key: usize,
}

impl KeyBy {
    /// Keys `input` records by the column `key`.
    pub fn new(input: &SchemaRef, key: &str) -> Result<Self, EngineError> {
        Ok(Self {
            key: input.require(key)?,
        })
    }

    /// Returns the key column index.
    pub fn key(&self) -> usize {
        self.key
    }

    /// Returns the target of row `row` (with the default key groups, as a job's exchange).
    pub fn target(&self, input: &Batch, row: usize, targets: usize) -> usize {
        let groups = KEY_GROUPS_DEFAULT.max(targets);
        target_of(hash_value(input.value(row, self.key)), groups, targets)
    }

    /// Appends each row of `input` to `parts[target]`; one part per target.
    pub fn partition(&self, input: &Batch, parts: &mut [Batch]) {
        let targets = parts.len();
        if targets == 1 {
            parts[0].append(input);
            return;
        }
        for row in 0..input.len() {
            let t = self.target(input, row, targets);
            parts[t].push_row_from(input, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema, Value};

    #[test]
    fn equal_keys_go_to_the_same_target() {
        let schema = Schema::of(&[("k", DataType::String), ("n", DataType::Int)]).unwrap();
        let key_by = KeyBy::new(&schema, "k").unwrap();
        let mut input = Batch::new(schema.clone());
        for n in 0..60 {
            let k = ["x", "y", "z"][n % 3];
            input
                .push_row(&[Value::Str(k), Value::Int(n as i64)])
                .unwrap();
        }
        let mut parts: Vec<_> = (0..4).map(|_| Batch::new(schema.clone())).collect();
        key_by.partition(&input, &mut parts);
        assert_eq!(parts.iter().map(Batch::len).sum::<usize>(), 60);
        for part in &parts {
            for row in 0..part.len() {
                assert_eq!(key_by.target(part, row, 4), key_by.target(part, 0, 4));
            }
        }
    }
}
