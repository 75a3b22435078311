//! The driver's metrics (names and meanings in docs/http.md), through the `metrics` facade:
//! nothing is recorded unless the binary installs a recorder. Per-shard labels are made when a
//! value changes or per entry (group commit), never per request.

use std::path::Path;
use std::time::Duration;

use jet_storage::Store;

pub(super) fn proposed(shard: u64) {
    metrics::counter!("jet_raft_proposals_total", "shard" => shard.to_string()).increment(1);
}

pub(super) fn committed(shard: u64, since_proposed: Duration) {
    metrics::histogram!("jet_raft_commit_latency_seconds", "shard" => shard.to_string())
        .record(since_proposed.as_secs_f64());
}

pub(super) fn persisted(entries: usize, took: Duration) {
    metrics::histogram!("jet_raft_fsync_latency_seconds").record(took.as_secs_f64());
    metrics::histogram!("jet_raft_entries_per_persist").record(entries as f64);
}

pub(super) fn leadership(shard: u64, leader: bool, changed: bool) {
    let label = shard.to_string();
    if changed {
        metrics::counter!("jet_raft_leader_changes_total", "shard" => label.clone()).increment(1);
    }
    metrics::gauge!("jet_raft_shard_leader", "shard" => label).set(if leader { 1.0 } else { 0.0 });
}

pub(super) fn follower_lag(shard: u64, follower: u64, entries: u64) {
    metrics::gauge!(
        "jet_raft_follower_lag_entries",
        "shard" => shard.to_string(),
        "follower" => follower.to_string()
    )
    .set(entries as f64);
}

/// RocksDB's counters and the data directory's size.
pub(super) fn storage(store: &Store, data_dir: &Path) {
    let s = store.stats();
    metrics::counter!("jet_rocksdb_bytes_written_total").absolute(s.bytes_written);
    metrics::counter!("jet_rocksdb_flush_bytes_written_total").absolute(s.flush_bytes_written);
    metrics::counter!("jet_rocksdb_compaction_bytes_written_total")
        .absolute(s.compaction_bytes_written);
    metrics::counter!("jet_rocksdb_flushes_total").absolute(s.flushes);
    metrics::counter!("jet_rocksdb_compactions_total").absolute(s.compactions);
    metrics::gauge!("jet_rocksdb_pending_compaction_bytes").set(s.pending_compaction_bytes as f64);
    // The directory is flat (RocksDB's files and the cluster id): a few hundred stat calls.
    let used: u64 = std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    metrics::gauge!("jet_storage_disk_used_bytes").set(used as f64);
}
