//! Deterministic simulations of replica moves: four [`Driver`]s on real RocksDB over the
//! in-memory network of `sim_tests`, replication factor 3.
//!
//! - **Node loss.** After data is written, node 3 stops for good and every driver is told it is
//!   dead. The metadata leader re-places its replicas, the shard leaders add the new replicas
//!   as learners (seeded by a snapshot that carries the batches), promote them and remove
//!   node 3.
//! - **Growth.** Nodes 1–3 form a cluster with 3 shard replicas per node (3 data shards); data
//!   is written; node 4 joins. The metadata leader admits it, adds a fourth data shard (3 per
//!   node × 4 nodes ÷ 3), then moves replicas until every node holds its share. Data written
//!   to the new shard is replicated like any other.
//!
//! Checked at the end: every shard has 3 voters where the metadata says, every replica of a
//! shard holds byte-identical rows, and every acknowledged record is readable on every replica
//! of its partition, the new ones included. Delivery order and tick order come from the seed
//! (`JET_SIM_SEED` replays one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use jet_cluster::Inbound;
use jet_storage::TopicPartition;
use tokio::sync::{oneshot, Semaphore};

use super::network::RaftMessage;
use super::sim_tests::{sim_driver, sim_seeds, Envelope, Rng, TICK_MS};
use super::{AppendReply, Driver, DriverMsg};
use crate::command::AppendItem;
use crate::metadata::{MetaCommand, MetaEffect};
use crate::node::AppendOutcome;
use crate::Error;

const NODES: [u64; 4] = [1, 2, 3, 4];
const LOST: u64 = 3;
/// The node that joins in the growth scenario.
const JOINER: u64 = 4;
const RECORDS: usize = 40;

type Ack = (
    oneshot::Receiver<Result<AppendOutcome, Error>>,
    String,
    TopicPartition,
    Vec<u8>,
);

struct Moves {
    rng: Rng,
    base: Instant,
    ms: Arc<AtomicU64>,
    queue: Arc<Mutex<Vec<Envelope>>>,
    dirs: Vec<PathBuf>,
    drivers: Vec<Option<Driver>>,
    budget: Arc<Semaphore>,
    seed: u64,
    /// The nodes the cluster forms with (the others join later).
    formed: Vec<u64>,
    /// Data shards the cluster forms with, and shard replicas per node it grows by (0: none).
    data_shards: u64,
    shards_per_node: u64,
    /// Node 3 is gone: gossip reports it dead to every node (re)started from now on.
    lost: bool,
    /// Chaos during the moves: message loss, appends, restarts of the receiving node.
    faults: bool,
    chaos: bool,
    /// Appends made during the chaos, not answered yet.
    pending: Vec<Ack>,
    acknowledged: Vec<(String, TopicPartition, i64, Vec<u8>)>,
    appended: u64,
}

impl Moves {
    fn new(root: &Path, seed: u64, faults: bool, grow: bool) -> Moves {
        let mut m = Moves {
            rng: Rng(seed),
            base: Instant::now(),
            ms: Arc::new(AtomicU64::new(0)),
            queue: Arc::new(Mutex::new(Vec::new())),
            dirs: NODES
                .iter()
                .map(|n| root.join(format!("node-{n}")))
                .collect(),
            drivers: NODES.iter().map(|_| None).collect(),
            budget: Arc::new(Semaphore::new(1 << 30)),
            seed,
            formed: if grow {
                NODES.iter().copied().filter(|n| *n != JOINER).collect()
            } else {
                NODES.to_vec()
            },
            data_shards: 3,
            shards_per_node: if grow { 3 } else { 0 },
            lost: false,
            faults,
            chaos: false,
            pending: Vec::new(),
            acknowledged: Vec::new(),
            appended: 0,
        };
        let formed: Vec<usize> = (0..NODES.len())
            .filter(|i| m.formed.contains(&NODES[*i]))
            .collect();
        for i in formed {
            m.open(i);
        }
        m
    }

    fn open(&mut self, i: usize) {
        let mut d = sim_driver(
            &self.dirs[i],
            NODES[i],
            &self.formed,
            self.data_shards,
            &self.queue,
            (self.base, &self.ms),
        );
        d.config.shards_per_node = self.shards_per_node;
        if let Some(msg) = self.liveness(NODES[i]) {
            // A restarted node hears from gossip again.
            d.take(msg);
        }
        self.drivers[i] = Some(d);
    }

