//! `latency`: produce at a fixed rate while a consumer in the same process reads the topic, and
//! record each message's end-to-end latency — from the producer's `send()` to the consumer's
//! `poll()` returning it — in an HdrHistogram (µs resolution, 3 significant digits).
//!
//! The send time travels in the payload header ([`crate::client::payload`]), read from a
//! monotonic clock both threads share. Before the timed window, one warm-up message per partition
//! goes through and must come back, so connection set-up and the first fetch of each partition
//! are not counted. Every message is also checked for order, and the count must match.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use serde::Serialize;

use crate::client::{self, payload};
use crate::consume::{self, OrderCheck};
use crate::produce::{self, ProduceOpts};

/// Longest a message may take before the run is declared stuck (also the histogram's top).
const LATENCY_MAX: Duration = Duration::from_secs(60);

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyOpts {
    /// Producer settings; `rate` must be set, `messages` is ignored (rate × duration).
    pub produce: ProduceOpts,
    /// How long to produce.
    pub duration: Duration,
}

/// End-to-end latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads them from a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// What a latency run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// The topic used.
    pub topic: String,
    /// Messages sent and received (equal, or the run fails).
    pub messages: u64,
    /// The rate achieved by the producer.
    pub msgs_per_sec: f64,
    /// The end-to-end latency.
    pub latency: Percentiles,
    /// Messages out of order (gap, repeat or reordering); the run fails if not 0.
    pub order_errors: u64,
    /// The first few order errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_error_sample: Vec<String>,
}

impl LatencyResult {
    /// Fails if any message was out of order.
    pub fn verify(&self) -> anyhow::Result<()> {
        consume::order_result(self.order_errors, &self.order_error_sample)
    }
}

/// Runs the measurement; fails if any message is lost or later than a minute. Order errors are
/// in the result (the percentiles still mean something); [`LatencyResult::verify`] fails on them.
pub fn run(opts: &LatencyOpts) -> anyhow::Result<LatencyResult> {
    let p = &opts.produce;
    let rate = p
        .rate
        .filter(|r| *r > 0.0)
        .context("latency needs a rate")?;
    let total = (rate * opts.duration.as_secs_f64()).round() as u64;
    if p.size < payload::HEADER_LEN {
        bail!("--size must be at least {} bytes", payload::HEADER_LEN);
    }
    if p.create_topic {
        client::create_topic(&p.brokers, &p.topic, p.partitions, Duration::from_secs(60))?;
    }
    let deadline = Instant::now() + opts.duration + LATENCY_MAX;

    // The consumer thread: assigned before anything is produced, counts what it sees.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let warm = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = consume::new_consumer(&p.brokers, None)?;
    consume::assign_all(&consumer, &p.topic, p.partitions)?;
    let reader = {
        let (expected, warm, stop) = (Arc::clone(&expected), Arc::clone(&warm), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("latency-consumer".into())
            .spawn(move || -> anyhow::Result<(Histogram<u64>, OrderCheck)> {
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, LATENCY_MAX.as_micros() as u64, 3)?;
                let mut check = OrderCheck::default();
                while check.checked < expected.load(Ordering::Acquire) {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        break;
                    }
                    match consumer.poll(Duration::from_millis(50)) {
                        None => {}
                        Some(Err(e)) => bail!("consume error: {e}"),
                        Some(Ok(m)) => {
                            let received_ns = client::now_ns();
                            let value = m.payload().unwrap_or_default();
                            let Some(h) = check.observe(m.partition(), m.offset(), value) else {
                                continue;
                            };
                            if h.producer == payload::WARMUP_PRODUCER {
                                warm.fetch_add(1, Ordering::Release);
                            } else {
                                let us = received_ns.saturating_sub(h.sent_ns) / 1000;
                                hist.saturating_record(us.max(1));
                            }
                        }
                    }
                }
                Ok((hist, check))
            })?
    };

    let outcome = produce_paced(opts, rate, total, &warm, deadline);
    match &outcome {
        Ok(_) => expected.store(total, Ordering::Release),
        Err(_) => stop.store(true, Ordering::Relaxed),
    }
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?;
    let msgs_per_sec = outcome?;
    let (hist, check) = read?;
    if check.checked != total {
        bail!(
            "{} of {total} messages came back before the deadline",
            check.checked
        );
    }
    Ok(LatencyResult {
        topic: p.topic.clone(),
        messages: total,
        msgs_per_sec,
        latency: Percentiles::from_histogram(&hist),
        order_errors: check.errors,
        order_error_sample: check.first_errors,
    })
}

/// Warm-up, then `total` messages at `rate`; returns the rate achieved.
fn produce_paced(
    opts: &LatencyOpts,
    rate: f64,
    total: u64,
    warm: &AtomicU64,
    deadline: Instant,
) -> anyhow::Result<f64> {
    let p = &opts.produce;
    let mut one = p.clone();
    one.create_topic = false;
    let producer = produce::new_counted_producer(&one)?;
    let mut buf = payload::template(p.size);
    for partition in 0..p.partitions {
        payload::write(
            &mut buf,
            payload::Header {
                producer: payload::WARMUP_PRODUCER,
                seq: 0,
                sent_ns: client::now_ns(),
            },
        );
        producer
            .producer
            .send(
                BaseRecord::<(), [u8], ()>::to(&p.topic)
                    .payload(&buf[..])
                    .partition(partition),
            )
            .map_err(|(e, _)| e)
            .context("warm-up send")?;
    }
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    producer
        .check(p.partitions as u64, warm_deadline)
        .context("warm-up")?;
    while warm.load(Ordering::Acquire) < p.partitions as u64 {
        if Instant::now() >= warm_deadline {
            bail!("warm-up messages did not come back within 30 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    produce::send_paced(&producer, &one, 0, total, Some(rate), deadline)?;
    let secs = started.elapsed().as_secs_f64();
    producer.check(total + p.partitions as u64, deadline)?;
    Ok(total as f64 / secs)
}

/// The one-line summary.
pub fn summary(opts: &LatencyOpts, r: &LatencyResult) -> String {
    let l = &r.latency;
    format!(
        "latency {} msgs × {} B at {:.0} msg/s for {:.0} s, {} partitions, acks={}, linger={} ms: \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, 0 lost, {} out of order (topic {})",
        r.messages,
        opts.produce.size,
        r.msgs_per_sec,
        opts.duration.as_secs_f64(),
        opts.produce.partitions,
        opts.produce.acks,
        opts.produce.linger_ms,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        r.order_errors,
        r.topic
    )
}
