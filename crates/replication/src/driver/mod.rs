//! The multi-raft driver: one thread per node that runs every local shard.
//!
//! Each turn of the loop, in raft-rs's documented order:
//! 1. take every queued request from the channel; group the appends of each shard into as few
//!    Raft entries as fit `max_entry_bytes` (group commit across requests and partitions);
//! 2. tick every shard when a tick is due, and propose what the leader decides on its own
//!    (partitions to create or delete to match the metadata, producer expiry);
//! 3. collect the `Ready` of every shard that has one and persist all their entries and hard
//!    states in **one** RocksDB write batch (one fsync for every request in it);
//! 4. advance each shard and apply its committed entries ([`apply`]) into a second write batch,
//!    write it, then publish the new watermarks and answer the proposals by (term, index);
//! 5. delete Raft entries that no partition refers to any more.
//!
//! Module map: [`apply`] (the state machine, a pure function of the log), [`restore`] (start-up
//! from RocksDB), this file (the loop and proposals).
//!
//! It is a dedicated OS thread, not a tokio task, because RocksDB writes with fsync block.
//! It waits for work on a small current-thread runtime of its own, so requests wake it at once.
//! If it fails (a storage error, a failed assertion), it reports the cause through
//! `Shared::failed` and stops: the process exits, and replay on restart makes the state exact.

pub(crate) mod apply;
#[cfg(test)]
mod apply_tests;
mod restore;
mod telemetry;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use jet_storage::{ShardLog, Store, TopicPartition};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

use crate::command::{AppendItem, Command};
use crate::metadata::{MetaCommand, MetaEffect};
use crate::node::{now_ms, AppendOutcome, NodeConfig, Shared};
use crate::topic_config;
use crate::Error;
use apply::{Applied, Machine, Turn};

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
    /// Propose a command the node computed (a compaction) to `shard`.
    Propose {
        shard: u64,
        cmd: Command,
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
    /// Told when the entry is applied, whatever it did.
    Applied(oneshot::Sender<Result<(), Error>>),
    /// The driver's own proposal to create or delete these partitions.
    Reconcile(Vec<TopicPartition>),
    /// A proposal nobody waits for (initialisation, producer expiry).
    Nobody,
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
            Waiters::GroupWrite(tx) | Waiters::Applied(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiters::Reconcile(_) | Waiters::Nobody => {}
        }
    }
}

struct Shard {
    id: u64,
    raw: RawNode<ShardLog>,
    applied: u64,
    /// Proposals waiting for their entry, by index; the term tells whether the entry that gets
    /// applied at that index is still theirs, the instant how long it took.
    pending: BTreeMap<u64, (u64, Waiters, Instant)>,
    /// Appends taken from the channel this turn, not yet proposed.
    queued: Vec<(AppendItem, AppendReply)>,
}

struct Driver {
    config: NodeConfig,
    store: Store,
    shared: Arc<Shared>,
    shards: Vec<Shard>,
    machine: Machine,
    /// Partitions with a create or delete proposed and not yet applied.
    reconciling: HashSet<TopicPartition>,
    /// Set when the metadata or leadership changed: partitions may need creating or deleting.
    reconcile_due: bool,
    /// When the leader next proposes producer expiry.
    next_producer_expiry: Instant,
    /// When the storage and follower metrics are next read.
    next_metrics: Instant,
    /// Whether leadership gauges were set once for every shard.
    leadership_reported: bool,
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
            let failed = shared.clone();
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let e = Error::Storage(format!("driver runtime: {e}"));
                        let _ = ready.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                match Driver::open(config, store, shared) {
                    Ok(driver) => driver.run(&rt, rx, ready),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open shards");
                        let _ = ready.send(Err(e.clone()));
                        Err(e)
                    }
                }
            }));
            let cause = match run {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    format!("raft driver panicked: {what}")
                }
            };
            failed.fail(cause);
        })
        .map_err(|e| Error::Storage(format!("cannot start driver thread: {e}")))
}