    /// One append of a new record to partition `p` of topic `name`, through its shard's
    /// serving leader, if there is one.
    fn append(&mut self, name: &str, p: usize) -> bool {
        let Some(topic) = self
            .live()
            .next()
            .and_then(|d| d.machine.metadata.topic(name).cloned())
        else {
            return false;
        };
        let shard = topic.partitions[p].shard;
        let tp = TopicPartition::new(topic.id, p as i32);
        let Some(i) = self
            .drivers
            .iter()
            .position(|d| d.as_ref().is_some_and(|d| serving_leader(d, shard)))
        else {
            return false;
        };
        let n = self.appended;
        self.appended += 1;
        let payload = format!("seed-{}-record-{n}", self.seed).into_bytes();
        let batch = Bytes::from(jet_protocol::batch::build_uncompressed(
            1_700_000_000_000,
            (-1, -1, -1),
            1,
            &payload,
        ));
        let (tx, rx) = oneshot::channel();
        let reply = AppendReply {
            tx,
            budget: self.budget.clone().try_acquire_many_owned(1).unwrap(),
        };
        self.drivers[i].as_mut().unwrap().take(DriverMsg::Append {
            shard,
            item: AppendItem::new(tp, batch),
            tx: reply,
        });
        self.pending.push((rx, name.to_string(), tp, payload));
        true
    }

    /// Collects answered appends; with faults, a refused append (a leader that changed) is
    /// fine.
    fn collect(&mut self) {
        let seed = self.seed;
        let faults = self.faults;
        let mut answered = Vec::new();
        self.pending
            .retain_mut(|(rx, topic, tp, payload)| match rx.try_recv() {
                Ok(Ok(o)) => {
                    answered.push((topic.clone(), *tp, o.base_offset, payload.clone()));
                    false
                }
                // A leader handing its shard over (balancing) refuses what it has not
                // committed: clients retry, and so does `append_all`.
                Ok(Err(Error::NotLeader)) => false,
                Ok(Err(e)) if !faults => {
                    panic!("seed {seed}: append to {topic} {tp:?} failed: {e}")
                }
                Ok(Err(_)) => false,
                Err(oneshot::error::TryRecvError::Closed) => false,
                Err(oneshot::error::TryRecvError::Empty) => true,
            });
        self.acknowledged.extend(answered);
    }

    /// Delivers every queued message (in a seeded order), lets one node tick, runs a turn on
    /// every running node.
    fn step(&mut self) {
        loop {
            let env = {
                let mut q = self.queue.lock().unwrap();
                if q.is_empty() {
                    break;
                }
                let k = self.rng.below(q.len() as u64) as usize;
                q.swap_remove(k)
            };
            let Some(i) = NODES.iter().position(|n| *n == env.to) else {
                continue;
            };
            if self.chaos && self.rng.below(100) < 3 {
                continue; // lost
            }
            if let Some(d) = self.drivers[i].as_mut() {
                d.step(Inbound {
                    from_node: env.from,
                    shard_id: env.shard,
                    message: RaftMessage(env.msg),
                });
            }
        }
        if self.chaos {
            let r = self.rng.below(1000);
            let receiver = NODES.len() - 1;
            if r < 60 {
                let p = self.rng.below(3) as usize;
                self.append("moves", p);
            } else if r < 62 {
                if let Some(d) = self.drivers[receiver].take() {
                    d.fail_all_for_sim();
                }
            }
            if self.drivers[receiver].is_none() && self.rng.below(20) == 0 {
                self.open(receiver);
            }
        }
        self.collect();
        self.ms.fetch_add(TICK_MS / 4, Ordering::AcqRel);
        let tick = self.rng.below(NODES.len() as u64) as usize;
        for i in 0..NODES.len() {
            if let Some(d) = self.drivers[i].as_mut() {
                d.turn(i == tick).unwrap();
            }
        }
    }

    fn run_until(&mut self, what: &str, max_steps: usize, done: impl Fn(&Moves) -> bool) {
        if std::env::var("JET_SIM_TRACE").is_ok() {
            eprintln!(
                "seed {}: waiting for {what}\n{}",
                self.seed,
                self.describe()
            );
        }
        for _ in 0..max_steps {
            self.step();
            if done(self) {
                return;
            }
        }
        panic!(
            "seed {}: {what} did not happen in {max_steps} steps\n{}",
            self.seed,
            self.describe()
        );
    }

