//! cgroups v2 limits for command tasks.
//!
//! The agent needs a cgroup v2 directory it may write, whose
//! `cgroup.subtree_control` enables the `cpu` and `memory` controllers (a
//! delegated subtree, e.g. systemd's `Delegate=yes`, or the root of a
//! container's own cgroup namespace). Each task gets a child
//! `sluice-JOB.TASK` with `cpu.max` and `memory.max` set, and its process is
//! moved in before it execs the task's program. Where no such directory
//! exists, tasks still run and their status says the limits are not enforced.

use std::path::{Path, PathBuf};

use crate::journal::TaskKey;

/// The scheduler period written to `cpu.max`, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// A delegated cgroup v2 directory tasks' cgroups are created in.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
}

/// One task's cgroup.
#[derive(Debug)]
pub struct TaskCgroup {
    pub dir: PathBuf,
    pub cpu_max: String,
    pub memory_max: u64,
}

impl Cgroups {
    /// Finds the cgroup v2 directory of this process and checks that tasks'
    /// cgroups can be made there; the error says why not.
    pub fn detect() -> Result<Self, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup v2 file system is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("this process is in no cgroup v2 hierarchy")?;
        let dir = mount.join(path.trim_start_matches('/'));
        Self::at(&dir)
    }

    /// Uses `dir` if it enables the cpu and memory controllers for children
    /// and is writable.
    pub fn at(dir: &Path) -> Result<Self, String> {
        let control = dir.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control)
            .map_err(|e| format!("cannot read {}: {e}", control.display()))?;
        let has = |c: &str| enabled.split_whitespace().any(|w| w == c);
        if !has("cpu") || !has("memory") {
            return Err(format!(
                "{} does not delegate the cpu and memory controllers (it enables {:?})",
                dir.display(),
                enabled.trim()
            ));
        }
        let probe = dir.join("sluice-probe");
        match std::fs::create_dir(&probe) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&probe);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_dir(&probe);
            }
            Err(e) => return Err(format!("cannot create cgroups in {}: {e}", dir.display())),
        }
        Ok(Self {
            root: dir.to_path_buf(),
        })
    }

    /// Creates the cgroup of task `key` with its limits.
    pub fn create(&self, key: TaskKey, cpus: u32, memory_bytes: u64) -> Result<TaskCgroup, String> {
        let dir = self.root.join(format!("sluice-{}.{}", key.0, key.1));
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(format!("cannot create {}: {e}", dir.display()));
            }
        }
        let cpu_max = format!("{} {CPU_PERIOD_US}", u64::from(cpus.max(1)) * CPU_PERIOD_US);
        let write = |file: &str, value: &str| {
            std::fs::write(dir.join(file), value).map_err(|e| {
                format!(
                    "cannot write {} to {}: {e}",
                    value,
                    dir.join(file).display()
                )
            })
        };
        write("cpu.max", &cpu_max)?;
        write("memory.max", &memory_bytes.to_string())?;
        Ok(TaskCgroup {
            dir,
            cpu_max,
            memory_max: memory_bytes,
        })
    }
}

impl TaskCgroup {
    /// The file a process writes its pid to in order to join.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Whether the kernel killed a process of it for exceeding memory.max.
    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    }

    /// Kills what is left in it and removes it.
    pub fn remove(&self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), %e, "task cgroup not removed");
        }
    }
}

/// The mount point of the cgroup2 file system in a `/proc/self/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let info = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("30 25 0:26 / /x rw - ext4 /dev/sda rw\n"),
            None
        );
    }

    #[test]
    fn a_delegated_directory_gets_task_cgroups_with_limits() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "cpu io\n").unwrap();
        let err = Cgroups::at(root.path()).unwrap_err();
        assert!(err.contains("does not delegate"), "{err}");
        std::fs::write(root.path().join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        let cgroups = Cgroups::at(root.path()).unwrap();
        let cg = cgroups.create((4, 0), 2, 1 << 20).unwrap();
        let read = |f: &str| std::fs::read_to_string(cg.dir.join(f)).unwrap();
        assert_eq!(read("cpu.max"), "200000 100000");
        assert_eq!(read("memory.max"), "1048576");
        assert!(!cg.oom_killed());
    }
}
