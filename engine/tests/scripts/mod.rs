//! Scripts of operator input shared by the operator tests: batches with keys, disorder and
//! late records, and watermarks that fire windows, generated from one `u64` seed (a failure
//! prints its seed), and runs of operators over them.
#![allow(dead_code)] // each test uses its part

use sluice_engine::operator::{Emit, Operator, Output, TwoInputOperator};
use sluice_engine::record::{Batch, DataType, OwnedValue, Schema, SchemaRef, Value};

/// Most events of a case.
pub const EVENTS_MAX: u64 = 300;

/// SplitMix64: a small, well-mixed generator, so a seed fully determines a case.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> i64 {
        (self.next() % n.max(1)) as i64
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub key: i64,
    pub ts: i64,
    pub id: i64,
    pub w: i64,
}

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Step {
    /// A batch of the (left, for joins) input.
    Left(Vec<Event>),
    /// A batch of the right input of a join.
    Right(Vec<Event>),
    Watermark(i64),
}

/// A script: events in random batches trailing a rising clock by a random disorder, a
/// watermark (largest timestamp seen − out-of-orderness − 1) after each batch that raises
/// it, and the end of time. Join scripts spread the batches over both inputs.
pub fn script(seed: u64, two_inputs: bool) -> Vec<Step> {
    let mut rng = Rng(seed);
    let out_of_orderness = rng.below(20);
    let disorder = rng.below(60);
    let n = 20 + rng.below(EVENTS_MAX);
    let (mut clock, mut steps, mut batch) = (0i64, Vec::new(), Vec::new());
    let (mut max_ts, mut watermark) = (i64::MIN, i64::MIN);
    let mut cut = 1 + rng.below(8);
    for id in 0..n {
        clock += rng.below(5);
        let e = Event {
            key: rng.below(4),
            ts: clock - rng.below(disorder as u64 + 1),
            id,
            w: rng.below(1_000),
        };
        max_ts = max_ts.max(e.ts);
        batch.push(e);
        if batch.len() as i64 == cut || id == n - 1 {
            let events = std::mem::take(&mut batch);
            steps.push(if two_inputs && rng.below(2) == 0 {
                Step::Right(events)
            } else {
                Step::Left(events)
            });
            cut = 1 + rng.below(8);
            let next = max_ts - out_of_orderness - 1;
            if next > watermark {
                watermark = next;
                steps.push(Step::Watermark(watermark));
            }
        }
    }
    steps.push(Step::Watermark(i64::MAX));
    steps
}

/// Where to cut a script of `len` steps: anywhere before its end of time.
pub fn cut_point(seed: u64, len: usize) -> usize {
    1 + (Rng(seed ^ 0xC0FF_EE00).next() % (len as u64 - 1)) as usize
}

pub fn schema() -> SchemaRef {
    Schema::of(&[
        ("k", DataType::Int),
        ("ts", DataType::Timestamp),
        ("id", DataType::Int),
        ("w", DataType::Int),
        ("name", DataType::String),
        ("x", DataType::Float),
    ])
    .unwrap()
}

pub fn to_batch(events: &[Event]) -> Batch {
    let mut b = Batch::new(schema());
    for e in events {
        let name = format!("key-{}", e.key);
        let row = [
            Value::Int(e.key),
            Value::Timestamp(e.ts),
            Value::Int(e.id),
            Value::Int(e.w),
            Value::Str(&name),
            Value::Float(e.w as f64 / 8.0),
        ];
        b.push_row(&row).unwrap();
    }
    b
}

/// What one step emitted: main rows, late rows and, for joins, the late count after it.
pub type Trace = Vec<(Vec<Vec<OwnedValue>>, Vec<Vec<OwnedValue>>, u64)>;

pub fn run_one(op: &mut dyn Operator, steps: &[Step]) -> Trace {
    let mut out = Output::new(op.output_schema().clone(), schema());
    let mut trace = Trace::new();
    for step in steps {
        let (mut main, mut late) = (Vec::new(), Vec::new());
        match step {
            Step::Left(events) | Step::Right(events) => {
                op.process(&to_batch(events), &mut out).unwrap();
                main.extend(out.main.to_rows());
                late.extend(out.late.to_rows());
                out.clear();
            }
            Step::Watermark(w) => loop {
                let emit = op.on_watermark(*w, &mut out).unwrap();
                main.extend(out.main.to_rows());
                late.extend(out.late.to_rows());
                out.clear();
                if emit == Emit::Done {
                    break;
                }
            },
        }
        trace.push((main, late, 0));
    }
    trace
}

pub fn run_two(op: &mut dyn TwoInputOperator, steps: &[Step]) -> Trace {
    let mut out = Batch::new(op.output_schema().clone());
    let mut trace = Trace::new();
    for step in steps {
        let mut main = Vec::new();
        match step {
            Step::Left(events) => op.process_left(&to_batch(events), &mut out).unwrap(),
            Step::Right(events) => op.process_right(&to_batch(events), &mut out).unwrap(),
            Step::Watermark(w) => {
                while op.on_watermark(*w, &mut out).unwrap() == Emit::More {
                    main.extend(out.to_rows());
                    out.clear();
                }
            }
        }
        main.extend(out.to_rows());
        out.clear();
        trace.push((main, Vec::new(), op.late_records()));
    }
    trace
}
