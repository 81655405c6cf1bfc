//! Event time in running jobs: windows, lateness with the late side output, out-of-order
//! input within the bound, and an idle shard that must not hold back time.
#![allow(clippy::disallowed_methods)] // helper threads play clients and observers

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_engine::builder::StreamEnv;
use sluice_engine::operator::WindowKind;
use sluice_engine::record::{Batch, DataType, OwnedValue, Schema, SchemaRef, Value};
use sluice_engine::sink::Sink;
use sluice_engine::source::{DeadLetters, Source, SourceStatus};
use sluice_engine::spec::{CustomSource, SinkSpec};
use sluice_engine::EngineError;

fn schema() -> SchemaRef {
    Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap()
}

/// Emits one record per poll, so the watermark moves between records.
struct OneByOne {
    rows: Vec<(i64, i64)>,
    next: usize,
}

impl Source for OneByOne {
    fn schema(&self) -> &SchemaRef {
        static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(schema)
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        if let Some((k, ts)) = self.rows.get(self.next) {
            out.push_row(&[Value::Int(*k), Value::Timestamp(*ts)])?;
            self.next += 1;
        }
        Ok(if self.next == self.rows.len() {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}

fn rows(items: &[(i64, i64)]) -> CustomSource {
    let items = items.to_vec();
    CustomSource {
        name: "one-by-one".into(),
        schema: schema(),
        factory: Arc::new(move |_, _| {
            Ok(Box::new(OneByOne {
                rows: items.clone(),
                next: 0,
            }) as Box<dyn Source>)
        }),
    }
}

#[test]
fn out_of_order_within_the_bound_is_on_time_and_beyond_it_is_late() {
    // Out-of-orderness 5: after ts 20 the watermark is 14, so ts 15 is on time, while ts 9
    // (window [0, 10) fired at watermark 9) is late.
    let input = rows(&[(1, 1), (1, 8), (1, 20), (1, 15), (1, 9), (1, 3), (1, 25)]);
    let report = StreamEnv::new("ooo")
        .watermark("ts", 5, 0)
        .custom_source(input)
        .key_by("k")
        .window(WindowKind::Tumbling { size_ms: 10 }, &["count(*) AS n"], 0)
        .collect()
        .late_sink(SinkSpec::Blackhole)
        .execute()
        .unwrap();
    let (i, t) = (OwnedValue::Int, OwnedValue::Timestamp);
    assert_eq!(
        report.collected_rows(),
        [
            vec![i(1), t(0), t(10), i(2)],
            vec![i(1), t(10), t(20), i(1)],
            vec![i(1), t(20), t(30), i(2)],
        ]
    );
    assert_eq!(
        report.late_records, 2,
        "ts 9 and ts 3 arrive after [0, 10) fired"
    );
}

#[test]
fn allowed_lateness_refires_and_exact_lateness_goes_to_the_side_output() {
    // Lateness 5 on [0, 10): it fires at watermark 9 and is kept until watermark 14.
    // Watermarks after each record (no out-of-orderness): 0, 12, 12, 13, 13, 29.
    // ts 5 arrives at watermark 12 (late by 3) and ts 6 at 13 (late by 4): both update
    // [0, 10), which fires again each time.
    let input = rows(&[(1, 1), (1, 13), (1, 5), (1, 14), (1, 6), (1, 30)]);
    let late_rows = Arc::new(Mutex::new(Vec::new()));
    let seen = late_rows.clone();
    let report = StreamEnv::new("lateness")
        .watermark("ts", 0, 0)
        .custom_source(input)
        .window(WindowKind::Tumbling { size_ms: 10 }, &["count(*) AS n"], 5)
        .collect()
        .late_sink(SinkSpec::Custom(sluice_engine::spec::CustomSink {
            name: "late".into(),
            factory: Arc::new(move |_, _| Ok(Box::new(Collect(seen.clone())) as Box<dyn Sink>)),
        }))
        .execute()
        .unwrap();
    let counts: Vec<_> = report
        .collected_rows()
        .into_iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    let (t, i) = (OwnedValue::Timestamp, OwnedValue::Int);
    assert_eq!(
        counts,
        [
            (t(0), i(1)),
            (t(0), i(2)),
            (t(0), i(3)),
            (t(10), i(2)),
            (t(30), i(1))
        ]
    );
    assert_eq!(report.late_records, 0);

    // A record late by exactly the allowed lateness (watermark 14 = 9 + 5) is late.
    let input = rows(&[(1, 1), (1, 15), (1, 7)]);
    let report = StreamEnv::new("exact")
        .watermark("ts", 0, 0)
        .custom_source(input)
        .window(WindowKind::Tumbling { size_ms: 10 }, &["count(*) AS n"], 5)
        .collect()
        .late_sink(SinkSpec::Blackhole)
        .execute()
        .unwrap();
    assert_eq!(report.late_records, 1);
    let first: Vec<_> = report
        .collected_rows()
        .into_iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(first, [OwnedValue::Int(1), OwnedValue::Int(1)]);
    assert!(late_rows.lock().unwrap().is_empty());
}

struct Collect(Arc<Mutex<Vec<Vec<OwnedValue>>>>);

impl Sink for Collect {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.0.lock().unwrap().extend(batch.to_rows());
        Ok(())
    }
}

/// Shard 0 emits ts 0..100 then waits; shard 1 emits nothing. Both end on `release`.
struct Gated {
    shard: usize,
    next: i64,
    release: Arc<AtomicBool>,
}

impl Source for Gated {
    fn schema(&self) -> &SchemaRef {
        static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(schema)
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        if self.shard == 0 && self.next < 100 {
            while self.next < 100 {
                out.push_row(&[Value::Int(self.next % 3), Value::Timestamp(self.next)])?;
                self.next += 1;
            }
            return Ok(SourceStatus::Ready);
        }
        if self.release.load(Ordering::Acquire) {
            Ok(SourceStatus::Exhausted)
        } else {
            Ok(SourceStatus::Pending)
        }
    }
}

#[test]
fn an_idle_shard_does_not_hold_back_windows() {
    let release = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Vec::new()));
    let (gate, sink_out) = (release.clone(), out.clone());
    let env = StreamEnv::new("idle")
        .parallelism(2)
        .watermark("ts", 0, 50)
        .custom_source(CustomSource {
            name: "gated".into(),
            schema: schema(),
            factory: Arc::new(move |shard, _| {
                Ok(Box::new(Gated {
                    shard,
                    next: 0,
                    release: gate.clone(),
                }) as Box<dyn Source>)
            }),
        })
        .key_by("k")
        .window(WindowKind::Tumbling { size_ms: 10 }, &["count(*) AS n"], 0)
        .custom_sink(
            "out",
            Arc::new(move |_, _| Ok(Box::new(Collect(sink_out.clone())) as Box<dyn Sink>)),
        );
    let job = std::thread::spawn(move || env.execute());
    // Shard 0's watermark is 98: windows up to [80, 90) fire for 3 keys once shard 1 counts
    // as idle (after 50 ms without records) — while both sources are still open.
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.lock().unwrap().len() < 27 {
        assert!(
            Instant::now() < deadline,
            "windows did not fire while shard 1 was idle"
        );
        std::thread::park_timeout(Duration::from_millis(5));
    }
    assert_eq!(
        out.lock().unwrap().len(),
        27,
        "[90, 100) must wait for watermark 99"
    );
    release.store(true, Ordering::Release);
    let report = job.join().unwrap().unwrap();
    assert_eq!(out.lock().unwrap().len(), 30);
    assert_eq!(report.records_in, 100);
}

