//! A tiny produce, consume and latency run against the in-process null broker: checks counts and
//! order end to end through librdkafka, in a few seconds.

use std::time::Duration;

use jet_bench::client::unique_topic;
use jet_bench::consume::{self, ConsumeOpts};
use jet_bench::latency::{self, LatencyOpts};
use jet_bench::null_broker::NullBroker;
use jet_bench::produce::{self, ProduceOpts};

fn small_produce(brokers: &str, topic: &str) -> ProduceOpts {
    let mut p = ProduceOpts::new(brokers, topic);
    p.messages = 5_000;
    p.partitions = 3;
    p.timeout = Duration::from_secs(30);
    p
}

#[test]
fn produce_then_consume_counts_and_order() {
    let broker = NullBroker::start().unwrap();
    let topic = unique_topic("test-pc");
    broker.retain(&topic);
    let p = small_produce(&broker.bootstrap(), &topic);
    let produced = produce::run(&p).unwrap();
    assert_eq!(produced.messages, 5_000);
    let c = ConsumeOpts {
        brokers: broker.bootstrap(),
        topic: topic.clone(),
        messages: 5_000,
        group: None,
        timeout: Duration::from_secs(30),
    };
    let consumed = consume::run(&c).unwrap();
    consumed.verify().unwrap();
    assert_eq!(consumed.messages, 5_000);
    assert_eq!(consumed.checked, 5_000);
    let per: Vec<u64> = consumed.per_partition.iter().map(|(_, n)| *n).collect();
    assert_eq!(per.iter().sum::<u64>(), 5_000);
    assert_eq!(per.len(), 3);
    assert!(broker.retained_bytes() > 5_000 * 100);
    broker.forget(&topic);
    assert_eq!(broker.retained_bytes(), 0);
}

#[test]
fn many_producers_and_acks_variants() {
    let broker = NullBroker::start().unwrap();
    for acks in ["0", "1", "all"] {
        let topic = unique_topic("test-acks");
        let mut p = small_produce(&broker.bootstrap(), &topic);
        p.acks = acks.into();
        p.producers = 4;
        p.compression = "lz4".into();
        let r = produce::run(&p).unwrap();
        assert_eq!(r.messages, 5_000, "acks={acks}");
    }
}

#[test]
fn latency_run_loses_nothing() {
    let broker = NullBroker::start().unwrap();
    let topic = unique_topic("test-lat");
    broker.retain(&topic);
    let mut p = small_produce(&broker.bootstrap(), &topic);
    p.rate = Some(2_000.0);
    p.linger_ms = 0;
    let opts = LatencyOpts {
        produce: p,
        duration: Duration::from_secs(1),
    };
    let r = latency::run(&opts).unwrap();
    r.verify().unwrap();
    assert_eq!(r.messages, 2_000);
    let l = r.latency;
    assert!(l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms && l.p50_ms > 0.0);
}