    fn describe(&self) -> String {
        let mut out = Vec::new();
        for d in self.live() {
            out.push(format!(
                "node {}: replicas {:?} members {:?}",
                d.config.node_id, d.machine.metadata.shard_replicas, d.machine.metadata.members
            ));
            for s in &d.shards {
                let cs = s.raw.store().conf_state();
                out.push(format!(
                    "  shard {}: {:?} t{} lead {} c{} a{} voters {:?} learners {:?} truncated {:?} prs {:?}",
                    s.id,
                    s.raw.raft.state,
                    s.raw.raft.term,
                    s.raw.raft.leader_id,
                    s.raw.raft.raft_log.committed,
                    s.applied,
                    cs.voters,
                    cs.learners,
                    s.raw.store().truncated(),
                    s.raw
                        .raft
                        .prs()
                        .iter()
                        .map(|(id, pr)| (*id, pr.matched, format!("{:?}", pr.state)))
                        .collect::<Vec<_>>()
                ));
            }
        }
        out.join("\n")
    }

    fn live(&self) -> impl Iterator<Item = &Driver> {
        self.drivers.iter().flatten()
    }

    /// What gossip tells `node`: once node 3 is lost, that it is dead and the other two
    /// nodes are alive; once node 4 joined, that every other node is alive.
    fn liveness(&self, node: u64) -> Option<DriverMsg> {
        if self.lost {
            Some(DriverMsg::Liveness {
                alive: NODES
                    .iter()
                    .copied()
                    .filter(|n| *n != LOST && *n != node)
                    .collect(),
                dead: vec![LOST],
            })
        } else if self.formed.contains(&JOINER) || self.drivers[NODES.len() - 1].is_none() {
            None
        } else {
            Some(DriverMsg::Liveness {
                alive: NODES.iter().copied().filter(|n| *n != node).collect(),
                dead: Vec::new(),
            })
        }
    }

    /// Tells every running node what gossip says.
    fn tell_liveness(&mut self) {
        let msgs: Vec<_> = NODES.iter().map(|n| self.liveness(*n)).collect();
        for (d, msg) in self.drivers.iter_mut().zip(msgs) {
            if let (Some(d), Some(msg)) = (d.as_mut(), msg) {
                d.take(msg);
            }
        }
    }

    /// Creates topic `name` through the metadata leader and runs until every replica of its
    /// partitions holds them.
    fn create_topic(&mut self, name: &str, partitions: i32) {
        let seed = self.seed;
        self.run_until("a metadata leader", 4_000, |m| {
            m.live()
                .any(|d| serving_leader(d, 0) && d.machine.metadata.data_shards > 0)
        });
        let leader = self
            .drivers
            .iter()
            .position(|d| d.as_ref().is_some_and(|d| serving_leader(d, 0)))
            .unwrap();
        let (tx, _rx) = oneshot::channel::<Result<MetaEffect, Error>>();
        self.drivers[leader]
            .as_mut()
            .unwrap()
            .take(DriverMsg::Meta {
                cmd: MetaCommand::CreateTopic {
                    name: name.into(),
                    id: uuid::Uuid::from_u64_pair(
                        seed,
                        crate::placement::group_shard(name.as_bytes(), u64::MAX),
                    ),
                    partitions,
                    replication_factor: 3,
                    configs: BTreeMap::new(),
                },
                tx,
            });
        self.run_until("the topic's partitions", 4_000, |m| {
            m.live().all(|d| {
                d.machine.metadata.topic(name).is_some_and(|t| {
                    t.partitions.iter().enumerate().all(|(p, pm)| {
                        !d.machine.metadata.shard_replicas[&pm.shard].contains(&d.config.node_id)
                            || d.machine
                                .parts
                                .contains_key(&TopicPartition::new(t.id, p as i32))
                    })
                })
            })
        });
    }

    /// `count` acknowledged appends to topic `name`, round robin over its partitions. An
    /// append refused by a leader that just handed its shard over is made again, a few rounds
    /// at most.
    fn append_all(&mut self, name: &str, count: usize) {
        let seed = self.seed;
        let before = self.acknowledged.len();
        let partitions = self
            .live()
            .next()
            .unwrap()
            .machine
            .metadata
            .topic(name)
            .unwrap()
            .partitions
            .clone();
        for _round in 0..5 {
            let missing = count - (self.acknowledged.len() - before);
            for n in 0..missing {
                let p = n % partitions.len();
                let shard = partitions[p].shard;
                self.run_until("a shard leader", 4_000, |m| {
                    m.live().any(|d| serving_leader(d, shard))
                });
                assert!(self.append(name, p));
                self.step();
            }
            self.run_until("every append answered", 4_000, |m| m.pending.is_empty());
        }
        assert_eq!(
            self.acknowledged.len() - before,
            count,
            "seed {seed}: appends not acknowledged"
        );
    }

