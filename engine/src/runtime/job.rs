//! Running a planned job: builds the exchange meshes, starts one pinned thread per shard,
//! waits for all of them, and gathers their reports. A failing or panicking shard stops the
//! others and fails the job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::record::Batch;
use crate::runtime::exchange::local_mesh;
use crate::runtime::shard::{ShardBuilder, ShardReport};
use crate::source::DeadLetter;
use crate::spec::plan::Plan;

/// What a job did.
#[derive(Clone, Debug, Default)]
pub struct JobReport {
    /// Job name.
    pub name: String,
    /// Records read from sources.
    pub records_in: u64,
    /// Records written to sinks (counted once, however many sinks there are).
    pub records_out: u64,
    /// Records too late for their windows (sent to the late sink if there is one).
    pub late_records: u64,
    /// Malformed input records (written to the dead-letter file if there is one).
    pub dead_letters: u64,
    /// Some malformed records with their positions.
    pub dead_letter_samples: Vec<DeadLetter>,
    /// Steps in which a stage waited for a full ring.
    pub backpressure_waits: u64,
    /// Output of `collect` sinks, in arrival order per shard.
    pub collected: Vec<Batch>,
    /// Per-shard reports.
    pub shards: Vec<ShardReport>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// Sets the abort flag if the shard ends without reporting success (error or panic).
struct AbortOnDrop {
    abort: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.abort.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs a planned job to completion on `plan.spec.parallelism` shard threads.
pub fn run_plan(plan: Plan) -> Result<JobReport, EngineError> {
    let started = Instant::now();
    let plan = Arc::new(plan);
    tracing::info!(
        job = %plan.spec.name,
        shards = plan.spec.parallelism,
        stages = plan.stages.len(),
        "starting job"
    );
    let shards = plan.spec.parallelism;
    let mut senders: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
    for _ in 0..plan.edges {
        let (tx, rx) = local_mesh(shards, plan.spec.ring_capacity_batches);
        for (shard, row) in tx.into_iter().enumerate() {
            senders[shard].push(row);
        }
        for (shard, row) in rx.into_iter().enumerate() {
            receivers[shard].push(row);
        }
    }
    let cores = if plan.spec.pin_cores {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let (collect_tx, collect_rx) = crossbeam_channel::unbounded();
    let abort = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(shards);
    for (shard, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
        let builder = ShardBuilder {
            shard,
            plan: plan.clone(),
            senders: tx,
            receivers: rx,
            collect: collect_tx.clone(),
            abort: abort.clone(),
            core: cores.get(shard).copied(),
        };
        let guard_abort = abort.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sluice-shard-{shard}"))
            .spawn(move || {
                let mut guard = AbortOnDrop {
                    abort: guard_abort,
                    armed: true,
                };
                let result = builder.run();
                guard.armed = result.is_err();
                result
            })
            .map_err(|e| EngineError::Shard {
                shard,
                message: format!("cannot start thread: {e}"),
            });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                abort.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    drop(collect_tx);
    let mut report = JobReport {
        name: plan.spec.name.clone(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    for (shard, handle) in handles.into_iter().enumerate() {
        let outcome = handle.join().unwrap_or_else(|_| {
            Err(EngineError::Shard {
                shard,
                message: "shard thread panicked".into(),
            })
        });
        match outcome {
            Ok(r) => report.shards.push(r),
            Err(e) => errors.push(e),
        }
    }
    // Report the cause, not the shards that only stopped because of it.
    let stopped = |e: &EngineError| matches!(e, EngineError::Shard { message, .. } if message.starts_with("stopped"));
    if let Some(i) = errors
        .iter()
        .position(|e| !stopped(e))
        .or((!errors.is_empty()).then_some(0))
    {
        return Err(errors.swap_remove(i));
    }
    for s in &report.shards {
        report.records_in += s.counters.records_in;
        report.records_out += s.counters.records_out;
        report.late_records += s.counters.late_records;
        report.backpressure_waits += s.counters.backpressure_waits;
        report.dead_letters += s.dead_letters;
        report
            .dead_letter_samples
            .extend(s.dead_letter_samples.iter().cloned());
    }
    report.collected = collect_rx.try_iter().collect();
    report.elapsed = started.elapsed();
    tracing::info!(
        job = %report.name,
        records_in = report.records_in,
        records_out = report.records_out,
        late = report.late_records,
        dead_letters = report.dead_letters,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "job finished"
    );
    Ok(report)
}
