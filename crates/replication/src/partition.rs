//! [`PartitionHandle`]: what readers see of a partition without asking the driver.
//!
//! The driver publishes a partition's watermarks here after the applied batches are written to
//! RocksDB, so a reader that sees high watermark `h` finds every batch below `h` in the store.
//! Waiting fetchers subscribe to the high watermark and are woken by the append itself.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use jet_storage::{PartitionState, TopicPartition};
use tokio::sync::watch;

/// Leadership of one shard as the driver last saw it.
#[derive(Debug, Default)]
pub struct ShardStatus {
    /// The shard id.
    pub id: u64,
    /// Current Raft term (the Kafka leader epoch of the shard's partitions).
    pub term: AtomicU64,
    /// True while this node leads the shard.
    pub is_leader: AtomicBool,
}

impl ShardStatus {
    /// The Kafka leader epoch: the Raft term, clamped to i32.
    pub fn leader_epoch(&self) -> i32 {
        self.term.load(Ordering::Acquire).min(i32::MAX as u64) as i32
    }
}

#[derive(Debug)]
struct Inner {
    tp: TopicPartition,
    shard: Arc<ShardStatus>,
    log_start_offset: AtomicI64,
    high_watermark: AtomicI64,
    max_timestamp: AtomicI64,
    max_timestamp_batch: AtomicI64,
    hw_tx: watch::Sender<i64>,
}

/// A cheap, cloneable view of one partition.
#[derive(Debug, Clone)]
pub struct PartitionHandle(Arc<Inner>);

impl PartitionHandle {
    pub(crate) fn new(tp: TopicPartition, shard: Arc<ShardStatus>, st: &PartitionState) -> Self {
        let (hw_tx, _) = watch::channel(st.next_offset);
        PartitionHandle(Arc::new(Inner {
            tp,
            shard,
            log_start_offset: AtomicI64::new(st.log_start_offset),
            high_watermark: AtomicI64::new(st.next_offset),
            max_timestamp: AtomicI64::new(st.max_timestamp),
            max_timestamp_batch: AtomicI64::new(st.max_timestamp_batch),
            hw_tx,
        }))
    }

    /// Publishes new state (driver only, after the write that holds it).
    pub(crate) fn publish(&self, st: &PartitionState) {
        let i = &self.0;
        i.log_start_offset
            .store(st.log_start_offset, Ordering::Release);
        i.max_timestamp.store(st.max_timestamp, Ordering::Release);
        i.max_timestamp_batch
            .store(st.max_timestamp_batch, Ordering::Release);
        let old = i.high_watermark.swap(st.next_offset, Ordering::AcqRel);
        assert!(
            st.next_offset >= old,
            "high watermark went backwards: {old} -> {}",
            st.next_offset
        );
        if st.next_offset != old {
            i.hw_tx.send_replace(st.next_offset);
        }
    }

    /// The partition.
    pub fn tp(&self) -> TopicPartition {
        self.0.tp
    }

    /// The shard that owns it.
    pub fn shard(&self) -> u64 {
        self.0.shard.id
    }

    /// First readable offset.
    pub fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset.load(Ordering::Acquire)
    }

    /// Offset after the last committed record.
    pub fn high_watermark(&self) -> i64 {
        self.0.high_watermark.load(Ordering::Acquire)
    }

    /// Largest batch timestamp and the base offset of its batch (-1, -1 when empty).
    pub fn max_timestamp(&self) -> (i64, i64) {
        (
            self.0.max_timestamp.load(Ordering::Acquire),
            self.0.max_timestamp_batch.load(Ordering::Acquire),
        )
    }

    /// The Kafka leader epoch (the shard's Raft term).
    pub fn leader_epoch(&self) -> i32 {
        self.0.shard.leader_epoch()
    }

    /// True while this node leads the partition's shard.
    pub fn is_leader(&self) -> bool {
        self.0.shard.is_leader.load(Ordering::Acquire)
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.0.hw_tx.subscribe()
    }
}