    /// Runs until every shard's replicas are where the metadata names them, with 3 voters,
    /// none of them `gone`, then until every replica applied alike.
    fn converge(&mut self, gone: Option<u64>) {
        self.run_until("the placement and the new configurations", 40_000, |m| {
            m.live().all(|d| {
                let md = &d.machine.metadata;
                md.shard_replicas
                    .values()
                    .all(|r| gone.is_none_or(|g| !r.contains(&g)) && r.len() == 3)
                    && md.shard_replicas.iter().all(|(shard, r)| {
                        // Every named replica holds the shard with the same voters, and applied
                        // as far as the others.
                        r.iter().all(|n| {
                            let Some(holder) = m.live().find(|h| h.config.node_id == *n) else {
                                return false;
                            };
                            holder.shard_ref(*shard).is_some_and(|s| {
                                let mut v = s.raw.store().conf_state().voters.clone();
                                v.sort_unstable();
                                let mut want = r.clone();
                                want.sort_unstable();
                                v == want && s.raw.raft.raft_log.committed == s.applied
                            })
                        })
                    })
            }) && m.queue.lock().unwrap().is_empty()
        });
        self.run_until("every append answered", 4_000, |m| m.pending.is_empty());
        // Settle: every replica of a shard applied the same index.
        self.run_until("replicas applying alike", 4_000, |m| {
            let md = &m.live().next().unwrap().machine.metadata;
            md.shard_replicas.iter().all(|(shard, r)| {
                let applied: Vec<u64> = r
                    .iter()
                    .filter_map(|n| m.live().find(|h| h.config.node_id == *n))
                    .filter_map(|h| h.shard_ref(*shard).map(|s| s.applied))
                    .collect();
                applied.len() == r.len() && applied.iter().all(|a| *a == applied[0])
            })
        });
    }

    /// Every replica of a shard holds byte-identical rows, and every acknowledged record is on
    /// every replica of its partition.
    fn check_replicas(&self) {
        let seed = self.seed;
        let md = self.live().next().unwrap().machine.metadata.clone();
        for (shard, replicas) in &md.shard_replicas {
            let holders: Vec<&Driver> = replicas
                .iter()
                .map(|n| self.live().find(|h| h.config.node_id == *n).unwrap())
                .collect();
            let rows: Vec<_> = holders
                .iter()
                .map(|h| h.machine.shard_rows(*shard).unwrap())
                .collect();
            for (h, r) in holders.iter().zip(&rows).skip(1) {
                assert!(
                    r == &rows[0],
                    "seed {seed}: node {} holds shard {shard} differently from node {}",
                    h.config.node_id,
                    holders[0].config.node_id
                );
            }
        }
        for (topic, tp, offset, payload) in &self.acknowledged {
            let shard = md.topics[topic].partitions[tp.partition as usize].shard;
            for n in &md.shard_replicas[&shard] {
                let h = self.live().find(|h| h.config.node_id == *n).unwrap();
                let e = h
                    .store
                    .index_at_or_before(tp, *offset)
                    .unwrap()
                    .unwrap_or_else(|| {
                        panic!("seed {seed}: node {n} has no batch for {tp:?}@{offset}")
                    });
                let batch = h.store.read_batch(&e).unwrap();
                assert!(
                    batch
                        .windows(payload.len())
                        .any(|w| w == payload.as_slice()),
                    "seed {seed}: node {n} lost {tp:?}@{offset}"
                );
            }
        }
    }
}

/// Data shard replicas per node, nodes 1–4.
fn replica_counts(md: &crate::metadata::ClusterMetadata) -> [usize; 4] {
    let mut counts = [0; 4];
    for (_, r) in md.shard_replicas.iter().filter(|(s, _)| **s != 0) {
        for n in r {
            counts[(*n - 1) as usize] += 1;
        }
    }
    counts
}

fn serving_leader(d: &Driver, shard: u64) -> bool {
    d.shard_ref(shard).is_some_and(|s| {
        s.raw.raft.state == raft::StateRole::Leader && s.applied_term == s.raw.raft.term
    })
}

