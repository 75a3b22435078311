//! jet-bench: load for a Kafka-compatible broker through librdkafka (the `rdkafka` crate), and
//! the ceiling it is compared with.
//!
//! Map of the crate:
//! - [`client`] — librdkafka base config, topic creation, the payload header (producer id,
//!   sequence, send time), the shared monotonic clock, rate pacing;
//! - [`produce`] — N messages from one or many producer clients, every delivery report counted;
//! - [`consume`] — read from earliest until N, count and order checked per partition;
//! - [`latency`] — fixed-rate produce while consuming, end-to-end percentiles (HdrHistogram);
//! - [`null_broker`] — the in-process broker that does nothing: the ceiling;
//! - [`suite`] — the standard scenarios against the target and the ceiling, with ratios;
//! - [`report`] — results.json, results.md, the machine, the targets; [`chart`] — chart.svg;
//! - [`procstat`] — broker CPU seconds and peak RSS from `/proc`.
#![deny(missing_docs)]

pub mod chart;
pub mod client;
pub mod consume;
pub mod latency;
pub mod null_broker;
pub mod procstat;
pub mod produce;
pub mod report;
pub mod suite;
