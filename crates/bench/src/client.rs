//! What every command shares: the librdkafka base configuration, unique topic names, topic
//! creation through the AdminClient (then waiting until every partition has a leader), the
//! payload header jet-bench embeds in each message, a monotonic clock shared by producer and
//! consumer threads, and rate pacing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

/// Default `--brokers`.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// The base librdkafka configuration every client of the bench starts from.
pub fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "jet-bench")
        .set("api.version.request", "true")
        // Loopback only: the defaults (60 s) would only make a dead broker slower to notice.
        .set("socket.timeout.ms", "30000")
        .set("broker.address.family", "v4")
        .set_log_level(RDKafkaLogLevel::Warning);
    // For diagnosis: JET_BENCH_RDKAFKA_DEBUG=fetch,protocol (librdkafka's `debug` contexts).
    if let Some(debug) = rdkafka_debug() {
        c.set("debug", debug).set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

fn rdkafka_debug() -> Option<&'static str> {
    static DEBUG: OnceLock<Option<String>> = OnceLock::new();
    DEBUG
        .get_or_init(|| {
            std::env::var("JET_BENCH_RDKAFKA_DEBUG")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .as_deref()
}

/// A topic name no other run (or command in this run) uses: tag, pid, wall-clock ms, counter.
pub fn unique_topic(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("jet-bench-{tag}-{}-{ms}-{n}", std::process::id())
}

/// A client context that prints librdkafka's warnings and errors on stderr (the default one
/// sends them to the `log` crate, which nothing here listens to).
#[derive(Clone, Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        print_log(level, fac, log_message);
    }
}

impl ConsumerContext for QuietContext {}

/// Prints a librdkafka log line on stderr if it is a warning or worse.
pub fn print_log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    // librdkafka 2.12 flags `api.version.request` as deprecated (true is its default); the bench
    // sets it anyway so that a librdkafka with another default still negotiates versions.
    if fac == "CONFWARN" && log_message.contains("api.version.request") {
        return;
    }
    if level as i32 <= RDKafkaLogLevel::Warning as i32 || rdkafka_debug().is_some() {
        eprintln!("librdkafka {level:?} {fac}: {log_message}");
    }
}

/// Checks that `brokers` answers a metadata request within `timeout`, so a run against a broker
/// that is not there fails in seconds with a plain message rather than after every timeout.
pub fn probe(brokers: &str, timeout: Duration) -> anyhow::Result<()> {
    let probe: BaseConsumer<QuietContext> = base_config(brokers)
        .create_with_context(QuietContext)
        .context("cannot create the metadata client")?;
    probe
        .fetch_metadata(None, timeout)
        .map(|_| ())
        .with_context(|| format!("no broker answers at {brokers}"))
}

/// Creates `topic` with `partitions` partitions (replication factor 1), then waits until the
/// cluster's metadata shows every partition with a leader, so the first produce does not race
/// topic creation. An existing topic with the same partition count is accepted.
pub fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    probe(brokers, timeout.min(Duration::from_secs(10)))?;
    let admin: AdminClient<DefaultClientContext> = base_config(brokers)
        .create()
        .context("cannot create the admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &opts))
        .with_context(|| format!("create topic {topic}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("create topic {name}: {code}"),
        }
    }
    wait_for_leaders(brokers, topic, partitions, deadline)
}

/// Polls metadata until `topic` has `partitions` partitions, each with a leader.
pub fn wait_for_leaders(
    brokers: &str,
    topic: &str,
    partitions: i32,
    deadline: Instant,
) -> anyhow::Result<()> {
    let probe: BaseConsumer<QuietContext> = base_config(brokers)
        .set("allow.auto.create.topics", "false")
        .create_with_context(QuietContext)
        .context("cannot create the metadata client")?;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe.fetch_metadata(Some(topic), left.min(Duration::from_secs(5))) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    let led = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                    if t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && led == t.partitions().len()
                    {
                        return Ok(());
                    }
                    last = format!(
                        "{} of {partitions} partitions, {led} with a leader, error {:?}",
                        t.partitions().len(),
                        t.error()
                    );
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("topic {topic} not ready before the deadline: {last}")
}

