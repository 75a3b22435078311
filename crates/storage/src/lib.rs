//! One RocksDB per node, and the in-memory Raft log tail that raft-rs reads.
//!
//! Map of the crate:
//! - [`store`] — [`Store`]: opens RocksDB with its column families and offers the reads
//!   (partition logs, raft state on start-up) and the [`WriteBatch`](store::Batch) the driver fills.
//! - [`keys`] — byte layouts of every key, so that range scans and range deletes line up.
//! - [`shard_log`] — [`ShardLog`]: raft-rs's `Storage` for one shard, the recent entries in memory
//!   (the durable copy is the `raft_log` column family).
//! - [`error`] — [`StorageError`].
//!
//! Column families:
//! | name | key | value |
//! |---|---|---|
//! | `raft_log` | shard, index | one `eraftpb::Entry` |
//! | `raft_state` | shard, field | hard state, conf state, truncated index/term, applied index |
//! | `log` | topic id, partition, base offset | one record batch, as stored (magic 2) |
//! | `meta` | tag, ... | cluster metadata, partition state |

pub mod error;
pub mod keys;
pub mod shard_log;
pub mod store;

pub use error::StorageError;
pub use keys::TopicPartition;
pub use shard_log::ShardLog;
pub use store::{Batch, BatchInfo, PartitionState, Store, StoreOptions};
