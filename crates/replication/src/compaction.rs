//! Key-based compaction (`cleanup.policy=compact`), planned and computed by a partition's leader.
//!
//! As Kafka's log cleaner: the newest record of each key is kept and older ones dropped,
//! tombstones (null values) are dropped once older than `delete.retention.ms`, the active tail
//! is never touched (the newest batch, and batches younger than `min.compaction.lag.ms`),
//! offsets never change (records keep theirs, gaps remain, a batch keeps its last offset), and
//! a partition is cleaned only when its dirty part (batches appended since the last cleaning)
//! is at least `min.cleanable.dirty.ratio` of what would be cleaned.
//!
//! Determinism on every replica: the leader computes the cleaned batches off the driver thread
//! and proposes them in one [`Compaction`] entry; replicas only replace index entries with
//! pointers into that entry (`driver/apply.rs`). The entry is then where the cleaned batches
//! are stored, once; the Raft entries of the batches they replace become unreferenced and are
//! deleted like any other.

use std::collections::HashMap;

use bytes::Bytes;
use jet_protocol::{batch, compact};
use jet_storage::{Store, TopicPartition};

use crate::command::{CompactedBatch, Compaction};
use crate::Error;

/// The most batch bytes one compaction reads; a larger partition is cleaned in steps.
pub const INPUT_BYTES_MAX: u64 = 64 << 20;

/// A topic's compaction settings at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The leader's clock.
    pub now_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_lag_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_dirty_ratio: f64,
}

/// The compaction of `tp` (offsets `[log_start, hw)`, cleaned below `cleaned`) that is due now,
/// if any. Reads the batches to clean; run it off the async runtime.
pub fn plan(
    store: &Store,
    tp: &TopicPartition,
    log_start: i64,
    hw: i64,
    cleaned: i64,
    s: &Settings,
) -> Result<Option<Compaction>, Error> {
    let Some(last) = store.index_at_or_before(tp, hw - 1)? else {
        return Ok(None);
    };
    // Never the active tail.
    let mut up_to = last.base_offset;
    if s.min_lag_ms > 0 {
        let young = store.index_search(tp, log_start, hw, |e| {
            e.cum_max_timestamp >= s.now_ms.saturating_sub(s.min_lag_ms)
        })?;
        if let Some(young) = young {
            up_to = up_to.min(young.base_offset);
        }
    }
    let mut entries = Vec::new();
    let (mut total, mut dirty) = (0u64, 0u64);
    let Some(first) = store.index_holding(tp, log_start, up_to)? else {
        return Ok(None);
    };
    for e in store.index_range(tp, first.base_offset, up_to) {
        let e = e?;
        let len = u64::from(e.length);
        if total + len > INPUT_BYTES_MAX && !entries.is_empty() {
            up_to = e.base_offset;
            break;
        }
        total += len;
        if e.base_offset >= cleaned {
            dirty += len;
        }
        entries.push(e);
    }
    if dirty == 0 || (dirty as f64) < s.min_dirty_ratio * total as f64 {
        return Ok(None);
    }
    let read = store.read_batches(tp, first.base_offset, up_to, usize::MAX, true)?;
    let batches: Vec<(Bytes, batch::BatchHeader)> = batch::iter(&read.records)
        .map(|(at, h)| (read.records.slice(at..at + h.total_len()), h))
        .collect();
    if batches.len() != entries.len() {
        return Err(Error::Storage(format!(
            "compaction of {tp:?} read {} batches for {} index entries",
            batches.len(),
            entries.len()
        )));
    }

    // The offset of the newest record of every key.
    let mut keys = Vec::with_capacity(batches.len());
    let mut newest: HashMap<Bytes, i64> = HashMap::new();
    for (b, h) in &batches {
        let ks = if h.is_control() {
            Vec::new()
        } else {
            compact::record_keys(b).map_err(|e| Error::Storage(format!("compaction: {e}")))?
        };
        for k in &ks {
            if let Some(key) = &k.key {
                newest.insert(key.clone(), h.base_offset + i64::from(k.offset_delta));
            }
        }
        keys.push(ks);
    }

    let cutoff = s.now_ms.saturating_sub(s.delete_retention_ms);
    let mut kept = Vec::new();
    let mut changed = false;
    for (((b, h), ks), e) in batches.iter().zip(&keys).zip(&entries) {
        if h.is_control() {
            kept.push((b.clone(), e));
            continue;
        }
        let mut at = 0usize;
        let keep = |delta: i32| {
            let k = ks.get(at);
            at += 1;
            match k {
                Some(k) if k.offset_delta == delta => match &k.key {
                    // A record without a key cannot be compacted; it stays.
                    None => true,
                    Some(key) => {
                        newest.get(key) == Some(&(h.base_offset + i64::from(delta)))
                            && !(k.is_tombstone && h.max_timestamp < cutoff)
                    }
                },
                _ => true,
            }
        };
        match compact::rewrite_batch(b, keep)
            .map_err(|e| Error::Storage(format!("compaction: {e}")))?
        {
            Some(out) => {
                changed |= out.len() != b.len();
                kept.push((Bytes::from(out), e));
            }
            None => changed = true,
        }
    }
    if !changed {
        return Ok(None);
    }
    let tail_raft_index = store
        .index_holding(tp, up_to, hw)?
        .map_or(0, |e| e.raft_index);
    Ok(Some(Compaction {
        tp: *tp,
        log_start,
        cleaned_offset: cleaned,
        up_to,
        replaced_bytes: total,
        tail_raft_index,
        batches: kept
            .into_iter()
            .map(|(batch, e)| CompactedBatch {
                cum_bytes: e.cum_bytes,
                cum_max_timestamp: e.cum_max_timestamp,
                leader_epoch: e.leader_epoch,
                batch,
                position: 0,
            })
            .collect(),
    }))
}
