//! The suite's outputs in `--out DIR`: `results.json` (everything measured), `results.md` (the
//! tables docs/performance.md takes) and `chart.svg` (see [`crate::chart`]); plus the machine
//! description and the evaluation of issue 5's performance targets.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::suite::{Figures, ScenarioResult, SuiteResult};

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may use (what `nproc` prints).
    pub cpus: usize,
    /// `MemTotal` from /proc/meminfo, bytes.
    pub mem_total_bytes: u64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads it from /proc; unknown fields stay empty or zero.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_total_bytes: mem_kib * 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// One of issue 5's performance targets, evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is measured.
    pub what: String,
    /// The target, in words ("≥ 0.8× ceiling").
    pub target: String,
    /// The measured value, if the scenarios it needs ran and passed.
    pub value: Option<f64>,
    /// Unit of `value`.
    pub unit: &'static str,
    /// Whether the target is met (`None` when not measured).
    pub pass: Option<bool>,
}

/// Evaluates the targets against the target broker's figures.
pub fn checks(results: &[ScenarioResult], rss_peak_bytes: Option<u64>) -> Vec<Check> {
    let by_id = |id: u32| results.iter().find(|r| r.id == id);
    let ratio = |id: u32| by_id(id).and_then(|r| r.ratio);
    let target = |id: u32| by_id(id).and_then(|r| r.target.as_ref()).filter(|f| f.ok);
    let at_least = |what: &str, target: &str, value: Option<f64>, min: f64, unit| Check {
        what: what.into(),
        target: target.into(),
        value,
        unit,
        pass: value.map(|v| v >= min),
    };
    let at_most = |what: &str, target: &str, value: Option<f64>, max: f64, unit| Check {
        what: what.into(),
        target: target.into(),
        value,
        unit,
        pass: value.map(|v| v <= max),
    };
    // Latency counts even from a run that failed its order check: the percentiles were measured.
    let latency = by_id(5)
        .and_then(|r| r.target.as_ref())
        .and_then(|f| f.latency);
    let many_vs_one = target(6)
        .zip(target(1))
        .filter(|(_, one)| one.msgs_per_sec > 0.0)
        .map(|(many, one)| many.msgs_per_sec / one.msgs_per_sec);
    const MIB: f64 = 1024.0 * 1024.0;
    vec![
        at_least(
            "(1) produce 100 B acks=all, msg/s",
            "≥ 0.8× ceiling",
            ratio(1),
            0.8,
            "×",
        ),
        at_least(
            "(3) produce 1 KiB acks=all, MB/s",
            "≥ 0.5× ceiling",
            ratio(3),
            0.5,
            "×",
        ),
        at_most(
            "(3) disk bytes written per produced byte",
            "≤ 2.2",
            target(3).and_then(|f| f.disk_bytes_per_payload_byte),
            2.2,
            "×",
        ),
        at_least(
            "(4) consume from earliest, msg/s",
            "≥ 0.8× ceiling",
            ratio(4),
            0.8,
            "×",
        ),
        at_most(
            "(5) end-to-end latency p99",
            "≤ 10 ms",
            latency.map(|l| l.p99_ms),
            10.0,
            "ms",
        ),
        at_most(
            "(5) end-to-end latency p99.9",
            "≤ 20 ms",
            latency.map(|l| l.p999_ms),
            20.0,
            "ms",
        ),
        at_least(
            "(6) 1,000 partitions, msg/s",
            "≥ 0.5× of (1)",
            many_vs_one,
            0.5,
            "×",
        ),
        at_least(
            "(7) 50 producers, msg/s",
            "≥ 0.5× ceiling",
            ratio(7),
            0.5,
            "×",
        ),
        at_most(
            "broker peak RSS (VmHWM)",
            "≤ 256 MiB",
            rss_peak_bytes.map(|b| b as f64 / MIB),
            256.0,
            "MiB",
        ),
    ]
}

/// Writes results.json, results.md and chart.svg into `dir` (created if missing).
pub fn write_all(dir: &Path, result: &SuiteResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(result)?;
    std::fs::write(dir.join("results.json"), json + "\n")?;
    std::fs::write(dir.join("results.md"), markdown(result))?;
    std::fs::write(dir.join("chart.svg"), crate::chart::svg(result))?;
    Ok(())
}

