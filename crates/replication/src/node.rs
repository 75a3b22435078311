//! [`Node`]: the replication layer as the Kafka server sees it.
//!
//! Writes (appends, metadata changes, log-start moves) become proposals to the driver thread and
//! are answered when their Raft entry is applied. Reads go through the partition index to the
//! batches in the Raft log, on a blocking thread, bounded by the partition's published high
//! watermark; retention and ListOffsets by time are binary searches over that index.

use std::collections::{BTreeMap, HashMap};

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use jet_storage::{Store, TopicPartition};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

mod config;
mod directory;
mod epochs;
mod maintenance;

pub use config::NodeConfig;
pub use directory::{BrokerInfo, Directory};

use crate::command::AppendItem;
use crate::driver::{self, AppendReply, DriverMsg};
use crate::metadata::{ClusterMetadata, MetaCommand, MetaEffect, TopicMeta};
use crate::partition::{PartitionHandle, ShardStatus};
use crate::Error;

/// What an append got: the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// The LogAppendTime stamped on the batches, or -1 for CreateTime topics.
    pub log_append_time_ms: i64,
    /// The partition's log start offset after the append.
    pub log_start_offset: i64,
}

/// An append handed to its shard: [`AppendTicket::wait`] answers when it is applied.
#[derive(Debug)]
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<AppendOutcome, Error>>,
    timeout: Duration,
}

impl AppendTicket {
    /// Waits for the append to be committed and applied (at most the proposal timeout).
    pub async fn wait(self) -> Result<AppendOutcome, Error> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::ShuttingDown),
            Err(_) => Err(Error::Timeout),
        }
    }
}

/// Batches read from a partition, and the offsets a Fetch response reports with them.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Stored batches in offset order, back to back, base offsets and leader epochs set.
    pub records: Bytes,
    /// How many batches `records` holds.
    pub batch_count: usize,
    /// The high watermark when the read started.
    pub high_watermark: i64,
    /// The log start offset when the read started.
    pub log_start_offset: i64,
}

/// A CreateTopics request for one topic.
#[derive(Debug, Clone)]
pub struct CreateTopic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// Explicit configs.
    pub configs: BTreeMap<String, String>,
    /// Check only; change nothing.
    pub validate_only: bool,
}

/// State the driver and readers share.
pub(crate) struct Shared {
    /// Set when the `Node` is dropped without `shutdown`: the driver stops at its next turn.
    pub stop: std::sync::atomic::AtomicBool,
    pub metadata: RwLock<Arc<ClusterMetadata>>,
    pub partitions: RwLock<HashMap<TopicPartition, PartitionHandle>>,
    pub tail_budget: Arc<crate::partition::TailBudget>,
    /// Every shard id's status, by id: grows when the cluster adds shards, never shrinks.
    shards: RwLock<Vec<Arc<ShardStatus>>>,
    /// Bumped whenever partitions are created or deleted here.
    pub partitions_changed: watch::Sender<u64>,
    /// Set, with its cause, when the driver stopped on an error: the node can serve nothing.
    pub failed: watch::Sender<Option<String>>,
}

