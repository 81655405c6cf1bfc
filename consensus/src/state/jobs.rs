//! Applying job submissions, cancels and kills, and the end of a job.

use super::*;
use crate::command::{CommandError, CommandOutput};

impl ClusterState {
    /// The role a job may use: a set one, or the implicit default role.
    pub fn role_exists(&self, name: &str) -> bool {
        name == DEFAULT_ROLE || self.roles.contains_key(name)
    }

    pub(super) fn submit_job(
        &mut self,
        index: u64,
        now_ms: u64,
        spec: &JobSpec,
    ) -> Result<CommandOutput, CommandError> {
        spec.validate()?;
        if !self.role_exists(&spec.role) {
            return Err(CommandError::UnknownRole {
                name: spec.role.clone(),
            });
        }
        if self.jobs.len() >= JOBS_MAX && !self.forget_oldest_ended_job() {
            return Err(CommandError::LimitReached {
                what: "jobs (pending and running)".into(),
                max: JOBS_MAX as u64,
            });
        }
        let id = self.next_job_id;
        self.next_job_id += 1;
        let (tasks, _) = spec.demand();
        let mut job = Job {
            id,
            spec: spec.clone(),
            state: JobState::Pending,
            reason: Some("waiting for the scheduler".into()),
            submitted_index: index,
            submitted_ms: now_ms,
            started_ms: None,
            ended_ms: None,
            run_ms: 0,
            preemptions: 0,
            tasks: (0..tasks)
                .map(|_| Task {
                    state: TaskState::Pending,
                    grant: None,
                    message: None,
                    last_agent: None,
                })
                .collect(),
            events: Vec::new(),
            version: 0,
            attempt: 0,
            checkpoints: Vec::new(),
            restore_from: None,
            restarts: 0,
            not_before_ms: None,
            checkpoints_failed: 0,
            failed_checkpoints: Vec::new(),
            checkpoint_in_progress: None,
        };
        job.record(index, now_ms, "submitted");
        self.jobs.insert(id, job);
        Ok(CommandOutput::JobSubmitted { id })
    }

    pub(super) fn cancel_job(
        &mut self,
        index: u64,
        now_ms: u64,
        id: JobId,
    ) -> Result<CommandOutput, CommandError> {
        let job = self.jobs.get(&id).ok_or(CommandError::UnknownJob { id })?;
        if job.state.is_ended() {
            return Err(CommandError::JobEnded {
                id,
                state: job.state,
            });
        }
        let previous = job.state;
        self.check_held([id])?;
        self.end_job(index, now_ms, id, JobState::Cancelled, "cancelled by user");
        Ok(CommandOutput::JobCancelled { id, previous })
    }

    pub(super) fn kill_task(
        &mut self,
        index: u64,
        now_ms: u64,
        id: JobId,
        task: u32,
    ) -> Result<CommandOutput, CommandError> {
        let job = self.jobs.get(&id).ok_or(CommandError::UnknownJob { id })?;
        if task as usize >= job.tasks.len() {
            return Err(CommandError::UnknownTask { job: id, task });
        }
        if job.state.is_ended() {
            return Err(CommandError::JobEnded {
                id,
                state: job.state,
            });
        }
        let previous = job.state;
        self.check_held([id])?;
        self.end_job(
            index,
            now_ms,
            id,
            JobState::Cancelled,
            &format!("task {task} killed by user"),
        );
        Ok(CommandOutput::JobCancelled { id, previous })
    }

    /// Moves a live job to an ended state, freeing what it holds.
    pub(super) fn end_job(
        &mut self,
        index: u64,
        now_ms: u64,
        id: JobId,
        state: JobState,
        reason: &str,
    ) {
        debug_assert!(state.is_ended());
        self.release_job(id);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.state = state;
        job.version += 1;
        job.reason = (state != JobState::Finished).then(|| reason.to_owned());
        if let Some(started) = job.started_ms.take() {
            job.run_ms = job.run_ms.saturating_add(now_ms.saturating_sub(started));
        }
        job.ended_ms = Some(now_ms);
        let task_end = match state {
            JobState::Finished => TaskState::Finished,
            _ => TaskState::Killed,
        };
        for task in &mut job.tasks {
            if !task.state.is_ended() {
                task.state = task_end;
            }
        }
        job.record(index, now_ms, reason);
        self.ended_jobs += 1;
        if self.ended_jobs > ENDED_JOBS_KEPT as u64 {
            self.forget_oldest_ended_job();
        }
    }

    /// Forgets the ended job with the lowest id; false if there is none.
    fn forget_oldest_ended_job(&mut self) -> bool {
        let Some(id) = self
            .jobs
            .values()
            .find(|job| job.state.is_ended())
            .map(|job| job.id)
        else {
            return false;
        };
        self.jobs.remove(&id);
        self.ended_jobs -= 1;
        true
    }

    pub(super) fn set_policy(&mut self, policy: Policy) -> Result<CommandOutput, CommandError> {
        let previous = std::mem::replace(&mut self.policy, policy);
        Ok(CommandOutput::PolicySet { previous })
    }
}