/// Emits ten records on shard 0, then nothing until `release`.
struct TenThenWait {
    shard: usize,
    sent: bool,
    release: Arc<AtomicBool>,
}

impl Source for TenThenWait {
    fn schema(&self) -> &SchemaRef {
        static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| Schema::of(&[("k", DataType::Int)]).unwrap())
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        if self.shard == 0 && !self.sent {
            for k in 0..10 {
                out.push_row(&[Value::Int(k)])?;
            }
            self.sent = true;
            return Ok(SourceStatus::Ready);
        }
        if self.release.load(Ordering::Acquire) {
            Ok(SourceStatus::Exhausted)
        } else {
            Ok(SourceStatus::Pending)
        }
    }
}

#[test]
fn processing_time_windows_fire_by_the_wall_clock() {
    let release = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Vec::new()));
    let (gate, sink_out) = (release.clone(), out.clone());
    let env = StreamEnv::new("proc")
        .parallelism(2)
        .processing_time()
        .custom_source(CustomSource {
            name: "ten".into(),
            schema: Schema::of(&[("k", DataType::Int)]).unwrap(),
            factory: Arc::new(move |shard, _| {
                Ok(Box::new(TenThenWait {
                    shard,
                    sent: false,
                    release: gate.clone(),
                }) as Box<dyn Source>)
            }),
        })
        .window(WindowKind::Tumbling { size_ms: 50 }, &["count(*) AS n"], 0)
        .custom_sink(
            "out",
            Arc::new(move |_, _| Ok(Box::new(Collect(sink_out.clone())) as Box<dyn Sink>)),
        );
    let job = std::thread::spawn(move || env.execute());
    // The ten records share one ingestion time, so one window holds them; it fires once the
    // wall clock passes its end, while the sources are still open.
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the window did not fire by processing time"
        );
        std::thread::park_timeout(Duration::from_millis(5));
    }
    release.store(true, Ordering::Release);
    let report = job.join().unwrap().unwrap();
    let rows = out.lock().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][2], OwnedValue::Int(10));
    assert_eq!(report.records_in, 10);
}
