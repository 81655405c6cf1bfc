//! Command tasks: a process per task, its output in files, limits in a
//! cgroup where the host allows.
//!
//! The process runs in the task's directory `data_dir/tasks/JOB.TASK/` with
//! stdout and stderr in files there, in a process group of its own so that
//! stopping it stops what it started too (SIGTERM, then SIGKILL after a
//! grace period).

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_api::model::TaskState;
use tokio::sync::oneshot;

use super::cgroup::{Cgroups, TaskCgroup};
use super::{procfs, send, Events, LiveTasks, RecordChange, Running, StopRequest};
use crate::journal::{TaskKey, TaskRecord};
use crate::sys;

/// How often an adopted process (started by an earlier agent) is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// Everything needed to start one command task.
#[derive(Debug, Clone)]
pub struct CommandLaunch {
    pub key: TaskKey,
    pub argv: Vec<String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The task's directory (created if missing).
    pub dir: PathBuf,
    /// Where limits can be enforced; the error says why they cannot.
    pub cgroups: Result<Cgroups, String>,
    pub kill_grace: Duration,
    /// The user the task runs as (None: the agent's).
    pub user: Option<sys::User>,
}

/// The directory of task `key` under the agent's data dir.
pub fn task_dir(data_dir: &Path, key: TaskKey) -> PathBuf {
    data_dir.join("tasks").join(format!("{}.{}", key.0, key.1))
}

/// Starts a command task on the current tokio runtime, registered in `live`
/// until it ends.
pub fn start(launch: CommandLaunch, events: Events, live: &LiveTasks) -> Running {
    let (stop_tx, stop_rx) = oneshot::channel();
    let done = Arc::new(AtomicBool::new(false));
    live.insert(launch.key, done.clone());
    let flag = done.clone();
    tokio::spawn(async move {
        run(launch, &events, stop_rx).await;
        flag.store(true, Ordering::Release);
    });
    Running::command(stop_tx, done)
}

/// Watches a process an earlier agent started (found alive in the journal),
/// registered in `live` until it ends.
pub fn adopt(
    key: TaskKey,
    record: TaskRecord,
    kill_grace: Duration,
    events: Events,
    live: &LiveTasks,
) -> Running {
    let (stop_tx, mut stop_rx) = oneshot::channel::<StopRequest>();
    let done = Arc::new(AtomicBool::new(false));
    live.insert(key, done.clone());
    let flag = done.clone();
    tokio::spawn(async move {
        let alive = || procfs::is_alive(record.pid, record.start_ticks);
        loop {
            if !alive() {
                let message = format!(
                    "process {} ended while the agent was restarting; its exit status is unknown",
                    record.pid
                );
                send(&events, key, TaskState::Lost, message, RecordChange::Ended);
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(ADOPTED_POLL) => {}
                reason = &mut stop_rx => {
                    // Dropped unasked: the agent stopped leaving its tasks.
                    let Ok(reason) = reason else { break };
                    kill_group(record.pid, kill_grace, || !alive()).await;
                    send(&events, key, reason.report_as, format!("stopped: {}", reason.reason), RecordChange::Ended);
                    break;
                }
            }
        }
        flag.store(true, Ordering::Release);
    });
    Running::command(stop_tx, done)
}

/// SIGTERM to the group, then SIGKILL once `grace` passed and it still runs.
async fn kill_group(pgid: u32, grace: Duration, mut gone: impl FnMut() -> bool) {
    if let Err(e) = sys::signal_group(pgid, sys::SIGTERM) {
        tracing::warn!(pgid, %e, "cannot SIGTERM task");
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if gone() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(e) = sys::signal_group(pgid, sys::SIGKILL) {
        tracing::warn!(pgid, %e, "cannot SIGKILL task");
    }
}

/// Finds the program `name` the way execvp would; the error says where it looked.
pub fn resolve_program(name: &str, cwd: &Path) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            cwd.join(name)
        };
        return if executable(&path) {
            Ok(path)
        } else if path.exists() {
            Err(format!("program {name:?} is not an executable file"))
        } else {
            Err(format!("program {name:?} does not exist"))
        };
    }
    let search = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    search
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| executable(p))
        .ok_or_else(|| format!("program {name:?} not found in PATH ({search})"))
}

