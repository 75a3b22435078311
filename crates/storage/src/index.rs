//! The partition log as an index over the Raft log.
//!
//! A record batch is stored once, inside the Raft entry that carried it (`raft_log`). The
//! `index` column family maps `(partition, base offset)` to where the batch lies in that entry
//! ([`IndexEntry`]), with the few facts that retention, DeleteRecords and ListOffsets need, so
//! none of them reads a batch body:
//! - `cum_bytes` (bytes appended before the batch) grows with the offset, so retention by size
//!   is a binary search;
//! - `cum_max_timestamp` (the largest timestamp up to and including the batch) grows too, so
//!   retention by time and ListOffsets by time are binary searches. The first batch whose
//!   running maximum reaches `t` is exactly the first batch whose own maximum reaches `t`;
//! - `leader_epoch` (the Raft term of the entry that carried the batch) never decreases along the
//!   log, so OffsetForLeaderEpoch is a binary search too ([`Store::epoch_end_offset`]).
//!
//! The base offset and leader epoch, the 12 header bytes outside the CRC, are patched when a
//! batch is read: the stored bytes are the producer's.

use bytes::{BufMut, Bytes, BytesMut};
use rocksdb::{Direction, IteratorMode, ReadOptions};

use crate::keys::{self, TopicPartition};
use crate::store::{Store, CF_INDEX, CF_RAFT_LOG};
use crate::StorageError;

/// Raft's `EntryNormal`, the type of every entry that carries batches.
pub const ENTRY_NORMAL: u8 = 0;

/// Persistent state of one partition, kept in `meta` and updated by every apply that touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// First offset a consumer may read (moved by retention and DeleteRecords).
    pub log_start_offset: i64,
    /// Offset the next appended record gets (the log end offset).
    pub next_offset: i64,
    /// Bytes of the batches kept (from the log start to the end, after compaction).
    pub size_bytes: u64,
    /// Bytes ever appended: the `cum_bytes` of the next batch.
    pub appended_bytes: u64,
    /// Largest batch max-timestamp ever appended (-1 when none).
    pub max_timestamp: i64,
    /// Base offset of the batch that holds `max_timestamp` (-1 when none).
    pub max_timestamp_batch: i64,
    /// Lowest Raft index a kept batch lies in (0 when no kept batch does): the shard's Raft log
    /// is kept from there.
    pub first_raft_index: u64,
    /// Batches below this offset were rewritten by compaction (0 when never compacted).
    pub cleaned_offset: i64,
    /// The data shard the partition belongs to.
    pub shard: u64,
}

const PARTITION_STATE_LEN: usize = 72;

impl PartitionState {
    /// The state of a new, empty partition.
    pub fn empty() -> Self {
        Self {
            max_timestamp: -1,
            max_timestamp_batch: -1,
            ..Self::default()
        }
    }

    /// The stored form: nine big-endian 8-byte fields.
    pub fn encode(&self) -> [u8; PARTITION_STATE_LEN] {
        let mut b = [0u8; PARTITION_STATE_LEN];
        let fields = [
            self.log_start_offset as u64,
            self.next_offset as u64,
            self.size_bytes,
            self.appended_bytes,
            self.max_timestamp as u64,
            self.max_timestamp_batch as u64,
            self.first_raft_index,
            self.cleaned_offset as u64,
            self.shard,
        ];
        for (i, f) in fields.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&f.to_be_bytes());
        }
        b
    }

    /// Decodes [`PartitionState::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<Self, StorageError> {
        if b.len() != PARTITION_STATE_LEN {
            return Err(StorageError::Corrupt(format!(
                "partition state of {} bytes",
                b.len()
            )));
        }
        let at = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Self {
            log_start_offset: at(0) as i64,
            next_offset: at(1) as i64,
            size_bytes: at(2),
            appended_bytes: at(3),
            max_timestamp: at(4) as i64,
            max_timestamp_batch: at(5) as i64,
            first_raft_index: at(6),
            cleaned_offset: at(7) as i64,
            shard: at(8),
        })
    }
}

