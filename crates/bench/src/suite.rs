//! `suite` and `ceiling`: the standard scenarios, each run against the target broker and against
//! the in-process null broker (the ceiling) in the same run, one after the other, so every Jet
//! figure comes with its ratio to what client + loopback manage on this machine at that moment.
//!
//! The scenarios (issue 5; `--quick` scales them down to seconds, for CI, which checks counts
//! only):
//! 1. produce 1,000,000 × 100 B, 4 partitions, acks=all, linger 5 ms;
//! 2. the same with acks=1;
//! 3. produce 200,000 × 1 KiB, acks=all;
//! 4. consume the messages of (1) from earliest (count and order checked);
//! 5. end-to-end latency at 20,000 msg/s for 10 s, acks=all;
//! 6. 1,000 partitions × 1,000 messages, acks=all;
//! 7. 50 producers at once on one topic, acks=all.
//!
//! Any count or order error, on either side, fails the suite (non-zero exit) after the report is
//! written. Performance targets are evaluated and reported, never enforced.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::client;
use crate::consume::{self, ConsumeOpts};
use crate::latency::{self, LatencyOpts, Percentiles};
use crate::null_broker::NullBroker;
use crate::procstat;
use crate::produce::{self, ProduceOpts};
use crate::report::{self, Machine};

/// What one scenario does.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Produce with these settings.
    Produce {
        /// Total messages.
        messages: u64,
        /// Bytes per message.
        size: usize,
        /// Partitions of the topic.
        partitions: i32,
        /// "0", "1" or "all".
        acks: &'static str,
        /// `linger.ms`.
        linger_ms: u32,
        /// Producer clients at once.
        producers: u32,
    },
    /// Consume, from earliest, what scenario `of` produced.
    Consume {
        /// The produce scenario whose topic is read.
        of: u32,
    },
    /// Fixed-rate produce while consuming.
    Latency {
        /// Messages per second.
        rate: f64,
        /// Seconds of load.
        secs: f64,
        /// Partitions of the topic.
        partitions: i32,
        /// Bytes per message.
        size: usize,
        /// "0", "1" or "all".
        acks: &'static str,
        /// `linger.ms`.
        linger_ms: u32,
    },
}

/// One scenario of the suite.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its number in the issue (1–7).
    pub id: u32,
    /// Short name (JSON key, chart label).
    pub name: &'static str,
    /// What it does, in words.
    pub what: String,
    /// How to run it.
    pub kind: Kind,
}

/// The standard scenarios, full size or `quick`.
pub fn standard(quick: bool) -> Vec<Scenario> {
    let (n, n_1k, latency_secs, many_parts, per_part, producers_each) = if quick {
        (20_000, 4_000, 2.0, 50, 400, 400)
    } else {
        (1_000_000, 200_000, 10.0, 1_000, 1_000, 20_000)
    };
    let produce = |messages, size, partitions, acks, producers| Kind::Produce {
        messages,
        size,
        partitions,
        acks,
        linger_ms: 5,
        producers,
    };
    vec![
        Scenario {
            id: 1,
            name: "produce-100B-acks-all",
            what: format!("produce {n} × 100 B, 4 partitions, acks=all, linger 5 ms"),
            kind: produce(n, 100, 4, "all", 1),
        },
        Scenario {
            id: 2,
            name: "produce-100B-acks-1",
            what: format!("produce {n} × 100 B, 4 partitions, acks=1, linger 5 ms"),
            kind: produce(n, 100, 4, "1", 1),
        },
        Scenario {
            id: 3,
            name: "produce-1KiB-acks-all",
            what: format!("produce {n_1k} × 1 KiB, 4 partitions, acks=all, linger 5 ms"),
            kind: produce(n_1k, 1024, 4, "all", 1),
        },
        Scenario {
            id: 4,
            name: "consume-earliest",
            what: format!("consume the {n} messages of (1) from earliest, assign"),
            kind: Kind::Consume { of: 1 },
        },
        Scenario {
            id: 5,
            name: "latency-20k",
            what: format!(
                "end-to-end latency at 20,000 msg/s for {latency_secs} s, 100 B, 4 partitions, acks=all, linger 0"
            ),
            kind: Kind::Latency {
                rate: 20_000.0,
                secs: latency_secs,
                partitions: 4,
                size: 100,
                acks: "all",
                linger_ms: 0,
            },
        },
        Scenario {
            id: 6,
            name: "partitions-many",
            what: format!(
                "{many_parts} partitions × {per_part} messages of 100 B, acks=all, linger 5 ms"
            ),
            kind: produce(many_parts as u64 * per_part, 100, many_parts, "all", 1),
        },
        Scenario {
            id: 7,
            name: "producers-50",
            what: format!(
                "50 producers at once on one topic, {producers_each} × 100 B each, 4 partitions, acks=all"
            ),
            kind: produce(50 * producers_each, 100, 4, "all", 50),
        },
    ]
}

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct SuiteOpts {
    /// The target broker (`bootstrap.servers`); `None` runs the ceiling only.
    pub brokers: Option<String>,
    /// The target broker's pid, for CPU and peak RSS.
    pub broker_pid: Option<u32>,
    /// Scaled-down scenarios.
    pub quick: bool,
    /// Also run every scenario against the null broker.
    pub ceiling: bool,
    /// Run only these scenario ids (all when empty).
    pub only: Vec<u32>,
}