async fn run(launch: CommandLaunch, events: &Events, mut stop_rx: oneshot::Receiver<StopRequest>) {
    let key = launch.key;
    let fail = |message: String| send(events, key, TaskState::Failed, message, RecordChange::Ended);
    if let Err(e) = std::fs::create_dir_all(&launch.dir) {
        return fail(format!(
            "cannot create task dir {}: {e}",
            launch.dir.display()
        ));
    }
    let Some(program) = launch.argv.first() else {
        return fail("empty command line".into());
    };
    let program = match resolve_program(program, &launch.dir) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    // A fresh file per run, never through a link: with a task user the
    // task owns this directory and could have left a symlink here.
    let open = |name: &str| {
        let path = launch.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot replace {}: {e}", path.display())),
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o640)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))
    };
    let (stdout, stderr) = match (open("stdout"), open("stderr")) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    if let Some(user) = &launch.user {
        // The task user owns its sandbox (and may read its own output); the
        // files are changed through their descriptors, not their paths.
        let (uid, gid) = (Some(user.uid), Some(user.gid));
        let owned = std::os::unix::fs::lchown(&launch.dir, uid, gid)
            .and_then(|()| std::os::unix::fs::fchown(&stdout, uid, gid))
            .and_then(|()| std::os::unix::fs::fchown(&stderr, uid, gid));
        if let Err(e) = owned {
            return fail(format!(
                "cannot give the task dir {} and its output to task user {}: {e}",
                launch.dir.display(),
                user.name
            ));
        }
    }
    let (cgroup, limits): (Option<TaskCgroup>, String) = match &launch.cgroups {
        Ok(cgroups) => match cgroups.create(key, launch.cpus, launch.memory_bytes) {
            Ok(cg) => {
                let limits = format!(
                    "limits enforced by cgroup {} (cpu.max {}, memory.max {})",
                    cg.dir.display(),
                    cg.cpu_max,
                    cg.memory_max
                );
                (Some(cg), limits)
            }
            Err(e) => (None, format!("cpu and memory limits not enforced: {e}")),
        },
        Err(e) => (None, format!("cpu and memory limits not enforced: {e}")),
    };
    // With a task user, the shell cannot write the (root's) cgroup.procs
    // itself: it waits on stdin until the agent has moved it into the
    // cgroup, then becomes the program, so again nothing of the task runs
    // outside its limits.
    let joined_by_agent = cgroup.is_some() && launch.user.is_some();
    let mut command = match &cgroup {
        Some(_) if joined_by_agent => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c")
                .arg(r#"read -r _ && exec "$0" "$@""#)
                .arg(&program)
                .args(&launch.argv[1..]);
            c
        }
        // The shell joins the cgroup, then becomes the program (same pid),
        // so nothing of the task ever runs outside its limits.
        Some(cg) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c")
                .arg(r#"echo $$ > "$0" && exec "$@""#)
                .arg(cg.procs_file())
                .arg(&program)
                .args(&launch.argv[1..]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(&program);
            c.args(&launch.argv[1..]);
            c
        }
    };
    if let Some(user) = &launch.user {
        // std drops root's supplementary groups when it switches the uid.
        command.uid(user.uid).gid(user.gid);
    }
    // Not the agent's environment: it may hold the agent's ACL token.
    command.env_clear();
    command.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    if let Some(user) = &launch.user {
        command.env("USER", &user.name).env("LOGNAME", &user.name);
    }
    command
        .current_dir(&launch.dir)
        .stdin(if joined_by_agent {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            if let Some(cg) = &cgroup {
                cg.remove();
            }
            return fail(format!("cannot start {}: {e}", program.display()));
        }
    };
    let Some(pid) = child.id() else {
        return fail("the process ended before its pid could be read".into());
    };
    if let (true, Some(cg)) = (joined_by_agent, &cgroup) {
        let joined = std::fs::write(cg.procs_file(), pid.to_string());
        let released = match (&joined, child.stdin.take()) {
            (Ok(()), Some(mut stdin)) => {
                use tokio::io::AsyncWriteExt;
                stdin.write_all(b"go\n").await
            }
            _ => Ok(()),
        };
        if let Err(e) = joined.and(released) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            cg.remove();
            return fail(format!(
                "cannot move the task into cgroup {}: {e}",
                cg.dir.display()
            ));
        }
    }
    let start_ticks = procfs::stat(pid).map_or(0, |s| s.start_ticks);
    send(
        events,
        key,
        TaskState::Running,
        format!("pid {pid}; {limits}"),
        RecordChange::Started(TaskRecord { pid, start_ticks }),
    );
    let status = tokio::select! {
        biased;
        status = child.wait() => status,
        reason = &mut stop_rx => {
            // The process may have ended just as the stop came: then it ended
            // on its own and is reported as such.
            match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                _ => {
                    // The stop handle dropped unasked: the agent stopped
                    // leaving its tasks running (as a crash would) for a later
                    // agent to adopt, so the process is left alone.
                    let Ok(reason) = reason else {
                        tracing::info!(job = key.0, task = key.1, pid,
                            "agent stopped without stopping the task; leaving it running");
                        return;
                    };
                    let how = stop_child(&mut child, pid, launch.kill_grace).await;
                    if let Some(cg) = &cgroup {
                        cg.remove();
                    }
                    let message = format!("stopped: {} ({how})", reason.reason);
                    send(events, key, reason.report_as, message, RecordChange::Ended);
                    return;
                }
            }
        }
    };
    let oom = cgroup.as_ref().is_some_and(TaskCgroup::oom_killed);
    if let Some(cg) = &cgroup {
        cg.remove();
    }
    let (state, message) = match status {
        Ok(s) if s.success() => (TaskState::Finished, "exited with code 0".to_owned()),
        Ok(s) if oom => (
            TaskState::Failed,
            format!(
                "{} after exceeding its memory limit ({} bytes)",
                describe(s),
                launch.memory_bytes
            ),
        ),
        Ok(s) => (
            TaskState::Failed,
            format!(
                "{}; see {}",
                describe(s),
                launch.dir.join("stderr").display()
            ),
        ),
        Err(e) => (
            TaskState::Failed,
            format!("cannot wait for the process: {e}"),
        ),
    };
    send(events, key, state, message, RecordChange::Ended);
}

/// SIGTERM, then SIGKILL after `grace`; says how the process ended.
async fn stop_child(child: &mut tokio::process::Child, pid: u32, grace: Duration) -> String {
    if let Err(e) = sys::signal_group(pid, sys::SIGTERM) {
        tracing::warn!(pid, %e, "cannot SIGTERM task");
    }
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Err(e) = sys::signal_group(pid, sys::SIGKILL) {
                tracing::warn!(pid, %e, "cannot SIGKILL task");
            }
            child.wait().await
        }
    };
    match status {
        Ok(s) => describe(s),
        Err(e) => format!("wait failed: {e}"),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_like_execvp() {
        let cwd = Path::new("/");
        assert!(resolve_program("sh", cwd).is_ok());
        let err = resolve_program("no-such-program-sluice", cwd).unwrap_err();
        assert!(err.contains("not found in PATH"), "{err}");
        let err = resolve_program("/no/such/program", cwd).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve_program(plain.to_str().unwrap(), cwd).unwrap_err();
        assert!(err.contains("not an executable"), "{err}");
    }
}
