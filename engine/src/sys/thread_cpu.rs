//! CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`) or of the whole process
//! (`RUSAGE_SELF`).

use std::time::Duration;

/// Returns the user plus system CPU time the calling thread has used, or `None` if the
/// kernel refuses.
pub fn thread_cpu_time() -> Option<Duration> {
    cpu_time(libc::RUSAGE_THREAD)
}

/// The user plus system CPU time of every thread of this process so far.
pub fn process_cpu_time() -> Option<Duration> {
    cpu_time(libc::RUSAGE_SELF)
}

fn cpu_time(who: libc::c_int) -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory of the size and alignment of `rusage`, which
    // is all getrusage writes to; RUSAGE_THREAD and RUSAGE_SELF are valid on Linux.
    let rc = unsafe { libc::getrusage(who, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it filled the whole struct (and it started zeroed).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = thread_cpu_time().unwrap();
        let mut x = 0u64;
        let deadline = std::time::Instant::now() + Duration::from_millis(30);
        while std::time::Instant::now() < deadline {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time().unwrap() > before);
    }
}
