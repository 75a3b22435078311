//! [`NodeConfig`]: every setting of the replication layer, with the defaults the broker's flags
//! start from.

use std::path::PathBuf;
use std::time::Duration;

use jet_storage::StoreOptions;

/// Settings of the replication layer (the broker fills them from flags).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (the Kafka broker id and the Raft peer id).
    pub node_id: u64,
    /// Directory of the node's RocksDB.
    pub data_dir: PathBuf,
    /// Data shards a new cluster forms with (shard ids `1..=data_shards`; shard 0 is
    /// metadata). A node restarting or joining uses the cluster's count instead.
    pub data_shards: u64,
    /// Data shard replicas per node a new cluster aims for as nodes join (`--shards`): it adds
    /// shards to keep about this × nodes ÷ replication factor. 0: the count never grows.
    pub shards_per_node: u64,
    /// fsync every Raft write batch (true), or leave flushing to the OS.
    pub fsync: bool,
    /// Largest record batch accepted when a topic does not set `max.message.bytes`.
    pub max_batch_bytes: usize,
    /// Proposals waiting for the driver before producers wait (backpressure).
    pub max_pending_proposals: usize,
    /// Bytes of record batches handed to shards but not yet applied, node-wide; past it,
    /// producers wait (backpressure), so memory stays bounded whatever clients send.
    pub max_append_bytes_in_flight: usize,
    /// Largest Raft entry the driver builds from grouped appends.
    pub max_entry_bytes: usize,
    /// Raft tick.
    pub tick: Duration,
    /// Fewest Raft entries a leader proposes to delete at once (each proposal is an entry).
    pub raft_log_gc_entries: u64,
    /// A follower that hears no leader for a random number of ticks in `[min, max)` stands
    /// for election (raft-rs's randomized election timeout).
    pub election_ticks: (usize, usize),
    /// How often retention is checked.
    pub retention_check_interval: Duration,
    /// How long a proposal may wait to be applied.
    pub proposal_timeout: Duration,
    /// How long a partition remembers an idle idempotent producer (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// Bytes of recently appended batches kept in memory for tail reads, node-wide.
    pub tail_cache_bytes: usize,
    /// The most of that one partition may hold.
    pub tail_cache_partition_bytes: usize,
    /// RocksDB sizing.
    pub store: StoreOptions,
    /// The nodes a new cluster is formed with (this node included); empty or this node alone
    /// makes a cluster of one. Ignored when the data directory already holds a cluster.
    pub members: Vec<u64>,
    /// Replicas per data shard of a new cluster (capped by the node count).
    pub replication_factor: u64,
    /// This node never makes shards of its own (a clustered node that joins a running cluster
    /// or restarts): the metadata leader admits it and its replicas arrive as snapshots.
    pub join: bool,
    /// A follower counts as in sync while it caught up with the leader's log within this long
    /// (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max: Duration,
}

impl NodeConfig {
    /// Defaults for a node keeping its data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            node_id: 1,
            data_dir,
            data_shards: 4,
            shards_per_node: 0,
            fsync: true,
            // Kafka's message.max.bytes default.
            max_batch_bytes: 1_048_588,
            max_pending_proposals: 8192,
            max_append_bytes_in_flight: 16 << 20,
            // A fetch from disk reads the whole entry a batch lies in; 1 MiB keeps that small
            // while one entry still carries many requests' batches.
            max_entry_bytes: 1 << 20,
            tick: Duration::from_millis(100),
            raft_log_gc_entries: 64,
            election_ticks: (10, 20),
            retention_check_interval: Duration::from_secs(30),
            proposal_timeout: Duration::from_secs(30),
            producer_id_expiration_ms: 86_400_000,
            tail_cache_bytes: 32 << 20,
            tail_cache_partition_bytes: 2 << 20,
            store: StoreOptions::default(),
            members: Vec::new(),
            join: false,
            replication_factor: 3,
            replica_lag_time_max: Duration::from_secs(30),
        }
    }
}
