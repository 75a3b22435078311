//! [`PartitionHandle`]: what readers see of a partition without asking the driver.
//!
//! The driver publishes a partition's watermarks here after the applied batches are written to
//! RocksDB, so a reader that sees high watermark `h` finds every batch below `h` in the store.
//! Waiting fetchers subscribe to the high watermark and are woken by the append itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use jet_storage::{PartitionState, TopicPartition};
use tokio::sync::watch;

/// Leadership of one shard as the driver last saw it.
#[derive(Debug, Default)]
pub struct ShardStatus {
    /// The shard id.
    pub id: u64,
    /// Current Raft term (the Kafka leader epoch of the shard's partitions).
    pub term: AtomicU64,
    /// True while this node leads the shard and has applied every entry of earlier terms (so
    /// its partitions, producer states and group records are complete).
    pub is_leader: AtomicBool,
    /// The leader's node id as this node's Raft state knows it; 0 when there is none, or when
    /// this node is not a replica of the shard.
    pub leader: AtomicU64,
    /// True when this node holds a replica of the shard.
    pub local: AtomicBool,
    /// The shard's voters and, as the leader last computed it, its in-sync replicas.
    pub members: std::sync::Mutex<ShardMembers>,
}

/// Who holds a shard.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardMembers {
    /// The voters of the shard's Raft group, placement order (the first is the preferred
    /// leader).
    pub replicas: Vec<u64>,
    /// Voters caught up with the leader within `replica_lag_time_max` (the leader's view; on
    /// other nodes, as last known).
    pub isr: Vec<u64>,
}

impl ShardStatus {
    /// The Kafka leader epoch: the Raft term, clamped to i32.
    pub fn leader_epoch(&self) -> i32 {
        self.term.load(Ordering::Acquire).min(i32::MAX as u64) as i32
    }

