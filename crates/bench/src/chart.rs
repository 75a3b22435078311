//! `chart.svg`, written by hand (no plotting dependency): two panels.
//!
//! 1. Throughput per scenario: for each throughput scenario, a grey bar for the ceiling and a
//!    blue one for Jet, both scaled to the larger of the two — so bar length reads as the ratio
//!    — with the absolute msg/s written beside each bar.
//! 2. End-to-end latency percentiles (p50, p90, p99, p99.9, max) for Jet and the ceiling on a
//!    log scale, with the p99 ≤ 10 ms and p99.9 ≤ 20 ms targets drawn as dashed lines.

use std::fmt::Write as _;

use crate::latency::Percentiles;
use crate::report::thousands;
use crate::suite::{Figures, SuiteResult};

const WIDTH: f64 = 900.0;
const JET: &str = "#1f6fb4";
const CEILING: &str = "#b0b0b0";
const TARGET: &str = "#d62728";
const LABEL_RIGHT: f64 = 300.0;
const BAR_LEFT: f64 = 310.0;
const BAR_MAX: f64 = 430.0;
const ROW: f64 = 46.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn ok(f: Option<&Figures>) -> Option<&Figures> {
    f.filter(|f| f.ok)
}

/// The whole chart.
pub fn svg(r: &SuiteResult) -> String {
    let throughput: Vec<_> = r
        .scenarios
        .iter()
        .filter(|s| s.ratio_of == "msgs_per_sec")
        .collect();
    // Percentiles are drawn even from a run that failed a check (they were measured); the panel
    // then says which run failed.
    let latency: Vec<(&str, &str, Percentiles)> = r
        .scenarios
        .iter()
        .filter(|s| s.ratio_of == "p99_ms")
        .flat_map(|s| {
            [
                ("Jet", JET, s.target.as_ref()),
                ("ceiling", CEILING, s.ceiling.as_ref()),
            ]
        })
        .filter_map(|(who, color, f)| f.and_then(|f| f.latency).map(|l| (who, color, l)))
        .collect();
    let latency_failed: Vec<&str> = r
        .scenarios
        .iter()
        .filter(|s| s.ratio_of == "p99_ms")
        .flat_map(|s| [("Jet", s.target.as_ref()), ("ceiling", s.ceiling.as_ref())])
        .filter(|(_, f)| f.is_some_and(|f| !f.ok && f.latency.is_some()))
        .map(|(who, _)| who)
        .collect();
    let panel1_h = 70.0 + ROW * throughput.len() as f64;
    let panel2_h = if latency.is_empty() { 0.0 } else { 330.0 };
    let height = panel1_h + panel2_h + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let quick = if r.quick { " (quick run)" } else { "" };
    let _ = writeln!(
        s,
        r#"<text x="10" y="24" font-size="16" font-weight="bold">Throughput: Jet vs ceiling (null broker), msg/s{quick}</text>"#
    );
    legend(&mut s, WIDTH - 190.0, 14.0);
    for (i, sc) in throughput.iter().enumerate() {
        let y = 50.0 + ROW * i as f64;
        let t = ok(sc.target.as_ref()).map(|f| f.msgs_per_sec);
        let c = ok(sc.ceiling.as_ref()).map(|f| f.msgs_per_sec);
        let full = t.unwrap_or(0.0).max(c.unwrap_or(0.0)).max(1.0);
        let label = format!("({}) {}", sc.id, sc.name);
        let _ = writeln!(
            s,
            r#"<text x="{LABEL_RIGHT}" y="{:.1}" text-anchor="end">{}</text>"#,
            y + 20.0,
            esc(&label)
        );
        for (row, value, color, failed) in [
            (0.0, c, CEILING, sc.ceiling.as_ref().is_some_and(|f| !f.ok)),
            (18.0, t, JET, sc.target.as_ref().is_some_and(|f| !f.ok)),
        ] {
            let by = y + row + 4.0;
            match value {
                Some(v) => {
                    let w = (v / full * BAR_MAX).max(1.0);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{BAR_LEFT}" y="{by:.1}" width="{w:.1}" height="15" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                        BAR_LEFT + w + 5.0,
                        by + 12.0,
                        thousands(v)
                    );
                }
                None if failed => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{BAR_LEFT}" y="{:.1}" fill="{TARGET}">failed</text>"#,
                        by + 12.0
                    );
                }
                None => {}
            }
        }
        if let Some(ratio) = sc.ratio {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{ratio:.2}×</text>"#,
                WIDTH - 10.0,
                y + 26.0
            );
        }
    }
    if !latency.is_empty() {
        latency_panel(&mut s, panel1_h + 10.0, &latency);
        for (i, who) in latency_failed.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="10" y="{:.1}" fill="{TARGET}">{who}: this run failed its order check (see results.md)</text>"#,
                panel1_h + 52.0 + 14.0 * i as f64
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn legend(s: &mut String, x: f64, y: f64) {
    let _ = writeln!(
        s,
        r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{JET}"/><text x="{:.1}" y="{:.1}">Jet</text><rect x="{:.1}" y="{y}" width="12" height="12" fill="{CEILING}"/><text x="{:.1}" y="{:.1}">ceiling</text>"#,
        x + 16.0,
        y + 11.0,
        x + 60.0,
        x + 76.0,
        y + 11.0
    );
}

/// Grouped bars per percentile on a log10 axis from 0.1 ms up to the next decade above the max.
fn latency_panel(s: &mut String, top: f64, series: &[(&str, &str, Percentiles)]) {
    let (left, right, plot_top, plot_h) = (70.0, WIDTH - 20.0, top + 50.0, 230.0);
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.1}" font-size="16" font-weight="bold">End-to-end latency (5), ms, log scale</text>"#,
        top + 24.0
    );
    legend(s, WIDTH - 190.0, top + 14.0);
    let max = series
        .iter()
        .map(|(_, _, p)| p.max_ms)
        .fold(20.0f64, f64::max);
    let (lo, hi) = (-1.0f64, max.log10().ceil());
    let y_of = |ms: f64| plot_top + plot_h - (ms.max(0.1).log10() - lo) / (hi - lo) * plot_h;
    for decade in (lo as i32)..=(hi as i32) {
        let v = 10f64.powi(decade);
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 4.0,
            if v < 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        );
    }
    let names = ["p50", "p90", "p99", "p99.9", "max"];
    let group_w = (right - left) / names.len() as f64;
    let bar_w = (group_w * 0.7 / series.len() as f64).min(48.0);
    for (g, name) in names.iter().enumerate() {
        let gx = left + group_w * g as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{name}</text>"#,
            gx + group_w / 2.0,
            plot_top + plot_h + 18.0
        );
        let first = gx + (group_w - bar_w * series.len() as f64) / 2.0;
        for (i, (_, color, p)) in series.iter().enumerate() {
            let v = [p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms][g];
            let (x, y) = (first + bar_w * i as f64, y_of(v));
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                bar_w - 4.0,
                plot_top + plot_h - y,
                x + (bar_w - 4.0) / 2.0,
                y - 3.0,
                if v < 10.0 {
                    format!("{v:.2}")
                } else {
                    format!("{v:.0}")
                }
            );
        }
        // The targets: p99 ≤ 10 ms, p99.9 ≤ 20 ms.
        let target = match *name {
            "p99" => Some(10.0),
            "p99.9" => Some(20.0),
            _ => None,
        };
        if let Some(t) = target {
            let y = y_of(t);
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{TARGET}" stroke-dasharray="5,3" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" fill="{TARGET}" font-size="10">target {t:.0} ms</text>"#,
                gx + 4.0,
                gx + group_w - 4.0,
                gx + 6.0,
                y - 4.0
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{right}" y2="{:.1}" stroke="#808080"/>"##,
        plot_top + plot_h,
        plot_top + plot_h
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Machine;
    use crate::suite::ScenarioResult;

    fn figures(msgs: f64, latency: Option<Percentiles>) -> Figures {
        Figures {
            ok: true,
            msgs_per_sec: msgs,
            latency,
            ..Figures::default()
        }
    }

    #[test]
    fn renders_both_panels_as_wellformed_svg() {
        let p = Percentiles {
            p50_ms: 0.5,
            p90_ms: 1.0,
            p99_ms: 3.0,
            p999_ms: 9.0,
            max_ms: 40.0,
        };
        let r = SuiteResult {
            version: "test",
            started_unix_s: 0,
            quick: true,
            brokers: Some("127.0.0.1:9092".into()),
            broker_pid: None,
            machine: Machine::read(),
            scenarios: vec![
                ScenarioResult {
                    id: 1,
                    name: "produce <a&b>".into(),
                    what: String::new(),
                    target: Some(figures(400_000.0, None)),
                    ceiling: Some(figures(500_000.0, None)),
                    ratio: Some(0.8),
                    ratio_of: "msgs_per_sec",
                },
                ScenarioResult {
                    id: 5,
                    name: "latency".into(),
                    what: String::new(),
                    target: Some(figures(20_000.0, Some(p))),
                    ceiling: Some(figures(20_000.0, Some(p))),
                    ratio: Some(1.0),
                    ratio_of: "p99_ms",
                },
            ],
            broker_rss_peak_bytes: None,
            checks: Vec::new(),
        };
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("produce &lt;a&amp;b&gt;"));
        assert!(svg.contains("400,000") && svg.contains("0.80×"));
        assert!(svg.contains("target 10 ms") && svg.contains("target 20 ms"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
