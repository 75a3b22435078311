//! Shards: Raft groups (raft-rs `RawNode`) driven by one multi-raft loop per node.
//!
//! Map of the crate:
//! - [`node`] — [`Node`], the handle the Kafka server talks to: append, read, metadata changes.
//! - [`driver`] — the one thread that ticks every local shard, persists every shard's `Ready` in
//!   one RocksDB write batch, applies committed entries and answers proposals.
//! - [`compaction`] — key-based compaction of compacted topics, planned by the leader.
//! - [`command`] — what a Raft entry carries (data appends, metadata changes) and its encoding.
//! - [`metadata`] — the metadata shard's state machine: topics, configs, partition → shard.
//! - [`partition`] — the in-memory state of one partition (offsets, watermarks, wake-ups).
//! - [`producer`] — idempotent-producer state: sequence and epoch checks at apply.
//! - [`placement`] — which nodes hold each shard: pure functions of the members (at forming) and
//!   of the current placement, the live and the dead nodes (as nodes join and die).
//! - [`topic_config`] — the topic configs Jet knows, their Kafka defaults and validation.
//! - [`error`] — [`Error`], the one error type handlers map to Kafka error codes.
//!
//! Shard 0 is the metadata shard, shards `1..=data_shards` hold partitions; each is a Raft group
//! whose voters [`placement`] chose when the cluster formed, and which change by single-step
//! configuration changes as nodes join or die (new replicas are seeded by snapshots). A single
//! node is a cluster of one: every shard has it as its only voter. The driver's modules:
//! `driver::apply` (the state machine), `driver::ready` (persist, send, apply, answer),
//! `driver::leadership` (serving, ISR, balance, hand-off), `driver::membership` and
//! `driver::snapshot` (replica changes),
//! `driver::network` and `driver::wire` (Raft messages over the peer transport),
//! `driver::restore` (start-up), `driver::sim_tests` and `driver::sim_moves` (the deterministic
//! simulations).

pub mod command;
pub mod compaction;
pub mod driver;
pub mod error;
pub mod metadata;
pub mod node;
pub mod partition;
pub mod placement;
pub mod producer;
pub mod topic_config;

pub use error::Error;
pub use jet_storage::TopicPartition;
pub use metadata::{ClusterMetadata, PartitionMeta, TopicMeta};
pub use node::{AppendOutcome, AppendTicket, CreateTopic, Node, NodeConfig, ReadResult};
pub use node::{BrokerInfo, Directory};
pub use partition::PartitionHandle;
