//! [`Backend`]: what the coordinator needs from the replication layer — placement, leadership,
//! durable writes and the records to restore — as a trait, so that the state machine runs in
//! unit tests against [`MemBackend`] while the broker runs it against the [`Node`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use jet_replication::Node;

/// A boxed future, so that [`Backend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One record write: a key and its new value, `None` deleting it.
pub type Op = (Vec<u8>, Option<Vec<u8>>);

/// Stored records: keys and values.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The replication layer as the coordinator sees it.
pub trait Backend: Send + Sync + 'static {
    /// The shard whose leader coordinates `group`.
    fn shard_of(&self, group: &str) -> u64;
    /// True while this node leads `shard`.
    fn is_leader(&self, shard: u64) -> bool;
    /// Writes records through `shard`'s log; resolves once they are durable.
    fn write(&self, shard: u64, ops: Vec<Op>) -> BoxFuture<'_, Result<(), jet_replication::Error>>;
    /// Every group record, for the restore at start-up.
    fn load(&self) -> Result<Records, jet_replication::Error>;
}

/// The real backend: the node's shards and its RocksDB.
pub struct NodeBackend(pub Arc<Node>);

impl Backend for NodeBackend {
    fn shard_of(&self, group: &str) -> u64 {
        self.0.coordinator_shard(group)
    }

    fn is_leader(&self, shard: u64) -> bool {
        self.0
            .shard_status(shard)
            .is_some_and(|s| s.is_leader.load(std::sync::atomic::Ordering::Acquire))
    }

    fn write(&self, shard: u64, ops: Vec<Op>) -> BoxFuture<'_, Result<(), jet_replication::Error>> {
        Box::pin(self.0.group_write(shard, ops))
    }

    fn load(&self) -> Result<Records, jet_replication::Error> {
        Ok(self
            .0
            .store()
            .scan_meta(&[jet_storage::keys::META_GROUP_PREFIX])?)
    }
}

/// The in-memory twin: a sorted map, four shards, always the leader unless told otherwise, and
/// writes that can be made to fail.
#[derive(Default)]
pub struct MemBackend {
    /// The stored records.
    pub records: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// When set, every write fails with this error.
    pub fail_writes: Mutex<Option<jet_replication::Error>>,
    /// When true, this node leads no shard.
    pub not_leader: std::sync::atomic::AtomicBool,
    /// Number of writes done.
    pub writes: std::sync::atomic::AtomicUsize,
}

impl Backend for MemBackend {
    fn shard_of(&self, group: &str) -> u64 {
        1 + group.len() as u64 % 4
    }

    fn is_leader(&self, _shard: u64) -> bool {
        !self.not_leader.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write(
        &self,
        _shard: u64,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<(), jet_replication::Error>> {
        Box::pin(async move {
            if let Some(e) = self.fail_writes.lock().expect("mem backend lock").clone() {
                return Err(e);
            }
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut records = self.records.lock().expect("mem backend lock");
            for (k, v) in ops {
                match v {
                    Some(v) => records.insert(k, v),
                    None => records.remove(&k),
                };
            }
            Ok(())
        })
    }

    fn load(&self) -> Result<Records, jet_replication::Error> {
        Ok(self
            .records
            .lock()
            .expect("mem backend lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
