//! [`Store`]: the node's one RocksDB and every read and write the broker makes on it.
//!
//! Writes go through [`Batch`] (a RocksDB `WriteBatch`) so that the driver persists the Ready of
//! every shard, or the applied results of every shard, in one write. Record batches are written
//! once, as the data of their Raft entry; `raft_log` keeps large values in blob files (RocksDB's
//! integrated BlobDB), so compaction moves small references, never the batches themselves.
//! Partition reads ([`crate::index`]) go through the partition index; callers run them off the
//! async runtime.

use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, FlushOptions, IteratorMode,
    Options, ReadOptions, WriteOptions, DB,
};

use crate::index::{IndexEntry, PartitionState};
use crate::keys::{self, RaftStateField, TopicPartition};
use crate::{ShardLog, StorageError};

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_STATE: &str = "raft_state";
pub(crate) const CF_INDEX: &str = "index";
pub(crate) const CF_META: &str = "meta";
const CFS: [&str; 4] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_INDEX, CF_META];

/// The storage format this build reads and writes. Format 1 (a second copy of every batch in a
/// `log` column family) is refused rather than misread.
pub const FORMAT_VERSION: u32 = 2;

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Memtable size of the Raft log column family, in bytes.
    pub raft_log_write_buffer_bytes: usize,
    /// Block cache shared by all column families, in bytes.
    pub block_cache_bytes: usize,
    /// Raft log values at least this large go to blob files (written once, at flush).
    pub min_blob_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            raft_log_write_buffer_bytes: 32 << 20,
            block_cache_bytes: 16 << 20,
            min_blob_bytes: 4096,
        }
    }
}

/// A stored key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The node's RocksDB.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// The options it was opened with: they hold RocksDB's statistics (tickers, histograms).
    options: Arc<Options>,
}

/// What RocksDB reports of its own work, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes of user writes (write batches), since the store was opened.
    pub bytes_written: u64,
    /// Bytes written by memtable flushes.
    pub flush_bytes_written: u64,
    /// Bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// Memtable flushes finished.
    pub flushes: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// RocksDB's estimate of the bytes compaction still has to rewrite.
    pub pending_compaction_bytes: u64,
}

/// A set of writes applied atomically by [`Store::write`].
pub struct Batch {
    wb: rocksdb::WriteBatch,
    store: Store,
}

