//! The agent's only `unsafe` code: thin wrappers over the libc calls the
//! standard library does not offer (free disk space, signalling a process
//! group, restricting a thread to a set of cores, looking up a user, the
//! effective user id, a thread's file-system credentials).
//!
//! Every block says why it is sound; callers see safe functions that return
//! `std::io::Error` on failure.

#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn disk_available_bytes(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the
    // call, and `stat` points to writable memory of the size statvfs fills.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized the whole struct.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let bytes = (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64);
    Ok(bytes)
}

/// Signals every process in process group `pgid` (a task's group leader has
/// pid == pgid). A group that no longer exists is not an error.
pub fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pid out of range",
        ));
    };
    if pgid <= 1 {
        // kill(0 or -1) would signal our own group or every process.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal process group 0 or 1",
        ));
    }
    // SAFETY: kill has no memory-safety preconditions; a negative pid selects
    // the process group, and pgid > 1 was checked above so it never means
    // "every process" or "our own group".
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

pub const SIGTERM: libc::c_int = libc::SIGTERM;
pub const SIGKILL: libc::c_int = libc::SIGKILL;

/// Restricts the calling thread (and the threads it starts afterwards, which
/// inherit the mask) to `cores`.
pub fn set_thread_affinity(cores: &BTreeSet<u32>) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is the empty
    // set, exactly what CPU_ZERO would produce.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &core in cores {
        let core = core as usize;
        if core >= capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("core {core} is beyond the {capacity} cores a cpu_set_t holds"),
            ));
        }
        // SAFETY: `core` is below the set's capacity (checked above), so
        // CPU_SET writes inside `set`.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    // SAFETY: `set` is an initialized cpu_set_t and the size passed is its
    // size; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A user that command tasks run as, and whose permissions stream jobs open
