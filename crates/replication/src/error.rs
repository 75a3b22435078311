//! [`Error`]: everything a shard or the metadata shard can answer besides success. The Kafka
//! server maps each variant to one Kafka error code (`jet_kafka::error_map`).

use jet_storage::StorageError;

/// A failed request to the replication layer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The topic or partition does not exist (or was deleted while the request waited).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// CreateTopics for a name that exists.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// A topic name Kafka would reject (empty, too long, bad characters, `.` or `..`).
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// A partition count that is not positive, or that would shrink a topic.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// A replication factor this cluster cannot place.
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// An unknown config name or a value out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A request whose fields contradict each other.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A read below the log start offset or above the log end.
    #[error("offset out of range (log start {log_start_offset}, high watermark {high_watermark})")]
    OffsetOutOfRange {
        /// The partition's log start offset.
        log_start_offset: i64,
        /// The partition's high watermark.
        high_watermark: i64,
    },
    /// This node does not lead the shard (or lost leadership before the entry committed).
    #[error("not the leader")]
    NotLeader,
    /// The proposal did not commit in time.
    #[error("request timed out")]
    Timeout,
    /// A record batch larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes is over the limit of {max}")]
    MessageTooLarge {
        /// The batch size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An idempotent producer's batch does not follow its last sequence.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer's epoch is older than the partition has seen.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A transactional batch; Jet has no transaction coordinator yet.
    #[error("transactional batches are not supported")]
    InvalidTxnState,
    /// The node is stopping.
    #[error("node is shutting down")]
    ShuttingDown,
    /// RocksDB failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e.to_string())
    }
}