impl Shared {
    /// The shared state of a node with `config.data_shards` data shards.
    pub(crate) fn new(config: &NodeConfig) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            stop: std::sync::atomic::AtomicBool::new(false),
            metadata: RwLock::new(Arc::new(ClusterMetadata::default())),
            partitions: RwLock::new(HashMap::new()),
            tail_budget: crate::partition::TailBudget::new(
                config.tail_cache_bytes,
                config.tail_cache_partition_bytes,
            ),
            shards: RwLock::new(Vec::new()),
            partitions_changed: watch::channel(0).0,
            failed: watch::channel(None).0,
        });
        shared.grow_shards(config.data_shards);
        shared
    }

    /// The status of shard `id`, if the cluster has that shard.
    pub(crate) fn shard(&self, id: u64) -> Option<Arc<ShardStatus>> {
        let shards = self.shards.read().expect("shards lock");
        shards.get(usize::try_from(id).ok()?).cloned()
    }

    /// Every shard's status, by id.
    pub(crate) fn all_shards(&self) -> Vec<Arc<ShardStatus>> {
        self.shards.read().expect("shards lock").clone()
    }

    /// Makes statuses for shard ids up to `last` (the cluster added shards).
    pub(crate) fn grow_shards(&self, last: u64) {
        if (self.shards.read().expect("shards lock").len() as u64) > last {
            return;
        }
        let mut shards = self.shards.write().expect("shards lock");
        while (shards.len() as u64) <= last {
            let id = shards.len() as u64;
            shards.push(Arc::new(ShardStatus {
                id,
                ..Default::default()
            }));
        }
    }

    /// Records that the driver stopped on an error.
    pub(crate) fn fail(&self, cause: String) {
        tracing::error!(%cause, "the raft driver stopped");
        for s in self.all_shards() {
            s.is_leader
                .store(false, std::sync::atomic::Ordering::Release);
        }
        self.failed.send_replace(Some(cause));
    }

    pub(crate) fn partition(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(tp)
            .cloned()
    }
}

/// One broker's replication layer: its shards, its store, its copy of the cluster metadata.
pub struct Node {
    config: NodeConfig,
    store: Store,
    shared: Arc<Shared>,
    tx: mpsc::Sender<DriverMsg>,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The producer-id block being handed out: next id, end (exclusive).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Permits are bytes of appends in flight (`max_append_bytes_in_flight`).
    append_budget: Arc<tokio::sync::Semaphore>,
    /// What gossip says about the other nodes.
    directory: RwLock<Arc<directory::Directory>>,
    /// Whether the driver was told liveness at least once (it is told again on changes).
    liveness_sent: std::sync::atomic::AtomicBool,
}

/// Producer ids taken from the metadata shard at a time, so most InitProducerId requests need
/// no consensus round.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