/// The figures of one scenario on one broker.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Whether the run completed with every count and order check passing.
    pub ok: bool,
    /// Why not, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The topic used.
    pub topic: String,
    /// Messages produced, consumed, or sent and received (latency).
    pub messages: u64,
    /// Seconds the measured phase took.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// End-to-end latency (latency scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Percentiles>,
    /// Broker CPU seconds (user + system) during the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_secs: Option<f64>,
    /// Broker CPU microseconds per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_us_per_msg: Option<f64>,
    /// Bytes the broker wrote to disk for a produce scenario (`/proc/<pid>/io` write_bytes,
    /// from its start until the broker's background writes settle after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_disk_write_bytes: Option<u64>,
    /// Those bytes per produced payload byte (write amplification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes_per_payload_byte: Option<f64>,
    /// Broker peak RSS (VmHWM) after the scenario, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_peak_bytes: Option<u64>,
    /// The one-line summary printed for it.
    pub summary: String,
}

/// One scenario's outcome on both brokers.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Its number (1–7).
    pub id: u32,
    /// Short name.
    pub name: String,
    /// What it does.
    pub what: String,
    /// On the target broker.
    pub target: Option<Figures>,
    /// On the null broker.
    pub ceiling: Option<Figures>,
    /// Target ÷ ceiling of `ratio_of`.
    pub ratio: Option<f64>,
    /// Which figure the ratio compares: "msgs_per_sec" (higher is better) or "p99_ms" (lower is
    /// better).
    pub ratio_of: &'static str,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteResult {
    /// jet-bench's version.
    pub version: &'static str,
    /// Unix time the run started.
    pub started_unix_s: u64,
    /// Scaled-down run.
    pub quick: bool,
    /// The target's bootstrap servers, if any.
    pub brokers: Option<String>,
    /// The target's pid, if given.
    pub broker_pid: Option<u32>,
    /// Where it ran.
    pub machine: Machine,
    /// Per scenario.
    pub scenarios: Vec<ScenarioResult>,
    /// Broker peak RSS at the end of the run, bytes.
    pub broker_rss_peak_bytes: Option<u64>,
    /// The performance targets of issue 5, evaluated.
    pub checks: Vec<report::Check>,
}

impl SuiteResult {
    /// Every scenario that failed, as "(id) side: error".
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.scenarios {
            for (side, f) in [("jet", &s.target), ("ceiling", &s.ceiling)] {
                if let Some(f) = f.as_ref().filter(|f| !f.ok) {
                    out.push(format!(
                        "({}) {side}: {}",
                        s.id,
                        f.error.as_deref().unwrap_or("failed")
                    ));
                }
            }
        }
        out
    }
}

/// One broker the scenarios run against.
struct Side<'a> {
    label: &'static str,
    brokers: String,
    pid: Option<u32>,
    null: Option<&'a NullBroker>,
    /// Topic (and message count) each produce scenario wrote, for the consume scenario.
    produced: Vec<(u32, String, u64)>,
}

impl Side<'_> {
    /// CPU seconds of the broker so far: the target's process, or the null broker's thread.
    fn cpu_secs(&self) -> Option<f64> {
        match (self.null, self.pid) {
            (Some(null), _) => procstat::thread_cpu_secs(null.thread_id()).ok(),
            (None, Some(pid)) => procstat::sample(pid).ok().map(|s| s.cpu_secs),
            (None, None) => None,
        }
    }
}