/// Partitions of an existing topic, from metadata.
pub fn partition_count(brokers: &str, topic: &str, timeout: Duration) -> anyhow::Result<i32> {
    let probe: BaseConsumer<QuietContext> = base_config(brokers)
        .set("allow.auto.create.topics", "false")
        .create_with_context(QuietContext)?;
    let md = probe
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("metadata for {topic}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("topic {topic} not in metadata"))?;
    if let Some(e) = t.error() {
        bail!("topic {topic}: {:?}", e);
    }
    Ok(t.partitions().len() as i32)
}

/// Nanoseconds since the first call in this process, from a monotonic clock. Producer and
/// consumer threads of one process share it, so `received - sent` is an end-to-end latency.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The header jet-bench writes at the start of every payload (little-endian):
/// magic (4) · producer id (4) · sequence within (producer, partition) (8) · send time, ns (8).
pub mod payload {
    /// Bytes of the header; the smallest message jet-bench sends.
    pub const HEADER_LEN: usize = 24;
    /// "JBn1": marks a payload as jet-bench's, so foreign messages are counted but not checked.
    pub const MAGIC: u32 = 0x314e_424a;
    /// Producer id of warm-up messages (not timed, not counted).
    pub const WARMUP_PRODUCER: u32 = u32::MAX;

    /// A decoded header.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Header {
        /// Which producer sent it (0.. for the load, [`WARMUP_PRODUCER`] for warm-up).
        pub producer: u32,
        /// Sequence within (producer, partition), from 0.
        pub seq: u64,
        /// [`super::now_ns`] at send.
        pub sent_ns: u64,
    }

    /// Writes the header into the start of `buf` (at least [`HEADER_LEN`] bytes).
    pub fn write(buf: &mut [u8], h: Header) {
        buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        buf[4..8].copy_from_slice(&h.producer.to_le_bytes());
        buf[8..16].copy_from_slice(&h.seq.to_le_bytes());
        buf[16..24].copy_from_slice(&h.sent_ns.to_le_bytes());
    }

    /// Reads the header, if `buf` starts with one.
    pub fn read(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN || buf[0..4] != MAGIC.to_le_bytes() {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or_default());
        Some(Header {
            producer: u32_at(4),
            seq: u64_at(8),
            sent_ns: u64_at(16),
        })
    }

    /// A payload of `size` bytes: a header slot then a repeating, compressible-but-not-trivial
    /// filler (so `--compression` has realistic work to do).
    pub fn template(size: usize) -> Vec<u8> {
        (0..size.max(HEADER_LEN))
            .map(|i| b"jet-bench payload 0123456789 abcdefghijklmnopqrstuvwxyz "[i % 56])
            .collect()
    }
}

/// Sends at a fixed rate: [`Pacer::wait_turn`] returns when message `i` is due.
pub struct Pacer {
    start: Instant,
    per_msg: Option<Duration>,
}

impl Pacer {
    /// `rate` messages per second; `None` or ≤ 0 means as fast as possible.
    pub fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            start: Instant::now(),
            per_msg: rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
        }
    }

    /// Blocks until message `i` (0-based) is due. Sleeps only when it is at least 100 µs early:
    /// a sleep overshoots by about that much, and sending up to 100 µs early never raises the
    /// rate above the target over any interval longer than that.
    pub fn wait_turn(&self, i: u64) {
        let Some(per_msg) = self.per_msg else { return };
        let due = self.start + per_msg.mul_f64(i as f64);
        let now = Instant::now();
        if due > now + Duration::from_micros(100) {
            std::thread::sleep(due - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_round_trips_and_rejects_foreign_bytes() {
        let mut buf = payload::template(100);
        let h = payload::Header {
            producer: 7,
            seq: 123_456_789,
            sent_ns: 42,
        };
        payload::write(&mut buf, h);
        assert_eq!(payload::read(&buf), Some(h));
        assert_eq!(payload::read(&buf[..10]), None);
        assert_eq!(payload::read(b"not a jet-bench payload at all"), None);
        assert_eq!(payload::template(3).len(), payload::HEADER_LEN);
    }

    #[test]
    fn unique_topics_differ() {
        assert_ne!(unique_topic("x"), unique_topic("x"));
    }

    #[test]
    fn pacer_holds_the_rate() {
        let p = Pacer::new(Some(10_000.0));
        let t = Instant::now();
        for i in 0..1_000 {
            p.wait_turn(i);
        }
        // 1,000 messages at 10,000/s: ~100 ms, never much less.
        assert!(
            t.elapsed() >= Duration::from_millis(95),
            "{:?}",
            t.elapsed()
        );
    }
}
