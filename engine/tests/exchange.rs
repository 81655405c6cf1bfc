//! The key_by exchange under backpressure: no loss, no duplication, per-producer order kept.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_engine::builder::StreamEnv;
use sluice_engine::record::{Batch, DataType, Schema, SchemaRef, Value, BATCH_RECORDS_MAX};
use sluice_engine::sink::Sink;
use sluice_engine::source::{DeadLetters, Source, SourceStatus};
use sluice_engine::spec::CustomSource;
use sluice_engine::EngineError;

const RECORDS_PER_PRODUCER: i64 = 20_000;
const KEYS: i64 = 17;

fn schema() -> SchemaRef {
    Schema::of(&[
        ("producer", DataType::Int),
        ("seq", DataType::Int),
        ("key", DataType::Int),
    ])
    .unwrap()
}

struct Sequence {
    schema: SchemaRef,
    producer: i64,
    next: i64,
}

impl Source for Sequence {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        while self.next < RECORDS_PER_PRODUCER && out.len() < BATCH_RECORDS_MAX {
            let key = (self.next * 7 + self.producer) % KEYS;
            out.push_row(&[
                Value::Int(self.producer),
                Value::Int(self.next),
                Value::Int(key),
            ])?;
            self.next += 1;
        }
        Ok(if self.next == RECORDS_PER_PRODUCER {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}

type Seen = Arc<Mutex<Vec<(usize, i64, i64, i64)>>>;

/// A sink slow enough (on shard 0) to fill the rings feeding it.
struct SlowSink {
    shard: usize,
    seen: Seen,
}

impl Sink for SlowSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        if self.shard == 0 {
            // Being slow is the point of this sink; nothing waits on this sleep.
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut seen = self.seen.lock().unwrap();
        for r in 0..batch.len() {
            let get = |c| batch.column(c).get_i64(r).unwrap();
            seen.push((self.shard, get(0), get(1), get(2)));
        }
        Ok(())
    }
}

#[test]
fn exchange_keeps_every_record_once_and_in_order_under_backpressure() {
    let shards = 3;
    let seen: Seen = Arc::default();
    let sink_seen = seen.clone();
    let schema = schema();
    let source_schema = schema.clone();
    let report = StreamEnv::new("exchange")
        .parallelism(shards)
        .ring_capacity(1)
        .custom_source(CustomSource {
            name: "sequence".into(),
            schema,
            factory: Arc::new(move |shard, _| {
                Ok(Box::new(Sequence {
                    schema: source_schema.clone(),
                    producer: shard as i64,
                    next: 0,
                }))
            }),
        })
        .key_by("key")
        .custom_sink(
            "slow",
            Arc::new(move |shard, _| {
                Ok(Box::new(SlowSink {
                    shard,
                    seen: sink_seen.clone(),
                }) as Box<dyn Sink>)
            }),
        )
        .execute()
        .unwrap();

    let seen = seen.lock().unwrap();
    let total = shards as i64 * RECORDS_PER_PRODUCER;
    assert_eq!(seen.len() as i64, total, "records lost or duplicated");
    let unique: HashSet<_> = seen.iter().map(|(_, p, s, _)| (*p, *s)).collect();
    assert_eq!(unique.len() as i64, total, "duplicates");
    let mut shard_of_key = HashMap::new();
    let mut last_seq: HashMap<(usize, i64), i64> = HashMap::new();
    for (shard, producer, seq, key) in seen.iter() {
        assert_eq!(
            *shard_of_key.entry(*key).or_insert(*shard),
            *shard,
            "key {key} on two shards"
        );
        let last = last_seq.entry((*shard, *producer)).or_insert(-1);
        assert!(
            *last < *seq,
            "producer {producer} out of order on shard {shard}"
        );
        *last = *seq;
    }
    assert_eq!(report.records_in as i64, total);
    assert_eq!(report.records_out as i64, total);
    assert!(
        report.backpressure_waits > 0,
        "the slow sink must have filled a ring"
    );
}