impl Store {
    /// Opens (creating if needed) the store in `path`. A data directory of another storage
    /// format is refused with a clear error before anything is written to it.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StorageError> {
        if let Ok(existing) = DB::list_cf(&Options::default(), path) {
            if existing.iter().any(|cf| cf == "log") {
                return Err(StorageError::Format(format!(
                    "{} holds storage format 1; this jet reads format {FORMAT_VERSION} (start with an empty data directory)",
                    path.display()
                )));
            }
        }
        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
        let cf_options = |write_buffer: usize| {
            let mut o = Options::default();
            // Record batches arrive compressed by clients, or are small; RocksDB compression
            // would spend CPU for little.
            o.set_compression_type(DBCompressionType::None);
            o.set_write_buffer_size(write_buffer);
            o.set_max_write_buffer_number(2);
            let mut block = rocksdb::BlockBasedOptions::default();
            block.set_block_cache(&cache);
            o.set_block_based_table_factory(&block);
            o
        };
        let mut raft_log = cf_options(options.raft_log_write_buffer_bytes);
        // Entries (record batches) go to blob files at flush and stay there: LSM compaction
        // rewrites only the small references, so each batch reaches the disk twice in all (WAL
        // and blob file). A blob file is deleted once no key refers to it, which is what the
        // Raft log's range deletes lead to; blob garbage collection would rewrite live batches,
        // so it is off.
        raft_log.set_enable_blob_files(true);
        raft_log.set_min_blob_size(options.min_blob_bytes);
        raft_log.set_blob_file_size(64 << 20);
        raft_log.set_enable_blob_gc(false);
        raft_log.set_blob_compression_type(DBCompressionType::None);
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        // Apply writes skip the WAL (see `write_unlogged`); flushing every column family
        // together keeps what reaches disk a consistent prefix of them.
        db_options.set_atomic_flush(true);
        db_options.set_compression_type(DBCompressionType::None);
        // Counters for metrics; the detailed timers (per-operation mutex and I/O timing) stay off.
        db_options.enable_statistics();
        db_options.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptDetailedTimers);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_RAFT_LOG, raft_log),
            ColumnFamilyDescriptor::new(CF_RAFT_STATE, cf_options(4 << 20)),
            ColumnFamilyDescriptor::new(CF_INDEX, cf_options(8 << 20)),
            ColumnFamilyDescriptor::new(CF_META, cf_options(4 << 20)),
        ];
        let db = DB::open_cf_descriptors(&db_options, path, cfs)?;
        let store = Store {
            db: Arc::new(db),
            options: Arc::new(db_options),
        };
        store.check_format()?;
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StorageError> {
        let meta = self.cf(CF_META);
        match self.db.get_cf(meta, keys::META_FORMAT)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt("format marker".into()))?;
                if found != FORMAT_VERSION {
                    return Err(StorageError::Format(format!(
                        "the data directory holds storage format {found}; this jet reads format {FORMAT_VERSION}"
                    )));
                }
            }
            None => {
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                self.db
                    .put_cf_opt(meta, keys::META_FORMAT, FORMAT_VERSION.to_be_bytes(), &wo)?;
            }
        }
        Ok(())
    }

    /// Binds the data directory to `node_id` on first use, and refuses another id after.
    pub fn claim_node_id(&self, node_id: u64) -> Result<(), StorageError> {
        let meta = self.cf(CF_META);
        match self.db.get_cf(meta, keys::META_NODE_ID)? {
            Some(v) => {
                let found = <[u8; 8]>::try_from(v.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt("node id marker".into()))?;
                if found != node_id {
                    return Err(StorageError::NodeIdMismatch {
                        stored: found,
                        given: node_id,
                    });
                }
            }
            None => {
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                self.db
                    .put_cf_opt(meta, keys::META_NODE_ID, node_id.to_be_bytes(), &wo)?;
            }
        }
        Ok(())
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        // Every family is created at open, so a missing one is a programming error.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} missing"))
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
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

    /// Writes a consistent copy of the store to `path`, which must not exist (a RocksDB
    /// checkpoint: memtables flushed, then files hard-linked or copied).
    pub fn checkpoint(&self, path: &Path) -> Result<(), StorageError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(path)?;
        Ok(())
    }

    /// RocksDB's own counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        use rocksdb::statistics::{Histogram, Ticker};
        let o = &self.options;
        let pending = CFS
            .iter()
            .filter_map(|n| {
                self.db
                    .property_int_value_cf(self.cf(n), "rocksdb.estimate-pending-compaction-bytes")
                    .ok()
                    .flatten()
            })
            .sum();
        StoreStats {
            bytes_written: o.get_ticker_count(Ticker::BytesWritten),
            flush_bytes_written: o.get_ticker_count(Ticker::FlushWriteBytes),
            compaction_bytes_written: o.get_ticker_count(Ticker::CompactWriteBytes),
            flushes: o.get_histogram_data(Histogram::FlushTime).count(),
            compactions: o.get_histogram_data(Histogram::CompactionTime).count(),
            pending_compaction_bytes: pending,
        }
    }

    /// Flushes the memtables of every column family (atomically, as one flush).
    pub fn flush_all(&self) -> Result<(), StorageError> {
        let cfs: Vec<&ColumnFamily> = CFS.iter().map(|n| self.cf(n)).collect();
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &fo)?;
        Ok(())
    }

    /// Stops compactions and flushes and waits for running ones, before the process exits.
    pub fn stop_background_work(&self) {
        // Unlogged apply results would otherwise be rebuilt from the Raft log at the next start;
        // flushing them now makes that start quick. A failure here loses nothing.
        if let Err(e) = self.flush_all() {
            tracing::warn!(error = %e, "flushing memtables at shutdown failed");
        }
        self.db.cancel_all_background_work(true);
    }

    /// The shards a replica of which is stored here (those with a configuration), ascending.
    pub fn stored_shards(&self) -> Result<Vec<u64>, StorageError> {
        let cf = self.cf(CF_RAFT_STATE);
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek_to_first();
        while let Some(k) = it.key() {
            if k.len() == 9 && k[8] == RaftStateField::ConfState as u8 {
                out.push(u64::from_be_bytes(k[..8].try_into().expect("8 bytes")));
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Whether a replica of `shard` is stored here (it has a configuration).
    pub fn has_shard(&self, shard: u64) -> Result<bool, StorageError> {
        let cf = self.cf(CF_RAFT_STATE);
        Ok(self
            .db
            .get_pinned_cf(cf, keys::raft_state(shard, RaftStateField::ConfState))?
            .is_some())
    }

    /// Loads a shard's raft state and the entries it has not applied yet; `None` when the
    /// shard was never created here. Applied entries stay on disk (the partition logs point
    /// into them) and are read from there when needed, so start-up time does not grow with the
    /// data a node holds.
    pub fn load_shard(&self, shard: u64) -> Result<Option<ShardLog>, StorageError> {
        let cf = self.cf(CF_RAFT_STATE);
        let get = |f| self.db.get_cf(cf, keys::raft_state(shard, f));
        let Some(cs) = get(RaftStateField::ConfState)? else {
            return Ok(None);
        };
        let conf_state = ConfState::parse_from_bytes(&cs)?;
        let hard_state = match get(RaftStateField::HardState)? {
            Some(b) => HardState::parse_from_bytes(&b)?,
            None => HardState::default(),
        };
        let truncated = match get(RaftStateField::Truncated)? {
            Some(b) if b.len() == 16 => (be_u64(&b[..8]), be_u64(&b[8..])),
            Some(_) => return Err(StorageError::Corrupt("truncated state".into())),
            None => (0, 0),
        };
        let applied = self.get_u64(shard, RaftStateField::Applied)?.unwrap_or(0);
        let from = applied.max(truncated.0) + 1;
        let entries = self.raft_entries(shard, from, u64::MAX, u64::MAX)?;
        let last = match entries.last() {
            Some(e) => e.index,
            None => self
                .raft_last_index(shard)?
                .unwrap_or(truncated.0)
                .max(truncated.0),
        };
        Ok(Some(ShardLog::restore(
            self.clone(),
            shard,
            crate::shard_log::Restored {
                hard_state,
                conf_state,
                truncated,
                applied,
                last,
                entries,
            },
        )))
    }

    fn get_u64(&self, shard: u64, field: RaftStateField) -> Result<Option<u64>, StorageError> {
        match self
            .db
            .get_cf(self.cf(CF_RAFT_STATE), keys::raft_state(shard, field))?
        {
            Some(b) if b.len() == 8 => Ok(Some(be_u64(&b))),
            Some(_) => Err(StorageError::Corrupt(format!("{field:?} of shard {shard}"))),
            None => Ok(None),
        }
    }

    /// Entries of `shard` with indexes in `[low, high)`, stopping once `max_bytes` of data are
    /// taken (at least one entry is always returned when there is one).
    pub fn raft_entries(
        &self,
        shard: u64,
        low: u64,
        high: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let cf = self.cf(CF_RAFT_LOG);
        let mut ro = ReadOptions::default();
        let upper = if high == u64::MAX {
            keys::raft_entry(shard + 1, 0)
        } else {
            keys::raft_entry(shard, high)
        };
        ro.set_iterate_upper_bound(upper.to_vec());
        let start = keys::raft_entry(shard, low);
        let mut out = Vec::new();
        let mut size = 0u64;
        let items = self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(&start, Direction::Forward));
        for (expect, item) in (low..).zip(items) {
            let (k, v) = item?;
            let (_, index, term, kind) = keys::parse_raft_entry(&k)
                .ok_or_else(|| StorageError::Corrupt("raft log key".into()))?;
            if index != expect {
                return Err(StorageError::Corrupt(format!(
                    "raft log of shard {shard} has a gap at {expect} (found {index})"
                )));
            }
            size += v.len() as u64;
            if !out.is_empty() && size > max_bytes {
                break;
            }
            let entry_type = <EntryType as protobuf::ProtobufEnum>::from_i32(i32::from(kind))
                .ok_or_else(|| StorageError::Corrupt(format!("raft entry type {kind}")))?;
            let mut e = Entry {
                index,
                term,
                data: v.into_vec().into(),
                ..Default::default()
            };
            e.set_entry_type(entry_type);
            out.push(e);
        }
        Ok(out)
    }

    /// The term of entry `index` of `shard`, if it is stored.
    pub fn raft_term(&self, shard: u64, index: u64) -> Result<Option<u64>, StorageError> {
        let cf = self.cf(CF_RAFT_LOG);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::raft_entry(shard, index + 1).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(keys::raft_entry(shard, index));
        match it.key().and_then(keys::parse_raft_entry) {
            Some((_, i, term, _)) if i == index => Ok(Some(term)),
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// The index of the last stored entry of `shard`.
    pub fn raft_last_index(&self, shard: u64) -> Result<Option<u64>, StorageError> {
        let cf = self.cf(CF_RAFT_LOG);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(keys::raft_entry(shard, 0).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek_for_prev(keys::raft_entry(shard + 1, 0));
        match it.key().and_then(keys::parse_raft_entry) {
            Some((s, i, _, _)) if s == shard => Ok(Some(i)),
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// Every key and value of the column families that apply writes (index, meta) and the
    /// applied indexes, in order, for tests that compare replicas.
    pub fn dump_applied_state(&self) -> Result<Vec<(&'static str, KeyValue)>, StorageError> {
        let mut out = Vec::new();
        for name in [CF_INDEX, CF_META, CF_RAFT_STATE] {
            for item in self.db.iterator_cf(self.cf(name), IteratorMode::Start) {
                let (k, v) = item?;
                out.push((name, (k.to_vec(), v.to_vec())));
            }
        }
        Ok(out)
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
}

impl Store {
    /// Every `index` record of `tp`, key and value verbatim (a snapshot's copy).
    pub fn scan_index_raw(&self, tp: &TopicPartition) -> Result<Vec<KeyValue>, StorageError> {
        let cf = self.cf(CF_INDEX);
        let prefix = keys::partition_prefix(tp);
        let mut ro = ReadOptions::default();
        let mut upper = keys::index_entry(tp, i64::MAX).to_vec();
        upper.push(0xff);
        ro.set_iterate_upper_bound(upper);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Batch {
    /// Adds a raft entry of `shard`: its data is the value, verbatim (see
    /// [`keys::raft_entry_full`]). Jet never proposes entry contexts, so one is refused rather
    /// than dropped.
    pub fn put_raft_entry(&mut self, shard: u64, e: &Entry) -> Result<(), StorageError> {
        if !e.context.is_empty() {
            return Err(StorageError::Corrupt(format!(
                "raft entry {} of shard {shard} has a context",
                e.index
            )));
        }
        let kind = e.get_entry_type() as i32 as u8;
        self.wb.put_cf(
            self.store.cf(CF_RAFT_LOG),
            keys::raft_entry_full(shard, e.index, e.term, kind),
            &e.data,
        );
        Ok(())
    }

    /// Removes entries of `shard` from `from` on: a new leader replaced them.
    pub fn delete_raft_entries_from(&mut self, shard: u64, from: u64) {
        self.wb.delete_range_cf(
            self.store.cf(CF_RAFT_LOG),
            keys::raft_entry(shard, from),
            keys::raft_entry(shard + 1, 0),
        );
    }

    /// Removes everything of this node's replica of `shard` from the Raft families: its
    /// entries and its Raft state (the replica is gone; the shard lives on elsewhere).
    pub fn delete_shard(&mut self, shard: u64) {
        self.delete_raft_entries_from(shard, 0);
        for field in [
            RaftStateField::HardState,
            RaftStateField::ConfState,
            RaftStateField::Truncated,
            RaftStateField::Applied,
        ] {
            self.wb
                .delete_cf(self.store.cf(CF_RAFT_STATE), keys::raft_state(shard, field));
        }
    }

    /// Removes raft entries of `shard` up to and including `to` (applied, on every replica, and
    /// no longer referenced by any partition), and records the last removed index and term.
    pub fn truncate_raft_log(&mut self, shard: u64, to: u64, to_term: u64) {
        self.wb.delete_range_cf(
            self.store.cf(CF_RAFT_LOG),
            keys::raft_entry(shard, 0),
            keys::raft_entry(shard, to + 1),
        );
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&to.to_be_bytes());
        v[8..].copy_from_slice(&to_term.to_be_bytes());
        self.wb.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::Truncated),
            v,
        );
    }

    /// Sets the hard state of `shard`.
    pub fn put_hard_state(&mut self, shard: u64, hs: &HardState) -> Result<(), StorageError> {
        let v = hs.write_to_bytes()?;
        self.wb.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::HardState),
            v,
        );
        Ok(())
    }

    /// Sets the configuration of `shard`.
    pub fn put_conf_state(&mut self, shard: u64, cs: &ConfState) -> Result<(), StorageError> {
        let v = cs.write_to_bytes()?;
        self.wb.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::ConfState),
            v,
        );
        Ok(())
    }

    /// Sets the applied index of `shard`; written with the results of applying up to it, so the
    /// two are always consistent after a crash.
    pub fn put_applied(&mut self, shard: u64, applied: u64) {
        self.wb.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(shard, RaftStateField::Applied),
            applied.to_be_bytes(),
        );
    }

    /// Indexes one batch of `tp`.
    pub fn put_index(&mut self, tp: &TopicPartition, e: &IndexEntry) {
        self.wb.put_cf(
            self.store.cf(CF_INDEX),
            keys::index_entry(tp, e.base_offset),
            e.encode(),
        );
    }

    /// Drops the index entries of `tp` with base offsets in `[from, to)`.
    pub fn delete_index_range(&mut self, tp: &TopicPartition, from: i64, to: i64) {
        self.wb.delete_range_cf(
            self.store.cf(CF_INDEX),
            keys::index_entry(tp, from),
            keys::index_entry(tp, to),
        );
    }

    /// Deletes every index entry of `tp`, its partition state and its producer states.
    pub fn delete_partition(&mut self, tp: &TopicPartition) {
        self.delete_index_range(tp, 0, i64::MAX);
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
            self.store.cf(CF_META),
            keys::partition_state(tp),
            state.encode(),
        );
    }

    /// Sets the cluster metadata document.
    pub fn put_cluster_metadata(&mut self, doc: &[u8]) {
        self.wb
            .put_cf(self.store.cf(CF_META), keys::META_CLUSTER, doc);
    }

    /// Sets an `index` record verbatim (a snapshot's copy of a partition index).
    pub fn put_index_raw(&mut self, key: &[u8], value: &[u8]) {
        self.wb.put_cf(self.store.cf(CF_INDEX), key, value);
    }

    /// Sets a `meta` record (group coordinator state).
    pub fn put_meta(&mut self, key: &[u8], value: &[u8]) {
        self.wb.put_cf(self.store.cf(CF_META), key, value);
    }

    /// Deletes a `meta` record.
    pub fn delete_meta(&mut self, key: &[u8]) {
        self.wb.delete_cf(self.store.cf(CF_META), key);
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }
}

#[cfg(test)]
mod tests;
