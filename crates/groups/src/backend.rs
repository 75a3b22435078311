//! [`Backend`]: what the coordinator needs from the replication layer — placement, leadership,
//! durable writes and the records to load — as a trait, so that the state machine runs in
//! unit tests against [`MemBackend`] while the broker runs it against the [`Node`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// How many data shards there are: groups map to shards `1..=shard_count()`.
    fn shard_count(&self) -> u64;
    /// The term of this node's leadership of `shard`, or `None` while it does not lead it. A
    /// node leads a shard only once it has applied every entry of earlier terms, so its store
    /// then holds every group record of the shard. The term tells a leadership lost and
    /// regained apart from one that never moved.
    fn leader_term(&self, shard: u64) -> Option<u64>;
    /// True while this node leads `shard`.
    fn is_leader(&self, shard: u64) -> bool {
        self.leader_term(shard).is_some()
    }
    /// Writes records through `shard`'s log; resolves once they are durable.
    fn write(&self, shard: u64, ops: Vec<Op>) -> BoxFuture<'_, Result<(), jet_replication::Error>>;
    /// Every group record in this node's store (leaders write them, followers apply them).
    fn load(&self) -> Result<Records, jet_replication::Error>;
}

/// The real backend: the node's shards and its RocksDB.
pub struct NodeBackend(pub Arc<Node>);

impl Backend for NodeBackend {
    fn shard_of(&self, group: &str) -> u64 {
        self.0.coordinator_shard(group)
    }

    /// The count groups are placed with: the cluster's data shards when it formed.
    fn shard_count(&self) -> u64 {
        self.0.group_shard_count()
    }

    fn leader_term(&self, shard: u64) -> Option<u64> {
        let status = self.0.shard_status(shard)?;
        // The driver stores the term before it raises the leader flag (release), so reading the
        // flag first (acquire) gives at least the term the leadership started in; a step-down
        // racing these two loads shows up as lost leadership at the next read.
        if !status.is_leader.load(Ordering::Acquire) {
            return None;
        }
        Some(status.term.load(Ordering::Acquire))
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

/// The in-memory twin: a sorted map, four shards, leader of each unless told otherwise, and
/// writes that can be made to fail or to wait.
#[derive(Default)]
pub struct MemBackend {
    /// The stored records. Tests write here directly to stand for records another node's
    /// leadership wrote and this node applied as a follower.
    pub records: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// When set, every write fails with this error.
    pub fail_writes: Mutex<Option<jet_replication::Error>>,
    /// When set, every write waits for a permit of this semaphore first (one per write).
    pub write_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// When true, this node leads no shard.
    pub not_leader: AtomicBool,
    /// Number of writes done.
    pub writes: AtomicUsize,
    /// Shards whose leadership changed (see [`MemBackend::set_leader`]): the term and whether
    /// this node leads. A shard not here is led in term 0.
    leadership: Mutex<BTreeMap<u64, (u64, bool)>>,
}

impl MemBackend {
    /// Gives up or takes `shard`'s leadership; taking it again starts a new term, as an
    /// election would.
    pub fn set_leader(&self, shard: u64, lead: bool) {
        let mut leadership = self.leadership.lock().expect("mem backend lock");
        let entry = leadership.entry(shard).or_insert((0, true));
        if lead && !entry.1 {
            entry.0 += 1;
        }
        entry.1 = lead;
    }
}

impl Backend for MemBackend {
    fn shard_of(&self, group: &str) -> u64 {
        1 + group.len() as u64 % 4
    }

    fn shard_count(&self) -> u64 {
        4
    }

    fn leader_term(&self, shard: u64) -> Option<u64> {
        if self.not_leader.load(Ordering::Relaxed) {
            return None;
        }
        match self
            .leadership
            .lock()
            .expect("mem backend lock")
            .get(&shard)
        {
            None => Some(0),
            Some(&(term, lead)) => lead.then_some(term),
        }
    }

    fn write(&self, shard: u64, ops: Vec<Op>) -> BoxFuture<'_, Result<(), jet_replication::Error>> {
        Box::pin(async move {
            let gate = self.write_gate.lock().expect("mem backend lock").clone();
            if let Some(gate) = gate {
                gate.acquire()
                    .await
                    .map_err(|_| jet_replication::Error::ShuttingDown)?
                    .forget();
            }
            if let Some(e) = self.fail_writes.lock().expect("mem backend lock").clone() {
                return Err(e);
            }
            // As a Raft log would: a node that no longer leads the shard cannot write to it.
            if !self.is_leader(shard) {
                return Err(jet_replication::Error::NotLeader);
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
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
