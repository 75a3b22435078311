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
//! Module map: [`apply`] (the state machine, a pure function of the log), `ready` (persist,
//! send, apply, answer, agreed log truncation), `leadership` (what is published about each
//! shard: leader, ISR; leader balance and hand-off), `membership` (admitting nodes, placing
//! replicas, configuration changes toward the placement), `snapshot` (seeding a new replica),
//! [`network`] (Raft messages over the peer transport), [`restore`] (start-up from RocksDB),
//! this file (the loop and proposals). `sim_tests` and `sim_moves` are the deterministic
//! simulations.
//!
//! A node runs only the shards it holds a replica of. Messages from peers arrive on the
//! transport's inbound channel and are stepped into their shard at the start of a turn.
//!
//! It is a dedicated OS thread, not a tokio task, because RocksDB writes with fsync block.
//! It waits for work on a small current-thread runtime of its own, so requests wake it at once.
//! If it fails (a storage error, a failed assertion), it reports the cause through
//! `Shared::failed` and stops: the process exits, and replay on restart makes the state exact.

pub(crate) mod apply;
#[cfg(test)]
mod apply_tests;
mod leadership;
mod membership;
pub mod network;
mod ready;
mod restore;
mod retire;
#[cfg(test)]
mod sim_moves;
#[cfg(test)]
mod sim_tests;
mod snapshot;
mod telemetry;
pub mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use jet_cluster::Inbound;
use jet_storage::{ShardLog, Store, TopicPartition};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

use crate::command::{AppendItem, Command};
use crate::metadata::{MetaCommand, MetaEffect};
use crate::node::{now_ms, AppendOutcome, NodeConfig, Shared};
use crate::topic_config;
use crate::Error;
use apply::Machine;
use network::{PeerSink, RaftMessage, Transport};

/// The driver's time: the real clocks, or a simulated one that a test advances (a seeded
/// simulation must not read the machine's clocks to replay exactly).
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    Real,
    #[cfg_attr(not(test), allow(dead_code))]
    Sim {
        base: Instant,
        ms: Arc<std::sync::atomic::AtomicU64>,
    },
}

impl Clock {
    /// Monotonic time.
    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Sim { base, ms } => {
                *base + std::time::Duration::from_millis(ms.load(Ordering::Acquire))
            }
        }
    }

    /// Wall-clock milliseconds, for what the proposer stamps into entries.
    pub fn wall_ms(&self) -> i64 {
        match self {
            Clock::Real => now_ms(),
            Clock::Sim { ms, .. } => 1_700_000_000_000 + ms.load(Ordering::Acquire) as i64,
        }
    }
}

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
    /// Change the cluster metadata (forwarded to the metadata leader by Raft when this node
    /// does not lead the metadata shard).
    Meta {
        cmd: MetaCommand,
        tx: oneshot::Sender<Result<MetaEffect, Error>>,
    },
    /// Transfer the leadership of every shard this node leads to a caught-up replica (before a
    /// clean stop); answered once this node leads nothing, or at the deadline.
    HandOff {
        deadline: Instant,
        tx: oneshot::Sender<()>,
    },
    /// What gossip says of the other nodes: those alive, and those not heard from for
    /// `--node-dead-after` (their replicas may be re-placed by the metadata leader).
    Liveness { alive: Vec<u64>, dead: Vec<u64> },
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
    /// The term of the last applied entry: a leader serves once it applied an entry of its
    /// own term, so every earlier entry is applied.
    applied_term: u64,
    /// When this node last became the shard's leader.
    leader_since: Option<Instant>,
    /// When each follower last had every entry the leader had (Kafka's ISR rule).
    caught_up: HashMap<u64, Instant>,
    /// When leadership was last handed to the preferred replica.
    last_transfer: Option<Instant>,
    /// The leader's last index at the previous tick, and when (for the ISR rule).
    prev_last: (u64, Instant),
    /// The highest `TruncateLog` this node proposed, and when.
    truncate_proposed: u64,
    /// Propose a truncation at the next tick whatever the batching threshold (a new replica
    /// must start from a snapshot).
    truncate_now: bool,
    last_truncate_proposal: Instant,
    /// Proposals waiting for their entry, by index; the term tells whether the entry that gets
    /// applied at that index is still theirs, the instant how long it took.
    pending: BTreeMap<u64, (u64, Waiters, Instant)>,
    /// Appends taken from the channel this turn, not yet proposed.
    queued: Vec<(AppendItem, AppendReply)>,
    /// When the snapshot the shard log holds for a new replica was prepared.
    prepared_at: Option<Instant>,
    /// When this leader last proposed a configuration change (one at a time, see membership).
    last_conf_change: Option<Instant>,
    /// Peers this leader is sending a snapshot to, and since when.
    snapshotting: HashMap<u64, Instant>,
    /// When this leader last reported the shard's configuration to the metadata.
    last_config_report: Option<Instant>,
}