/// Where one batch lies and what retention needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    /// Offset of the batch's first record (the key; not stored in the value).
    pub base_offset: i64,
    /// The shard whose Raft log holds the batch.
    pub shard: u64,
    /// Index of the Raft entry holding the batch.
    pub raft_index: u64,
    /// Term of that entry (part of its key).
    pub raft_term: u64,
    /// Byte position of the batch in the entry's data.
    pub position: u32,
    /// Length of the batch in bytes.
    pub length: u32,
    /// Leader epoch stamped on the batch when it is read.
    pub leader_epoch: i32,
    /// Offset of the batch's last record (kept through compaction, as Kafka does).
    pub last_offset: i64,
    /// The batch header's max timestamp.
    pub max_timestamp: i64,
    /// Largest max timestamp of this batch and every batch before it.
    pub cum_max_timestamp: i64,
    /// Bytes appended to the partition before this batch.
    pub cum_bytes: u64,
}

const INDEX_ENTRY_LEN: usize = 68;

impl IndexEntry {
    /// The stored value (the base offset is in the key).
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut b = [0u8; INDEX_ENTRY_LEN];
        let mut w = &mut b[..];
        w.put_u64(self.shard);
        w.put_u64(self.raft_index);
        w.put_u64(self.raft_term);
        w.put_u32(self.position);
        w.put_u32(self.length);
        w.put_i32(self.leader_epoch);
        w.put_i64(self.last_offset);
        w.put_i64(self.max_timestamp);
        w.put_i64(self.cum_max_timestamp);
        w.put_u64(self.cum_bytes);
        b
    }

    /// Decodes a stored value under the key's base offset.
    pub fn decode(base_offset: i64, v: &[u8]) -> Result<Self, StorageError> {
        if v.len() != INDEX_ENTRY_LEN {
            return Err(StorageError::Corrupt(format!(
                "index entry of {} bytes",
                v.len()
            )));
        }
        let u64_at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().expect("4 bytes"));
        Ok(Self {
            base_offset,
            shard: u64_at(0),
            raft_index: u64_at(8),
            raft_term: u64_at(16),
            position: u32_at(24),
            length: u32_at(28),
            leader_epoch: u32_at(32) as i32,
            last_offset: u64_at(36) as i64,
            max_timestamp: u64_at(44) as i64,
            cum_max_timestamp: u64_at(52) as i64,
            cum_bytes: u64_at(60),
        })
    }

    fn from_kv(k: &[u8], v: &[u8]) -> Result<Self, StorageError> {
        let base =
            keys::index_entry_offset(k).ok_or_else(|| StorageError::Corrupt("index key".into()))?;
        Self::decode(base, v)
    }
}

/// Kafka's `UNDEFINED_EPOCH`: no leader epoch is known.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`: no end offset is known.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Where a leader epoch ends, as OffsetForLeaderEpoch answers it: the largest epoch at or below
/// the requested one that the log knows, and the offset where the next epoch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The epoch answered ([`UNDEFINED_EPOCH`] when unknown).
    pub epoch: i32,
    /// The first offset after it ([`UNDEFINED_EPOCH_OFFSET`] when unknown).
    pub end_offset: i64,
}

impl EpochEnd {
    /// The answer for an epoch this log cannot place.
    pub const UNDEFINED: EpochEnd = EpochEnd {
        epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_EPOCH_OFFSET,
    };
}

/// Batches read for a fetch: one buffer, base offsets and epochs patched.
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// The batches, back to back.
    pub records: Bytes,
    /// How many batches `records` holds.
    pub count: usize,
}