/// their files with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up by name (or by numeric id) through the system's user
/// database (NSS: /etc/passwd, LDAP...).
pub fn lookup_user(name: &str) -> io::Result<User> {
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no user {name:?} in the system's user database"),
        )
    };
    let c_name = CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "user name contains a NUL byte")
    })?;
    let numeric: Option<libc::uid_t> = name.parse().ok();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pwd` is writable storage for one passwd, `buf` is a
        // writable buffer of the length passed, `result` a writable pointer;
        // getpw*_r write only inside them and make `result` point at `pwd`
        // on success or leave it null.
        let rc = unsafe {
            match numeric {
                Some(uid) => libc::getpwuid_r(
                    uid,
                    pwd.as_mut_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                ),
                None => libc::getpwnam_r(
                    c_name.as_ptr(),
                    pwd.as_mut_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                ),
            }
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Err(not_found());
        }
        // SAFETY: the call succeeded and `result` is non-null, so it points
        // at `pwd`, now initialized; its strings point into `buf`, alive here.
        let pwd = unsafe { pwd.assume_init() };
        // SAFETY: pw_name is a NUL-terminated string inside `buf`.
        let user_name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Ok(User {
            name: user_name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// Whether this process runs as root (effective user id 0).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Capabilities that override file permission checks, as bits of a
/// capability set: CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_DAC_READ_SEARCH
/// (2), CAP_FOWNER (3), CAP_FSETID (4). The kernel drops them from a thread's
/// effective set when its file-system user id leaves 0.
const FS_CAPABILITIES: u64 = 0b1_1111;

/// Makes the calling thread's file accesses those of `user`: its file-system
/// user and group ids become the user's, and it keeps no supplementary group
/// (as a command task, which the standard library starts without root's
/// groups). Permission checks of every open, create, link or delete this
/// thread makes from then on are the user's.
///
/// Only the calling thread changes: `setgroups` is made as a raw system call
/// because glibc's wrapper applies it to every thread of the process, and
/// glibc's `setfsuid`/`setfsgid` are plain system calls, which act on the
/// calling thread only (file-system ids are never shared with other
/// threads). Threads this thread starts afterwards start with its
/// credentials. Leaving file-system user id 0 makes the kernel drop the
/// capabilities that override permission checks from the thread's effective
/// set; that is checked too, since a process may keep them
/// (`SECURE_NO_SETUID_FIXUP`), and the switch then fails rather than leaves
/// the thread able to open anything.
///
/// Needs CAP_SETUID and CAP_SETGID (an agent running as root).
pub fn set_thread_fs_user(user: &User) -> io::Result<()> {
    let failed = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    // A thread without supplementary groups needs no setgroups (which a user
    // namespace may forbid even to its root).
    if supplementary_groups()? != 0 {
        let none: libc::c_long = 0;
        // SAFETY: with a count of 0 the kernel reads no group list, so the
        // null pointer is never dereferenced; the call has no other memory
        // effects.
        let rc =
            unsafe { libc::syscall(libc::SYS_setgroups, none, std::ptr::null::<libc::gid_t>()) };
        if rc != 0 {
            return Err(failed(
                "cannot drop the supplementary groups",
                io::Error::last_os_error(),
            ));
        }
        let left = supplementary_groups()?;
        if left != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the thread still has {left} supplementary groups after setgroups"),
            ));
        }
    }
    // setfsgid and setfsuid return the previous id whether they succeed or
    // not; as their manual says, a second call with an invalid id (-1, which
    // changes nothing) returns the id now in force, which is what is checked.
    // SAFETY: setfsgid changes only the calling thread's credentials and has
    // no memory preconditions.
    unsafe { libc::setfsgid(user.gid) };
    // SAFETY: as above; -1 is no group id, so this call changes nothing.
    let fsgid = unsafe { libc::setfsgid(libc::gid_t::MAX) } as libc::gid_t;
    if fsgid != user.gid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "setfsgid({}) was refused: the file-system group id is {fsgid}",
                user.gid
            ),
        ));
    }
    // SAFETY: setfsuid changes only the calling thread's credentials and has
    // no memory preconditions.
    unsafe { libc::setfsuid(user.uid) };
    // SAFETY: as above; -1 is no user id, so this call changes nothing.
    let fsuid = unsafe { libc::setfsuid(libc::uid_t::MAX) } as libc::uid_t;
    if fsuid != user.uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "setfsuid({}) was refused: the file-system user id is {fsuid}",
                user.uid
            ),
        ));
    }
    let effective = thread_effective_capabilities()
        .map_err(|e| failed("cannot read the thread's capabilities", e))?;
    if effective & FS_CAPABILITIES != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the thread kept capabilities that override file permissions \
                 (effective set {effective:#x}) after its file-system user id became {}",
                user.uid
            ),
        ));
    }
    Ok(())
}

/// How many supplementary groups the calling thread has.
fn supplementary_groups() -> io::Result<libc::c_int> {
    // SAFETY: a count of 0 asks for the number of groups only; nothing is
    // written through the null pointer.
    let groups = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if groups < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(groups)
}

/// The effective capability set of the calling thread (`CapEff` in
/// `/proc/thread-self/status`).
fn thread_effective_capabilities() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))?;
    u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("CapEff {hex:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_name_and_id() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup_user("0").unwrap().name, "root");
        let err = lookup_user("no-such-user-here").unwrap_err();
        assert!(err.to_string().contains("no user"), "{err}");
    }

    #[test]
    fn disk_space_of_a_temp_dir_is_known() {
        let dir = std::env::temp_dir();
        assert!(disk_available_bytes(&dir).is_ok());
        assert!(disk_available_bytes(Path::new("/no/such/dir/at/all")).is_err());
    }

    #[test]
    fn signalling_the_whole_machine_is_refused() {
        assert!(signal_group(0, SIGTERM).is_err());
        assert!(signal_group(1, SIGTERM).is_err());
    }

    #[test]
    fn a_switched_thread_and_the_threads_it_starts_open_files_as_the_user_alone() {
        use std::os::unix::fs::PermissionsExt;
        if !running_as_root() {
            eprintln!("skipped: switching file-system credentials needs root, and this test runs as a user");
            return;
        }
        let nobody = lookup_user("nobody").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let secret = dir.path().join("root-only");
        std::fs::write(&secret, "root's\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = secret.clone();
        let (own, started) = std::thread::spawn(move || {
            set_thread_fs_user(&nobody).unwrap();
            let own = std::fs::read(&path).map(drop).map_err(|e| e.kind());
            let started = std::thread::spawn(move || std::fs::read(&path).map(drop))
                .join()
                .unwrap()
                .map_err(|e| e.kind());
            (own, started)
        })
        .join()
        .unwrap();
        assert_eq!(own, Err(io::ErrorKind::PermissionDenied));
        assert_eq!(started, Err(io::ErrorKind::PermissionDenied));
        // The other threads (this one) are still root.
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root's\n");
    }
}
