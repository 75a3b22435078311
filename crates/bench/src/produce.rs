//! `produce`: N messages of S bytes over P partitions from one or more producers, each its own
//! librdkafka client (its own connection), counting every delivery report.
//!
//! Each producer is a `BaseProducer` with a polling thread of its own that runs the delivery
//! callbacks ([`CountedProducer`]) — the fastest way through the rdkafka crate. (Not rdkafka's
//! `ThreadedProducer`: its thread and its `flush` notice the end only in 100 ms steps, which would
//! quantize every timing.) Message `i` of a producer
//! goes to partition `i mod P` and carries the payload header of [`crate::client::payload`]:
//! its producer id and its sequence within (producer, partition), which `consume` checks.
//!
//! The clock starts once every producer has fetched the topic's metadata (connections are up)
//! and stops when the last delivery report is in. Any delivery error fails the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::Serialize;

use crate::client::{self, payload, Pacer};

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOpts {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic; created with `partitions` when `create_topic` is set.
    pub topic: String,
    /// Create the topic first (false when the caller already did).
    pub create_topic: bool,
    /// Total messages, over all producers.
    pub messages: u64,
    /// Payload bytes per message (at least the 24-byte header).
    pub size: usize,
    /// Partitions of the topic; messages go round-robin over them.
    pub partitions: i32,
    /// `acks`: "0", "1" or "all".
    pub acks: String,
    /// `linger.ms`.
    pub linger_ms: u32,
    /// `batch.size` in bytes.
    pub batch_bytes: u32,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    pub compression: String,
    /// Total messages per second over all producers; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Producer clients sending at once.
    pub producers: u32,
    /// Bound on the whole run (topic creation excluded).
    pub timeout: Duration,
}

impl ProduceOpts {
    /// Defaults: 100 B × 1,000,000 over 4 partitions, acks=all, linger 5 ms, 1 producer.
    pub fn new(brokers: &str, topic: &str) -> ProduceOpts {
        ProduceOpts {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            create_topic: true,
            messages: 1_000_000,
            size: 100,
            partitions: 4,
            acks: "all".into(),
            linger_ms: 5,
            batch_bytes: 1_000_000,
            compression: "none".into(),
            rate: None,
            producers: 1,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What a produce run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    /// The topic written.
    pub topic: String,
    /// Messages acknowledged (delivery reports without error).
    pub messages: u64,
    /// Payload bytes acknowledged.
    pub bytes: u64,
    /// First send to last delivery report.
    pub secs: f64,
    /// `messages / secs`.
    pub msgs_per_sec: f64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
}

/// Delivery-report counters shared by every producer of a run.
#[derive(Default)]
pub struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// The producer context: counts each delivery report.
pub struct CountingContext(Arc<Deliveries>);

impl ClientContext for CountingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client::print_log(level, fac, log_message);
    }
}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A producer client, the delivery counters it reports into, and the thread that polls it (runs
/// the delivery callbacks). Dropping it stops the thread within `POLL_STEP` (5 ms).
pub struct CountedProducer {
    /// The librdkafka producer.
    pub producer: Arc<BaseProducer<CountingContext>>,
    deliveries: Arc<Deliveries>,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

/// How long one `poll` call of the polling thread lasts (rdkafka's `poll` runs for its whole
/// timeout, handling events as they come), hence how long stopping it can take.
const POLL_STEP: Duration = Duration::from_millis(5);

impl CountedProducer {
    fn new(opts: &ProduceOpts, deliveries: Arc<Deliveries>) -> anyhow::Result<CountedProducer> {
        let producer = Arc::new(new_producer(opts, Arc::clone(&deliveries))?);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("producer-poll".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL_STEP);
                    }
                })?
        };
        Ok(CountedProducer {
            producer,
            deliveries,
            stop,
            poller: Some(poller),
        })
    }

    /// Waits until `deadline` for `expected` delivery reports, then fails if any reported an
    /// error or any is missing.
    pub fn check(&self, expected: u64, deadline: Instant) -> anyhow::Result<()> {
        self.deliveries.check(expected, deadline)
    }
}

impl Drop for CountedProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

impl Deliveries {
    fn failed_so_far(&self) -> anyhow::Result<()> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .first_error
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default();
            bail!(
                "{failed} deliveries failed; first: {}",
                first.unwrap_or_default()
            );
        }
        Ok(())
    }

    fn check(&self, expected: u64, deadline: Instant) -> anyhow::Result<()> {
        // Polled every 100 µs: fine enough to time a run of a few hundred milliseconds.
        while self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed) < expected
            && Instant::now() < deadline
        {
            if self.failed.load(Ordering::Relaxed) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.failed_so_far()?;
        let ok = self.ok.load(Ordering::Relaxed);
        if ok != expected {
            bail!("{ok} delivery reports for {expected} messages");
        }
        Ok(())
    }
}

/// Creates one producer client configured from `opts`, counting into a fresh set of counters.
pub fn new_counted_producer(opts: &ProduceOpts) -> anyhow::Result<CountedProducer> {
    CountedProducer::new(opts, Arc::new(Deliveries::default()))
}