struct Driver {
    config: NodeConfig,
    store: Store,
    shared: Arc<Shared>,
    /// The shards this node holds a replica of, by increasing id.
    shards: Vec<Shard>,
    /// Shard id → position in `shards`.
    slots: Vec<Option<usize>>,
    /// The peer transport; `None` for a cluster of one.
    net: Option<Arc<dyn PeerSink>>,
    /// Metadata proposals forwarded to the leader, by proposal number.
    forwarded: HashMap<u64, (Waiters, Instant)>,
    forward_seq: u64,
    /// A hand-off in progress: answered when this node leads nothing.
    hand_off: Option<(Instant, oneshot::Sender<()>)>,
    /// Set when the metadata changed: shard members are published again.
    members_due: bool,
    clock: Clock,
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
    /// Nodes gone for `--node-dead-after`, as gossip last said.
    dead: std::collections::BTreeSet<u64>,
    /// Other nodes gossip sees alive.
    alive: std::collections::BTreeSet<u64>,
    /// Whether gossip has reported at all (a cluster of one without gossip never does).
    liveness_known: bool,
    /// When the metadata leader last re-placed dead nodes' replicas.
    last_replacement: Option<Instant>,
    /// Shards the cluster added that this node is to start a replica of, after the apply
    /// write that stored their configuration (and whether it is the preferred leader).
    added_shards: Vec<(u64, bool)>,
}

/// The transport and its inbound messages, for a node in a cluster.
pub struct Network {
    /// Sends to peers.
    pub transport: Transport,
    /// What peers sent.
    pub inbound: mpsc::Receiver<Inbound<RaftMessage>>,
}