    /// The shard's replicas and in-sync replicas.
    pub fn members(&self) -> ShardMembers {
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The newest stored batches of a partition, so that consumers at the tail are served from
/// memory: no RocksDB iterator, no hop to a blocking thread. Bounded per partition and node-wide.
#[derive(Debug, Default)]
struct Tail {
    /// `(base offset, last offset, stored batch)`, contiguous, oldest first.
    batches: VecDeque<(i64, i64, Bytes)>,
    bytes: usize,
}

/// Node-wide accounting of tail-cache bytes.
#[derive(Debug)]
pub struct TailBudget {
    used: AtomicUsize,
    max: usize,
    per_partition_max: usize,
}

impl TailBudget {
    /// A budget of `max` bytes in all, at most `per_partition_max` for one partition.
    pub fn new(max: usize, per_partition_max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
            per_partition_max,
        })
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
    cleaned_offset: AtomicI64,
    size_bytes: AtomicU64,
    hw_tx: watch::Sender<i64>,
    tail: Mutex<Tail>,
    budget: Arc<TailBudget>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let bytes = self.tail.get_mut().map_or(0, |t| t.bytes);
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A cheap, cloneable view of one partition.
#[derive(Debug, Clone)]
pub struct PartitionHandle(Arc<Inner>);

impl PartitionHandle {
    pub(crate) fn new(
        tp: TopicPartition,
        shard: Arc<ShardStatus>,
        st: &PartitionState,
        budget: Arc<TailBudget>,
    ) -> Self {
        let (hw_tx, _) = watch::channel(st.next_offset);
        PartitionHandle(Arc::new(Inner {
            tp,
            shard,
            log_start_offset: AtomicI64::new(st.log_start_offset),
            high_watermark: AtomicI64::new(st.next_offset),
            max_timestamp: AtomicI64::new(st.max_timestamp),
            max_timestamp_batch: AtomicI64::new(st.max_timestamp_batch),
            cleaned_offset: AtomicI64::new(st.cleaned_offset),
            size_bytes: AtomicU64::new(st.size_bytes),
            hw_tx,
            tail: Mutex::new(Tail::default()),
            budget,
        }))
    }

    /// Adds freshly stored batches to the tail cache (driver only, before [`Self::publish`]),
    /// dropping the oldest to stay within the budgets, and everything below `log_start`.
    pub(crate) fn cache(&self, batches: Vec<(i64, i64, Bytes)>, log_start: i64) {
        let budget = &self.0.budget;
        let mut tail = self.0.tail.lock().expect("tail lock");
        let mut freed = 0usize;
        let mut added = 0usize;
        for (base, last, bytes) in batches {
            // The cache must stay contiguous: a gap (never expected) empties it.
            if tail.batches.back().is_some_and(|(_, l, _)| *l + 1 != base) {
                freed += tail.bytes;
                tail.batches.clear();
                tail.bytes = 0;
            }
            added += bytes.len();
            tail.bytes += bytes.len();
            tail.batches.push_back((base, last, bytes));
        }
        budget.used.fetch_add(added, Ordering::Relaxed);
        while let Some((base, last, b)) = tail.batches.front() {
            let over_partition = tail.bytes > budget.per_partition_max;
            let over_node = budget.used.load(Ordering::Relaxed) > budget.max;
            let below_start = *last < log_start;
            let keep_one = tail.batches.len() == 1 && *base >= log_start && !over_node;
            if keep_one || !(over_partition || over_node || below_start) {
                break;
            }
            let len = b.len();
            tail.batches.pop_front();
            tail.bytes -= len;
            budget.used.fetch_sub(len, Ordering::Relaxed);
        }
        budget.used.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Drops cached batches that start below `offset` (compaction rewrote them).
    pub(crate) fn forget_cached_below(&self, offset: i64) {
        let mut tail = self.0.tail.lock().expect("tail lock");
        while tail
            .batches
            .front()
            .is_some_and(|(base, _, _)| *base < offset)
        {
            if let Some((_, _, b)) = tail.batches.pop_front() {
                tail.bytes -= b.len();
                self.0.budget.used.fetch_sub(b.len(), Ordering::Relaxed);
            }
        }
    }

    /// Serves a read from the tail cache when it holds the batch containing `offset`: batches
    /// from there up to (not including) `end_offset`, within `max_bytes` (the first one even if
    /// larger, with `min_one`). `None` when the cache does not reach back to `offset`.
    pub fn read_cached(
        &self,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Option<Vec<Bytes>> {
        let tail = self.0.tail.lock().expect("tail lock");
        let first = tail.batches.front()?;
        if first.0 > offset {
            return None;
        }
        let start = tail.batches.partition_point(|(_, last, _)| *last < offset);
        let mut out = Vec::new();
        let mut total = 0usize;
        for (base, _, b) in tail.batches.range(start..) {
            if *base >= end_offset {
                break;
            }
            if total + b.len() > max_bytes && !(min_one && out.is_empty()) {
                break;
            }
            total += b.len();
            out.push(b.clone());
            if total >= max_bytes {
                break;
            }
        }
        Some(out)
    }

    /// Publishes new state (driver only, after the write that holds it).
    pub(crate) fn publish(&self, st: &PartitionState) {
        let i = &self.0;
        i.log_start_offset
            .store(st.log_start_offset, Ordering::Release);
        i.max_timestamp.store(st.max_timestamp, Ordering::Release);
        i.max_timestamp_batch
            .store(st.max_timestamp_batch, Ordering::Release);
        i.cleaned_offset.store(st.cleaned_offset, Ordering::Release);
        i.size_bytes.store(st.size_bytes, Ordering::Release);
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

    /// Bytes of the batches kept, from the log start to the end (what retention.bytes limits).
    pub fn size_bytes(&self) -> u64 {
        self.0.size_bytes.load(Ordering::Acquire)
    }

    /// Batches below this offset were rewritten by compaction.
    pub fn cleaned_offset(&self) -> i64 {
        self.0.cleaned_offset.load(Ordering::Acquire)
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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn handle(budget: Arc<TailBudget>) -> PartitionHandle {
        PartitionHandle::new(
            TopicPartition::new(Uuid::new_v4(), 0),
            Arc::new(ShardStatus::default()),
            &PartitionState::empty(),
            budget,
        )
    }

    fn b(base: i64, n: i64, len: usize) -> (i64, i64, Bytes) {
        (base, base + n - 1, Bytes::from(vec![base as u8; len]))
    }

    #[test]
    fn serves_reads_it_holds_and_only_those() {
        let h = handle(TailBudget::new(1 << 20, 1 << 20));
        h.cache(vec![b(10, 5, 100), b(15, 5, 100), b(20, 5, 100)], 0);
        assert!(
            h.read_cached(9, 25, 1 << 20, true).is_none(),
            "below the cache"
        );
        let got = h.read_cached(17, 25, 1 << 20, true).unwrap();
        assert_eq!(got.len(), 2, "from the batch holding 17");
        assert_eq!(got[0][0], 15);
        assert_eq!(
            h.read_cached(10, 20, 1 << 20, true).unwrap().len(),
            2,
            "stops at the end"
        );
        assert_eq!(
            h.read_cached(10, 25, 150, true).unwrap().len(),
            1,
            "max bytes"
        );
        assert_eq!(h.read_cached(10, 25, 50, true).unwrap().len(), 1, "min one");
        assert!(h.read_cached(10, 25, 50, false).unwrap().is_empty());
    }

    #[test]
    fn stays_within_budgets_and_log_start() {
        let budget = TailBudget::new(1000, 250);
        let a = handle(budget.clone());
        a.cache(vec![b(0, 1, 100), b(1, 1, 100), b(2, 1, 100)], 0);
        // Per-partition cap: the oldest batch went.
        assert!(a.read_cached(0, 3, 1 << 20, true).is_none());
        assert_eq!(a.read_cached(1, 3, 1 << 20, true).unwrap().len(), 2);
        // A log-start move drops what is below it.
        a.cache(vec![], 2);
        assert!(a.read_cached(1, 3, 1 << 20, true).is_none());
        assert_eq!(budget.used.load(Ordering::Relaxed), 100);
        // Node-wide cap across partitions; dropping a partition returns its bytes.
        let others: Vec<_> = (0..20)
            .map(|_| {
                let h = handle(budget.clone());
                h.cache(vec![b(0, 1, 200)], 0);
                h
            })
            .collect();
        assert!(budget.used.load(Ordering::Relaxed) <= 1000);
        drop(others);
        drop(a);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }
}
