//! [`Store`]: the node's one RocksDB and every read and write the broker makes on it.
//!
//! Writes go through [`Batch`] (a RocksDB `WriteBatch`) so that the driver persists the Ready of
//! every shard, or the applied results of every shard, in one write. Reads of partition logs are
//! range scans over keys ordered by base offset; callers run them off the async runtime.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options,
    ReadOptions, WriteOptions, DB,
};

use crate::keys::{self, RaftStateField, TopicPartition};
use crate::{ShardLog, StorageError};

const CF_RAFT_LOG: &str = "raft_log";
const CF_RAFT_STATE: &str = "raft_state";
const CF_LOG: &str = "log";
const CF_META: &str = "meta";

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Memtable size of the partition-log column family, in bytes.
    pub log_write_buffer_bytes: usize,
    /// Block cache shared by all column families, in bytes.
    pub block_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            log_write_buffer_bytes: 16 << 20,
            block_cache_bytes: 16 << 20,
        }
    }
}

/// Persistent state of one partition, kept in `meta` and updated by every apply that touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// First offset a consumer may read (moved by retention and DeleteRecords).
    pub log_start_offset: i64,
    /// Offset the next appended record gets (the log end offset).
    pub next_offset: i64,
    /// Bytes of record batches stored from the first kept batch to the end.
    pub size_bytes: u64,
    /// Largest batch max-timestamp seen, and the base offset of that batch (-1 when none).
    pub max_timestamp: i64,
    /// Base offset of the batch that holds `max_timestamp`.
    pub max_timestamp_batch: i64,
}

impl PartitionState {
    /// The state of a new, empty partition.
    pub fn empty() -> Self {
        Self {
            max_timestamp: -1,
            max_timestamp_batch: -1,
            ..Self::default()
        }
    }

    fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[0..8].copy_from_slice(&self.log_start_offset.to_be_bytes());
        b[8..16].copy_from_slice(&self.next_offset.to_be_bytes());
        b[16..24].copy_from_slice(&self.size_bytes.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[32..40].copy_from_slice(&self.max_timestamp_batch.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self, StorageError> {
        if b.len() != 40 {
            return Err(StorageError::Corrupt(format!(
                "partition state of {} bytes",
                b.len()
            )));
        }
        let at = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(Self {
            log_start_offset: at(0),
            next_offset: at(8),
            size_bytes: at(16) as u64,
            max_timestamp: at(24),
            max_timestamp_batch: at(32),
        })
    }
}

/// What the store knows of one stored batch without reading its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// Stored size in bytes.
    pub size_bytes: u64,
    /// The batch header's max timestamp.
    pub max_timestamp: i64,
}

/// A stored key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);
type RawItem = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// The node's RocksDB.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

/// A set of writes applied atomically by [`Store::write`].
pub struct Batch {
    wb: rocksdb::WriteBatch,
    store: Store,
}

impl Store {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StorageError> {
        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
        let cf_options = |write_buffer: usize| {
            let mut o = Options::default();
            // Record batches arrive compressed by clients, or are small; RocksDB compression
            // would spend CPU for little. It is compiled out (see the workspace Cargo.toml).
            o.set_compression_type(DBCompressionType::None);
            o.set_write_buffer_size(write_buffer);
            o.set_max_write_buffer_number(2);
            let mut block = rocksdb::BlockBasedOptions::default();
            block.set_block_cache(&cache);
            o.set_block_based_table_factory(&block);
            o
        };
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        // Apply writes skip the WAL (see `write_unlogged`); flushing every column family
        // together keeps what reaches disk a consistent prefix of them.
        db_options.set_atomic_flush(true);
        db_options.set_compression_type(DBCompressionType::None);
        let cfs = vec![
            // Raft entries live here only until applied (milliseconds), but every appended byte
            // passes through this memtable.
            ColumnFamilyDescriptor::new(CF_RAFT_LOG, cf_options(16 << 20)),
            ColumnFamilyDescriptor::new(CF_RAFT_STATE, cf_options(4 << 20)),
            ColumnFamilyDescriptor::new(CF_LOG, cf_options(options.log_write_buffer_bytes)),
            ColumnFamilyDescriptor::new(CF_META, cf_options(4 << 20)),
        ];
        let db = DB::open_cf_descriptors(&db_options, path, cfs)?;
        Ok(Store { db: Arc::new(db) })
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // Every family is created at open, so a missing one is a programming error.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} missing"))
    }

