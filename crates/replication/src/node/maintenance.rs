//! Work the node does on its own, as the leader of its shards: enforcing `retention.ms` and
//! `retention.bytes` by proposing log-start moves, and compacting compacted topics by proposing
//! cleaned batches. Both read the partition index (binary searches), never whole partitions, off
//! the async runtime, and change state only through Raft, so every replica agrees.

use std::sync::Arc;

use jet_storage::{IndexEntry, Store, TopicPartition};

use super::{now_ms, DriverMsg, Node};
use crate::metadata::TopicMeta;
use crate::partition::PartitionHandle;
use crate::topic_config;
use crate::Error;

impl Node {
    /// The partitions of `topic` whose shard this node leads.
    fn led_partitions(&self, topic: &TopicMeta) -> Vec<(TopicPartition, PartitionHandle)> {
        (0..topic.partitions.len() as i32)
            .filter_map(|p| {
                let tp = TopicPartition::new(topic.id, p);
                let handle = self.partition(&tp)?;
                handle.is_leader().then_some((tp, handle))
            })
            .collect()
    }

    /// Starts the background task that enforces `retention.ms` and `retention.bytes` by
    /// proposing log-start moves, so every replica deletes the same batches, and compacts the
    /// compacted topics (both every `retention_check_interval`).
    pub(super) fn spawn_retention(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        let every = self.config.retention_check_interval;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(node) = weak.upgrade() else { return };
                if let Err(e) = node.enforce_retention().await {
                    if e == Error::ShuttingDown {
                        return;
                    }
                    tracing::warn!(error = %e, "retention check failed");
                }
                if let Err(e) = node.compact().await {
                    if e == Error::ShuttingDown {
                        return;
                    }
                    tracing::warn!(error = %e, "compaction failed");
                }
            }
        });
    }

    /// One compaction pass over the compacted topics' partitions this node leads: each one
    /// that is due is cleaned by one proposal (see [`crate::compaction`]). Returns how many
    /// partitions were compacted.
    pub async fn compact(&self) -> Result<usize, Error> {
        let meta = self.metadata();
        let mut done = 0;
        for topic in meta.topics.values() {
            if !topic_config::cleanup_policy_has(&topic.configs, "compact") {
                continue;
            }
            let settings = crate::compaction::Settings {
                now_ms: now_ms(),
                min_lag_ms: topic_config::effective_i64(&topic.configs, "min.compaction.lag.ms"),
                delete_retention_ms: topic_config::effective_i64(
                    &topic.configs,
                    "delete.retention.ms",
                ),
                min_dirty_ratio: topic_config::effective(
                    &topic.configs,
                    "min.cleanable.dirty.ratio",
                )
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.5),
            };
            for (tp, handle) in self.led_partitions(topic) {
                let (from, to, cleaned) = (
                    handle.log_start_offset(),
                    handle.high_watermark(),
                    handle.cleaned_offset(),
                );
                let store = self.store.clone();
                let planned = tokio::task::spawn_blocking(move || {
                    crate::compaction::plan(&store, &tp, from, to, cleaned, &settings)
                })
                .await
                .map_err(|e| Error::Storage(e.to_string()))??;
                if let Some(c) = planned {
                    tracing::debug!(topic = %topic.name, partition = tp.partition, up_to = c.up_to, kept = c.batches.len(), "compacting");
                    let shard = handle.shard();
                    let cmd = crate::command::Command::Compact(c);
                    self.ask(|tx| DriverMsg::Propose { shard, cmd, tx }).await?;
                    done += 1;
                }
            }
        }
        Ok(done)
    }

    /// One retention pass over every partition this node leads. Topics whose cleanup.policy
    /// is `compact` alone keep their data whatever its age or size.
    pub async fn enforce_retention(&self) -> Result<(), Error> {
        let meta = self.metadata();
        let now_ms = now_ms();
        for topic in meta.topics.values() {
            if !topic_config::cleanup_policy_has(&topic.configs, "delete") {
                continue;
            }
            let limits = RetentionLimits {
                now_ms,
                retention_ms: topic_config::effective_i64(&topic.configs, "retention.ms"),
                retention_bytes: topic_config::effective_i64(&topic.configs, "retention.bytes"),
            };
            if limits.retention_ms < 0 && limits.retention_bytes < 0 {
                continue;
            }
            for (tp, handle) in self.led_partitions(topic) {
                let (from, to) = (handle.log_start_offset(), handle.high_watermark());
                let store = self.store.clone();
                let new_start = tokio::task::spawn_blocking(move || {
                    retention_start(&store, &tp, from, to, &limits)
                })
                .await
                .map_err(|e| Error::Storage(e.to_string()))??;
                if new_start > from {
                    tracing::debug!(topic = %topic.name, partition = tp.partition, from, new_start, "retention moves log start");
                    self.delete_records(tp, new_start).await?;
                }
            }
        }
        Ok(())
    }
}

/// A topic's retention settings at one moment.
#[derive(Debug, Clone, Copy)]
struct RetentionLimits {
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
}

/// Where the log of `tp` (offsets `[from, to)`) should start so that the kept batches satisfy
/// both limits. Whole batches are dropped, oldest first, and the newest batch is never dropped
/// (Kafka keeps the active segment too). Two binary searches over the index:
/// - by size: keep from the first batch with `cum_bytes >= appended - retention.bytes`;
/// - by time: keep from the first batch whose running maximum timestamp is within
///   `retention.ms`; every batch before it is older, as Kafka's segment-by-segment check.
fn retention_start(
    store: &Store,
    tp: &TopicPartition,
    from: i64,
    to: i64,
    limits: &RetentionLimits,
) -> Result<i64, Error> {
    let Some(last) = store.index_at_or_before(tp, to - 1)? else {
        return Ok(from);
    };
    let keep_from = |found: Option<IndexEntry>| found.map_or(last.base_offset, |e| e.base_offset);
    let mut start = from;
    if limits.retention_bytes >= 0 {
        let appended = last.cum_bytes + u64::from(last.length);
        let target = appended.saturating_sub(limits.retention_bytes as u64);
        let found = store.index_search(tp, from, to, |e| e.cum_bytes >= target)?;
        start = start.max(keep_from(found));
    }
    if limits.retention_ms >= 0 {
        let cutoff = limits.now_ms - limits.retention_ms;
        let found = store.index_search(tp, from, to, |e| e.cum_max_timestamp >= cutoff)?;
        start = start.max(keep_from(found));
    }
    Ok(start.min(last.base_offset).max(from))
}
