//! The agent's only `unsafe` code: thin wrappers over the libc calls the
//! standard library does not offer (free disk space, signalling a process
//! group, restricting a thread to a set of cores, looking up a user, the
//! effective user id).
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

/// A user that command tasks run as.
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
}
