//! Sluice's stream engine: records with schemas, SQL expressions, pure batch-in/batch-out
//! operators, event time with watermarks and windows, and a runtime of pinned, shared-nothing
//! shards that exchange records by key through bounded SPSC rings.
//!
//! Entry points: [`run_job_file`] (`sluice run JOB.toml`), [`run_job`] for a spec built in
//! code, [`builder::StreamEnv`] for the builder API, and [`bench::run_nexmark`] for
//! throughput measurements.
//!
//! `unsafe` is denied everywhere except in [`sys`] (io_uring and thread CPU time).
#![deny(unsafe_code)]

pub mod api;
pub mod bench;
pub mod builder;
pub mod error;
pub mod expr;
pub mod operator;
pub mod record;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod spec;
pub mod state;
pub mod sys;
pub mod time;

pub use api::{check_job_file, run_job, run_job_file, run_job_with};
pub use error::EngineError;
pub use runtime::{JobControl, JobReport};
pub use spec::JobSpec;
