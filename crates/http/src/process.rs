//! The process's resident memory and CPU time, read from `/proc/self` (Linux). Elsewhere both
//! read as `None` and the metrics are left out rather than reported as zero.

/// Ticks per second of the times in `/proc/<pid>/stat`: `USER_HZ`, which Linux fixes at 100 for
/// user space on every architecture it supports (the kernel's own HZ may differ; the ABI does
/// not).
const USER_HZ: f64 = 100.0;

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// User plus system CPU time in seconds (`utime` + `stime` of `/proc/self/stat`).
pub fn cpu_seconds() -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Open file descriptors (`/proc/self/fd` entries).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces or ')': fields are
    // counted from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            parse_vm_rss("Name:\tjet\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\tjet\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        let stat = "42 (jet worker) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 2 3";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
        assert_eq!(parse_cpu_seconds("1 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_measured() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().unwrap() > 0);
            assert!(cpu_seconds().unwrap() >= 0.0);
            assert!(open_fds().unwrap() > 0);
        }
    }
}
