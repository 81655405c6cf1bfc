//! Applying stream jobs' checkpoint reports.

use super::*;
use crate::command::{CommandError, CommandOutput};

impl ClusterState {
    /// Stream job `id`, if `attempt` is its current run (what checkpoint reports come from).
    fn stream_run(&self, id: JobId, attempt: u64) -> Result<&Job, CommandError> {
        let job = self.jobs.get(&id).ok_or(CommandError::UnknownJob { id })?;
        if !matches!(job.spec.kind, JobKind::Stream { .. }) {
            return Err(CommandError::invalid(
                "job",
                format!("job {id} is not a stream job"),
            ));
        }
        if job.attempt != attempt {
            return Err(CommandError::StaleRun {
                job: id,
                attempt,
                current: job.attempt,
            });
        }
        Ok(job)
    }

    /// Like [`Self::stream_run`], for a job that must be running (what completions and
    /// triggers come from).
    fn running_stream_run(&self, id: JobId, attempt: u64) -> Result<&Job, CommandError> {
        let job = self.stream_run(id, attempt)?;
        if job.state != JobState::Running {
            return Err(CommandError::invalid(
                "job",
                format!("job {id} is {:?}, not running", job.state),
            ));
        }
        Ok(job)
    }

    /// Records a completed checkpoint of a running stream job's current run.
    pub(super) fn checkpoint_completed(
        &mut self,
        now_ms: u64,
        id: JobId,
        attempt: u64,
        checkpoint: &CheckpointInfo,
    ) -> Result<CommandOutput, CommandError> {
        let job = self.running_stream_run(id, attempt)?;
        if checkpoint.handles.len() != job.tasks.len()
            || checkpoint
                .handles
                .iter()
                .any(|h| h.is_empty() || h.len() > 1024)
        {
            return Err(CommandError::invalid(
                "checkpoint",
                format!(
                    "checkpoint {} names {} shard states, the job has {} shards: a checkpoint is \
                     complete only when every shard stored its state",
                    checkpoint.id,
                    checkpoint.handles.len(),
                    job.tasks.len()
                ),
            ));
        }
        if checkpoint.alignment_us.len() > job.tasks.len() {
            return Err(CommandError::invalid(
                "checkpoint",
                "more alignments than shards",
            ));
        }
        if let Some(last) = job.checkpoints.last() {
            if checkpoint.id <= last.id {
                return Err(CommandError::invalid(
                    "checkpoint",
                    format!(
                        "checkpoint {} is not above the last completed one, {}",
                        checkpoint.id, last.id
                    ),
                ));
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(CommandError::internal(format!("job {id} vanished")));
        };
        if job.checkpoints.len() >= JOB_CHECKPOINTS_KEPT {
            job.checkpoints.remove(0);
        }
        let mut recorded = checkpoint.clone();
        recorded.completed_ms = now_ms;
        job.checkpoints.push(recorded);
        if job
            .checkpoint_in_progress
            .as_ref()
            .is_some_and(|p| p.id <= checkpoint.id)
        {
            job.checkpoint_in_progress = None;
        }
        Ok(CommandOutput::CheckpointRecorded {
            job: id,
            id: checkpoint.id,
        })
    }

    /// Counts a failed checkpoint of a stream job's current run.
    pub(super) fn checkpoint_failed(
        &mut self,
        now_ms: u64,
        id: JobId,
        attempt: u64,
        checkpoint: u64,
        reason: &str,
    ) -> Result<CommandOutput, CommandError> {
        self.stream_run(id, attempt)?;
        let reason = crate::text::clip(reason, CHECKPOINT_FAILURE_BYTES_MAX).into_owned();
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(CommandError::internal(format!("job {id} vanished")));
        };
        job.checkpoints_failed = job.checkpoints_failed.saturating_add(1);
        let started = job.checkpoint_in_progress.take_if(|p| p.id <= checkpoint);
        if job.failed_checkpoints.len() >= JOB_CHECKPOINT_FAILURES_KEPT {
            job.failed_checkpoints.remove(0);
        }
        job.failed_checkpoints.push(CheckpointFailure {
            id: checkpoint,
            triggered_ms: started
                .filter(|p| p.id == checkpoint)
                .map(|p| p.triggered_ms),
            failed_ms: now_ms,
            reason,
        });
        Ok(CommandOutput::CheckpointRecorded {
            job: id,
            id: checkpoint,
        })
    }

    /// Records the checkpoint a running stream job's current run is taking.
    pub(super) fn checkpoint_triggered(
        &mut self,
        _now_ms: u64,
        id: JobId,
        attempt: u64,
        checkpoint: u64,
        triggered_ms: u64,
    ) -> Result<CommandOutput, CommandError> {
        let job = self.running_stream_run(id, attempt)?;
        // A report that arrives after its checkpoint ended (the reports travel apart) is
        // refused: the checkpoint is not in progress any more.
        let ended = job
            .checkpoints
            .last()
            .map(|c| c.id)
            .max(job.failed_checkpoints.last().map(|f| f.id));
        if let Some(ended) = ended.filter(|e| checkpoint <= *e) {
            return Err(CommandError::invalid(
                "checkpoint",
                format!("checkpoint {checkpoint} is not above the last ended one, {ended}"),
            ));
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(CommandError::internal(format!("job {id} vanished")));
        };
        job.checkpoint_in_progress = Some(CheckpointStarted {
            id: checkpoint,
            triggered_ms,
        });
        Ok(CommandOutput::CheckpointRecorded {
            job: id,
            id: checkpoint,
        })
    }
}
