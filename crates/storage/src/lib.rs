//! One RocksDB per node, and the in-memory Raft log tail that raft-rs reads.
//!
//! Map of the crate:
//! - [`store`] — [`Store`]: opens RocksDB with its column families, checks the data
//!   directory's format and owner, reads the Raft log, and offers the
//!   [`WriteBatch`](store::Batch) the driver fills.
//! - [`index`] — the partition log as an index over the Raft log: [`IndexEntry`],
//!   [`PartitionState`], batch reads and binary searches by size and time.
//! - [`keys`] — byte layouts of every key, so that range scans and range deletes line up.
//! - [`shard_log`] — [`ShardLog`]: raft-rs's `Storage` for one shard; unapplied entries in
//!   memory, applied ones read back from `raft_log`.
//! - [`error`] — [`StorageError`].
//!
//! Column families (each produced byte is stored once, in `raft_log`):
//! | name | key | value |
//! |---|---|---|
//! | `raft_log` | shard, index, term, type | the entry's data, verbatim (blob files) |
//! | `raft_state` | shard, field | hard state, conf state, truncated index/term, applied index |
//! | `index` | topic id, partition, base offset | where the batch lies in the Raft log |
//! | `meta` | tag, ... | cluster metadata, partition and producer state, groups, format |

pub mod error;
pub mod index;
pub mod keys;
pub mod shard_log;
pub mod store;

pub use error::StorageError;
pub use index::{IndexEntry, PartitionState, ReadBatches};
pub use keys::TopicPartition;
pub use shard_log::ShardLog;
pub use store::{Batch, Store, StoreOptions, StoreStats};
