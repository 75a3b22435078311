//! [`ShardLog`]: raft-rs's `Storage` for one shard.
//!
//! The driver writes every entry to RocksDB (`raft_log`) and to this in-memory tail in the same
//! step, so raft-rs never reads RocksDB to replicate or apply what it has just written. Entries
//! are dropped from memory (and from RocksDB) once applied, which keeps the tail bounded by the
//! number of entries proposed but not yet applied.

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

/// The raft log and raft state of one shard, as raft-rs sees them.
#[derive(Debug, Default)]
pub struct ShardLog {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry removed by [`ShardLog::compact`].
    truncated_index: u64,
    truncated_term: u64,
    /// `entries[i].index == truncated_index + 1 + i`.
    entries: VecDeque<Entry>,
}

impl ShardLog {
    /// A log rebuilt from what RocksDB holds for the shard.
    pub fn restore(
        hard_state: HardState,
        conf_state: ConfState,
        truncated: (u64, u64),
        entries: Vec<Entry>,
    ) -> Self {
        let log = Self {
            hard_state,
            conf_state,
            truncated_index: truncated.0,
            truncated_term: truncated.1,
            entries: entries.into(),
        };
        log.check_contiguous();
        log
    }

    /// A new shard whose only configuration is `conf_state` (the bootstrap of a new cluster).
    /// Index 0 stands for the configuration, so the first real entry is index 1.
    pub fn bootstrap(conf_state: ConfState) -> Self {
        Self {
            conf_state,
            ..Self::default()
        }
    }

    fn check_contiguous(&self) {
        for (i, e) in self.entries.iter().enumerate() {
            assert_eq!(
                e.index,
                self.truncated_index + 1 + i as u64,
                "raft log tail is not contiguous"
            );
        }
    }

    /// The current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Index and term of the last compacted entry.
    pub fn truncated(&self) -> (u64, u64) {
        (self.truncated_index, self.truncated_term)
    }

    /// Replaces the hard state (after the driver persisted it).
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Replaces the configuration (after a configuration change was applied).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Sets the commit index only (raft-rs's light ready reports commit changes this way).
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Appends entries, dropping any conflicting suffix first (a new leader may overwrite
    /// entries that were never committed).
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(
            first.index > self.truncated_index,
            "append of compacted index {} (truncated at {})",
            first.index,
            self.truncated_index
        );
        let keep = (first.index - self.truncated_index - 1) as usize;
        assert!(keep <= self.entries.len(), "gap in raft log append");
        self.entries.truncate(keep);
        self.entries.extend(ents.iter().cloned());
    }

    /// Drops entries up to and including `index` (they are applied). Keeps the term of `index`
    /// for log matching. Returns false when there was nothing to drop.
    pub fn compact(&mut self, index: u64) -> bool {
        if index <= self.truncated_index {
            return false;
        }
        let index = index.min(self.last());
        let n = (index - self.truncated_index) as usize;
        if n == 0 {
            return false;
        }
        let term = self.entries[n - 1].term;
        self.entries.drain(..n);
        self.truncated_index = index;
        self.truncated_term = term;
        true
    }

    fn last(&self) -> u64 {
        self.truncated_index + self.entries.len() as u64
    }

    /// Number of entries held in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entries are held in memory.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl raft::Storage for ShardLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let start = (low - self.truncated_index - 1) as usize;
        let end = (high - self.truncated_index - 1) as usize;
        let mut out = Vec::with_capacity(end - start);
        let mut size = 0u64;
        for e in self.entries.range(start..end) {
            size += protobuf::Message::compute_size(e) as u64;
            // Always return at least one entry, as the trait requires.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.truncated_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Shards have a single voter until replication lands; a follower that needs a snapshot
        // cannot exist yet. Saying "temporarily unavailable" makes raft-rs retry rather than fail.
        Err(raft::Error::Store(
            RaftStorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_compact_and_read() {
        let mut log = ShardLog::bootstrap(ConfState::default());
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 2)]);
        assert_eq!(log.last_index().unwrap(), 3);
        assert_eq!(log.term(3).unwrap(), 2);
        assert!(log.compact(2));
        assert_eq!(log.first_index().unwrap(), 3);
        assert_eq!(log.term(2).unwrap(), 1);
        assert!(log.term(1).is_err());
        let got = log
            .entries(3, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].index, 3);
    }

    #[test]
    fn append_overwrites_conflicting_suffix() {
        let mut log = ShardLog::bootstrap(ConfState::default());
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.append(&[entry(2, 2)]);
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
    }

    #[test]
    fn compact_everything_keeps_matching_term() {
        let mut log = ShardLog::bootstrap(ConfState::default());
        log.append(&[entry(1, 4), entry(2, 5)]);
        assert!(log.compact(2));
        assert!(log.is_empty());
        assert_eq!(log.first_index().unwrap(), 3);
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 5);
        log.append(&[entry(3, 5)]);
        assert_eq!(log.last_index().unwrap(), 3);
    }
}