/// Runs the suite; prints one line per scenario and side as it goes.
pub fn run(opts: &SuiteOpts) -> anyhow::Result<SuiteResult> {
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let scenarios: Vec<Scenario> = standard(opts.quick)
        .into_iter()
        .filter(|s| opts.only.is_empty() || opts.only.contains(&s.id))
        .collect();
    if let Some(brokers) = &opts.brokers {
        client::probe(brokers, Duration::from_secs(10))?;
    }
    let null = if opts.ceiling {
        Some(NullBroker::start().context("start the null broker")?)
    } else {
        None
    };
    let mut target = opts.brokers.as_ref().map(|b| Side {
        label: "jet",
        brokers: b.clone(),
        pid: opts.broker_pid,
        null: None,
        produced: Vec::new(),
    });
    let mut ceiling = null.as_ref().map(|n| Side {
        label: "ceiling",
        brokers: n.bootstrap(),
        pid: None,
        null: Some(n),
        produced: Vec::new(),
    });
    let consumed_later: Vec<u32> = scenarios
        .iter()
        .filter_map(|s| match s.kind {
            Kind::Consume { of } => Some(of),
            _ => None,
        })
        .collect();
    let timeout = Duration::from_secs(if opts.quick { 60 } else { 300 });
    let mut results = Vec::with_capacity(scenarios.len());
    for s in &scenarios {
        let keep = consumed_later.contains(&s.id);
        let t = target.as_mut().map(|side| run_one(s, side, keep, timeout));
        let c = ceiling.as_mut().map(|side| run_one(s, side, keep, timeout));
        let (ratio, ratio_of) = ratio(s, t.as_ref(), c.as_ref());
        results.push(ScenarioResult {
            id: s.id,
            name: s.name.to_string(),
            what: s.what.clone(),
            target: t,
            ceiling: c,
            ratio,
            ratio_of,
        });
    }
    drop(null);
    let broker_rss_peak_bytes = opts
        .broker_pid
        .and_then(|pid| procstat::sample(pid).ok())
        .map(|s| s.rss_peak_bytes);
    let checks = report::checks(&results, broker_rss_peak_bytes);
    Ok(SuiteResult {
        version: env!("CARGO_PKG_VERSION"),
        started_unix_s,
        quick: opts.quick,
        brokers: opts.brokers.clone(),
        broker_pid: opts.broker_pid,
        machine: Machine::read(),
        scenarios: results,
        broker_rss_peak_bytes,
        checks,
    })
}

fn ratio(s: &Scenario, t: Option<&Figures>, c: Option<&Figures>) -> (Option<f64>, &'static str) {
    let (Some(t), Some(c)) = (t.filter(|f| f.ok), c.filter(|f| f.ok)) else {
        let of = if matches!(s.kind, Kind::Latency { .. }) {
            "p99_ms"
        } else {
            "msgs_per_sec"
        };
        return (None, of);
    };
    match s.kind {
        Kind::Latency { .. } => {
            let p99 = |f: &Figures| f.latency.map(|l| l.p99_ms);
            let r = p99(t)
                .zip(p99(c))
                .filter(|(_, c)| *c > 0.0)
                .map(|(t, c)| t / c);
            (r, "p99_ms")
        }
        _ => (
            (c.msgs_per_sec > 0.0).then(|| t.msgs_per_sec / c.msgs_per_sec),
            "msgs_per_sec",
        ),
    }
}

/// Runs scenario `s` against one side, measuring the broker around it; never fails — a failure
/// is recorded in the figures (and printed) so the other scenarios still run.
fn run_one(s: &Scenario, side: &mut Side<'_>, keep: bool, timeout: Duration) -> Figures {
    let cpu_before = side.cpu_secs();
    let payload = match s.kind {
        Kind::Produce { size, .. } => Some(size as u64),
        _ => None,
    };
    let io_before = side
        .pid
        .filter(|_| payload.is_some())
        .and_then(|pid| procstat::io_write_bytes(pid).ok());
    let mut f = match run_kind(s, side, keep, timeout) {
        Ok(f) => f,
        Err(e) => Figures {
            ok: false,
            error: Some(format!("{e:#}")),
            summary: format!("FAILED: {e:#}"),
            ..Figures::default()
        },
    };
    if let (Some(before), Some(after)) = (cpu_before, side.cpu_secs()) {
        let cpu = after - before;
        f.broker_cpu_secs = Some(cpu);
        if f.messages > 0 {
            f.broker_cpu_us_per_msg = Some(cpu * 1e6 / f.messages as f64);
        }
    }
    if let (Some(pid), Some(before), Some(size)) = (side.pid, io_before, payload) {
        let written = settled_write_bytes(pid).saturating_sub(before);
        f.broker_disk_write_bytes = Some(written);
        if f.ok && f.messages > 0 {
            f.disk_bytes_per_payload_byte = Some(written as f64 / (f.messages * size) as f64);
        }
    }
    if let Some(pid) = side.pid {
        f.broker_rss_peak_bytes = procstat::sample(pid).ok().map(|s| s.rss_peak_bytes);
    }
    if let (false, Some(e), false) = (f.ok, &f.error, f.summary.starts_with("FAILED")) {
        f.summary = format!("FAILED: {e} — {}", f.summary);
    }
    let cpu = f
        .broker_cpu_secs
        .map_or(String::new(), |c| format!(" [broker cpu {c:.2} s]"));
    println!("[{}] ({}) {}{cpu}", side.label, s.id, f.summary);
    f
}