    /// An empty write batch.
    pub fn batch(&self) -> Batch {
        Batch {
            wb: rocksdb::WriteBatch::default(),
            store: self.clone(),
        }
    }

    /// Writes a batch atomically; with `sync` it is on disk (fsync of the WAL) when this returns.
    pub fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch.wb, &wo)?;
        Ok(())
    }

    /// Writes a batch without the write-ahead log. Only for writes that can be rebuilt from
    /// logged ones: the results of applying Raft entries, whose entries stay in the logged
    /// `raft_log` until a flush has made these results durable (flushes are atomic across column
    /// families). Saves writing every record batch to the WAL a second time.
    pub fn write_unlogged(&self, batch: Batch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch.wb, &wo)?;
        Ok(())
    }

    /// Flushes the WAL to disk (used at shutdown when writes were not synced).
    pub fn flush_wal(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Stops compactions and flushes and waits for running ones, before the process exits.
    pub fn stop_background_work(&self) {
        // Unlogged apply results would otherwise be rebuilt from the Raft log at the next start;
        // flushing them now makes that start quick. A failure here loses nothing.
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "flushing memtables at shutdown failed");
        }
        self.db.cancel_all_background_work(true);
    }

    /// Loads a shard's raft log and state; `None` when the shard was never created here.
    pub fn load_shard(&self, shard: u64) -> Result<Option<(ShardLog, u64)>, StorageError> {
        let cf = self.cf(CF_RAFT_STATE);
        let get = |f| self.db.get_cf(&cf, keys::raft_state(shard, f));
        let Some(cs) = get(RaftStateField::ConfState)? else {
            return Ok(None);
        };
        let conf_state = ConfState::parse_from_bytes(&cs)?;
        let hard_state = match get(RaftStateField::HardState)? {
            Some(b) => HardState::parse_from_bytes(&b)?,
            None => HardState::default(),
        };
        let truncated = match get(RaftStateField::Truncated)? {
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().expect("8")),
                u64::from_be_bytes(b[8..].try_into().expect("8")),
            ),
            Some(_) => return Err(StorageError::Corrupt("truncated state".into())),
            None => (0, 0),
        };
        let applied = match get(RaftStateField::Applied)? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b[..].try_into().expect("8")),
            Some(_) => return Err(StorageError::Corrupt("applied index".into())),
            None => 0,
        };
        let log_cf = self.cf(CF_RAFT_LOG);
        let start = keys::raft_entry(shard, truncated.0 + 1);
        let end = keys::raft_entry(shard + 1, 0);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let mut entries = Vec::new();
        for item in
            self.db
                .iterator_cf_opt(&log_cf, ro, IteratorMode::From(&start, Direction::Forward))
        {
            let (_, v) = item?;
            entries.push(Entry::parse_from_bytes(&v)?);
        }
        let log = ShardLog::restore(hard_state, conf_state, truncated, entries);
        Ok(Some((log, applied)))
    }

    /// The stored cluster metadata document, if any.
    pub fn load_cluster_metadata(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(&self.cf(CF_META), keys::META_CLUSTER)?)
    }

    /// Every stored partition state.
    pub fn load_partition_states(
        &self,
    ) -> Result<Vec<(TopicPartition, PartitionState)>, StorageError> {
        let cf = self.cf(CF_META);
        let prefix = [keys::META_PARTITION_PREFIX];
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(vec![keys::META_PARTITION_PREFIX + 1]);
        let mut out = Vec::new();
        for item in
            self.db
                .iterator_cf_opt(&cf, ro, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if let Some(tp) = keys::parse_partition_state(&k) {
                out.push((tp, PartitionState::decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Every stored producer-state record: partition, producer id, encoded state.
    pub fn load_producer_states(
        &self,
    ) -> Result<Vec<(TopicPartition, i64, Vec<u8>)>, StorageError> {
        Ok(self
            .scan_meta(&[keys::META_PRODUCER_PREFIX])?
            .into_iter()
            .filter_map(|(k, v)| keys::parse_producer_state(&k).map(|(tp, pid)| (tp, pid, v)))
            .collect())
    }

    /// Every `meta` record whose key starts with `prefix` (used by the group coordinator).
    pub fn scan_meta(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        let cf = self.cf(CF_META);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn log_iter(
        &self,
        tp: &TopicPartition,
        from_offset: i64,
        end_offset: i64,
    ) -> impl Iterator<Item = RawItem> + '_ {
        let cf = self.cf(CF_LOG);
        // The batch holding `from_offset` may start before it: find the last batch whose base
        // offset is at or below it, then scan forward.
        let mut start = keys::log_entry(tp, from_offset).to_vec();
        {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(keys::log_entry(tp, 0).to_vec());
            let mut it = self.db.raw_iterator_cf_opt(&cf, ro);
            it.seek_for_prev(&start);
            if it.valid() {
                if let Some(k) = it.key() {
                    start = k.to_vec();
                }
            }
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::log_entry(tp, end_offset).to_vec());
        self.db
            .iterator_cf_opt(&cf, ro, IteratorMode::From(&start, Direction::Forward))
    }

    /// Reads stored batches of `tp` from the one holding `from_offset`, stopping before any
    /// batch that starts at or after `end_offset` (the high watermark). Takes batches while their
    /// total stays within `max_bytes`; with `min_one`, the first batch is taken even if it alone
    /// exceeds `max_bytes` (so a consumer can always make progress, as Kafka does).
    pub fn read_batches(
        &self,
        tp: &TopicPartition,
        from_offset: i64,
        end_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Vec<Bytes>, StorageError> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for item in self.log_iter(tp, from_offset, end_offset) {
            let (_, v) = item?;
            if let Some(last) = batch_info(0, &v).map(|i| i.last_offset) {
                // The batch found by seek_for_prev may end before `from_offset`.
                if last < from_offset {
                    continue;
                }
            }
            if total + v.len() > max_bytes && !(min_one && out.is_empty()) {
                break;
            }
            total += v.len();
            out.push(Bytes::from(v.into_vec()));
            if total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Header facts of every batch of `tp` from `from_offset` up to `end_offset`.
    pub fn batch_infos(
        &self,
        tp: &TopicPartition,
        from_offset: i64,
        end_offset: i64,
    ) -> Result<Vec<BatchInfo>, StorageError> {
        let mut out = Vec::new();
        for item in self.log_iter(tp, from_offset, end_offset) {
            let (k, v) = item?;
            let base = keys::log_entry_offset(&k)
                .ok_or_else(|| StorageError::Corrupt("log key".into()))?;
            if let Some(info) = batch_info(base, &v) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The first batch of `tp` (below `end_offset`) whose max timestamp is at or after
    /// `timestamp`, for ListOffsets by time.
    pub fn find_batch_by_timestamp(
        &self,
        tp: &TopicPartition,
        from_offset: i64,
        end_offset: i64,
        timestamp: i64,
    ) -> Result<Option<Bytes>, StorageError> {
        for item in self.log_iter(tp, from_offset, end_offset) {
            let (_, v) = item?;
            if let Some(info) = batch_info(0, &v) {
                if info.max_timestamp >= timestamp {
                    return Ok(Some(Bytes::from(v.into_vec())));
                }
            }
        }
        Ok(None)
    }

    /// Total stored bytes of `tp`'s batches whose base offset is below `below_offset` and at or
    /// above `from_offset` (what a log-start move will delete).
    pub fn bytes_below(
        &self,
        tp: &TopicPartition,
        from_offset: i64,
        below_offset: i64,
    ) -> Result<u64, StorageError> {
        let cf = self.cf(CF_LOG);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::log_entry(tp, below_offset).to_vec());
        let start = keys::log_entry(tp, from_offset.min(below_offset));
        let mut total = 0;
        for item in self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(&start, Direction::Forward))
        {
            let (_, v) = item?;
            total += v.len() as u64;
        }
        Ok(total)
    }

    /// Base offset of the batch holding `offset` (or the first batch after it), if any.
    pub fn batch_base_at_or_after(
        &self,
        tp: &TopicPartition,
        offset: i64,
        end_offset: i64,
    ) -> Result<Option<i64>, StorageError> {
        for item in self.log_iter(tp, offset, end_offset) {
            let (k, v) = item?;
            let base = keys::log_entry_offset(&k)
                .ok_or_else(|| StorageError::Corrupt("log key".into()))?;
            let last = batch_info(base, &v).map_or(base, |i| i.last_offset);
            if last >= offset {
                return Ok(Some(base));
            }
        }
        Ok(None)
    }
}

/// Reads the few header fields the store needs from a stored batch (magic 2 layout: base offset
/// at 0, batch length at 8, last offset delta at 23, max timestamp at 35).
fn batch_info(key_base: i64, v: &[u8]) -> Option<BatchInfo> {
    if v.len() < 61 {
        return None;
    }
    let base = i64::from_be_bytes(v[0..8].try_into().ok()?);
    let base = if key_base != 0 { key_base } else { base };
    let delta = i32::from_be_bytes(v[23..27].try_into().ok()?);
    let max_ts = i64::from_be_bytes(v[35..43].try_into().ok()?);
    Some(BatchInfo {
        base_offset: base,
        last_offset: base + delta as i64,
        size_bytes: v.len() as u64,
        max_timestamp: max_ts,
    })
}

impl Batch {
    /// Adds a raft entry of `shard`.
    pub fn put_raft_entry(&mut self, shard: u64, e: &Entry) -> Result<(), StorageError> {
        let v = e.write_to_bytes()?;
        self.wb.put_cf(
            &self.store.cf(CF_RAFT_LOG),
            keys::raft_entry(shard, e.index),
            v,
        );
        Ok(())
    }

    /// Removes raft entries of `shard` from `from` up to and including `to` (applied ones), and
    /// records the last removed index and term.
    pub fn truncate_raft_log(&mut self, shard: u64, from: u64, to: u64, to_term: u64) {
        let cf = self.store.cf(CF_RAFT_LOG);
        self.wb.delete_range_cf(
            &cf,
            keys::raft_entry(shard, from),
            keys::raft_entry(shard, to + 1),
        );
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&to.to_be_bytes());
        v[8..].copy_from_slice(&to_term.to_be_bytes());
        self.wb.put_cf(
            &self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::Truncated),
            v,
        );
    }

    /// Sets the hard state of `shard`.
    pub fn put_hard_state(&mut self, shard: u64, hs: &HardState) -> Result<(), StorageError> {
        let v = hs.write_to_bytes()?;
        self.wb.put_cf(
            &self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::HardState),
            v,
        );
        Ok(())
    }

    /// Sets the configuration of `shard`.
    pub fn put_conf_state(&mut self, shard: u64, cs: &ConfState) -> Result<(), StorageError> {
        let v = cs.write_to_bytes()?;
        self.wb.put_cf(
            &self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::ConfState),
            v,
        );
        Ok(())
    }

    /// Sets the applied index of `shard`; written with the results of applying up to it, so the
    /// two are always consistent after a crash.
    pub fn put_applied(&mut self, shard: u64, applied: u64) {
        self.wb.put_cf(
            &self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::Applied),
            applied.to_be_bytes(),
        );
    }

    /// Stores one record batch of `tp` at `base_offset`.
    pub fn put_record_batch(&mut self, tp: &TopicPartition, base_offset: i64, batch: &[u8]) {
        self.wb.put_cf(
            &self.store.cf(CF_LOG),
            keys::log_entry(tp, base_offset),
            batch,
        );
    }

    /// Deletes the batches of `tp` whose base offset is below `below_offset`.
    pub fn delete_batches_below(&mut self, tp: &TopicPartition, below_offset: i64) {
        self.wb.delete_range_cf(
            &self.store.cf(CF_LOG),
            keys::log_entry(tp, 0),
            keys::log_entry(tp, below_offset),
        );
    }

    /// Deletes every batch of `tp`, its partition state and its producer states.
    pub fn delete_partition(&mut self, tp: &TopicPartition) {
        self.delete_batches_below(tp, i64::MAX);
        let meta = self.store.cf(CF_META);
        self.wb.delete_cf(meta, keys::partition_state(tp));
        self.wb.delete_range_cf(
            meta,
            keys::producer_state(tp, 0),
            keys::producer_state(tp, i64::MAX),
        );
    }

    /// Sets the persistent state of `tp`.
    pub fn put_partition_state(&mut self, tp: &TopicPartition, state: &PartitionState) {
        self.wb.put_cf(
            &self.store.cf(CF_META),
            keys::partition_state(tp),
            state.encode(),
        );
    }

    /// Sets the cluster metadata document.
    pub fn put_cluster_metadata(&mut self, doc: &[u8]) {
        self.wb
            .put_cf(&self.store.cf(CF_META), keys::META_CLUSTER, doc);
    }

    /// Sets a `meta` record (group coordinator state).
    pub fn put_meta(&mut self, key: &[u8], value: &[u8]) {
        self.wb.put_cf(&self.store.cf(CF_META), key, value);
    }

    /// Deletes a `meta` record.
    pub fn delete_meta(&mut self, key: &[u8]) {
        self.wb.delete_cf(&self.store.cf(CF_META), key);
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn fake_batch(base: i64, records: i32, max_ts: i64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len.max(61)];
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[35..43].copy_from_slice(&max_ts.to_be_bytes());
        b
    }

    #[test]
    fn reads_from_the_batch_holding_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let tp = TopicPartition::new(Uuid::new_v4(), 0);
        let mut b = store.batch();
        b.put_record_batch(&tp, 0, &fake_batch(0, 10, 100, 100));
        b.put_record_batch(&tp, 10, &fake_batch(10, 10, 200, 100));
        b.put_record_batch(&tp, 20, &fake_batch(20, 10, 300, 100));
        store.write(b, true).unwrap();

        let got = store.read_batches(&tp, 15, 30, 1 << 20, true).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][0..8], &10i64.to_be_bytes());
        // The high watermark bounds the read.
        assert_eq!(
            store.read_batches(&tp, 0, 20, 1 << 20, true).unwrap().len(),
            2
        );
        // max_bytes bounds it too, but one batch always comes back with min_one.
        assert_eq!(store.read_batches(&tp, 0, 30, 150, true).unwrap().len(), 1);
        assert_eq!(store.read_batches(&tp, 0, 30, 50, true).unwrap().len(), 1);
        assert_eq!(store.read_batches(&tp, 0, 30, 50, false).unwrap().len(), 0);

        let by_ts = store
            .find_batch_by_timestamp(&tp, 0, 30, 150)
            .unwrap()
            .unwrap();
        assert_eq!(&by_ts[0..8], &10i64.to_be_bytes());
        assert_eq!(store.bytes_below(&tp, 0, 20).unwrap(), 200);
        assert_eq!(store.batch_base_at_or_after(&tp, 12, 30).unwrap(), Some(10));

        let mut b = store.batch();
        b.delete_batches_below(&tp, 10);
        store.write(b, true).unwrap();
        let infos = store.batch_infos(&tp, 0, 30).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].base_offset, 10);
        assert_eq!(infos[0].last_offset, 19);
    }

    #[test]
    fn partition_state_round_trips_through_restart() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new(Uuid::new_v4(), 2);
        let st = PartitionState {
            log_start_offset: 5,
            next_offset: 42,
            size_bytes: 1234,
            max_timestamp: 99,
            max_timestamp_batch: 40,
        };
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let mut b = store.batch();
            b.put_partition_state(&tp, &st);
            b.put_cluster_metadata(b"{}");
            store.write(b, true).unwrap();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(store.load_partition_states().unwrap(), vec![(tp, st)]);
        assert_eq!(store.load_cluster_metadata().unwrap().unwrap(), b"{}");
    }

    #[test]
    fn shard_log_round_trips_through_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let mut b = store.batch();
            let cs = ConfState {
                voters: vec![1],
                ..Default::default()
            };
            b.put_conf_state(3, &cs).unwrap();
            for i in 1..=5u64 {
                let e = Entry {
                    index: i,
                    term: 2,
                    data: vec![i as u8].into(),
                    ..Default::default()
                };
                b.put_raft_entry(3, &e).unwrap();
            }
            b.truncate_raft_log(3, 1, 2, 2);
            b.put_applied(3, 2);
            store.write(b, true).unwrap();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let (log, applied) = store.load_shard(3).unwrap().unwrap();
        assert_eq!(applied, 2);
        assert_eq!(log.truncated(), (2, 2));
        assert_eq!(log.len(), 3);
        assert!(store.load_shard(4).unwrap().is_none());
    }
}