pub(crate) fn spawn(
    config: NodeConfig,
    store: Store,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<DriverMsg>,
    network: Option<Network>,
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
                let (transport, inbound) = match network {
                    Some(n) => (Some(n.transport as Arc<dyn PeerSink>), Some(n.inbound)),
                    None => (None, None),
                };
                match Driver::open(config, store, shared, transport, Clock::Real) {
                    Ok(driver) => driver.run(&rt, rx, inbound, ready),
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
        mut inbound: Option<mpsc::Receiver<Inbound<RaftMessage>>>,
        ready: oneshot::Sender<Result<(), Error>>,
    ) -> Result<(), Error> {
        let mut ready = Some(ready);
        let mut peer_msgs = Vec::new();
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
                    let peers = async {
                        match inbound.as_mut() {
                            Some(i) => i.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        m = rx.recv() => msgs.push(m.unwrap_or(DriverMsg::Shutdown { tx: oneshot::channel().0 })),
                        Some(m) = peers => peer_msgs.push(m),
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
            if let Some(i) = inbound.as_mut() {
                while peer_msgs.len() < MAX_MESSAGES_PER_TURN {
                    match i.try_recv() {
                        Ok(m) => peer_msgs.push(m),
                        Err(_) => break,
                    }
                }
            }
            for m in peer_msgs.drain(..) {
                self.step(m);
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
            let tick = Instant::now() >= next_tick;
            if tick {
                next_tick = Instant::now() + self.config.tick;
            }
            if let Err(e) = self.turn(tick) {
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
            // Serving starts once the cluster is initialised and every local shard has a
            // leader that serves (on one node: this node leads them all).
            if ready.is_some()
                && self.machine.metadata.data_shards > 0
                && self.shards.iter().all(|s| {
                    let l = s.raw.raft.leader_id;
                    l != 0 && (l != self.config.node_id || s.applied_term == s.raw.raft.term)
                })
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

    /// Steps 1 (what was taken is proposed) to 5 of a turn; `tick` when a Raft tick is due.
    /// The loop above and the deterministic simulation both drive the driver through this.
    fn turn(&mut self, tick: bool) -> Result<(), Error> {
        self.propose_queued();
        // 2. Tick, and the leader's own proposals.
        if tick {
            for s in &mut self.shards {
                s.raw.tick();
            }
            self.propose_truncations();
            self.expire_producers();
            self.track_followers();
            self.balance_leaders();
            self.place_replicas();
            self.change_membership();
            self.report_configurations();
            self.retire_replicas()?;
            self.expire_forwarded();
            self.report_metrics();
        }
        self.prepare_snapshots()?;
        if self.reconcile_due {
            self.reconcile();
        }
        // 3-5. Persist, apply, answer.
        self.handle_ready()?;
        self.publish_leadership(true);
        self.continue_hand_off();
        Ok(())
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
        for (_, (w, _)) in self.forwarded.drain() {
            w.fail(e.clone());
        }
        self.reconciling.clear();
    }

    fn shard_ref(&self, id: u64) -> Option<&Shard> {
        let i = (*self.slots.get(id as usize)?)?;
        self.shards.get(i)
    }

    fn shard_mut(&mut self, id: u64) -> Option<&mut Shard> {
        let i = (*self.slots.get(id as usize)?)?;
        self.shards.get_mut(i)
    }

    /// Steps a peer's message into its shard. Messages for shards this node does not hold, or
    /// that raft-rs refuses (a stranger's), are dropped: Raft needs no answer to them.
    fn step(&mut self, m: Inbound<RaftMessage>) {
        let from = m.from_node;
        let msg = m.message.0;
        if msg.from != from {
            tracing::warn!(
                from,
                claimed = msg.from,
                "dropping a raft message whose sender does not match its connection"
            );
            return;
        }
        if self.shard_ref(m.shard_id).is_none()
            && !self.create_replica(m.shard_id, msg.get_msg_type())
        {
            tracing::debug!(
                from,
                shard = m.shard_id,
                "raft message for a shard this node does not hold"
            );
            return;
        }
        let Some(s) = self.shard_mut(m.shard_id) else {
            return;
        };
        if let Err(e) = s.raw.step(msg) {
            tracing::debug!(from, shard = m.shard_id, error = %e, "raft message refused");
        }
    }

    /// Forwarded proposals whose entry never came back (the leader changed and dropped it)
    /// are forgotten once their requester has stopped waiting.
    fn expire_forwarded(&mut self) {
        let timeout = self.config.proposal_timeout;
        let now = self.clock.now();
        self.forwarded
            .retain(|_, (_, at)| now.duration_since(*at) < timeout);
    }

    /// Queues an append, or proposes a one-off command at once.
    fn take(&mut self, m: DriverMsg) {
        match m {
            DriverMsg::Append { shard, item, tx } => match self.shard_mut(shard) {
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
            DriverMsg::HandOff { deadline, tx } => {
                self.hand_off = Some((deadline, tx));
            }
            DriverMsg::Liveness { alive, dead } => {
                self.alive = alive.into_iter().collect();
                self.dead = dead.into_iter().collect();
                self.liveness_known = true;
            }
            DriverMsg::Shutdown { .. } => {}
        }
    }

    fn propose(&mut self, shard: u64, data: Vec<u8>, waiters: Waiters) {
        let Some(i) = self.slots.get(shard as usize).copied().flatten() else {
            // Not a replica of this shard: the leader is elsewhere.
            waiters.fail(Error::NotLeader);
            return;
        };
        let raft = &self.shards[i].raw.raft;
        if raft.state != StateRole::Leader {
            let forward = shard == METADATA_SHARD
                && raft.leader_id != 0
                && matches!(waiters, Waiters::Meta(_));
            if forward {
                // Raft forwards the proposal to the leader; the entry comes back through the
                // log naming this node and proposal, and is answered when applied here.
                let Ok(Command::Meta(cmd)) = Command::decode(data.into()) else {
                    waiters.fail(Error::NotLeader);
                    return;
                };
                self.forward_seq += 1;
                let seq = self.forward_seq;
                let data = Command::ForwardedMeta {
                    origin: self.config.node_id,
                    seq,
                    cmd,
                }
                .encode();
                match self.shards[i].raw.propose(Vec::new(), data) {
                    Ok(()) => {
                        let now = self.clock.now();
                        self.forwarded.insert(seq, (waiters, now));
                    }
                    Err(_) => waiters.fail(Error::NotLeader),
                }
                return;
            }
            self.reject(waiters, Error::NotLeader);
            return;
        }
        let now = self.clock.now();
        let s = &mut self.shards[i];
        match s.raw.propose(Vec::new(), data) {
            Ok(()) => {
                let index = s.raw.raft.raft_log.last_index();
                let term = s.raw.raft.term;
                s.pending.insert(index, (term, waiters, now));
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
        let now = self.clock.wall_ms();
        let max = self.config.max_entry_bytes;
        for i in 0..self.shards.len() {
            let queued = std::mem::take(&mut self.shards[i].queued);
            let mut items = Vec::new();
            let mut txs = Vec::new();
            let mut size = 0;
            for (item, tx) in queued {
                if !items.is_empty() && size + item.batches.len() > max {
                    let data = self.encode_append(now, &std::mem::take(&mut items));
                    let id = self.shards[i].id;
                    self.propose(id, data, Waiters::Append(std::mem::take(&mut txs)));
                    size = 0;
                }
                size += item.batches.len();
                items.push(item);
                txs.push(tx);
            }
            if !items.is_empty() {
                let data = self.encode_append(now, &items);
                let id = self.shards[i].id;
                self.propose(id, data, Waiters::Append(txs));
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
        // A partition its metadata does not list is deleted only when the topic is known to be
        // gone: metadata that lags (a replica that has not applied the topic's creation yet)
        // would otherwise delete a live partition, acknowledged records and all.
        let authoritative = self.shard_ref(METADATA_SHARD).is_some_and(|s| {
            s.raw.raft.state == StateRole::Leader && s.applied_term == s.raw.raft.term
        });
        let deleted = &self.machine.metadata.deleted_topics;
        for (tp, part) in &self.machine.parts {
            if !wanted.contains(tp)
                && !self.reconciling.contains(tp)
                && (authoritative || deleted.contains(&tp.topic_id))
            {
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
                .shard_ref(shard)
                .is_some_and(|s| s.raw.raft.state == StateRole::Leader);
            if shard == METADATA_SHARD || !leads {
                continue;
            }
            self.reconciling.extend(tps.iter().copied());
            self.propose(shard, cmd.encode(), Waiters::Reconcile(tps));
        }
        if self.machine.metadata.data_shards == 0
            && self
                .shard_ref(METADATA_SHARD)
                .is_some_and(|s| s.raw.raft.state == StateRole::Leader)
        {
            let init = MetaCommand::Init {
                data_shards: self.config.data_shards,
                members: self.config.members.clone(),
                replication_factor: self.config.replication_factor,
                shards_per_node: self.config.shards_per_node,
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
        let now = self.clock.now();
        if now < self.next_producer_expiry {
            return;
        }
        let expiration_ms = self.config.producer_id_expiration_ms;
        let every = std::time::Duration::from_millis(expiration_ms.clamp(1, 60_000) as u64);
        self.next_producer_expiry = now + every;
        let cmd = Command::ExpireProducers {
            now_ms: self.clock.wall_ms(),
            expiration_ms,
        }
        .encode();
        let led: Vec<u64> = self
            .shards
            .iter()
            .filter(|s| s.id != METADATA_SHARD && s.raw.raft.state == StateRole::Leader)
            .map(|s| s.id)
            .collect();
        for id in led {
            self.propose(id, cmd.clone(), Waiters::Nobody);
        }
    }
}
