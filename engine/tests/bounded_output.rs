//! Output stays bounded: a window firing for many keys moves through an exchange in pieces of
//! at most one batch under backpressure, a record that fans out past the per-call limit fails
//! the job with an error naming the operator, and the collect sink's channel and total are
//! bounded.

use std::sync::{Arc, Mutex};

use sluice_engine::builder::StreamEnv;
use sluice_engine::operator::{WindowKind, OUTPUT_RECORDS_PER_CALL_MAX};
use sluice_engine::record::{Batch, DataType, Schema, SchemaRef, Value, BATCH_RECORDS_MAX};
use sluice_engine::sink::{Sink, COLLECT_CHANNEL_BATCHES_MAX, COLLECT_RECORDS_MAX};
use sluice_engine::source::{DeadLetters, Source, SourceStatus};
use sluice_engine::spec::CustomSource;
use sluice_engine::EngineError;

const KEYS_PER_SHARD: i64 = 10_000;

fn schema() -> SchemaRef {
    Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap()
}

/// Shard `shard` emits keys `shard * KEYS_PER_SHARD ..`, one record each, all in [0, 10).
struct DistinctKeys {
    schema: SchemaRef,
    next: i64,
    end: i64,
}

impl Source for DistinctKeys {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        while self.next < self.end && out.len() < BATCH_RECORDS_MAX {
            out.push_row(&[Value::Int(self.next), Value::Timestamp(self.next % 10)])?;
            self.next += 1;
        }
        Ok(if self.next == self.end {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}

/// Rows seen as `(k, n)`, and the size of every batch.
type Seen = Arc<Mutex<(Vec<(i64, i64)>, Vec<usize>)>>;

/// Records every row and the size of every batch it gets.
struct Recording {
    seen: Seen,
}

impl Sink for Recording {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        let mut seen = self.seen.lock().unwrap();
        seen.1.push(batch.len());
        for r in 0..batch.len() {
            let get = |c| batch.column(c).get_i64(r).unwrap();
            seen.0.push((get(0), get(3)));
        }
        Ok(())
    }
}

#[test]
fn a_window_firing_for_many_keys_moves_in_bounded_batches() {
    let seen: Seen = Arc::default();
    let sink_seen = seen.clone();
    let source_schema = schema();
    let report = StreamEnv::new("many-keys")
        .parallelism(2)
        .ring_capacity(1)
        .watermark("ts", 0, 0)
        .custom_source(CustomSource {
            name: "distinct-keys".into(),
            schema: schema(),
            factory: Arc::new(move |shard, _| {
                let first = shard as i64 * KEYS_PER_SHARD;
                Ok(Box::new(DistinctKeys {
                    schema: source_schema.clone(),
                    next: first,
                    end: first + KEYS_PER_SHARD,
                }) as Box<dyn Source>)
            }),
        })
        .key_by("k")
        .window(WindowKind::Tumbling { size_ms: 10 }, &["count(*) AS n"], 0)
        // Every result has n = 1: all of them cross one more exchange to one shard.
        .key_by("n")
        .custom_sink(
            "recording",
            Arc::new(move |_, _| {
                Ok(Box::new(Recording {
                    seen: sink_seen.clone(),
                }) as Box<dyn Sink>)
            }),
        )
        .execute()
        .unwrap();
    let (rows, sizes) = &*seen.lock().unwrap();
    let oversized: Vec<_> = sizes.iter().filter(|n| **n > BATCH_RECORDS_MAX).collect();
    assert!(
        oversized.is_empty(),
        "batches over the limit: {oversized:?}"
    );
    let mut keys: Vec<_> = rows.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len() as i64, 2 * KEYS_PER_SHARD);
    assert_eq!(rows.len(), keys.len(), "each key's window once");
    assert!(rows.iter().all(|(_, n)| *n == 1));
    assert_eq!(report.records_out as i64, 2 * KEYS_PER_SHARD);
}

#[test]
fn a_record_fanning_out_past_the_limit_fails_naming_the_operator() {
    let schema = Schema::of(&[("text", DataType::String)]).unwrap();
    let mut input = Batch::new(schema);
    let text = "a ".repeat(OUTPUT_RECORDS_PER_CALL_MAX + 1);
    input.push_row(&[Value::Str(&text)]).unwrap();
    let err = StreamEnv::new("fan-out")
        .from_batch("text", input)
        .flat_map("text", " ", "word")
        .collect()
        .execute()
        .unwrap_err();
    let EngineError::Limit(message) = &err else {
        panic!("expected a limit error, got {err}");
    };
    assert!(
        message.contains("flat_map") && message.contains("output_records_per_call_max"),
        "{message}"
    );
}

/// Emits `0..end` as single-column batches.
struct Counter {
    schema: SchemaRef,
    next: i64,
    end: i64,
}

impl Source for Counter {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        while self.next < self.end && out.len() < BATCH_RECORDS_MAX {
            out.push_row(&[Value::Int(self.next)])?;
            self.next += 1;
        }
        Ok(if self.next == self.end {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}

fn counting(records_per_shard: i64) -> CustomSource {
    let schema = Schema::of(&[("x", DataType::Int)]).unwrap();
    let source_schema = schema.clone();
    CustomSource {
        name: "counter".into(),
        schema,
        factory: Arc::new(move |_, _| {
            Ok(Box::new(Counter {
                schema: source_schema.clone(),
                next: 0,
                end: records_per_shard,
            }) as Box<dyn Source>)
        }),
    }
}

#[test]
fn collecting_more_batches_than_the_channel_holds_completes() {
    // Many more batches than COLLECT_CHANNEL_BATCHES_MAX: the caller drains while the job runs.
    let per_shard = (COLLECT_CHANNEL_BATCHES_MAX * BATCH_RECORDS_MAX * 2) as i64;
    let report = StreamEnv::new("collect-many")
        .parallelism(2)
        .custom_source(counting(per_shard))
        .collect()
        .execute()
        .unwrap();
    assert_eq!(report.collected_rows().len() as i64, 2 * per_shard);
}

#[test]
fn collecting_past_the_limit_fails_with_a_limit_error() {
    let err = StreamEnv::new("collect-too-much")
        .custom_source(counting(COLLECT_RECORDS_MAX as i64 + 1))
        .collect()
        .execute()
        .unwrap_err();
    let EngineError::Limit(message) = &err else {
        panic!("expected a limit error, got {err}");
    };
    assert!(message.contains("collect_records_max"), "{message}");
}
