//! `consume`: reads a topic from the earliest offset until N messages have arrived — by assign
//! (every partition, from the beginning) or in a consumer group — and checks, per partition,
//! that jet-bench's payloads arrive complete and in order.
//!
//! The check ([`OrderCheck`]): within one partition, the messages of one producer must carry
//! sequence numbers 0, 1, 2, … with no gap, repeat or reordering. Payloads without jet-bench's
//! header are counted but not checked.
//!
//! librdkafka needs a `group.id` even to assign, so a throwaway one is set; with assign and no
//! commits, it never joins the group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{self, payload, QuietContext};

/// At most this many order errors are kept as text (all are counted).
const ORDER_ERRORS_KEPT: usize = 10;

/// Checks count and order per (partition, producer).
#[derive(Debug, Default)]
pub struct OrderCheck {
    next_seq: HashMap<(i32, u32), u64>,
    per_partition: HashMap<i32, u64>,
    /// Messages with a jet-bench header (warm-up ones excluded).
    pub checked: u64,
    /// Messages without a jet-bench header.
    pub foreign: u64,
    /// Order errors seen.
    pub errors: u64,
    /// The first few, as text.
    pub first_errors: Vec<String>,
}

impl OrderCheck {
    /// Records one message; returns its header if it has one.
    pub fn observe(
        &mut self,
        partition: i32,
        offset: i64,
        value: &[u8],
    ) -> Option<payload::Header> {
        let Some(h) = payload::read(value) else {
            self.foreign += 1;
            *self.per_partition.entry(partition).or_default() += 1;
            return None;
        };
        let expected = self.next_seq.entry((partition, h.producer)).or_insert(0);
        if h.seq != *expected {
            self.errors += 1;
            if self.first_errors.len() < ORDER_ERRORS_KEPT {
                self.first_errors.push(format!(
                    "partition {partition} offset {offset}: producer {} seq {} where {} was due",
                    h.producer, h.seq, expected
                ));
            }
        }
        *expected = h.seq + 1;
        if h.producer != payload::WARMUP_PRODUCER {
            self.checked += 1;
            *self.per_partition.entry(partition).or_default() += 1;
        }
        Some(h)
    }

    /// Messages counted per partition, sorted by partition.
    pub fn per_partition(&self) -> Vec<(i32, u64)> {
        let mut v: Vec<(i32, u64)> = self.per_partition.iter().map(|(p, n)| (*p, *n)).collect();
        v.sort_unstable();
        v
    }

    /// An error if any message was out of order.
    pub fn result(&self) -> anyhow::Result<()> {
        order_result(self.errors, &self.first_errors)
    }
}

/// An error saying how many messages were out of order and which came first.
pub fn order_result(errors: u64, first: &[String]) -> anyhow::Result<()> {
    if errors > 0 {
        bail!("{errors} order errors; first: {}", first.join("; "));
    }
    Ok(())
}

/// What to consume.
#[derive(Debug, Clone)]
pub struct ConsumeOpts {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic, which must exist.
    pub topic: String,
    /// Stop after this many messages.
    pub messages: u64,
    /// Join this consumer group (subscribe) instead of assigning every partition.
    pub group: Option<String>,
    /// Bound on the whole run.
    pub timeout: Duration,
}

/// What a consume run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeResult {
    /// The topic read.
    pub topic: String,
    /// Messages received.
    pub messages: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Assign (or subscribe) to the last message.
    pub secs: f64,
    /// `messages / secs`.
    pub msgs_per_sec: f64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Messages checked for order (those with a jet-bench header).
    pub checked: u64,
    /// Messages per partition.
    pub per_partition: Vec<(i32, u64)>,
    /// Messages out of order (gap, repeat or reordering); the run fails if not 0.
    pub order_errors: u64,
    /// The first few order errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_error_sample: Vec<String>,
}

impl ConsumeResult {
    /// Fails if any message was out of order.
    pub fn verify(&self) -> anyhow::Result<()> {
        order_result(self.order_errors, &self.order_error_sample)
    }
}

