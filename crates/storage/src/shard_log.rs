//! [`ShardLog`]: raft-rs's `Storage` for one shard.
//!
//! The driver writes every entry to RocksDB (`raft_log`) and to this in-memory tail in the same
//! step, so raft-rs never reads RocksDB to apply what it has just written. Once applied, entries
//! leave memory but stay in RocksDB: the partition index points into them, and a follower that
//! falls behind is sent them from there. They are deleted ([`ShardLog::compact`]) once no
//! partition refers to them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

use crate::Store;

/// What [`Store::load_shard`] found of a shard.
pub struct Restored {
    /// The persisted hard state.
    pub hard_state: HardState,
    /// The persisted configuration.
    pub conf_state: ConfState,
    /// Index and term of the last deleted entry.
    pub truncated: (u64, u64),
    /// The last applied index.
    pub applied: u64,
    /// The last stored index.
    pub last: u64,
    /// The stored entries after `applied`.
    pub entries: Vec<Entry>,
}

/// The raft log and raft state of one shard, as raft-rs sees them.
pub struct ShardLog {
    store: Store,
    shard: u64,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry deleted by [`ShardLog::compact`].
    truncated_index: u64,
    truncated_term: u64,
    applied: u64,
    /// Index of the last entry.
    last: u64,
    /// The newest entries: `mem[i].index == last - mem.len() + 1 + i`.
    mem: VecDeque<Entry>,
    /// A snapshot the driver prepared for a replica that needs one (see [`Self::snapshot`]).
    prepared: RefCell<Option<Snapshot>>,
    /// Set when raft-rs asked for a snapshot the prepared one (if any) cannot serve.
    snapshot_wanted: Cell<bool>,
}

impl std::fmt::Debug for ShardLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLog")
            .field("shard", &self.shard)
            .field("truncated", &(self.truncated_index, self.truncated_term))
            .field("last", &self.last)
            .field("in_memory", &self.mem.len())
            .finish()
    }
}

impl ShardLog {
    /// A log rebuilt from what RocksDB holds for the shard.
    pub fn restore(store: Store, shard: u64, r: Restored) -> Self {
        let log = Self {
            store,
            shard,
            hard_state: r.hard_state,
            conf_state: r.conf_state,
            truncated_index: r.truncated.0,
            truncated_term: r.truncated.1,
            applied: r.applied,
            last: r.last,
            mem: r.entries.into(),
            prepared: RefCell::new(None),
            snapshot_wanted: Cell::new(false),
        };
        log.check_contiguous();
        log
    }

    /// A new shard whose only configuration is `conf_state` (the bootstrap of a new cluster).
    /// Index 0 stands for the configuration, so the first real entry is index 1.
    pub fn bootstrap(store: Store, shard: u64, conf_state: ConfState) -> Self {
        Self {
            store,
            shard,
            hard_state: HardState::default(),
            conf_state,
            truncated_index: 0,
            truncated_term: 0,
            applied: 0,
            last: 0,
            mem: VecDeque::new(),
            prepared: RefCell::new(None),
            snapshot_wanted: Cell::new(false),
        }
    }

