//! The multi-raft driver: one thread per node that runs every local shard.
//!
//! Each turn of the loop, in raft-rs's documented order:
//! 1. take every queued request from the channel; group the appends of each shard into as few
//!    Raft entries as fit `max_entry_bytes` (group commit across requests and partitions);
//! 2. tick every shard when a tick is due;
//! 3. collect the `Ready` of every shard that has one and persist all their entries and hard
//!    states in **one** RocksDB write batch (one fsync for every request in it);
//! 4. advance each shard and apply its committed entries into a second write batch (partition
//!    logs, partition states, cluster metadata, applied index), write it, then publish the new
//!    watermarks and answer the proposals by (term, index);
//! 5. drop applied entries from the Raft log.
//!
//! It is a dedicated OS thread, not a tokio task, because RocksDB writes with fsync block.
//! It waits for work on a small current-thread runtime of its own, so requests wake it at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use jet_protocol::batch::{self, BatchHeader};
use jet_storage::{Batch, PartitionState, ShardLog, Store, TopicPartition};
use raft::eraftpb::{ConfState, Entry, EntryType};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

use crate::command::{AppendItem, Command};
use crate::metadata::{ClusterMetadata, MetaCommand, MetaEffect};
use crate::node::{now_ms, AppendOutcome, NodeConfig, Shared};
use crate::partition::PartitionHandle;
use crate::producer::{self, BatchMeta, Check, ProducerEntry};
use crate::topic_config;
use crate::Error;

/// Shard 0 holds the cluster metadata.
pub const METADATA_SHARD: u64 = 0;

/// Most requests taken from the channel in one turn, so one turn stays bounded.
const MAX_MESSAGES_PER_TURN: usize = 16_384;

/// Where an append's result goes, with the append's share of the node's in-flight byte budget.
/// The share is returned when the result is sent (the append is applied or failed), not when the
/// requester reads the result: a connection waiting for budget cannot read results meanwhile.
pub(crate) struct AppendReply {
    pub tx: oneshot::Sender<Result<AppendOutcome, Error>>,
    pub budget: tokio::sync::OwnedSemaphorePermit,
}

impl AppendReply {
    fn send(self, r: Result<AppendOutcome, Error>) -> Result<(), Result<AppendOutcome, Error>> {
        let AppendReply { tx, budget } = self;
        drop(budget);
        tx.send(r)
    }
}

/// A request to the driver.
pub(crate) enum DriverMsg {
    /// Append batches to a partition of `shard`.
    Append {
        shard: u64,
        item: AppendItem,
        tx: AppendReply,
    },
    /// Move a partition's log start offset.
    DeleteRecords {
        shard: u64,
        tp: TopicPartition,
        offset: i64,
        tx: oneshot::Sender<Result<i64, Error>>,
    },
    /// Write consumer-group records through `shard`.
    GroupWrite {
        shard: u64,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        tx: oneshot::Sender<Result<(), Error>>,
    },
    /// Change the cluster metadata.
    Meta {
        cmd: MetaCommand,
        tx: oneshot::Sender<Result<MetaEffect, Error>>,
    },
    /// Finish what is queued, then stop.
    Shutdown { tx: oneshot::Sender<()> },
}

/// Who waits for an entry to be applied.
enum Waiters {
    Append(Vec<AppendReply>),
    DeleteRecords(oneshot::Sender<Result<i64, Error>>),
    Meta(oneshot::Sender<Result<MetaEffect, Error>>),
    GroupWrite(oneshot::Sender<Result<(), Error>>),
}

