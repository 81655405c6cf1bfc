//! The Rust builder API: builds the same [`JobSpec`] a TOML file describes.
//!
//! ```
//! use sluice_engine::builder::StreamEnv;
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("line", DataType::String)]).unwrap();
//! let mut lines = Batch::new(schema);
//! lines.push_row(&[Value::Str("to be or not to be")]).unwrap();
//! let report = StreamEnv::new("wordcount")
//!     .from_batch("lines", lines)
//!     .flat_map("line", " ", "word")
//!     .key_by("word")
//!     .aggregate(&["count(*) AS n"])
//!     .collect()
//!     .execute()
//!     .unwrap();
//! assert_eq!(report.collected_rows().len(), 4); // to, be, or, not
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use crate::api::run_job;
use crate::error::EngineError;
use crate::operator::WindowKind;
use crate::record::{Batch, Field};
use crate::runtime::JobReport;
use crate::source::{Format, NexmarkConfig, Source, ValuesSource};
use crate::spec::job::{
    CustomSink, CustomSource, FlatMapSpec, JobSpec, OperatorSpec, ReduceSpec, SinkFactory,
    SinkSpec, SourceFactory, SourceSpec, WatermarkSpec, WindowSpec,
};

/// Builds a job step by step.
#[derive(Clone, Debug)]
pub struct StreamEnv {
    spec: JobSpec,
}

impl StreamEnv {
    /// Starts a job called `name` with one unpinned shard.
    pub fn new(name: &str) -> Self {
        Self {
            spec: JobSpec::named(name),
        }
    }

    /// Sets the number of shards.
    pub fn parallelism(mut self, shards: usize) -> Self {
        self.spec.parallelism = shards;
        self
    }

    /// Pins shards to cores.
    pub fn pin_cores(mut self, pin: bool) -> Self {
        self.spec.pin_cores = pin;
        self
    }

    /// Sets the capacity of every exchange ring, in batches.
    pub fn ring_capacity(mut self, batches: usize) -> Self {
        self.spec.ring_capacity_batches = batches;
        self
    }

    /// Uses event time from `column` with bounded out-of-orderness and an idle timeout.
    pub fn watermark(
        mut self,
        column: &str,
        out_of_orderness_ms: i64,
        idle_timeout_ms: u64,
    ) -> Self {
        self.spec.watermark = WatermarkSpec {
            column: Some(column.to_owned()),
            out_of_orderness_ms,
            idle_timeout_ms,
            processing_time: false,
        };
        self
    }

    /// Uses processing time: every record gets a `proc_time` column (wall clock at
    /// ingestion), and windows fire by the wall clock.
    pub fn processing_time(mut self) -> Self {
        self.spec.watermark = WatermarkSpec {
            processing_time: true,
            ..WatermarkSpec::default()
        };
        self
    }

    /// Adds a source.
    pub fn source(mut self, source: SourceSpec) -> Self {
        self.spec.sources.push(source);
        self
    }

    /// Adds the Nexmark generator.
    pub fn nexmark(self, config: NexmarkConfig) -> Self {
        self.source(SourceSpec::Nexmark(config))
    }

    /// Adds a file source.
    pub fn file(self, path: impl Into<PathBuf>, format: Format, fields: Vec<Field>) -> Self {
        self.source(SourceSpec::File {
            path: path.into(),
            format,
            fields,
            header: false,
        })
    }

    /// Adds a fixed batch of records, dealt round-robin across shards.
    pub fn from_batch(self, name: &str, batch: Batch) -> Self {
        let schema = batch.schema().clone();
        let rows = Arc::new(batch);
        let factory: Arc<SourceFactory> = Arc::new(move |shard, shards| {
            Ok(Box::new(ValuesSource::new(rows.clone(), shard, shards)?) as Box<dyn Source>)
        });
        self.source(SourceSpec::Custom(CustomSource {
            name: name.to_owned(),
            schema,
            factory,
        }))
    }

    /// Adds a source built per shard by `factory(shard, shards)`.
    pub fn custom_source(self, source: CustomSource) -> Self {
        self.source(SourceSpec::Custom(source))
    }

    fn op(mut self, op: OperatorSpec) -> Self {
        self.spec.operators.push(op);
        self
    }

    /// Keeps records matching a SQL predicate.
    pub fn filter(self, predicate: &str) -> Self {
        self.op(OperatorSpec::Filter(predicate.to_owned()))
    }

    /// Projects SQL expressions.
    pub fn map(self, projections: &[&str]) -> Self {
        self.op(OperatorSpec::Map(
            projections.iter().map(|s| (*s).to_owned()).collect(),
        ))
    }

    /// Splits string `column` on `separator` into records with the piece in `output`.
    pub fn flat_map(self, column: &str, separator: &str, output: &str) -> Self {
        self.op(OperatorSpec::FlatMap(FlatMapSpec {
            column: column.to_owned(),
            separator: separator.to_owned(),
            output: output.to_owned(),
        }))
    }

    /// Repartitions by `column`.
    pub fn key_by(self, column: &str) -> Self {
        self.op(OperatorSpec::KeyBy(column.to_owned()))
    }

    /// Rolling fold of `column` with `func` (`sum`, `min`, `max`, `concat`).
    pub fn reduce(self, column: &str, func: &str, separator: &str) -> Self {
        self.op(OperatorSpec::Reduce(ReduceSpec {
            column: column.to_owned(),
            func: func.to_owned(),
            separator: separator.to_owned(),
        }))
    }

    /// Aggregates over the whole input.
    pub fn aggregate(self, aggs: &[&str]) -> Self {
        self.op(OperatorSpec::Aggregate(
            aggs.iter().map(|s| (*s).to_owned()).collect(),
        ))
    }

    /// Aggregates over event-time windows.
    pub fn window(self, kind: WindowKind, aggs: &[&str], allowed_lateness_ms: i64) -> Self {
        self.op(OperatorSpec::Window(WindowSpec {
            kind,
            aggregate: aggs.iter().map(|s| (*s).to_owned()).collect(),
            allowed_lateness_ms,
            time: None,
        }))
    }

    /// Adds a sink.
    pub fn sink(mut self, sink: SinkSpec) -> Self {
        self.spec.sinks.push(sink);
        self
    }

    /// Collects the output into the job report.
    pub fn collect(self) -> Self {
        self.sink(SinkSpec::Collect)
    }

    /// Adds a sink built per shard by `factory(shard, shards)`.
    pub fn custom_sink(self, name: &str, factory: Arc<SinkFactory>) -> Self {
        self.sink(SinkSpec::Custom(CustomSink {
            name: name.to_owned(),
            factory,
        }))
    }

    /// Sends late records to `sink`.
    pub fn late_sink(mut self, sink: SinkSpec) -> Self {
        self.spec.late_sink = Some(sink);
        self
    }

    /// Writes malformed input records to `path`.
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.spec.dead_letter = Some(path.into());
        self
    }

    /// Returns the spec built so far.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Checks and runs the job.
    pub fn execute(self) -> Result<JobReport, EngineError> {
        run_job(self.spec)
    }
}