/// Builds a consumer that reads from the beginning, commits nothing and never long-polls for
/// more than 100 ms (so it notices the end of the run promptly).
pub fn new_consumer(
    brokers: &str,
    group: Option<&str>,
) -> anyhow::Result<BaseConsumer<QuietContext>> {
    let group = group.map_or_else(|| client::unique_topic("assign"), str::to_string);
    client::base_config(brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        // librdkafka stops fetching for 1 s (the default) whenever its local queue holds
        // `queued.min.messages`; an application that drains the queue faster than that then sits
        // idle. 10 ms keeps the pipeline full without spinning.
        .set("fetch.queue.backoff.ms", "10")
        .create_with_context(QuietContext)
        .context("cannot create the consumer")
}

/// Assigns every partition of `topic` from the beginning.
pub fn assign_all(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assign")
}

/// Runs a consume as `opts` says; fails on a short count. Order errors are in the result (so
/// the figures survive them); [`ConsumeResult::verify`] turns them into a failure.
pub fn run(opts: &ConsumeOpts) -> anyhow::Result<ConsumeResult> {
    let deadline = Instant::now() + opts.timeout;
    let consumer = new_consumer(&opts.brokers, opts.group.as_deref())?;
    // Connect before the clock starts (as produce does): fetching metadata opens the connection.
    consumer
        .fetch_metadata(Some(&opts.topic), Duration::from_secs(30))
        .context("consumer metadata")?;
    match &opts.group {
        Some(_) => consumer.subscribe(&[&opts.topic]).context("subscribe")?,
        None => {
            let partitions =
                client::partition_count(&opts.brokers, &opts.topic, Duration::from_secs(30))?;
            assign_all(&consumer, &opts.topic, partitions)?;
        }
    }
    let started = Instant::now();
    let mut check = OrderCheck::default();
    let (mut received, mut bytes) = (0u64, 0u64);
    while received < opts.messages {
        if Instant::now() >= deadline {
            bail!(
                "{received} of {} messages before the deadline",
                opts.messages
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => bail!("consume error after {received} messages: {e}"),
            Some(Ok(m)) => {
                let value = m.payload().unwrap_or_default();
                check.observe(m.partition(), m.offset(), value);
                received += 1;
                bytes += value.len() as u64;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(ConsumeResult {
        topic: opts.topic.clone(),
        messages: received,
        bytes,
        secs,
        msgs_per_sec: received as f64 / secs,
        mb_per_sec: bytes as f64 / secs / 1e6,
        checked: check.checked,
        per_partition: check.per_partition(),
        order_errors: check.errors,
        order_error_sample: check.first_errors.clone(),
    })
}

/// The one-line summary.
pub fn summary(opts: &ConsumeOpts, r: &ConsumeResult) -> String {
    let how = opts
        .group
        .as_ref()
        .map_or("assign".to_string(), |g| format!("group {g}"));
    format!(
        "consume {} msgs from earliest ({how}, {} partitions): {:.2} s, {:.0} msg/s, {:.1} MB/s, \
         {} checked, {} out of order (topic {})",
        r.messages,
        r.per_partition.len(),
        r.secs,
        r.msgs_per_sec,
        r.mb_per_sec,
        r.checked,
        r.order_errors,
        r.topic
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(producer: u32, seq: u64) -> Vec<u8> {
        let mut b = payload::template(30);
        payload::write(
            &mut b,
            payload::Header {
                producer,
                seq,
                sent_ns: 0,
            },
        );
        b
    }

    #[test]
    fn in_order_per_producer_and_partition_passes() {
        let mut c = OrderCheck::default();
        for seq in 0..3 {
            c.observe(0, seq as i64, &msg(0, seq));
            c.observe(0, 10 + seq as i64, &msg(1, seq));
            c.observe(1, seq as i64, &msg(0, seq));
        }
        c.observe(1, 9, b"foreign");
        assert!(c.result().is_ok());
        assert_eq!((c.checked, c.foreign), (9, 1));
        assert_eq!(c.per_partition(), vec![(0, 6), (1, 4)]);
    }

    #[test]
    fn gaps_repeats_and_reorders_fail() {
        for seqs in [[0u64, 2, 3], [0, 1, 1], [1, 0, 2]] {
            let mut c = OrderCheck::default();
            for (i, s) in seqs.iter().enumerate() {
                c.observe(0, i as i64, &msg(0, *s));
            }
            assert!(c.result().is_err(), "{seqs:?}");
        }
    }
}