impl Waiters {
    fn fail(self, e: Error) {
        match self {
            Waiters::Append(txs) => txs.into_iter().for_each(|tx| {
                let _ = tx.send(Err(e.clone()));
            }),
            Waiters::DeleteRecords(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiters::Meta(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiters::GroupWrite(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// What applying one entry produced, for its waiters.
enum Applied {
    Append(Vec<Result<AppendOutcome, Error>>),
    DeleteRecords(Result<i64, Error>),
    Meta(Result<MetaEffect, Error>),
    GroupWrite(Result<(), Error>),
    Nothing,
}

struct Shard {
    id: u64,
    raw: RawNode<ShardLog>,
    applied: u64,
    /// Proposals waiting for their entry, by index; the term tells whether the entry that gets
    /// applied at that index is still theirs.
    pending: BTreeMap<u64, (u64, Waiters)>,
    /// Appends taken from the channel this turn, not yet proposed.
    queued: Vec<(AppendItem, AppendReply)>,
    /// Entry time of the last producer-expiry pass over this shard's partitions.
    last_producer_expiry_ms: i64,
}

struct Part {
    state: PartitionState,
    handle: PartitionHandle,
    /// Idempotent producers that wrote here, by producer id.
    producers: HashMap<i64, ProducerEntry>,
}

struct Driver {
    config: NodeConfig,
    store: Store,
    shared: Arc<Shared>,
    shards: Vec<Shard>,
    metadata: ClusterMetadata,
    parts: HashMap<TopicPartition, Part>,
}

/// Things to make visible to readers once the apply batch is written.
#[derive(Default)]
struct Publish {
    partitions: HashSet<TopicPartition>,
    created: Vec<TopicPartition>,
    deleted: Vec<TopicPartition>,
    metadata: bool,
    answers: Vec<(Waiters, Applied)>,
    /// Producer states changed (written) or expired (deleted) by this turn.
    producers: HashSet<(TopicPartition, i64)>,
    /// Batches stored by this turn, for the partitions' tail caches.
    stored: HashMap<TopicPartition, Vec<(i64, i64, Bytes)>>,
}

pub(crate) fn spawn(
    config: NodeConfig,
    store: Store,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<DriverMsg>,
    ready: oneshot::Sender<Result<(), Error>>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name("jet-raft".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(Error::Storage(format!("driver runtime: {e}"))));
                    return;
                }
            };
            match Driver::open(config, store, shared) {
                Ok(driver) => driver.run(&rt, rx, ready),
                Err(e) => {
                    tracing::error!(error = %e, "cannot open shards");
                    let _ = ready.send(Err(e));
                }
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start driver thread: {e}")))
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Driver {
    fn open(config: NodeConfig, store: Store, shared: Arc<Shared>) -> Result<Driver, Error> {
        let metadata: ClusterMetadata = match store.load_cluster_metadata()? {
            Some(doc) => serde_json::from_slice(&doc)
                .map_err(|e| Error::Storage(format!("cluster metadata: {e}")))?,
            None => ClusterMetadata::default(),
        };
        let used_shards = metadata
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| p.shard))
            .max()
            .unwrap_or(0);
        if used_shards > config.data_shards {
            return Err(Error::InvalidRequest(format!(
                "the data directory holds partitions on shard {used_shards}; start with --shards {used_shards} or more"
            )));
        }

        let mut boot = store.batch();
        let mut shards = Vec::new();
        for id in 0..=config.data_shards {
            let (log, applied) = match store.load_shard(id)? {
                Some(found) => found,
                None => {
                    let cs = ConfState {
                        voters: vec![config.node_id],
                        ..Default::default()
                    };
                    boot.put_conf_state(id, &cs)?;
                    (ShardLog::bootstrap(cs), 0)
                }
            };
            let raft_config = raft::Config {
                id: config.node_id,
                election_tick: 10,
                heartbeat_tick: 3,
                applied,
                max_size_per_msg: 1 << 20,
                max_inflight_msgs: 256,
                pre_vote: true,
                ..Default::default()
            };
            let mut raw = RawNode::new(&raft_config, log, &raft_logger())
                .map_err(|e| Error::Storage(format!("shard {id}: {e}")))?;
            let voters = &raw.store().conf_state().voters;
            if voters.len() == 1 && voters[0] == config.node_id {
                // The only voter need not wait an election timeout to lead.
                raw.campaign()
                    .map_err(|e| Error::Storage(format!("shard {id}: {e}")))?;
            }
            shards.push(Shard {
                id,
                raw,
                applied,
                pending: BTreeMap::new(),
                queued: Vec::new(),
                last_producer_expiry_ms: 0,
            });
        }
        if !boot.is_empty() {
            store.write(boot, true)?;
        }

        let mut states: HashMap<TopicPartition, PartitionState> =
            store.load_partition_states()?.into_iter().collect();
        let mut parts = HashMap::new();
        for topic in metadata.topics.values() {
            for (p, pm) in topic.partitions.iter().enumerate() {
                let tp = TopicPartition::new(topic.id, p as i32);
                let state = states.remove(&tp).unwrap_or_else(PartitionState::empty);
                let handle = PartitionHandle::new(
                    tp,
                    shared.shards[pm.shard as usize].clone(),
                    &state,
                    shared.tail_budget.clone(),
                );
                parts.insert(
                    tp,
                    Part {
                        state,
                        handle,
                        producers: HashMap::new(),
                    },
                );
            }
        }
        for (tp, pid, bytes) in store.load_producer_states()? {
            let entry = ProducerEntry::decode(&bytes)
                .ok_or_else(|| Error::Storage(format!("producer state of {pid} is corrupt")))?;
            if let Some(part) = parts.get_mut(&tp) {
                part.producers.insert(pid, entry);
            }
        }
        {
            let mut map = shared.partitions.write().expect("partitions lock");
            for (tp, part) in &parts {
                map.insert(*tp, part.handle.clone());
            }
        }
        *shared.metadata.write().expect("metadata lock") = Arc::new(metadata.clone());
        tracing::info!(
            shards = shards.len(),
            topics = metadata.topics.len(),
            partitions = parts.len(),
            "shards restored"
        );
        Ok(Driver {
            config,
            store,
            shared,
            shards,
            metadata,
            parts,
        })
    }

    fn run(
        mut self,
        rt: &tokio::runtime::Runtime,
        mut rx: mpsc::Receiver<DriverMsg>,
        ready: oneshot::Sender<Result<(), Error>>,
    ) {
        let mut ready = Some(ready);
        let mut next_tick = Instant::now() + self.config.tick;
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut msgs = Vec::new();
        loop {
            // 1. Wait for work or the next tick, then take everything queued.
            if shutdown.is_none() && self.shared.stop.load(Ordering::Acquire) {
                // The Node was dropped: stop as if asked to, with nobody to tell.
                shutdown = Some(oneshot::channel().0);
                rx.close();
            }
            if shutdown.is_none() {
                let deadline = tokio::time::Instant::from_std(next_tick);
                let has_work = self.shards.iter().any(|s| s.raw.has_ready());
                rt.block_on(async {
                    if has_work {
                        return;
                    }
                    tokio::select! {
                        m = rx.recv() => { if let Some(m) = m { msgs.push(m) } else { msgs.push(DriverMsg::Shutdown { tx: oneshot::channel().0 }) } }
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                });
                while msgs.len() < MAX_MESSAGES_PER_TURN {
                    match rx.try_recv() {
                        Ok(m) => msgs.push(m),
                        Err(_) => break,
                    }
                }
            }
            for m in msgs.drain(..) {
                match m {
                    DriverMsg::Shutdown { tx } => {
                        shutdown = Some(tx);
                        rx.close();
                    }
                    other => self.take(other),
                }
            }
            if shutdown.is_some() {
                // Finish what was accepted before the channel closed.
                while let Ok(m) = rx.try_recv() {
                    if !matches!(m, DriverMsg::Shutdown { .. }) {
                        self.take(m);
                    }
                }
            }
            self.propose_queued();

            // 2. Tick.
            if Instant::now() >= next_tick {
                for s in &mut self.shards {
                    s.raw.tick();
                }
                next_tick = Instant::now() + self.config.tick;
            }

            // 3-5. Persist, apply, answer.
            if let Err(e) = self.handle_ready() {
                // A failed RocksDB write leaves memory ahead of disk: stop serving rather than
                // acknowledge data that may not be there. The process must restart to recover.
                tracing::error!(error = %e, "storage failure in the raft driver; stopping shards");
                self.fail_all(Error::Storage(e.to_string()));
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                }
                self.publish_leadership(false);
                return;
            }
            self.publish_leadership(true);
            if ready.is_some()
                && self
                    .shards
                    .iter()
                    .all(|s| s.raw.raft.state == StateRole::Leader)
            {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            if let Some(tx) = shutdown.take() {
                let idle = self
                    .shards
                    .iter()
                    .all(|s| !s.raw.has_ready() && s.queued.is_empty());
                if idle {
                    self.fail_all(Error::ShuttingDown);
                    self.publish_leadership(false);
                    let _ = tx.send(());
                    tracing::info!("raft driver stopped");
                    return;
                }
                shutdown = Some(tx);
            }
        }
    }

    fn publish_leadership(&self, alive: bool) {
        for s in &self.shards {
            let status = &self.shared.shards[s.id as usize];
            status.term.store(s.raw.raft.term, Ordering::Release);
            status.is_leader.store(
                alive && s.raw.raft.state == StateRole::Leader,
                Ordering::Release,
            );
        }
    }

    fn fail_all(&mut self, e: Error) {
        for s in &mut self.shards {
            for (_, (_, w)) in std::mem::take(&mut s.pending) {
                w.fail(e.clone());
            }
            for (_, tx) in s.queued.drain(..) {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }

    /// Queues an append, or proposes a one-off command at once.
    fn take(&mut self, m: DriverMsg) {
        match m {
            DriverMsg::Append { shard, item, tx } => match self.shards.get_mut(shard as usize) {
                Some(s) if shard != METADATA_SHARD => s.queued.push((item, tx)),
                _ => {
                    let _ = tx.send(Err(Error::UnknownTopicOrPartition));
                }
            },
            DriverMsg::DeleteRecords {
                shard,
                tp,
                offset,
                tx,
            } => {
                let data = Command::DeleteRecords { tp, offset }.encode();
                self.propose(shard, data, Waiters::DeleteRecords(tx));
            }
            DriverMsg::GroupWrite { shard, ops, tx } => {
                let data = Command::GroupWrite { ops }.encode();
                self.propose(shard, data, Waiters::GroupWrite(tx));
            }
            DriverMsg::Meta { cmd, tx } => {
                let data = Command::Meta(cmd).encode();
                self.propose(METADATA_SHARD, data, Waiters::Meta(tx));
            }
            DriverMsg::Shutdown { .. } => {}
        }
    }

    fn propose(&mut self, shard: u64, data: Vec<u8>, waiters: Waiters) {
        let Some(s) = self.shards.get_mut(shard as usize) else {
            waiters.fail(Error::UnknownTopicOrPartition);
            return;
        };
        if s.raw.raft.state != StateRole::Leader {
            waiters.fail(Error::NotLeader);
            return;
        }
        match s.raw.propose(Vec::new(), data) {
            Ok(()) => {
                let index = s.raw.raft.raft_log.last_index();
                let term = s.raw.raft.term;
                s.pending.insert(index, (term, waiters));
            }
            Err(e) => {
                tracing::debug!(shard, error = %e, "proposal dropped");
                waiters.fail(Error::NotLeader);
            }
        }
    }

    /// Turns each shard's queued appends into as few entries as fit `max_entry_bytes`.
    fn propose_queued(&mut self) {
        let now = now_ms();
        let max = self.config.max_entry_bytes;
        for i in 0..self.shards.len() {
            let queued = std::mem::take(&mut self.shards[i].queued);
            let mut items = Vec::new();
            let mut txs = Vec::new();
            let mut size = 0;
            for (item, tx) in queued {
                if !items.is_empty() && size + item.batches.len() > max {
                    let cmd = Command::Append {
                        timestamp_ms: now,
                        items: std::mem::take(&mut items),
                    };
                    self.propose(
                        i as u64,
                        cmd.encode(),
                        Waiters::Append(std::mem::take(&mut txs)),
                    );
                    size = 0;
                }
                size += item.batches.len();
                items.push(item);
                txs.push(tx);
            }
            if !items.is_empty() {
                let cmd = Command::Append {
                    timestamp_ms: now,
                    items,
                };
                self.propose(i as u64, cmd.encode(), Waiters::Append(txs));
            }
        }
    }

    fn handle_ready(&mut self) -> Result<(), Error> {
        // 3. Persist every shard's new entries and hard state in one write.
        let mut persist = self.store.batch();
        let mut readies = Vec::new();
        for (i, s) in self.shards.iter_mut().enumerate() {
            if !s.raw.has_ready() {
                continue;
            }
            let mut rd = s.raw.ready();
            // Single-voter shards have no peers; messages to peers would go here.
            debug_assert!(rd.messages().is_empty());
            let committed = rd.take_committed_entries();
            if !rd.entries().is_empty() {
                for e in rd.entries() {
                    persist.put_raft_entry(s.id, e)?;
                }
                s.raw.mut_store().append(rd.entries());
            }
            if let Some(hs) = rd.hs() {
                persist.put_hard_state(s.id, hs)?;
                s.raw.mut_store().set_hard_state(hs.clone());
            }
            readies.push((i, rd, committed));
        }
        if readies.is_empty() {
            return Ok(());
        }
        if !persist.is_empty() {
            self.store.write(persist, self.config.fsync)?;
        }

        // 4. Advance and apply.
        let mut apply = self.store.batch();
        let mut publish = Publish::default();
        for (i, rd, committed) in readies {
            let mut light = self.shards[i].raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                self.shards[i].raw.mut_store().set_commit(commit);
            }
            let mut entries = committed;
            entries.extend(light.take_committed_entries());
            if entries.is_empty() {
                continue;
            }
            for e in &entries {
                self.apply_entry(i, e, &mut apply, &mut publish);
            }
            let s = &mut self.shards[i];
            let last = entries.last().map_or(s.applied, |e| e.index);
            s.applied = last;
            apply.put_applied(s.id, last);
            // The commit index must be durable with the applied index: raft-rs refuses to
            // start with applied > commit.
            apply.put_hard_state(s.id, s.raw.store().hard_state())?;
            s.raw.advance_apply_to(last);
            // 5. Applied entries are no longer needed: there are no followers to catch up.
            let (from, _) = s.raw.store().truncated();
            if s.raw.mut_store().compact(last) {
                let (to, term) = s.raw.store().truncated();
                apply.truncate_raft_log(s.id, from + 1, to, term);
            }
        }
        for tp in &publish.partitions {
            if let Some(p) = self.parts.get(tp) {
                apply.put_partition_state(tp, &p.state);
            }
        }
        publish
            .stored
            .retain(|tp, _| publish.partitions.contains(tp));
        for (tp, pid) in &publish.producers {
            let key = jet_storage::keys::producer_state(tp, *pid);
            match self.parts.get(tp).and_then(|p| p.producers.get(pid)) {
                Some(entry) => apply.put_meta(&key, &entry.encode()),
                None => apply.delete_meta(&key),
            }
        }
        if publish.metadata {
            let doc = serde_json::to_vec(&self.metadata)
                .map_err(|e| Error::Storage(format!("metadata encode: {e}")))?;
            apply.put_cluster_metadata(&doc);
        }
        // The Raft log holding these entries is durable already, and its entries are deleted
        // only by this same unlogged write: after a crash either both survive (flushed together)
        // or neither, and the entries are applied again. So this write skips the WAL.
        self.store.write_unlogged(apply)?;
        self.publish(publish);
        Ok(())
    }

    /// Makes applied state visible and answers waiters, after the apply batch is written.
    fn publish(&mut self, p: Publish) {
        if p.metadata {
            *self.shared.metadata.write().expect("metadata lock") = Arc::new(self.metadata.clone());
        }
        {
            let mut map = self.shared.partitions.write().expect("partitions lock");
            for tp in &p.deleted {
                map.remove(tp);
            }
            for tp in &p.created {
                if let Some(part) = self.parts.get(tp) {
                    map.insert(*tp, part.handle.clone());
                }
            }
        }
        let mut stored = p.stored;
        for tp in &p.partitions {
            if let Some(part) = self.parts.get(tp) {
                // Cache first, then advance the high watermark: a reader that sees the new
                // watermark finds the batches in the cache or the store.
                let batches = stored.remove(tp).unwrap_or_default();
                part.handle.cache(batches, part.state.log_start_offset);
                part.handle.publish(&part.state);
            }
        }
        for (w, applied) in p.answers {
            match (w, applied) {
                (Waiters::Append(txs), Applied::Append(results)) => {
                    for (tx, r) in txs.into_iter().zip(results) {
                        let _ = tx.send(r);
                    }
                }
                (Waiters::DeleteRecords(tx), Applied::DeleteRecords(r)) => {
                    let _ = tx.send(r);
                }
                (Waiters::Meta(tx), Applied::Meta(r)) => {
                    let _ = tx.send(r);
                }
                (Waiters::GroupWrite(tx), Applied::GroupWrite(r)) => {
                    let _ = tx.send(r);
                }
                (w, _) => w.fail(Error::NotLeader),
            }
        }
    }

    fn apply_entry(&mut self, shard: usize, e: &Entry, wb: &mut Batch, publish: &mut Publish) {
        let applied = match e.get_entry_type() {
            EntryType::EntryNormal if e.data.is_empty() => Applied::Nothing,
            EntryType::EntryNormal => match Command::decode(e.data.clone()) {
                Ok(cmd) => self.apply_command(shard, e.term, cmd, wb, publish),
                Err(err) => {
                    // Only this node's own code writes entries; an undecodable one is a bug or
                    // corruption. Fail its waiters, keep the shard going.
                    tracing::error!(shard, index = e.index, error = %err, "skipping undecodable entry");
                    Applied::Nothing
                }
            },
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                // Membership changes arrive with replication; single-voter shards never propose
                // them.
                tracing::warn!(
                    shard,
                    index = e.index,
                    "ignoring configuration change entry"
                );
                Applied::Nothing
            }
        };
        let s = &mut self.shards[shard];
        // Waiters of earlier indexes whose entries were replaced by another leader's.
        while let Some((&idx, _)) = s.pending.first_key_value() {
            if idx >= e.index {
                break;
            }
            if let Some((_, (_, w))) = s.pending.pop_first() {
                w.fail(Error::NotLeader);
            }
        }
        if let Some((term, w)) = s.pending.remove(&e.index) {
            if term == e.term {
                publish.answers.push((w, applied));
            } else {
                w.fail(Error::NotLeader);
            }
        }
    }

    fn apply_command(
        &mut self,
        shard: usize,
        term: u64,
        cmd: Command,
        wb: &mut Batch,
        publish: &mut Publish,
    ) -> Applied {
        match cmd {
            Command::Append {
                timestamp_ms,
                items,
            } => {
                self.expire_producers(shard, timestamp_ms, publish);
                Applied::Append(
                    items
                        .into_iter()
                        .map(|item| self.apply_append(term, timestamp_ms, item, wb, publish))
                        .collect(),
                )
            }
            Command::DeleteRecords { tp, offset } => {
                Applied::DeleteRecords(self.apply_delete_records(tp, offset, wb, publish))
            }
            Command::Meta(cmd) if shard as u64 == METADATA_SHARD => {
                Applied::Meta(self.apply_meta(cmd, wb, publish))
            }
            Command::Meta(_) => Applied::Meta(Err(Error::InvalidRequest(
                "metadata command on a data shard".into(),
            ))),
            Command::GroupWrite { ops } => {
                for (k, v) in &ops {
                    // Group records live under their own prefix so they can never overwrite
                    // partition state or cluster metadata.
                    if k.first() != Some(&jet_storage::keys::META_GROUP_PREFIX) {
                        return Applied::GroupWrite(Err(Error::InvalidRequest(
                            "group record key without the group prefix".into(),
                        )));
                    }
                    match v {
                        Some(v) => wb.put_meta(k, v),
                        None => wb.delete_meta(k),
                    }
                }
                Applied::GroupWrite(Ok(()))
            }
        }
    }

    fn apply_append(
        &mut self,
        term: u64,
        timestamp_ms: i64,
        item: AppendItem,
        wb: &mut Batch,
        publish: &mut Publish,
    ) -> Result<AppendOutcome, Error> {
        let tp = item.tp;
        let log_append_time = self
            .metadata
            .topic_by_id(&tp.topic_id)
            .and_then(|t| topic_config::effective(&t.configs, "message.timestamp.type"))
            == Some("LogAppendTime");
        let part = self
            .parts
            .get_mut(&tp)
            .ok_or(Error::UnknownTopicOrPartition)?;
        let headers: Vec<(usize, BatchHeader)> = batch::iter(&item.batches).collect();

        // Idempotence first, so that a partition's append is all or nothing: check every batch
        // against the producer state as the batches before it would leave it.
        let mut changed: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut next = part.state.next_offset;
        for (_, h) in &headers {
            let last = next + h.last_offset_delta as i64;
            if h.has_producer_id() {
                if h.is_transactional() {
                    return Err(Error::InvalidTxnState);
                }
                let pid = h.producer_id;
                let known = changed.get(&pid).or_else(|| part.producers.get(&pid));
                match producer::check(known, h.producer_epoch, h.base_sequence, h.last_sequence())?
                {
                    Check::Duplicate { base_offset } => {
                        return Ok(AppendOutcome {
                            base_offset,
                            log_append_time_ms: -1,
                            log_start_offset: part.state.log_start_offset,
                        });
                    }
                    Check::Append => {}
                }
                let mut entry = known
                    .cloned()
                    .unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
                entry.record(
                    h.producer_epoch,
                    BatchMeta {
                        first_seq: h.base_sequence,
                        last_seq: h.last_sequence(),
                        base_offset: next,
                        last_offset: last,
                    },
                    timestamp_ms,
                );
                changed.insert(pid, entry);
            }
            next = last + 1;
        }

        let st = &mut part.state;
        let base_offset = st.next_offset;
        let epoch = term.min(i32::MAX as u64) as i32;
        for (start, h) in &headers {
            let Some(bytes) = item.batches.get(*start..start + h.total_len()) else {
                break;
            };
            let mut stored = bytes.to_vec();
            batch::patch_offset_and_epoch(&mut stored, st.next_offset, epoch);
            let max_ts = if log_append_time {
                batch::patch_log_append_time(&mut stored, timestamp_ms);
                timestamp_ms
            } else {
                h.max_timestamp
            };
            wb.put_record_batch(&tp, st.next_offset, &stored);
            let last = st.next_offset + h.last_offset_delta as i64;
            publish
                .stored
                .entry(tp)
                .or_default()
                .push((st.next_offset, last, Bytes::from(stored)));
            if max_ts > st.max_timestamp {
                st.max_timestamp = max_ts;
                st.max_timestamp_batch = st.next_offset;
            }
            let next = last + 1;
            assert!(next > st.next_offset, "offsets must strictly increase");
            st.next_offset = next;
            st.size_bytes += bytes.len() as u64;
        }
        let log_start_offset = st.log_start_offset;
        for (pid, entry) in changed {
            part.producers.insert(pid, entry);
            publish.producers.insert((tp, pid));
        }
        publish.partitions.insert(tp);
        Ok(AppendOutcome {
            base_offset,
            log_append_time_ms: if log_append_time { timestamp_ms } else { -1 },
            log_start_offset,
        })
    }

    /// Forgets producers of `shard`'s partitions that have not written for
    /// `producer_id_expiration_ms`, judged by entry time so that every replica forgets the same.
    fn expire_producers(&mut self, shard: usize, now_ms: i64, publish: &mut Publish) {
        let expiration = self.config.producer_id_expiration_ms;
        let s = &mut self.shards[shard];
        if now_ms - s.last_producer_expiry_ms < expiration.min(60_000) {
            return;
        }
        s.last_producer_expiry_ms = now_ms;
        let shard_id = s.id;
        for (tp, part) in self.parts.iter_mut() {
            if part.handle.shard() != shard_id {
                continue;
            }
            part.producers.retain(|pid, e| {
                let keep = now_ms - e.last_timestamp_ms < expiration;
                if !keep {
                    publish.producers.insert((*tp, *pid));
                }
                keep
            });
        }
    }

    fn apply_delete_records(
        &mut self,
        tp: TopicPartition,
        offset: i64,
        wb: &mut Batch,
        publish: &mut Publish,
    ) -> Result<i64, Error> {
        let part = self
            .parts
            .get_mut(&tp)
            .ok_or(Error::UnknownTopicOrPartition)?;
        let st = &mut part.state;
        if offset > st.next_offset {
            return Err(Error::OffsetOutOfRange {
                log_start_offset: st.log_start_offset,
                high_watermark: st.next_offset,
            });
        }
        if offset <= st.log_start_offset {
            return Ok(st.log_start_offset);
        }
        // Keep the batch that holds `offset`; delete every batch before it.
        let keep_from = self
            .store
            .batch_base_at_or_after(&tp, offset, st.next_offset)?
            .unwrap_or(st.next_offset);
        let removed = self.store.bytes_below(&tp, 0, keep_from)?;
        wb.delete_batches_below(&tp, keep_from);
        st.size_bytes = st.size_bytes.saturating_sub(removed);
        st.log_start_offset = offset;
        publish.partitions.insert(tp);
        Ok(offset)
    }

    fn apply_meta(
        &mut self,
        cmd: MetaCommand,
        wb: &mut Batch,
        publish: &mut Publish,
    ) -> Result<MetaEffect, Error> {
        let effect = self.metadata.apply(&cmd, self.config.data_shards)?;
        publish.metadata = true;
        match &effect {
            MetaEffect::PartitionsCreated(id, placed) => {
                for &(p, shard) in placed {
                    let tp = TopicPartition::new(*id, p);
                    let state = PartitionState::empty();
                    let Some(status) = self.shared.shards.get(shard as usize) else {
                        continue;
                    };
                    let handle = PartitionHandle::new(
                        tp,
                        status.clone(),
                        &state,
                        self.shared.tail_budget.clone(),
                    );
                    self.parts.insert(
                        tp,
                        Part {
                            state,
                            handle,
                            producers: HashMap::new(),
                        },
                    );
                    publish.partitions.insert(tp);
                    publish.created.push(tp);
                }
            }
            MetaEffect::TopicDeleted(topic) => {
                for p in 0..topic.partitions.len() as i32 {
                    let tp = TopicPartition::new(topic.id, p);
                    self.parts.remove(&tp);
                    publish.partitions.remove(&tp);
                    publish.producers.retain(|(t, _)| *t != tp);
                    wb.delete_partition(&tp);
                    publish.deleted.push(tp);
                }
            }
            MetaEffect::None | MetaEffect::ProducerIds(_) => {}
        }
        Ok(effect)
    }
}