impl Store {
    /// The index entry of the batch holding `offset`: the last one whose base offset is at or
    /// below it (the caller checks `last_offset`, a compacted batch may end before).
    pub fn index_at_or_before(
        &self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<Option<IndexEntry>, StorageError> {
        let cf = self.cf(CF_INDEX);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(keys::index_entry(tp, 0).to_vec());
        let mut it = self.db().raw_iterator_cf_opt(cf, ro);
        it.seek_for_prev(keys::index_entry(tp, offset));
        match (it.key(), it.value()) {
            (Some(k), Some(v)) => Ok(Some(IndexEntry::from_kv(k, v)?)),
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// The first index entry whose base offset is at or after `offset` and below `end`.
    pub fn index_at_or_after(
        &self,
        tp: &TopicPartition,
        offset: i64,
        end: i64,
    ) -> Result<Option<IndexEntry>, StorageError> {
        self.index_range(tp, offset, end).next().transpose()
    }

    /// The index entry of the batch that holds `offset`, or else the first batch after it.
    pub fn index_holding(
        &self,
        tp: &TopicPartition,
        offset: i64,
        end: i64,
    ) -> Result<Option<IndexEntry>, StorageError> {
        if let Some(e) = self.index_at_or_before(tp, offset)? {
            if e.last_offset >= offset && e.base_offset < end {
                return Ok(Some(e));
            }
        }
        self.index_at_or_after(tp, offset, end)
    }

    /// Index entries with base offsets in `[from, end)`, in offset order.
    pub fn index_range(
        &self,
        tp: &TopicPartition,
        from: i64,
        end: i64,
    ) -> impl Iterator<Item = Result<IndexEntry, StorageError>> + '_ {
        let cf = self.cf(CF_INDEX);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::index_entry(tp, end).to_vec());
        let start = keys::index_entry(tp, from);
        self.db()
            .iterator_cf_opt(cf, ro, IteratorMode::From(&start, Direction::Forward))
            .map(|item| {
                let (k, v) = item?;
                IndexEntry::from_kv(&k, &v)
            })
    }

    /// The first batch in `[from, end)` for which `pred` holds, where `pred` is monotonic in
    /// the offset (false, then true): a binary search over offsets, a few seeks whatever the
    /// partition's size.
    pub fn index_search(
        &self,
        tp: &TopicPartition,
        from: i64,
        end: i64,
        pred: impl Fn(&IndexEntry) -> bool,
    ) -> Result<Option<IndexEntry>, StorageError> {
        // Invariant: no batch starting below `lo` satisfies pred; `found` is the lowest known
        // batch that does.
        let (mut lo, mut hi) = (from, end);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.index_holding(tp, mid, end)? {
                None => hi = mid,
                Some(e) if pred(&e) => {
                    hi = e.base_offset.min(mid);
                    found = Some(e);
                }
                Some(e) => lo = e.last_offset.max(mid) + 1,
            }
        }
        Ok(found)
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor` over the batches in `[from, end)` (log start
    /// to high watermark), for a partition whose leader is in epoch `current`:
    /// - `requested` undefined (-1) or above `current`: [`EpochEnd::UNDEFINED`];
    /// - `requested == current`: `(current, end)`, the epoch is still being written;
    /// - otherwise the epoch of the last batch at or below `requested` (or `requested` itself
    ///   when no kept batch is that old) and the base offset of the first batch above it, or
    ///   `end` when there is none (the current epoch then starts at the log end).
    ///
    /// Leader epochs never decrease along the log, so this is one binary search over the index
    /// and one seek back; no batch body is read. Kafka also records epochs in which no batch was
    /// written (a leader elected and replaced before any append); the index only knows epochs
    /// that have batches, so such an epoch is answered like any other gap: with the epoch below.
    pub fn epoch_end_offset(
        &self,
        tp: &TopicPartition,
        requested: i32,
        current: i32,
        from: i64,
        end: i64,
    ) -> Result<EpochEnd, StorageError> {
        if requested == UNDEFINED_EPOCH || requested > current {
            return Ok(EpochEnd::UNDEFINED);
        }
        if requested == current {
            return Ok(EpochEnd {
                epoch: current,
                end_offset: end,
            });
        }
        let higher = self.index_search(tp, from, end, |e| e.leader_epoch > requested)?;
        // The batch just before the first higher one (or the last batch, when none is higher)
        // holds the largest epoch at or below the requested one, if it is still kept.
        let floor_at = higher.map_or(end, |h| h.base_offset) - 1;
        let floor = if floor_at >= from {
            self.index_at_or_before(tp, floor_at)?
                .filter(|e| e.last_offset >= from)
        } else {
            None
        };
        Ok(EpochEnd {
            epoch: floor.map_or(requested, |f| f.leader_epoch),
            // Kafka moves the first kept epoch's start up to the log start offset; a batch that
            // straddles the log start (DeleteRecords inside it) is answered the same way.
            end_offset: higher.map_or(end, |h| h.base_offset.max(from)),
        })
    }

    /// Reads the batches holding `from_offset` and after, stopping before any batch starting
    /// at or after `end_offset` (the high watermark). Takes batches while their total stays
    /// within `max_bytes`; with `min_one` the first is taken even if alone it is larger (a
    /// consumer can always make progress, as with Kafka).
    pub fn read_batches(
        &self,
        tp: &TopicPartition,
        from_offset: i64,
        end_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadBatches, StorageError> {
        let mut out = BytesMut::new();
        let mut count = 0;
        let start = match self.index_holding(tp, from_offset, end_offset)? {
            Some(e) => e.base_offset,
            None => return Ok(ReadBatches::default()),
        };
        // Consecutive batches usually share a Raft entry: fetch each entry once.
        let mut entry: Option<(u64, u64, rocksdb::DBPinnableSlice<'_>)> = None;
        for e in self.index_range(tp, start, end_offset) {
            let e = e?;
            if e.last_offset < from_offset {
                continue;
            }
            let len = e.length as usize;
            if out.len() + len > max_bytes && !(min_one && count == 0) {
                break;
            }
            if !matches!(&entry, Some((s, i, _)) if *s == e.shard && *i == e.raft_index) {
                entry = Some((e.shard, e.raft_index, self.raft_data(&e)?));
            }
            let Some((_, _, data)) = &entry else {
                unreachable!("set above")
            };
            append_patched(&mut out, data, &e)?;
            count += 1;
            if out.len() >= max_bytes {
                break;
            }
        }
        Ok(ReadBatches {
            records: out.freeze(),
            count,
        })
    }

    /// One batch, patched, by its index entry.
    pub fn read_batch(&self, e: &IndexEntry) -> Result<Bytes, StorageError> {
        let data = self.raft_data(e)?;
        let mut out = BytesMut::with_capacity(e.length as usize);
        append_patched(&mut out, &data, e)?;
        Ok(out.freeze())
    }

    fn raft_data(&self, e: &IndexEntry) -> Result<rocksdb::DBPinnableSlice<'_>, StorageError> {
        let key = keys::raft_entry_full(e.shard, e.raft_index, e.raft_term, ENTRY_NORMAL);
        self.db()
            .get_pinned_cf(self.cf(CF_RAFT_LOG), key)?
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "raft entry {} of shard {} is gone but indexed",
                    e.raft_index, e.shard
                ))
            })
    }
}

/// Copies the batch `e` points at out of its entry's data, with its base offset and leader
/// epoch set.
fn append_patched(out: &mut BytesMut, data: &[u8], e: &IndexEntry) -> Result<(), StorageError> {
    let (pos, len) = (e.position as usize, e.length as usize);
    let bytes = data
        .get(pos..pos + len)
        .filter(|b| b.len() >= 16)
        .ok_or_else(|| {
            StorageError::Corrupt(format!("index entry at {} out of bounds", e.base_offset))
        })?;
    let at = out.len();
    out.extend_from_slice(bytes);
    out[at..at + 8].copy_from_slice(&e.base_offset.to_be_bytes());
    out[at + 12..at + 16].copy_from_slice(&e.leader_epoch.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_entries_round_trip() {
        let st = PartitionState {
            log_start_offset: 5,
            next_offset: 42,
            size_bytes: 1234,
            appended_bytes: 99_999,
            max_timestamp: -1,
            max_timestamp_batch: 40,
            first_raft_index: 7,
            cleaned_offset: 3,
            shard: 2,
        };
        assert_eq!(PartitionState::decode(&st.encode()).unwrap(), st);
        let e = IndexEntry {
            base_offset: 10,
            shard: 2,
            raft_index: 77,
            raft_term: 3,
            position: 12,
            length: 100,
            leader_epoch: 3,
            last_offset: 19,
            max_timestamp: -5,
            cum_max_timestamp: 1 << 40,
            cum_bytes: 1 << 33,
        };
        assert_eq!(IndexEntry::decode(10, &e.encode()).unwrap(), e);
        assert!(IndexEntry::decode(10, &[0u8; 3]).is_err());
        assert!(PartitionState::decode(&[0u8; 40]).is_err());
    }

    /// Ten-record batches from offset 0 with these leader epochs, indexed only: the epoch
    /// search must answer without a batch body (no Raft entry is written).
    fn store_with_epochs(dir: &std::path::Path, epochs: &[i32]) -> (Store, TopicPartition) {
        let store = Store::open(dir, &crate::StoreOptions::default()).unwrap();
        let tp = TopicPartition::new(uuid::Uuid::new_v4(), 0);
        let mut b = store.batch();
        for (i, epoch) in epochs.iter().enumerate() {
            let base = i as i64 * 10;
            b.put_index(
                &tp,
                &IndexEntry {
                    base_offset: base,
                    shard: 1,
                    raft_index: 1 + i as u64,
                    raft_term: *epoch as u64,
                    length: 100,
                    leader_epoch: *epoch,
                    last_offset: base + 9,
                    ..IndexEntry::default()
                },
            );
        }
        store.write(b, true).unwrap();
        (store, tp)
    }

    fn at(epoch: i32, end_offset: i64) -> EpochEnd {
        EpochEnd { epoch, end_offset }
    }

    #[test]
    fn epoch_end_offsets_follow_kafkas_epoch_cache() {
        let dir = tempfile::tempdir().unwrap();
        // Epochs 2, 4, 6 and 7 wrote nothing; the leader is now in epoch 9 and has not written.
        let (store, tp) = store_with_epochs(dir.path(), &[1, 1, 3, 5, 5, 8]);
        let end = |requested| store.epoch_end_offset(&tp, requested, 9, 0, 60).unwrap();
        assert_eq!(end(9), at(9, 60), "the current epoch ends at the log end");
        assert_eq!(end(10), EpochEnd::UNDEFINED, "newer than the leader");
        assert_eq!(end(UNDEFINED_EPOCH), EpochEnd::UNDEFINED);
        assert_eq!(end(0), at(0, 0), "older than every batch");
        assert_eq!(end(1), at(1, 20));
        assert_eq!(end(2), at(1, 20), "a gap answers with the epoch below");
        assert_eq!(end(3), at(3, 30));
        assert_eq!(end(4), at(3, 30));
        assert_eq!(end(5), at(5, 50));
        assert_eq!(end(7), at(5, 50));
        assert_eq!(
            end(8),
            at(8, 60),
            "the last written epoch ends at the log end"
        );
    }

    #[test]
    fn epoch_end_offsets_start_at_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tp) = store_with_epochs(dir.path(), &[1, 1, 3, 5, 5, 8]);
        // Log start inside the epoch-3 batch (DeleteRecords to 25): Kafka's cache moves that
        // epoch's start up to 25 and forgets epoch 1.
        let end = |requested, from| store.epoch_end_offset(&tp, requested, 9, from, 60).unwrap();
        assert_eq!(end(1, 25), at(1, 25));
        assert_eq!(end(3, 25), at(3, 30));
        // Log start at a batch boundary: epoch 3 is gone entirely.
        assert_eq!(end(3, 30), at(3, 30));
        assert_eq!(end(5, 30), at(5, 50));
        // Everything deleted: only the current epoch starts, at the log end.
        assert_eq!(end(2, 60), at(2, 60));
        assert_eq!(end(9, 60), at(9, 60));
    }

    #[test]
    fn epoch_end_offsets_of_an_empty_or_single_epoch_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tp) = store_with_epochs(dir.path(), &[]);
        assert_eq!(store.epoch_end_offset(&tp, 0, 1, 0, 0).unwrap(), at(0, 0));
        assert_eq!(store.epoch_end_offset(&tp, 1, 1, 0, 0).unwrap(), at(1, 0));
        let dir = tempfile::tempdir().unwrap();
        let (store, tp) = store_with_epochs(dir.path(), &[2, 2, 2]);
        assert_eq!(store.epoch_end_offset(&tp, 1, 2, 0, 30).unwrap(), at(1, 0));
        assert_eq!(store.epoch_end_offset(&tp, 2, 2, 0, 30).unwrap(), at(2, 30));
        // A restart without appends: epoch 2's batches end at the log end.
        assert_eq!(store.epoch_end_offset(&tp, 2, 3, 0, 30).unwrap(), at(2, 30));
        // The high watermark bounds the search: a batch at or past it is not seen.
        assert_eq!(store.epoch_end_offset(&tp, 1, 2, 0, 0).unwrap(), at(1, 0));
    }
}
