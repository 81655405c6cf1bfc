//! `sluice run JOB.toml`: the engine alone on this machine.

use anyhow::Result;
use serde::Serialize;
use sluice_engine::runtime::run_plan;
use sluice_engine::spec::load::load_spec_file;
use sluice_engine::spec::StateBackend;

use crate::cli::{RunArgs, StateBackendArg};
use crate::output::{emit, table};

/// What `sluice run` reports when the job ends.
#[derive(Debug, Serialize, serde::Deserialize)]
struct RunReport {
    job: String,
    records_in: u64,
    records_out: u64,
    late_records: u64,
    dead_letters: u64,
    dead_letter_samples: Vec<String>,
    backpressure_waits: u64,
    elapsed_s: f64,
    shard_cpu_s: f64,
    records_in_per_cpu_s: f64,
    /// The checkpoint the job resumed from.
    restored_from_checkpoint: Option<u64>,
    /// Checkpoints skipped at the restore (damaged), with why.
    skipped_checkpoints: Vec<String>,
    checkpoints_completed: u64,
    checkpoints_failed: u64,
}

pub fn run(args: RunArgs) -> Result<()> {
    let where_ = args.file.display().to_string();
    let mut plan = load_spec_file(&args.file).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
    if let Some(ms) = args.checkpoint_interval {
        plan.spec.checkpoint_interval_ms = Some(ms);
    }
    if let Some(url) = args.checkpoint_storage {
        plan.spec.checkpoint_storage = Some(url);
    }
    if let Some(backend) = args.state_backend {
        plan.spec.state_backend = match backend {
            StateBackendArg::Memory => StateBackend::Memory,
            StateBackendArg::Rocksdb => StateBackend::Rocksdb,
        };
    }
    if let Some(dir) = args.state_dir {
        plan.spec.state_dir = Some(dir);
    }
    plan.spec
        .checkpoint_interval()
        .map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
    if args.check {
        println!("{where_}: the job spec is valid");
        return Ok(());
    }
    let report = run_plan(plan).map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
    for skipped in &report.checkpoints.skipped {
        eprintln!("skipped {skipped}");
    }
    if let Some(id) = report.checkpoints.restored_from {
        eprintln!("resumed from checkpoint {id}");
    }
    let cpu = report.cpu_time().as_secs_f64();
    let view = RunReport {
        job: report.name.clone(),
        records_in: report.records_in,
        records_out: report.records_out,
        late_records: report.late_records,
        dead_letters: report.dead_letters,
        dead_letter_samples: report
            .dead_letter_samples
            .iter()
            .map(|d| format!("{}: {} ({:?})", d.position, d.reason, d.raw))
            .collect(),
        backpressure_waits: report.backpressure_waits,
        elapsed_s: report.elapsed.as_secs_f64(),
        shard_cpu_s: cpu,
        records_in_per_cpu_s: if cpu > 0.0 {
            report.records_in as f64 / cpu
        } else {
            0.0
        },
        restored_from_checkpoint: report.checkpoints.restored_from,
        skipped_checkpoints: report.checkpoints.skipped.clone(),
        checkpoints_completed: report.checkpoints.completed,
        checkpoints_failed: report.checkpoints.failed,
    };
    emit(args.output, &view, |v| {
        let mut t = table(&[
            "job",
            "in",
            "out",
            "late",
            "dead letters",
            "elapsed",
            "in / CPU-s",
        ]);
        t.add_row(vec![
            v.job.clone(),
            v.records_in.to_string(),
            v.records_out.to_string(),
            v.late_records.to_string(),
            v.dead_letters.to_string(),
            format!("{:.3} s", v.elapsed_s),
            format!("{:.0}", v.records_in_per_cpu_s),
        ]);
        eprintln!("{t}");
        for sample in &v.dead_letter_samples {
            eprintln!("dead letter: {sample}");
        }
    })
}