fn run_seed(seed: u64, faults: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Moves::new(dir.path(), seed, faults, false);
    m.create_topic("moves", 3);
    m.append_all("moves", RECORDS);
    let placed_before = m
        .live()
        .next()
        .unwrap()
        .machine
        .metadata
        .shard_replicas
        .clone();
    // Node 3 is lost for good; gossip tells every other node it is dead.
    let lost = NODES.iter().position(|n| *n == LOST).unwrap();
    m.drivers[lost].take().unwrap().fail_all_for_sim();
    m.lost = true;
    m.chaos = m.faults;
    m.tell_liveness();
    if faults {
        // The moves start under message loss, appends and restarts of the receiving node;
        // then the chaos stops and everything must converge.
        for _ in 0..3_000 {
            m.step();
        }
        m.chaos = false;
        let receiver = NODES.len() - 1;
        if m.drivers[receiver].is_none() {
            m.open(receiver);
        }
    }
    m.converge(Some(LOST));
    m.check_replicas();
    let md = m.live().next().unwrap().machine.metadata.clone();
    let moved = md
        .shard_replicas
        .keys()
        .filter(|s| **s != 0 && placed_before[s].contains(&LOST))
        .count();
    assert!(
        moved > 0,
        "seed {seed}: node {LOST} held no data shard, the test tested nothing"
    );
    assert!(
        m.acknowledged.len() >= RECORDS,
        "seed {seed}: acknowledged records went missing"
    );
    eprintln!(
        "seed {seed}: {} records, {moved} data shards moved off node {LOST}",
        m.acknowledged.len()
    );
}

/// Nodes 1–3 with data; node 4 joins: a fourth data shard is added and replicas move onto
/// node 4; a topic made afterwards fills the new shard first, and its data is replicated.
fn run_grow(seed: u64, faults: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Moves::new(dir.path(), seed, faults, true);
    m.create_topic("moves", 3);
    m.append_all("moves", RECORDS);
    let joiner = NODES.iter().position(|n| *n == JOINER).unwrap();
    m.open(joiner);
    m.tell_liveness();
    if faults {
        // Message loss, appends, and crashes and restarts of the joining node while it is
        // admitted, the shard is added and replicas move; then everything must converge.
        m.chaos = true;
        for _ in 0..3_000 {
            m.step();
        }
        m.chaos = false;
        if m.drivers[joiner].is_none() {
            m.open(joiner);
        }
    }
    m.run_until(
        "a fourth data shard, and 3 replicas on each node",
        20_000,
        |m| {
            m.live().all(|d| {
                d.machine.metadata.data_shards == 4 && replica_counts(&d.machine.metadata) == [3; 4]
            })
        },
    );
    m.converge(None);
    m.create_topic("grown", 4);
    m.append_all("grown", RECORDS);
    m.converge(None);
    m.check_replicas();
    // The replicas the moves left behind are dropped, data and all.
    m.run_until("the replicas moved away retired", 4_000, |m| {
        m.live().all(|d| {
            let md = &d.machine.metadata;
            d.shards
                .iter()
                .all(|s| s.id == 0 || md.shard_replicas[&s.id].contains(&d.config.node_id))
                && d.machine
                    .parts
                    .values()
                    .all(|p| md.shard_replicas[&p.state.shard].contains(&d.config.node_id))
        })
    });
    for d in m.live() {
        let held = d.store.stored_shards().unwrap();
        let named: Vec<u64> = d
            .machine
            .metadata
            .shard_replicas
            .iter()
            .filter(|(s, r)| **s == 0 || r.contains(&d.config.node_id))
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(
            held, named,
            "seed {seed}: node {} stores replicas",
            d.config.node_id
        );
    }
    let md = m.live().next().unwrap().machine.metadata.clone();
    assert_eq!(md.members, NODES.to_vec(), "seed {seed}");
    assert_eq!(
        (md.data_shards, md.group_shard_count()),
        (4, 3),
        "seed {seed}"
    );
    // Shards 1–3 hold one partition each: the new topic's first goes to shard 4.
    assert_eq!(md.topics["grown"].partitions[0].shard, 4, "seed {seed}");
    assert_eq!(replica_counts(&md), [3; 4], "seed {seed}");
    eprintln!(
        "seed {seed}: {} records, shards {:?}",
        m.acknowledged.len(),
        md.shard_replicas
    );
}

#[test]
fn sim_node_loss_re_places_replicas() {
    for seed in sim_seeds(1..=3) {
        run_seed(seed, false);
    }
}

/// The same node loss with message loss, appends and restarts of the node receiving the new
/// replicas while the replicas move.
#[test]
fn sim_node_loss_under_faults() {
    for seed in sim_seeds(11..=16) {
        run_seed(seed, true);
    }
}

/// Node 4 joins nodes 1–3: the cluster adds a data shard and spreads the replicas.
#[test]
fn sim_join_adds_shards() {
    for seed in sim_seeds(21..=23) {
        run_grow(seed, false);
    }
}

/// The same join with message loss, appends and restarts of the joining node.
#[test]
fn sim_join_adds_shards_under_faults() {
    for seed in sim_seeds(31..=34) {
        run_grow(seed, true);
    }
}
