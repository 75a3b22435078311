//! Prometheus metrics: the recorder, `GET /metrics`, and the gauges computed when scraped.
//!
//! Every crate records through the `metrics` facade (`jet_kafka::metrics` for requests, bytes
//! and connections; the replication layer for Raft and storage). The broker installs one
//! `metrics-exporter-prometheus` recorder ([`install`]) before the node starts, and this module
//! renders it. Histograms whose names end in `_seconds` get the fixed [`LATENCY_BUCKETS_SECONDS`]
//! (Prometheus histograms, not summaries, so they aggregate across nodes).
//!
//! Consumer-group and process metrics are not kept as facade gauges: they are computed at each
//! scrape ([`crate::groups`], [`crate::process`]) and appended to the text, so a deleted group's
//! series disappears instead of lingering at its last value.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::HttpError;
use crate::{groups, process, AppState};

/// Buckets of every `*_seconds` histogram: 100 µs to 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often histogram buffers are folded into the rendered state when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The installed recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

/// Installs the process-wide Prometheus recorder. Fails if a recorder is already installed.
pub fn install() -> Result<Metrics, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_string()),
            LATENCY_BUCKETS_SECONDS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    Ok(Metrics { handle })
}

impl Metrics {
    /// The facade's metrics in the text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Runs the recorder's upkeep forever (the exporter's own upkeep task needs its HTTP
    /// feature, which is off).
    pub async fn upkeep(self) {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            self.handle.run_upkeep();
        }
    }

    /// Sum over all label sets of the counter `name` in the rendered text.
    pub fn counter_total(&self, name: &str) -> f64 {
        sum_series(&self.render(), name)
    }
}

/// Adds up every sample of `name` (any labels) in Prometheus text.
pub fn sum_series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// HTTP requests answered, by `route` (the route's pattern, so values stay few), `method` and
/// `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "jet_http_requests_total";
/// Time to answer an HTTP request, by `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "jet_http_request_duration_seconds";

/// Middleware counting every HTTP request. An unknown path counts under `route="unmatched"`, so
/// a scan of random URLs cannot create new series.
pub async fn track(
    matched: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics::counter!(
        HTTP_REQUESTS_TOTAL,
        "route" => route.clone(),
        "method" => method,
        "status" => resp.status().as_u16().to_string(),
    )
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics`.
pub async fn render(State(app): State<AppState>) -> Result<Response, HttpError> {
    let mut text = match &app.metrics {
        Some(m) => m.render(),
        None => String::new(),
    };
    append_process(&mut text);
    append_http(&mut text, &app);
    let views = groups::all(&app.kafka).await?;
    append_groups(&mut text, &views);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response())
}

fn append_process(out: &mut String) {
    if let Some(rss) = process::resident_bytes() {
        family(
            out,
            "jet_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the jet process.",
        );
        let _ = writeln!(out, "jet_process_resident_memory_bytes {rss}");
    }
    if let Some(cpu) = process::cpu_seconds() {
        family(
            out,
            "jet_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the jet process.",
        );
        let _ = writeln!(out, "jet_process_cpu_seconds_total {cpu}");
    }
    if let Some(fds) = process::open_fds() {
        family(
            out,
            "jet_process_open_fds",
            "gauge",
            "Open file descriptors of the jet process.",
        );
        let _ = writeln!(out, "jet_process_open_fds {fds}");
    }
}

fn append_http(out: &mut String, app: &AppState) {
    family(
        out,
        "jet_http_consumer_instances",
        "gauge",
        "REST consumer instances on this node.",
    );
    let _ = writeln!(out, "jet_http_consumer_instances {}", app.consumers.len());
}

fn append_groups(out: &mut String, views: &[groups::GroupView]) {
    family(
        out,
        "jet_consumer_group_members",
        "gauge",
        "Members of the consumer group.",
    );
    for g in views {
        let _ = writeln!(
            out,
            "jet_consumer_group_members{{group=\"{}\"}} {}",
            esc(&g.group),
            g.members.len()
        );
    }
    family(
        out,
        "jet_consumer_group_state",
        "gauge",
        "1 for the consumer group's current state.",
    );
    for g in views {
        let _ = writeln!(
            out,
            "jet_consumer_group_state{{group=\"{}\",state=\"{}\"}} 1",
            esc(&g.group),
            esc(&g.state)
        );
    }
    family(
        out,
        "jet_consumer_group_committed_offset",
        "gauge",
        "Committed offset of the group on the partition.",
    );
    for g in views {
        for o in &g.offsets {
            let _ = writeln!(
                out,
                "jet_consumer_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                esc(&g.group),
                esc(&o.topic),
                o.partition,
                o.committed
            );
        }
    }
    family(
        out,
        "jet_consumer_group_lag",
        "gauge",
        "Records between the group's committed offset and the partition's end.",
    );
    for g in views {
        for o in &g.offsets {
            let _ = writeln!(
                out,
                "jet_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                esc(&g.group),
                esc(&o.topic),
                o.partition,
                o.lag
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn series_add_up() {
        let text = "# TYPE x counter\nx{t=\"a\"} 2\nx{t=\"b\"} 3\nx_other 100\nx 1\n";
        assert_eq!(sum_series(text, "x"), 6.0);
        assert_eq!(sum_series(text, "y"), 0.0);
    }

    #[test]
    fn group_families_render() {
        let views = vec![groups::GroupView {
            group: "g\"1".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            members: vec![],
            offsets: vec![groups::OffsetView {
                topic: "t".into(),
                partition: 0,
                committed: 3,
                end: 10,
                lag: 7,
            }],
        }];
        let mut out = String::new();
        append_groups(&mut out, &views);
        assert!(out.contains("jet_consumer_group_members{group=\"g\\\"1\"} 0"));
        assert!(
            out.contains("jet_consumer_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 7")
        );
        assert!(out.contains("# TYPE jet_consumer_group_state gauge"));
    }
}
