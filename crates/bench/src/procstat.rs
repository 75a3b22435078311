//! The broker's resource use, read from Linux's `/proc`: CPU seconds (user + system, fields 14
//! and 15 of `/proc/<pid>/stat`, in clock ticks) and peak resident memory (`VmHWM` in
//! `/proc/<pid>/status`, the high-water mark of RSS since the process started).
//!
//! The null broker runs as a thread of the bench itself, so its CPU time is read per thread from
//! `/proc/self/task/<tid>/stat` (same format).

use anyhow::{bail, Context};
use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Peak resident set size (VmHWM), bytes.
    pub rss_peak_bytes: u64,
    /// Current resident set size (VmRSS), bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat (is the broker running?)"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    Ok(ProcSample {
        cpu_secs: cpu_secs_from_stat(&stat)?,
        rss_peak_bytes: status_kib(&status, "VmHWM")? * 1024,
        rss_bytes: status_kib(&status, "VmRSS")? * 1024,
    })
}

/// Bytes the process has caused to be written to storage (`write_bytes` of `/proc/<pid>/io`,
/// its own writes and its threads', RocksDB's flushes and compactions included).
pub fn io_write_bytes(pid: u32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("read /proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .context("no write_bytes in /proc/<pid>/io")?
        .trim()
        .parse()
        .context("write_bytes is not a number")
}

/// CPU seconds of one thread of this process.
pub fn thread_cpu_secs(tid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .with_context(|| format!("read /proc/self/task/{tid}/stat"))?;
    cpu_secs_from_stat(&stat)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime from a `stat` line, in seconds. The command name (field 2) is in parentheses
/// and may contain spaces or ')' itself, so fields are counted from the last ')'.
fn cpu_secs_from_stat(stat: &str) -> anyhow::Result<f64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("stat line without a command name")?;
    // After the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("stat line with {} fields after the name", fields.len());
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok((utime + stime) as f64 / clock_ticks_per_sec())
}

/// The value of `key:` in a status file, in KiB ("VmHWM:\t  1234 kB").
fn status_kib(status: &str, key: &str) -> anyhow::Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let n = rest.split_whitespace().next().context("empty value")?;
            return n.parse().with_context(|| format!("{key}: {n:?}"));
        }
    }
    bail!("no {key} in status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line =
            "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        let secs = cpu_secs_from_stat(line).unwrap();
        assert!((secs - 300.0 / clock_ticks_per_sec()).abs() < 1e-9);
        assert!(cpu_secs_from_stat("1234 (x) S 1 2").is_err());
    }

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tjet\nVmHWM:\t  20480 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kib(status, "VmHWM").unwrap(), 20480);
        assert_eq!(status_kib(status, "VmRSS").unwrap(), 1024);
        assert!(status_kib(status, "VmPeak").is_err());
    }

    #[test]
    fn reads_this_process_io() {
        let pid = std::process::id();
        let before = io_write_bytes(pid).unwrap();
        let path = std::env::temp_dir().join(format!("jet-bench-io-{pid}"));
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        let after = io_write_bytes(pid).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(after >= before, "write_bytes never decreases");
    }

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_peak_bytes >= s.rss_bytes && s.rss_bytes > 0);
        let tid = unsafe { libc::gettid() };
        assert!(thread_cpu_secs(tid).unwrap() >= 0.0);
    }
}