impl Driver {
    fn run(
        mut self,
        rt: &tokio::runtime::Runtime,
        mut rx: mpsc::Receiver<DriverMsg>,
        ready: oneshot::Sender<Result<(), Error>>,
    ) -> Result<(), Error> {
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
                        m = rx.recv() => msgs.push(m.unwrap_or(DriverMsg::Shutdown { tx: oneshot::channel().0 })),
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

            // 2. Tick, and the leader's own proposals.
            if Instant::now() >= next_tick {
                for s in &mut self.shards {
                    s.raw.tick();
                }
                next_tick = Instant::now() + self.config.tick;
                self.truncate_raft_logs()?;
                self.expire_producers();
                self.report_metrics();
            }
            if self.reconcile_due {
                self.reconcile();
            }

            // 3-5. Persist, apply, answer.
            if let Err(e) = self.handle_ready() {
                // A failed RocksDB write leaves memory ahead of disk: stop serving rather than
                // acknowledge data that may not be there. The process exits; replay at the next
                // start makes the state exact.
                tracing::error!(error = %e, "storage failure in the raft driver; stopping");
                self.fail_all(Error::Storage(e.to_string()));
                self.publish_leadership(false);
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e.clone()));
                }
                return Err(e);
            }
            self.publish_leadership(true);
            if ready.is_some()
                && self.machine.metadata.data_shards > 0
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
                    return Ok(());
                }
                shutdown = Some(tx);
            }
        }
    }

    fn publish_leadership(&mut self, alive: bool) {
        let first = !self.leadership_reported;
        self.leadership_reported = true;
        for s in &self.shards {
            let status = &self.shared.shards[s.id as usize];
            let leader = alive && s.raw.raft.state == StateRole::Leader;
            status.term.store(s.raw.raft.term, Ordering::Release);
            let was = status.is_leader.swap(leader, Ordering::AcqRel);
            if leader && !was {
                // A new leader checks that its shard holds exactly the metadata's partitions.
                self.reconcile_due = true;
            }
            if first || leader != was {
                telemetry::leadership(s.id, leader, leader != was);
            }
        }
    }

    /// Storage counters and followers' lag, every few seconds.
    fn report_metrics(&mut self) {
        if Instant::now() < self.next_metrics {
            return;
        }
        self.next_metrics = Instant::now() + std::time::Duration::from_secs(5);
        telemetry::storage(&self.store, &self.config.data_dir);
        for s in &self.shards {
            if s.raw.raft.state != StateRole::Leader {
                continue;
            }
            let last = s.raw.raft.raft_log.last_index();
            for (id, pr) in s.raw.raft.prs().iter() {
                if *id != self.config.node_id {
                    telemetry::follower_lag(s.id, *id, last.saturating_sub(pr.matched));
                }
            }
        }
    }

    fn fail_all(&mut self, e: Error) {
        for s in &mut self.shards {
            for (_, (_, w, _)) in std::mem::take(&mut s.pending) {
                w.fail(e.clone());
            }
            for (_, tx) in s.queued.drain(..) {
                let _ = tx.send(Err(e.clone()));
            }
        }
        self.reconciling.clear();
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
            DriverMsg::Propose { shard, cmd, tx } => {
                self.propose(shard, cmd.encode(), Waiters::Applied(tx));
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
            self.reject(waiters, Error::NotLeader);
            return;
        }
        match s.raw.propose(Vec::new(), data) {
            Ok(()) => {
                let index = s.raw.raft.raft_log.last_index();
                let term = s.raw.raft.term;
                s.pending.insert(index, (term, waiters, Instant::now()));
                telemetry::proposed(shard);
            }
            Err(e) => {
                tracing::debug!(shard, error = %e, "proposal dropped");
                self.reject(waiters, Error::NotLeader);
            }
        }
    }

    /// Fails a proposal's waiters; a failed reconcile proposal is retried later.
    fn reject(&mut self, waiters: Waiters, e: Error) {
        if let Waiters::Reconcile(tps) = &waiters {
            for tp in tps {
                self.reconciling.remove(tp);
            }
            self.reconcile_due = true;
        }
        waiters.fail(e);
    }

    /// Turns each shard's queued appends into as few entries as fit `max_entry_bytes`. The
    /// proposer's clock is the LogAppendTime of every batch of such topics in the entry.
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
                    let data = self.encode_append(now, &std::mem::take(&mut items));
                    self.propose(i as u64, data, Waiters::Append(std::mem::take(&mut txs)));
                    size = 0;
                }
                size += item.batches.len();
                items.push(item);
                txs.push(tx);
            }
            if !items.is_empty() {
                let data = self.encode_append(now, &items);
                self.propose(i as u64, data, Waiters::Append(txs));
            }
        }
    }

    fn encode_append(&self, now: i64, items: &[AppendItem]) -> Vec<u8> {
        let meta = &self.machine.metadata;
        Command::encode_append(now, items, |tp| {
            meta.topic_by_id(&tp.topic_id)
                .and_then(|t| topic_config::effective(&t.configs, "message.timestamp.type"))
                == Some("LogAppendTime")
        })
    }

    /// Proposes, on every data shard this node leads, the creation of partitions the metadata
    /// places there and the deletion of partitions it no longer has.
    fn reconcile(&mut self) {
        self.reconcile_due = false;
        let mut create: BTreeMap<u64, Vec<TopicPartition>> = BTreeMap::new();
        let mut delete: BTreeMap<u64, Vec<TopicPartition>> = BTreeMap::new();
        let mut wanted = HashSet::new();
        for topic in self.machine.metadata.topics.values() {
            for (p, pm) in topic.partitions.iter().enumerate() {
                let tp = TopicPartition::new(topic.id, p as i32);
                wanted.insert(tp);
                if !self.machine.parts.contains_key(&tp) && !self.reconciling.contains(&tp) {
                    create.entry(pm.shard).or_default().push(tp);
                }
            }
        }
        for (tp, part) in &self.machine.parts {
            if !wanted.contains(tp) && !self.reconciling.contains(tp) {
                delete.entry(part.state.shard).or_default().push(*tp);
            }
        }
        for (shard, tps, cmd) in create
            .into_iter()
            .map(|(s, tps)| (s, tps.clone(), Command::CreatePartitions { tps }))
            .chain(
                delete
                    .into_iter()
                    .map(|(s, tps)| (s, tps.clone(), Command::DeletePartitions { tps })),
            )
        {
            let leads = self
                .shards
                .get(shard as usize)
                .is_some_and(|s| s.raw.raft.state == StateRole::Leader);
            if shard == METADATA_SHARD || !leads {
                continue;
            }
            self.reconciling.extend(tps.iter().copied());
            self.propose(shard, cmd.encode(), Waiters::Reconcile(tps));
        }
        if self.machine.metadata.data_shards == 0
            && self.shards[METADATA_SHARD as usize].raw.raft.state == StateRole::Leader
        {
            let init = MetaCommand::Init {
                data_shards: self.config.data_shards,
                members: self.config.members.clone(),
                replication_factor: self.config.replication_factor,
            };
            self.propose(
                METADATA_SHARD,
                Command::Meta(init).encode(),
                Waiters::Nobody,
            );
        }
    }

    /// Proposes producer expiry on the data shards this node leads, at most once a minute.
    fn expire_producers(&mut self) {
        if Instant::now() < self.next_producer_expiry {
            return;
        }
        let expiration_ms = self.config.producer_id_expiration_ms;
        let every = std::time::Duration::from_millis(expiration_ms.clamp(1, 60_000) as u64);
        self.next_producer_expiry = Instant::now() + every;
        let cmd = Command::ExpireProducers {
            now_ms: now_ms(),
            expiration_ms,
        }
        .encode();
        for i in 1..self.shards.len() {
            if self.shards[i].raw.raft.state == StateRole::Leader {
                self.propose(i as u64, cmd.clone(), Waiters::Nobody);
            }
        }
    }

    /// Deletes the Raft entries of each shard that are applied and that no partition's kept
    /// batches lie in (single-voter shards: every replica has them once persisted).
    fn truncate_raft_logs(&mut self) -> Result<(), Error> {
        let mut floor: Vec<u64> = self.shards.iter().map(|s| s.applied).collect();
        for part in self.machine.parts.values() {
            let st = &part.state;
            if st.first_raft_index > 0 {
                if let Some(f) = floor.get_mut(st.shard as usize) {
                    *f = (*f).min(st.first_raft_index - 1);
                }
            }
        }
        let mut wb = self.store.batch();
        let mut truncated = Vec::new();
        for (s, to) in self.shards.iter().zip(floor) {
            let (from, _) = s.raw.store().truncated();
            // Range deletes are cheap but not free: batch them up.
            if to < from + 64 && !(to > from && to == s.applied) {
                continue;
            }
            let Ok(term) = raft::Storage::term(s.raw.store(), to) else {
                continue;
            };
            wb.truncate_raft_log(s.id, to, term);
            truncated.push((s.id, to, term));
        }
        if truncated.is_empty() {
            return Ok(());
        }
        // Unlogged like the apply writes: a lost truncation only leaves entries to delete again.
        self.store.write_unlogged(wb)?;
        for (id, to, term) in truncated {
            self.shards[id as usize].raw.mut_store().compact(to, term);
        }
        Ok(())
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
                if s.raw.store().conflicts(rd.entries()) {
                    persist.delete_raft_entries_from(s.id, rd.entries()[0].index);
                }
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
            let entries = readies.iter().map(|(_, rd, _)| rd.entries().len()).sum();
            let started = Instant::now();
            self.store.write(persist, self.config.fsync)?;
            telemetry::persisted(entries, started.elapsed());
        }

        // 4. Advance and apply.
        let mut turn = Turn::new(&self.store);
        let mut answers = Vec::new();
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
            let id = self.shards[i].id;
            let hs = self.shards[i].raw.store().hard_state().clone();
            turn.applied.insert(id, (self.shards[i].applied, hs));
            for e in &entries {
                let applied = self.machine.apply_entry(id, e, &mut turn);
                self.take_waiters(i, e.index, e.term, applied, &mut answers);
            }
            let s = &mut self.shards[i];
            let last = entries.last().map_or(s.applied, |e| e.index);
            s.applied = last;
            s.raw.advance_apply_to(last);
            s.raw.mut_store().release_applied(last);
        }
        self.machine.finish_writes(&mut turn)?;
        self.store.write_unlogged(turn.wb)?;
        self.publish(turn.publish, answers);
        Ok(())
    }

    /// Pairs an applied entry with the proposal waiting for it, if it is still that proposal's.
    fn take_waiters(
        &mut self,
        shard: usize,
        index: u64,
        term: u64,
        applied: Applied,
        answers: &mut Vec<(Waiters, Applied)>,
    ) {
        let s = &mut self.shards[shard];
        // Waiters of earlier indexes whose entries were replaced by another leader's.
        let mut lost = Vec::new();
        while let Some((&idx, _)) = s.pending.first_key_value() {
            if idx >= index {
                break;
            }
            if let Some((_, (_, w, _))) = s.pending.pop_first() {
                lost.push(w);
            }
        }
        let id = s.id;
        let mine = match s.pending.remove(&index) {
            Some((t, w, proposed)) if t == term => {
                telemetry::committed(id, proposed.elapsed());
                Some(w)
            }
            Some((_, w, _)) => {
                lost.push(w);
                None
            }
            None => None,
        };
        for w in lost {
            self.reject(w, Error::NotLeader);
        }
        if let Some(w) = mine {
            answers.push((w, applied));
        }
    }

    /// Makes applied state visible and answers waiters, after the apply batch is written.
    fn publish(&mut self, p: apply::Publish, answers: Vec<(Waiters, Applied)>) {
        if p.metadata {
            *self.shared.metadata.write().expect("metadata lock") =
                Arc::new(self.machine.metadata.clone());
            self.reconcile_due = true;
        }
        if !p.created.is_empty() || !p.deleted.is_empty() {
            let mut map = self.shared.partitions.write().expect("partitions lock");
            for tp in &p.deleted {
                map.remove(tp);
            }
            for tp in &p.created {
                if let Some(part) = self.machine.parts.get(tp) {
                    map.insert(*tp, part.handle.clone());
                }
            }
            drop(map);
            self.shared.partitions_changed.send_modify(|v| *v += 1);
        }
        for (tp, up_to) in &p.compacted {
            if let Some(part) = self.machine.parts.get(tp) {
                part.handle.forget_cached_below(*up_to);
            }
        }
        let mut stored = p.stored;
        for tp in &p.partitions {
            if let Some(part) = self.machine.parts.get(tp) {
                // Cache first, then advance the high watermark: a reader that sees the new
                // watermark finds the batches in the cache or the store.
                let batches = stored.remove(tp).unwrap_or_default();
                part.handle.cache(batches, part.state.log_start_offset);
                part.handle.publish(&part.state);
            }
        }
        for (w, applied) in answers {
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
                (Waiters::Applied(tx), _) => {
                    let _ = tx.send(Ok(()));
                }
                (Waiters::Reconcile(tps), _) => {
                    for tp in tps {
                        self.reconciling.remove(&tp);
                    }
                }
                (Waiters::Nobody, _) => {}
                (w, _) => w.fail(Error::NotLeader),
            }
        }
    }
}