    /// Whether raft-rs asked for a snapshot since the last one was prepared.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.get()
    }

    /// Keeps `snap` for raft-rs to send (built by the driver, which holds the state machine).
    pub fn set_prepared_snapshot(&mut self, snap: Option<Snapshot>) {
        self.snapshot_wanted.set(false);
        *self.prepared.borrow_mut() = snap;
    }

    /// Makes this log start right after an installed snapshot: every entry up to its index is
    /// gone from raft-rs's view (the driver wrote the snapshot's state and the batches its
    /// partitions refer to), and the snapshot's configuration and commit are in force.
    pub fn install_snapshot(&mut self, index: u64, term: u64, conf_state: ConfState) {
        self.mem.clear();
        self.truncated_index = index;
        self.truncated_term = term;
        self.applied = index;
        self.last = index;
        self.conf_state = conf_state;
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        if self.hard_state.term < term {
            self.hard_state.term = term;
        }
    }

    fn mem_first(&self) -> u64 {
        self.last + 1 - self.mem.len() as u64
    }

    fn check_contiguous(&self) {
        let first = self.mem_first();
        for (i, e) in self.mem.iter().enumerate() {
            assert_eq!(e.index, first + i as u64, "raft log tail is not contiguous");
        }
        assert!(
            first > self.truncated_index,
            "memory tail below the truncation"
        );
    }

    /// The current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Index and term of the last deleted entry.
    pub fn truncated(&self) -> (u64, u64) {
        (self.truncated_index, self.truncated_term)
    }

    /// The applied index found at start-up.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The index of the last entry.
    pub fn last(&self) -> u64 {
        self.last
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

    /// True when appending `ents` replaces stored entries (a new leader overwrote entries that
    /// were never committed): the caller deletes the stored suffix from the first index.
    pub fn conflicts(&self, ents: &[Entry]) -> bool {
        ents.first().is_some_and(|e| e.index <= self.last)
    }

    /// Appends entries, dropping any conflicting suffix first.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(
            first.index > self.truncated_index,
            "append of compacted index {} (truncated at {})",
            first.index,
            self.truncated_index
        );
        assert!(first.index <= self.last + 1, "gap in raft log append");
        if first.index < self.mem_first() {
            // The replaced suffix starts below memory: memory holds none of what stays.
            self.mem.clear();
        } else {
            let keep = (first.index - self.mem_first()) as usize;
            self.mem.truncate(keep);
        }
        self.mem.extend(ents.iter().cloned());
        self.last = first.index + ents.len() as u64 - 1;
        self.check_contiguous();
    }

    /// Drops entries up to and including `applied` from memory; they stay in RocksDB.
    pub fn release_applied(&mut self, applied: u64) {
        while self.mem.front().is_some_and(|e| e.index <= applied) {
            self.mem.pop_front();
        }
    }

    /// Records that entries up to and including `index` (with term `term`) were deleted from
    /// RocksDB. Returns false when there was nothing to delete.
    pub fn compact(&mut self, index: u64, term: u64) -> bool {
        if index <= self.truncated_index {
            return false;
        }
        assert!(index <= self.last, "compaction past the last entry");
        self.release_applied(index);
        self.truncated_index = index;
        self.truncated_term = term;
        true
    }

    /// Number of entries held in memory.
    pub fn in_memory(&self) -> usize {
        self.mem.len()
    }

    fn store_err(e: crate::StorageError) -> raft::Error {
        tracing::error!(error = %e, "reading the raft log failed");
        raft::Error::Store(RaftStorageError::Other(Box::new(e)))
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
        if high > self.last + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mem_first = self.mem_first();
        let mut out = Vec::new();
        let mut size = 0u64;
        if low < mem_first {
            out = self
                .store
                .raft_entries(self.shard, low, high.min(mem_first), max_size)
                .map_err(Self::store_err)?;
            size = out.iter().map(|e| e.data.len() as u64).sum();
            let next = low + out.len() as u64;
            if next < high.min(mem_first) {
                // The size limit stopped the read (or the store is missing entries, which the
                // raft log check in `raft_entries` reports).
                return Ok(out);
            }
        }
        let start = low.max(mem_first);
        for idx in start..high {
            let e = &self.mem[(idx - mem_first) as usize];
            size += e.data.len() as u64;
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
        if idx > self.last {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let mem_first = self.mem_first();
        if idx >= mem_first {
            return Ok(self.mem[(idx - mem_first) as usize].term);
        }
        match self.store.raft_term(self.shard, idx) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(raft::Error::Store(RaftStorageError::Unavailable)),
            Err(e) => Err(Self::store_err(e)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last)
    }

    /// Entries stay until every replica has them, so only a new replica (one added to the
    /// shard's configuration) needs a snapshot. Building one needs the state machine, which the
    /// driver holds: the first call records the request and answers "temporarily unavailable"
    /// (raft-rs retries at the next heartbeat response); the driver then prepares the snapshot
    /// at its applied index, and the retry gets it.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some(snap) = self.prepared.borrow().as_ref() {
            let meta = snap.get_metadata();
            let cs = meta.get_conf_state();
            // The receiver must be in the snapshot's configuration (raft-rs refuses it
            // otherwise), and the snapshot must reach the log's first kept entry.
            let names_to = cs
                .voters
                .iter()
                .chain(&cs.learners)
                .chain(&cs.voters_outgoing)
                .chain(&cs.learners_next)
                .any(|id| *id == to);
            if meta.index >= request_index && meta.index >= self.truncated_index && names_to {
                return Ok(snap.clone());
            }
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(
            RaftStorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    fn log_with_store(dir: &std::path::Path) -> (Store, ShardLog) {
        let store = Store::open(dir, &StoreOptions::default()).unwrap();
        let log = ShardLog::bootstrap(store.clone(), 1, ConfState::default());
        (store, log)
    }

    fn persist(store: &Store, ents: &[Entry]) {
        let mut b = store.batch();
        for e in ents {
            b.put_raft_entry(1, e).unwrap();
        }
        store.write(b, false).unwrap();
    }

    #[test]
    fn applied_entries_are_read_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut log) = log_with_store(dir.path());
        let ents = [entry(1, 1), entry(2, 1), entry(3, 2)];
        persist(&store, &ents);
        log.append(&ents);
        log.release_applied(2);
        assert_eq!(log.in_memory(), 1);
        assert_eq!(log.first_index().unwrap(), 1);
        assert_eq!(log.term(1).unwrap(), 1);
        assert_eq!(log.term(3).unwrap(), 2);
        let got = log
            .entries(1, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(&got[1].data[..], &[2]);
        // A size limit still returns one entry.
        let one = log
            .entries(1, 4, Some(0), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(one.len(), 1);
        assert!(log.compact(2, 1));
        assert!(log.term(1).is_err());
        assert_eq!(log.term(2).unwrap(), 1);
        assert_eq!(log.first_index().unwrap(), 3);
    }

    #[test]
    fn a_prepared_snapshot_serves_only_replicas_it_names_and_not_behind_the_log() {
        use raft::eraftpb::SnapshotMetadata;
        let dir = tempfile::tempdir().unwrap();
        let (_store, mut log) = log_with_store(dir.path());
        // Nothing prepared: raft-rs is told to retry, and the driver to build one.
        assert!(matches!(
            log.snapshot(0, 4),
            Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(log.snapshot_wanted());
        let snap = |index, voters: Vec<u64>, learners: Vec<u64>| {
            let mut s = Snapshot::default();
            s.set_metadata(SnapshotMetadata {
                conf_state: Some(ConfState {
                    voters,
                    learners,
                    ..Default::default()
                })
                .into(),
                index,
                term: 1,
                ..Default::default()
            });
            s
        };
        log.set_prepared_snapshot(Some(snap(2, vec![1, 2, 3], vec![4])));
        assert!(!log.snapshot_wanted());
        assert_eq!(log.snapshot(0, 4).unwrap().get_metadata().index, 2);
        // A replica the snapshot's configuration does not name would refuse it.
        assert!(log.snapshot(0, 5).is_err());
        assert!(log.snapshot_wanted());
        // Asked for a newer one than prepared.
        log.set_prepared_snapshot(Some(snap(2, vec![1, 2, 3], vec![4])));
        assert!(log.snapshot(3, 4).is_err());
        // The log was truncated past the prepared snapshot: it no longer reaches the log.
        log.set_prepared_snapshot(Some(snap(2, vec![1, 2, 3], vec![4])));
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert!(log.compact(3, 1));
        assert!(log.snapshot(0, 4).is_err());
        assert!(log.snapshot_wanted());
    }

    #[test]
    fn installing_a_snapshot_starts_the_log_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, mut log) = log_with_store(dir.path());
        log.append(&[entry(1, 1), entry(2, 1)]);
        let cs = ConfState {
            voters: vec![1, 2, 4],
            ..Default::default()
        };
        log.install_snapshot(10, 3, cs.clone());
        assert_eq!(log.first_index().unwrap(), 11);
        assert_eq!(log.last_index().unwrap(), 10);
        assert_eq!(log.term(10).unwrap(), 3);
        assert!(log.term(9).is_err());
        assert_eq!(log.applied(), 10);
        assert_eq!(log.hard_state().commit, 10);
        assert_eq!(log.conf_state(), &cs);
        log.append(&[entry(11, 3)]);
        assert_eq!(log.last_index().unwrap(), 11);
    }

    #[test]
    fn append_overwrites_conflicting_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, mut log) = log_with_store(dir.path());
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert!(log.conflicts(&[entry(2, 2)]));
        log.append(&[entry(2, 2)]);
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        assert!(!log.conflicts(&[entry(3, 2)]));
    }
}