impl Node {
    /// Opens the store, restores every shard, starts the driver, and returns once every local
    /// shard has a leader. A data directory of another node or storage format is refused.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, Error> {
        Self::start_clustered(config, None).await
    }

    /// [`Node::start`] for a node of a cluster: Raft messages to and from the other nodes go
    /// through `network`. Returns once the cluster is initialised and every shard this node
    /// holds has a leader (so a cluster node waits for a quorum of its peers).
    pub async fn start_clustered(
        mut config: NodeConfig,
        network: Option<driver::Network>,
    ) -> Result<Arc<Node>, Error> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let (store, stored_shards, stored_members) = {
            let dir = config.data_dir.clone();
            let opts = config.store.clone();
            let node_id = config.node_id;
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let store = Store::open(&dir, &opts)?;
                store.claim_node_id(node_id)?;
                let doc = store.load_cluster_metadata()?;
                let (shards, members) = match doc {
                    Some(d) => {
                        let m = serde_json::from_slice::<ClusterMetadata>(&d)
                            .map_err(|e| Error::Storage(format!("cluster metadata: {e}")))?;
                        (m.data_shards, m.members.len())
                    }
                    None => (0, 0),
                };
                Ok((store, shards, members))
            })
            .await
            .map_err(|e| Error::Storage(e.to_string()))??
        };
        if network.is_none() && stored_members > 1 {
            return Err(Error::Storage(format!(
                "this node belongs to a cluster of {stored_members} nodes: start it with --seeds (the flags it was started with)"
            )));
        }
        // The number of data shards is cluster state: set when the cluster was made, grown by
        // the cluster as nodes join.
        if stored_shards > 0 && stored_shards != config.data_shards {
            tracing::info!(
                stored = stored_shards,
                flag = config.data_shards,
                "the cluster has {stored_shards} data shards; --shards sets the count of new clusters only"
            );
            config.data_shards = stored_shards;
        }
        let shared = Shared::new(&config);
        let (tx, rx) = mpsc::channel(config.max_pending_proposals.max(1));
        let (ready_tx, ready_rx) = oneshot::channel();
        let handle = driver::spawn(
            config.clone(),
            store.clone(),
            shared.clone(),
            rx,
            network,
            ready_tx,
        )?;
        // Permits are acquired as u32s, so the budget is capped there.
        let append_budget = Arc::new(tokio::sync::Semaphore::new(
            config
                .max_append_bytes_in_flight
                .clamp(1, u32::MAX as usize),
        ));
        let node = Arc::new(Node {
            config,
            store,
            shared,
            tx,
            driver: Mutex::new(Some(handle)),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            append_budget,
            directory: RwLock::new(Arc::default()),
            liveness_sent: std::sync::atomic::AtomicBool::new(false),
        });
        ready_rx.await.map_err(|_| Error::ShuttingDown)??;
        node.clone().spawn_retention();
        Ok(node)
    }

    /// Resolves with the cause when the node's driver has stopped on an error (a storage
    /// failure, a failed assertion): the process should exit, and replay at the next start
    /// makes the state exact.
    pub async fn failed(&self) -> String {
        let mut rx = self.shared.failed.subscribe();
        loop {
            if let Some(cause) = rx.borrow_and_update().clone() {
                return cause;
            }
            if rx.changed().await.is_err() {
                return "the raft driver is gone".into();
            }
        }
    }

    /// Waits until partitions `0..count` of `topic_id` exist on this node (their shards applied
    /// the creation), at most the proposal timeout.
    async fn wait_partitions(&self, topic_id: Uuid, count: i32) -> Result<(), Error> {
        self.wait_for_partitions(topic_id, count, true).await
    }

    /// Waits until no partition `0..count` of `topic_id` is left on this node.
    async fn wait_partitions_gone(&self, topic_id: Uuid, count: i32) -> Result<(), Error> {
        self.wait_for_partitions(topic_id, count, false).await
    }

    async fn wait_for_partitions(
        &self,
        topic_id: Uuid,
        count: i32,
        present: bool,
    ) -> Result<(), Error> {
        let mut rx = self.shared.partitions_changed.subscribe();
        // Only partitions of shards this node holds ever appear here; the others are created
        // by their own shards' leaders elsewhere.
        let meta = self.metadata();
        let held = |p: i32| {
            let shard = meta
                .topic_by_id(&topic_id)
                .and_then(|t| t.partitions.get(p as usize))
                .map(|pm| pm.shard);
            shard.is_none_or(|s| {
                self.shared
                    .shard(s)
                    .is_some_and(|st| st.local.load(std::sync::atomic::Ordering::Acquire))
            })
        };
        let all_there = || {
            (0..count).all(|p| {
                (present && !held(p))
                    || self
                        .shared
                        .partition(&TopicPartition::new(topic_id, p))
                        .is_some()
                        == present
            })
        };
        let wait = async {
            loop {
                if all_there() {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err(Error::ShuttingDown);
                }
            }
        };
        tokio::time::timeout(self.config.proposal_timeout, wait)
            .await
            .map_err(|_| Error::Timeout)?
    }

    /// The settings this node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The Kafka broker id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id as i32
    }

    /// A snapshot of the cluster metadata.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.shared.metadata.read().expect("metadata lock").clone()
    }

    /// The partition's handle, if it exists.
    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.shared.partition(tp)
    }

    /// The leader epoch of a shard's partitions.
    pub fn leader_epoch(&self, shard: u64) -> i32 {
        self.shared.shard(shard).map_or(-1, |s| s.leader_epoch())
    }

    /// The status of shard `shard` (leadership and term).
    pub fn shard_status(&self, shard: u64) -> Option<Arc<ShardStatus>> {
        self.shared.shard(shard)
    }

    /// The store (used by the group coordinator to read its records at start-up).
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn ask<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> DriverMsg,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(msg(tx))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        match tokio::time::timeout(self.config.proposal_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::ShuttingDown),
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn propose_meta(&self, cmd: MetaCommand) -> Result<MetaEffect, Error> {
        self.ask(|tx| DriverMsg::Meta { cmd, tx }).await
    }

    /// Creates a topic (or only checks that it could be created).
    pub async fn create_topic(&self, req: CreateTopic) -> Result<TopicMeta, Error> {
        let cmd = MetaCommand::CreateTopic {
            name: req.name.clone(),
            id: Uuid::new_v4(),
            partitions: req.partitions,
            replication_factor: req.replication_factor,
            configs: req.configs,
        };
        let meta = self.metadata();
        // The replication factor is checked against the cluster's nodes where the command is
        // applied; a copy gives the same answer without a round trip.
        meta.check(&cmd)?;
        if req.validate_only {
            // Apply to a copy: the same checks as the real thing, and the topic it would make.
            let mut m = (*meta).clone();
            m.apply(&cmd)?;
            return m
                .topics
                .remove(&req.name)
                .ok_or(Error::UnknownTopicOrPartition);
        }
        self.propose_meta(cmd).await?;
        let topic = self
            .metadata()
            .topic(&req.name)
            .cloned()
            .ok_or(Error::UnknownTopicOrPartition)?;
        self.wait_partitions(topic.id, topic.partitions.len() as i32)
            .await?;
        Ok(topic)
    }

    /// Deletes a topic and its data; answers once this node's shards have deleted its
    /// partitions.
    pub async fn delete_topic(&self, name: &str) -> Result<(), Error> {
        let effect = self
            .propose_meta(MetaCommand::DeleteTopic { name: name.into() })
            .await?;
        if let MetaEffect::TopicDeleted(topic) = effect {
            self.wait_partitions_gone(topic.id, topic.partitions.len() as i32)
                .await?;
        }
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), Error> {
        let cmd = MetaCommand::CreatePartitions {
            name: name.into(),
            total,
        };
        if validate_only {
            return self.metadata().check(&cmd);
        }
        self.propose_meta(cmd).await?;
        let id = self
            .metadata()
            .topic(name)
            .map(|t| t.id)
            .ok_or(Error::UnknownTopicOrPartition)?;
        self.wait_partitions(id, total).await
    }

    /// Changes topic configs: `Some` sets, `None` removes. With `replace`, every config not named
    /// is removed (the legacy AlterConfigs semantics).
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
        validate_only: bool,
    ) -> Result<(), Error> {
        let cmd = MetaCommand::AlterConfigs {
            name: name.into(),
            changes,
            replace,
        };
        if validate_only {
            return self.metadata().check(&cmd);
        }
        self.propose_meta(cmd).await.map(|_| ())
    }

    /// Allocates a block of `count` producer ids and returns the first.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, Error> {
        match self
            .propose_meta(MetaCommand::AllocateProducerIds { count })
            .await?
        {
            MetaEffect::ProducerIds(first) => Ok(first),
            other => Err(Error::Storage(format!(
                "unexpected producer id allocation result {other:?}"
            ))),
        }
    }

    /// The data shard that coordinates consumer group `group`: `1 + hash(group) mod n`, with
    /// `n` the data shards the cluster formed with ([`Node::group_shard_count`]). The hash is
    /// FNV-1a, fixed so that placement never changes between versions.
    pub fn coordinator_shard(&self, group: &str) -> u64 {
        crate::placement::group_shard(group.as_bytes(), self.group_shard_count())
    }

    /// The data shards consumer groups are placed on (`1..=n`): the cluster's count when it
    /// formed, which shards added later do not change.
    pub fn group_shard_count(&self) -> u64 {
        match self.metadata().group_shard_count() {
            0 => self.config.data_shards,
            n => n,
        }
    }

    /// Writes consumer-group records (keys must start with `jet_storage::keys::META_GROUP_PREFIX`)
    /// through `shard`'s Raft log; answers once they are applied, so they survive a crash.
    pub async fn group_write(
        &self,
        shard: u64,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), Error> {
        if shard == 0 || shard > self.group_shard_count() {
            return Err(Error::InvalidRequest(format!("no group shard {shard}")));
        }
        self.ask(|tx| DriverMsg::GroupWrite { shard, ops, tx })
            .await
    }

    /// A new producer id (epoch 0) for an idempotent producer. Ids come from blocks allocated
    /// through the metadata shard, so they are unique across restarts and nodes.
    pub async fn new_producer_id(&self) -> Result<i64, Error> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let first = self.allocate_producer_ids(PRODUCER_ID_BLOCK).await?;
            *block = (first, first + PRODUCER_ID_BLOCK);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// The idempotent producers `tp` remembers, by producer id.
    pub async fn producers(
        &self,
        tp: TopicPartition,
    ) -> Result<Vec<(i64, crate::producer::ProducerEntry)>, Error> {
        self.partition_here(&tp)?;
        let store = self.store.clone();
        let records = tokio::task::spawn_blocking(move || {
            store.scan_meta(&jet_storage::keys::producer_prefix(&tp))
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??;
        records
            .into_iter()
            .filter_map(|(k, v)| {
                let (_, pid) = jet_storage::keys::parse_producer_state(&k)?;
                Some(
                    crate::producer::ProducerEntry::decode(&v)
                        .map(|e| (pid, e))
                        .ok_or_else(|| {
                            Error::Storage(format!("producer state of {pid} is corrupt"))
                        }),
                )
            })
            .collect()
    }

    /// Appends validated record batches to a partition; answers once they are committed and
    /// applied. Offsets are assigned at apply.
    pub async fn append(&self, tp: TopicPartition, batches: Bytes) -> Result<AppendOutcome, Error> {
        self.append_start(tp, batches).await?.wait().await
    }

    /// The first half of [`Node::append`]: checks the batches and hands them to the partition's
    /// shard, waiting only for room in the driver's queue (backpressure). Appends started one
    /// after another are applied in that order, which is what lets a connection keep pipelined
    /// produce requests in order while their commits are awaited concurrently.
    pub async fn append_start(
        &self,
        tp: TopicPartition,
        batches: Bytes,
    ) -> Result<AppendTicket, Error> {
        let handle = self.partition_here(&tp)?;
        if !handle.is_leader() {
            return Err(Error::NotLeader);
        }
        let max = self.max_batch_bytes(&tp);
        for (_, h) in jet_protocol::batch::iter(&batches) {
            if h.total_len() > max {
                return Err(Error::MessageTooLarge {
                    size: h.total_len(),
                    max,
                });
            }
        }
        // One append larger than the whole budget still goes through, alone.
        let cost = batches.len().clamp(
            1,
            self.config
                .max_append_bytes_in_flight
                .clamp(1, u32::MAX as usize),
        );
        let budget = self
            .append_budget
            .clone()
            .acquire_many_owned(cost as u32)
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(DriverMsg::Append {
                shard: handle.shard(),
                item: AppendItem::new(tp, batches),
                tx: AppendReply { tx, budget },
            })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        Ok(AppendTicket {
            rx,
            timeout: self.config.proposal_timeout,
        })
    }

    /// The largest batch accepted for `tp` (`max.message.bytes`, else the node default).
    pub fn max_batch_bytes(&self, tp: &TopicPartition) -> usize {
        let meta = self.metadata();
        meta.topic_by_id(&tp.topic_id)
            .and_then(|t| t.configs.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.config.max_batch_bytes)
    }

    /// Reads batches from `offset` (the batch holding it first), up to `max_bytes`; `min_one`
    /// returns the first batch even when it alone is larger.
    pub async fn read(
        &self,
        tp: TopicPartition,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, Error> {
        let handle = self.partition_here(&tp)?;
        let high_watermark = handle.high_watermark();
        let log_start_offset = handle.log_start_offset();
        if offset < log_start_offset || offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
            });
        }
        let result = |records: Bytes, batch_count| ReadResult {
            records,
            batch_count,
            high_watermark,
            log_start_offset,
        };
        if offset == high_watermark || max_bytes == 0 && !min_one {
            return Ok(result(Bytes::new(), 0));
        }
        if let Some(batches) = handle.read_cached(offset, high_watermark, max_bytes, min_one) {
            let count = batches.len();
            let records = if count == 1 {
                batches.into_iter().next().unwrap_or_default()
            } else {
                let mut buf = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
                for b in &batches {
                    buf.extend_from_slice(b);
                }
                buf.freeze()
            };
            return Ok(result(records, count));
        }
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            store.read_batches(&tp, offset, high_watermark, max_bytes, min_one)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??;
        Ok(result(read.records, read.count))
    }

    /// The first batch (at or after the log start) whose max timestamp is at or after
    /// `timestamp`; the caller finds the exact record inside it. A binary search over the
    /// index's running maximum timestamp: one batch body is read.
    pub async fn find_batch_by_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<Bytes>, Error> {
        let handle = self.partition_here(&tp)?;
        let (from, to) = (handle.log_start_offset(), handle.high_watermark());
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || {
            match store.index_search(&tp, from, to, |e| e.cum_max_timestamp >= timestamp)? {
                Some(e) => store.read_batch(&e).map(Some),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??)
    }

    /// Moves the log start offset of `tp` to `offset` (DeleteRecords); `-1` means the high
    /// watermark. Returns the new log start offset.
    pub async fn delete_records(&self, tp: TopicPartition, offset: i64) -> Result<i64, Error> {
        let handle = self.partition_here(&tp)?;
        let hw = handle.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        if offset < 0 || offset > hw {
            return Err(Error::OffsetOutOfRange {
                log_start_offset: handle.log_start_offset(),
                high_watermark: hw,
            });
        }
        let shard = handle.shard();
        self.ask(|tx| DriverMsg::DeleteRecords {
            shard,
            tp,
            offset,
            tx,
        })
        .await
    }

    /// Transfers the leadership of every shard this node leads to a caught-up replica, waiting
    /// at most `within`. Called before a clean stop while the node still serves, so clients
    /// move to the new leaders on retriable errors. A cluster of one has nobody to hand to.
    pub async fn hand_off_leadership(&self, within: Duration) {
        if self.metadata().members.len() < 2 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let deadline = std::time::Instant::now() + within;
        if self
            .tx
            .send(DriverMsg::HandOff { deadline, tx })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(within + Duration::from_secs(1), rx).await;
        }
    }

    /// Stops the driver: pending proposals finish, the WAL is flushed.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(DriverMsg::Shutdown { tx }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.driver.lock().expect("driver lock").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        if let Err(e) = self.store.flush_wal() {
            tracing::warn!(error = %e, "flushing the write-ahead log at shutdown failed");
        }
        // RocksDB's background threads must be stopped before the process exits, or they race
        // the C++ static destructors.
        self.store.stop_background_work();
    }
}

impl Drop for Node {
    /// A node dropped without [`Node::shutdown`] (a test that ends, a panic) still stops its
    /// driver and waits for it, so RocksDB is closed before the process exits: RocksDB threads
    /// left running race the C++ static destructors at exit and can abort the process.
    fn drop(&mut self) {
        let handle = match self.driver.get_mut() {
            Ok(h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle {
            self.shared
                .stop
                .store(true, std::sync::atomic::Ordering::Release);
            let _ = h.join();
            self.store.stop_background_work();
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
