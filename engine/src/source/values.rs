//! Values source: a fixed list of records (from a job spec's inline `rows` or from code),
//! dealt round-robin across shards. Meant for tests, examples and small lookups.

use std::sync::Arc;

use crate::error::EngineError;
use crate::record::{Batch, SchemaRef, BATCH_RECORDS_MAX};
use crate::source::{decode_position, encode_position, DeadLetters, Source, SourceStatus};

const POSITION_TAG: u8 = 3;

/// One shard's share of a fixed list of records: rows `shard, shard + shards, ...`.
#[derive(Debug)]
pub struct ValuesSource {
    rows: Arc<Batch>,
    next: usize,
    step: usize,
}

impl ValuesSource {
    /// Creates split `shard` of `shards`.
    pub fn new(rows: Arc<Batch>, shard: usize, shards: usize) -> Result<Self, EngineError> {
        if shards == 0 || shard >= shards {
            return Err(EngineError::Plan(format!(
                "values split {shard} of {shards} is invalid"
            )));
        }
        Ok(Self {
            rows,
            next: shard,
            step: shards,
        })
    }
}

impl Source for ValuesSource {
    fn schema(&self) -> &SchemaRef {
        self.rows.schema()
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        while self.next < self.rows.len() && out.len() < BATCH_RECORDS_MAX {
            out.push_row_from(&self.rows, self.next);
            self.next += self.step;
        }
        Ok(if self.next >= self.rows.len() {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(encode_position(POSITION_TAG, &[self.next as u64]))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), EngineError> {
        let [next] = decode_position::<1>("values source", POSITION_TAG, position)?;
        let next = usize::try_from(next).unwrap_or(usize::MAX);
        if next % self.step != self.next % self.step {
            return Err(EngineError::Checkpoint(format!(
                "values source: position {next} belongs to another split"
            )));
        }
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema, Value};

    #[test]
    fn rows_are_dealt_round_robin() {
        let schema = Schema::of(&[("x", DataType::Int)]).unwrap();
        let mut rows = Batch::new(schema.clone());
        for x in 0..5 {
            rows.push_row(&[Value::Int(x)]).unwrap();
        }
        let rows = Arc::new(rows);
        let mut dead = DeadLetters::new(None).unwrap();
        let mut src = ValuesSource::new(rows, 1, 2).unwrap();
        let mut out = Batch::new(schema);
        assert_eq!(
            src.poll(&mut out, &mut dead).unwrap(),
            SourceStatus::Exhausted
        );
        assert_eq!(out.to_rows().len(), 2);
        assert_eq!(out.value(1, 0), Value::Int(3));
    }
}