/// Runs a produce as `opts` says; fails on any delivery error or a missing delivery report.
pub fn run(opts: &ProduceOpts) -> anyhow::Result<ProduceResult> {
    if opts.size < payload::HEADER_LEN {
        bail!("--size must be at least {} bytes", payload::HEADER_LEN);
    }
    if opts.partitions < 1 || opts.producers < 1 {
        bail!("--partitions and --producers must be at least 1");
    }
    if opts.create_topic {
        client::create_topic(
            &opts.brokers,
            &opts.topic,
            opts.partitions,
            Duration::from_secs(60),
        )?;
    }
    let deliveries = Arc::new(Deliveries::default());
    let deadline = Instant::now() + opts.timeout;
    let producers = (0..opts.producers)
        .map(|_| CountedProducer::new(opts, Arc::clone(&deliveries)).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Connect every producer before the clock starts: fetching the topic's metadata opens the
    // connection to the (single) broker.
    for p in &producers {
        p.producer
            .client()
            .fetch_metadata(Some(&opts.topic), Duration::from_secs(30))
            .context("producer metadata")?;
    }
    let barrier = Arc::new(Barrier::new(producers.len() + 1));
    let n = opts.producers as u64;
    let mut threads = Vec::with_capacity(producers.len());
    for (id, producer) in producers.iter().enumerate() {
        let (id, producer) = (id as u32, Arc::clone(producer));
        // Spread the remainder over the first producers.
        let count = opts.messages / n + u64::from((id as u64) < opts.messages % n);
        let rate = opts.rate.map(|r| r / n as f64);
        let (opts, barrier) = (opts.clone(), Arc::clone(&barrier));
        threads.push(
            std::thread::Builder::new()
                .name(format!("produce-{id}"))
                .spawn(move || {
                    barrier.wait();
                    send_paced(&producer, &opts, id, count, rate, deadline)
                })?,
        );
    }
    barrier.wait();
    let started = Instant::now();
    let mut first_failure = None;
    for t in threads {
        let outcome = t
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))
            .and_then(|r| r);
        if let Err(e) = outcome {
            first_failure.get_or_insert(e);
        }
    }
    if let Some(e) = first_failure {
        return Err(e);
    }
    deliveries.check(opts.messages, deadline)?;
    let secs = started.elapsed().as_secs_f64();
    // Their polling threads stop here, outside the measured time.
    drop(producers);
    let ok = opts.messages;
    let bytes = ok * opts.size as u64;
    Ok(ProduceResult {
        topic: opts.topic.clone(),
        messages: ok,
        bytes,
        secs,
        msgs_per_sec: ok as f64 / secs,
        mb_per_sec: bytes as f64 / secs / 1e6,
    })
}

fn new_producer(
    opts: &ProduceOpts,
    deliveries: Arc<Deliveries>,
) -> anyhow::Result<BaseProducer<CountingContext>> {
    let timeout_ms = opts.timeout.as_millis().to_string();
    client::base_config(&opts.brokers)
        .set("acks", &opts.acks)
        .set("linger.ms", opts.linger_ms.to_string())
        .set("batch.size", opts.batch_bytes.to_string())
        .set("compression.type", &opts.compression)
        // Fail a message, rather than retry it forever, once the run's time is up.
        .set("message.timeout.ms", &timeout_ms)
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "false")
        .create_with_context(CountingContext(deliveries))
        .context("cannot create the producer")
}

/// Sends `count` messages round-robin over the partitions, at `rate` if given. Stops early if a
/// delivery has already failed or the deadline passes. It does not wait for the delivery
/// reports: [`CountedProducer::check`] does (not rdkafka's `flush`, which, beside the polling
/// thread, only notices the end in 100 ms steps).
pub fn send_paced(
    p: &CountedProducer,
    opts: &ProduceOpts,
    id: u32,
    count: u64,
    rate: Option<f64>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let partitions = opts.partitions as u64;
    let mut seqs = vec![0u64; opts.partitions as usize];
    let mut buf = payload::template(opts.size);
    let pacer = Pacer::new(rate);
    for i in 0..count {
        if i % 4096 == 0 {
            p.deliveries.failed_so_far()?;
        }
        pacer.wait_turn(i);
        // Producers start at different partitions so that, together, they spread evenly.
        let partition = ((i + u64::from(id)) % partitions) as usize;
        let header = payload::Header {
            producer: id,
            seq: seqs[partition],
            sent_ns: client::now_ns(),
        };
        seqs[partition] += 1;
        payload::write(&mut buf, header);
        let mut record = BaseRecord::<(), [u8], ()>::to(&opts.topic)
            .payload(&buf[..])
            .partition(partition as i32);
        loop {
            match p.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: the broker is the bottleneck; wait for it.
                    if Instant::now() >= deadline {
                        bail!("producer {id}: queue still full at the deadline");
                    }
                    record = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err((e, _)) => bail!("producer {id}: send failed: {e}"),
            }
        }
    }
    Ok(())
}

/// The one-line summary.
pub fn summary(opts: &ProduceOpts, r: &ProduceResult) -> String {
    format!(
        "produce {} msgs × {} B, {} partitions, {} producer(s), acks={}, linger={} ms, compression={}: \
         {:.2} s, {:.0} msg/s, {:.1} MB/s, 0 errors (topic {})",
        r.messages,
        opts.size,
        opts.partitions,
        opts.producers,
        opts.acks,
        opts.linger_ms,
        opts.compression,
        r.secs,
        r.msgs_per_sec,
        r.mb_per_sec,
        r.topic
    )
}
