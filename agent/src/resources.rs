//! What this machine offers: cores, memory and disk, detected or configured.

use std::collections::BTreeSet;
use std::path::Path;

use crate::sys;

/// Reads the cores this process may run on (its affinity mask), or
/// `0..available_parallelism` where the mask cannot be read.
pub fn detect_cores() -> BTreeSet<u32> {
    if let Some(ids) = core_affinity::get_core_ids() {
        let cores: BTreeSet<u32> = ids.iter().map(|c| c.id as u32).collect();
        if !cores.is_empty() {
            return cores;
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    (0..n).collect()
}

/// Reads the machine's total memory from `/proc/meminfo`.
pub fn detect_memory_bytes() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("cannot read /proc/meminfo ({e}); pass the memory explicitly"))?;
    parse_meminfo_total(&text)
        .ok_or_else(|| "no MemTotal line in /proc/meminfo; pass the memory explicitly".into())
}

/// The `MemTotal:` value of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let scale = match words.next() {
        Some("kB") | Some("KB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(scale)
}

/// The space available under `dir`.
pub fn detect_disk_bytes(dir: &Path) -> Result<u64, String> {
    sys::disk_available_bytes(dir).map_err(|e| {
        format!(
            "cannot read free space of {} ({e}); pass the disk size explicitly",
            dir.display()
        )
    })
}

/// The machine's host name, from the kernel.
pub fn detect_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_parsed_in_bytes() {
        let text = "MemTotal:       16318540 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(16_318_540 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 1 parsecs\n"), None);
    }

    #[test]
    fn this_machine_has_cores_and_memory() {
        assert!(!detect_cores().is_empty());
        assert!(detect_memory_bytes().unwrap() > 0);
        assert!(!detect_hostname().is_empty());
    }
}
