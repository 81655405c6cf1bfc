//! Entry points for the `ops` crate (`sluice run JOB.toml`) and the `bench` crate.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::error::EngineError;
use crate::record::OwnedValue;
use crate::runtime::{
    run_plan, run_plan_remote, run_plan_remote_with, run_plan_with, JobReport, RemoteExchangeConfig,
};

pub use crate::runtime::JobControl;
use crate::spec::job::JobSpec;
use crate::spec::load::load_spec_file;
use crate::spec::plan::{plan, Plan, SpecItem};

/// Turns a planning error of a spec built in code into an [`EngineError::Spec`] without a
/// text position (line and column 0) but naming the item.
pub(crate) fn plan_in_code(spec: &JobSpec) -> Result<Plan, EngineError> {
    plan(spec).map_err(|(item, err)| {
        let what = match item {
            SpecItem::Job => "job".to_owned(),
            SpecItem::Source(i) => format!("source #{}", i + 1),
            SpecItem::Operator(i) => format!("operator #{}", i + 1),
            SpecItem::Sink(i) => format!("sink #{}", i + 1),
            SpecItem::Stream(i) => format!("stream #{}", i + 1),
            SpecItem::Watermark => "watermark".to_owned(),
            SpecItem::LateSink => "late sink".to_owned(),
            SpecItem::DeadLetter => "dead-letter file".to_owned(),
        };
        EngineError::Spec {
            line: 0,
            column: 0,
            message: format!("{what}: {err}"),
        }
    })
}

/// Reads, checks and runs the job in the TOML file at `path`. Nothing runs if the spec is
/// malformed; the error then has the line and column.
pub fn run_job_file(path: &Path) -> Result<JobReport, EngineError> {
    run_plan(load_spec_file(path)?)
}

/// Reads and checks the job in the TOML file at `path` without running it.
pub fn check_job_file(path: &Path) -> Result<(), EngineError> {
    load_spec_file(path).map(|_| ())
}

/// Checks and runs a job spec built in code.
pub fn run_job(spec: JobSpec) -> Result<JobReport, EngineError> {
    run_plan(plan_in_code(&spec)?)
}

/// Like [`run_job`], but `control` stops the job early: once [`JobControl::cancel`] is
/// called (from any thread), every shard stops within a round and this returns
/// [`EngineError::Cancelled`].
///
/// ```no_run
/// use sluice_engine::api::{run_job_with, JobControl};
/// # fn demo(spec: sluice_engine::JobSpec) {
/// let control = JobControl::new();
/// let stopper = control.clone();
/// let job = std::thread::Builder::new()
///     .spawn(move || run_job_with(spec, &control))
///     .unwrap();
/// stopper.cancel();
/// assert!(matches!(job.join().unwrap(), Err(sluice_engine::EngineError::Cancelled)));
/// # }
/// ```
pub fn run_job_with(spec: JobSpec, control: &JobControl) -> Result<JobReport, EngineError> {
    run_plan_with(plan_in_code(&spec)?, control)
}

/// Checks a job spec built in code and runs this process's share of it: the shards
/// `config.local_shards`, exchanging records over TCP with the peer processes that run the
/// others (see [`crate::runtime::remote`]).
pub fn run_job_remote(
    spec: JobSpec,
    config: RemoteExchangeConfig,
) -> Result<JobReport, EngineError> {
    run_plan_remote(plan_in_code(&spec)?, config, None)
}

/// Like [`run_job_remote`], accepting peers on `listener` (already bound, e.g. to port 0)
/// instead of binding `config.listen`.
pub fn run_job_remote_on(
    spec: JobSpec,
    config: RemoteExchangeConfig,
    listener: std::net::TcpListener,
) -> Result<JobReport, EngineError> {
    run_plan_remote(plan_in_code(&spec)?, config, Some(listener))
}

/// Like [`run_job_remote`] (binding `config.listen` when `listener` is `None`, like
/// [`run_job_remote_on`] otherwise), stopping early with [`EngineError::Cancelled`] once
/// `control` is cancelled, also while still waiting for peers to connect. Peers that are not
/// cancelled themselves then fail with an error naming this process.
pub fn run_job_remote_with(
    spec: JobSpec,
    config: RemoteExchangeConfig,
    listener: Option<std::net::TcpListener>,
    control: &JobControl,
) -> Result<JobReport, EngineError> {
    run_plan_remote_with(plan_in_code(&spec)?, config, listener, control)
}

impl JobReport {
    /// Returns every collected output row (from `collect` sinks).
    pub fn collected_rows(&self) -> Vec<Vec<OwnedValue>> {
        self.collected.iter().flat_map(|b| b.to_rows()).collect()
    }

    /// Returns the total CPU time of all shard threads.
    pub fn cpu_time(&self) -> std::time::Duration {
        self.shards.iter().map(|s| s.cpu_time).sum()
    }
}