/// `1234567.8` → `"1,234,568"`.
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.85×`, `4.70 ms`, `120 MiB`.
pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "×" => format!("{v:.2}×"),
        "MiB" => format!("{v:.0} MiB"),
        _ => format!("{v:.2} {unit}"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The main figure of one side of a scenario, as a table cell.
fn cell(f: Option<&Figures>) -> String {
    match f {
        None => "—".into(),
        // A run that failed a check may still have figures (order errors, for instance).
        Some(f) if !f.ok && f.messages == 0 => "**failed**".into(),
        Some(f) => {
            let figures = match &f.latency {
                Some(l) => format!(
                    "p50 {:.2} · p99 {:.2} · p99.9 {:.2} ms",
                    l.p50_ms, l.p99_ms, l.p999_ms
                ),
                None => format!(
                    "{} msg/s · {:.1} MB/s",
                    thousands(f.msgs_per_sec),
                    f.mb_per_sec
                ),
            };
            if f.ok {
                figures
            } else {
                format!("{figures} **(failed: see below)**")
            }
        }
    }
}

/// The Markdown report.
pub fn markdown(r: &SuiteResult) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(
        md,
        "# jet-bench results{}\n",
        if r.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Machine: {} · {} CPUs · {:.1} GiB RAM · Linux {}. Target: {}{}. jet-bench {}.\n",
        if m.cpu_model.is_empty() {
            "unknown CPU"
        } else {
            &m.cpu_model
        },
        m.cpus,
        m.mem_total_bytes as f64 / (1024.0 * 1024.0 * 1024.0),
        m.kernel,
        r.brokers.as_deref().unwrap_or("none (ceiling only)"),
        r.broker_pid
            .map_or(String::new(), |p| format!(" (pid {p})")),
        r.version,
    );
    if r.quick {
        md.push_str(
            "*Quick mode: scaled-down scenarios; counts are checked, timings mean little.*\n\n",
        );
    }
    md.push_str(
        "| # | scenario | Jet | ceiling (null broker) | Jet ÷ ceiling | broker CPU s | broker CPU µs/msg | broker disk bytes / payload byte | broker peak RSS |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in &r.scenarios {
        let t = s.target.as_ref();
        // Resource columns describe the broker under test; with none, the null broker's thread.
        let measured = if r.brokers.is_some() {
            t
        } else {
            s.ceiling.as_ref()
        };
        let ratio = s.ratio.map_or("—".into(), |v| {
            if s.ratio_of == "p99_ms" {
                format!("{v:.2}× (p99; lower is better)")
            } else {
                format!("{v:.2}×")
            }
        });
        let cpu = measured
            .and_then(|f| f.broker_cpu_secs)
            .map_or("—".into(), |c| format!("{c:.2}"));
        let per_msg = measured
            .and_then(|f| f.broker_cpu_us_per_msg)
            .map_or("—".into(), |c| format!("{c:.2}"));
        let rss = t
            .and_then(|f| f.broker_rss_peak_bytes)
            .map_or("—".into(), mib);
        let disk = t
            .and_then(|f| f.disk_bytes_per_payload_byte)
            .map_or("—".into(), |d| format!("{d:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.id,
            s.what,
            cell(t),
            cell(s.ceiling.as_ref()),
            ratio,
            cpu,
            per_msg,
            disk,
            rss
        );
    }
    if r.brokers.is_none() {
        md.push_str(
            "\nBroker CPU columns: the null broker's thread (no target broker in this run).\n",
        );
    }
    let latency_rows: Vec<(&str, &Figures)> = r
        .scenarios
        .iter()
        .filter(|s| s.ratio_of == "p99_ms")
        .flat_map(|s| [("Jet", s.target.as_ref()), ("ceiling", s.ceiling.as_ref())])
        .filter_map(|(who, f)| f.filter(|f| f.latency.is_some()).map(|f| (who, f)))
        .collect();
    if !latency_rows.is_empty() {
        md.push_str("\n## End-to-end latency (5), ms\n\n| | p50 | p90 | p99 | p99.9 | max | msg/s achieved |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (who, f) in latency_rows {
            if let Some(l) = f.latency {
                let _ = writeln!(
                    md,
                    "| {who} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                    l.p50_ms,
                    l.p90_ms,
                    l.p99_ms,
                    l.p999_ms,
                    l.max_ms,
                    thousands(f.msgs_per_sec)
                );
            }
        }
    }
    if r.brokers.is_some() {
        md.push_str("\n## Targets (issue 5)\n\n| figure | target | measured | met |\n|---|---|---:|:---:|\n");
        for c in &r.checks {
            let value = c
                .value
                .map_or("not measured".into(), |v| format_value(v, c.unit));
            let met = match c.pass {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(md, "| {} | {} | {} | {} |", c.what, c.target, value, met);
        }
    }
    let failures = r.failures();
    if !failures.is_empty() {
        md.push_str("\n## Failures\n\n");
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn machine_reads_something() {
        let m = Machine::read();
        assert!(m.cpus >= 1);
        assert!(m.mem_total_bytes > 0);
    }
}