/// The broker's write_bytes once its background writes (flushes, compactions) stop: it must
/// not grow for two seconds in a row, at most 30 s.
fn settled_write_bytes(pid: u32) -> u64 {
    let read = || procstat::io_write_bytes(pid).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = read();
    let mut quiet = 0;
    while quiet < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let now = read();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    last
}

fn run_kind(
    s: &Scenario,
    side: &mut Side<'_>,
    keep: bool,
    timeout: Duration,
) -> anyhow::Result<Figures> {
    match s.kind {
        Kind::Produce {
            messages,
            size,
            partitions,
            acks,
            linger_ms,
            producers,
        } => {
            let topic = client::unique_topic(&format!("s{}", s.id));
            if let (Some(null), true) = (side.null, keep) {
                null.retain(&topic);
            }
            let mut p = ProduceOpts::new(&side.brokers, &topic);
            p.messages = messages;
            p.size = size;
            p.partitions = partitions;
            p.acks = acks.into();
            p.linger_ms = linger_ms;
            p.producers = producers;
            p.timeout = timeout;
            let r = produce::run(&p)?;
            side.produced.push((s.id, topic.clone(), r.messages));
            Ok(Figures {
                ok: true,
                topic,
                messages: r.messages,
                secs: r.secs,
                msgs_per_sec: r.msgs_per_sec,
                mb_per_sec: r.mb_per_sec,
                summary: produce::summary(&p, &r),
                ..Figures::default()
            })
        }
        Kind::Consume { of } => {
            let (topic, messages) = side
                .produced
                .iter()
                .find(|(id, _, _)| *id == of)
                .map(|(_, t, n)| (t.clone(), *n))
                .with_context(|| format!("scenario ({of}) produced nothing to consume"))?;
            let c = ConsumeOpts {
                brokers: side.brokers.clone(),
                topic: topic.clone(),
                messages,
                group: None,
                timeout,
            };
            let r = consume::run(&c);
            if let Some(null) = side.null {
                null.forget(&topic);
            }
            let r = r?;
            let verified = r.verify();
            Ok(Figures {
                ok: verified.is_ok(),
                error: verified.err().map(|e| format!("{e:#}")),
                topic,
                messages: r.messages,
                secs: r.secs,
                msgs_per_sec: r.msgs_per_sec,
                mb_per_sec: r.mb_per_sec,
                summary: consume::summary(&c, &r),
                ..Figures::default()
            })
        }
        Kind::Latency {
            rate,
            secs,
            partitions,
            size,
            acks,
            linger_ms,
        } => {
            let topic = client::unique_topic(&format!("s{}", s.id));
            if let Some(null) = side.null {
                null.retain(&topic);
            }
            let mut p = ProduceOpts::new(&side.brokers, &topic);
            p.rate = Some(rate);
            p.partitions = partitions;
            p.size = size;
            p.acks = acks.into();
            p.linger_ms = linger_ms;
            p.timeout = timeout;
            let opts = LatencyOpts {
                produce: p,
                duration: Duration::from_secs_f64(secs),
            };
            let r = latency::run(&opts);
            if let Some(null) = side.null {
                null.forget(&topic);
            }
            let r = r?;
            let verified = r.verify();
            Ok(Figures {
                ok: verified.is_ok(),
                error: verified.err().map(|e| format!("{e:#}")),
                topic,
                messages: r.messages,
                secs,
                msgs_per_sec: r.msgs_per_sec,
                mb_per_sec: r.msgs_per_sec * size as f64 / 1e6,
                latency: Some(r.latency),
                summary: latency::summary(&opts, &r),
                ..Figures::default()
            })
        }
    }
}
