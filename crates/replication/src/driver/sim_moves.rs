//! Deterministic simulation of a node loss: four [`Driver`]s on real RocksDB over the in-memory
//! network of `sim_tests`, replication factor 3. After data is written, node 3 stops for good
//! and every driver is told it is dead. The metadata leader re-places its replicas, the shard
//! leaders add the new replicas as learners (seeded by a snapshot that carries the batches),
//! promote them and remove node 3. Checked at the end: no shard names or holds node 3 as a
//! voter, every shard has 3 voters, every replica of a shard holds byte-identical rows, and
//! every acknowledged record is readable on every replica of its partition, the new ones
//! included. Delivery order and tick order come from the seed (`JET_SIM_SEED` replays one).

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
const RECORDS: usize = 40;

type Ack = (
    oneshot::Receiver<Result<AppendOutcome, Error>>,
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
    /// Node 3 is gone: gossip reports it dead to every node (re)started from now on.
    lost: bool,
    /// Chaos during the moves: message loss, appends, restarts of the receiving node.
    faults: bool,
    chaos: bool,
    /// Appends made during the chaos, not answered yet.
    pending: Vec<Ack>,
    acknowledged: Vec<(TopicPartition, i64, Vec<u8>)>,
    appended: u64,
}

impl Moves {
    fn new(root: &Path, seed: u64, faults: bool) -> Moves {
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
            lost: false,
            faults,
            chaos: false,
            pending: Vec::new(),
            acknowledged: Vec::new(),
            appended: 0,
        };
        for i in 0..NODES.len() {
            m.open(i);
        }
        m
    }

    fn open(&mut self, i: usize) {
        let mut d = sim_driver(
            &self.dirs[i],
            NODES[i],
            &NODES,
            3,
            &self.queue,
            (self.base, &self.ms),
        );
        if self.lost {
            // A restarted node hears from gossip again.
            d.take(liveness(NODES[i]));
        }
        self.drivers[i] = Some(d);
    }

    /// One append of a new record to partition `p`, through its shard's serving leader, if
    /// there is one.
    fn append(&mut self, p: usize) -> bool {
        let Some(topic) = self
            .live()
            .next()
            .and_then(|d| d.machine.metadata.topic("moves").cloned())
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
        self.pending.push((rx, tp, payload));
        true
    }

    /// Collects answered appends; with faults, a refused append (a leader that changed) is
    /// fine.
    fn collect(&mut self) {
        let seed = self.seed;
        let faults = self.faults;
        let mut answered = Vec::new();
        self.pending
            .retain_mut(|(rx, tp, payload)| match rx.try_recv() {
                Ok(Ok(o)) => {
                    answered.push((*tp, o.base_offset, payload.clone()));
                    false
                }
                Ok(Err(e)) if !faults => panic!("seed {seed}: append failed: {e}"),
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
                self.append(p);
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
}

/// What gossip tells `node` once node 3 is dead: the other two nodes are alive.
fn liveness(node: u64) -> DriverMsg {
    let alive = NODES
        .iter()
        .copied()
        .filter(|n| *n != LOST && *n != node)
        .collect();
    DriverMsg::Liveness {
        alive,
        dead: vec![LOST],
    }
}

fn serving_leader(d: &Driver, shard: u64) -> bool {
    d.shard_ref(shard).is_some_and(|s| {
        s.raw.raft.state == raft::StateRole::Leader && s.applied_term == s.raw.raft.term
    })
}

fn run_seed(seed: u64, faults: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Moves::new(dir.path(), seed, faults);
    m.run_until("a metadata leader", 4_000, |m| {
        m.live()
            .any(|d| serving_leader(d, 0) && d.machine.metadata.data_shards > 0)
    });
    let leader = m.live().position(|d| serving_leader(d, 0)).unwrap();
    let (tx, _rx) = oneshot::channel::<Result<MetaEffect, Error>>();
    m.drivers[leader].as_mut().unwrap().take(DriverMsg::Meta {
        cmd: MetaCommand::CreateTopic {
            name: "moves".into(),
            id: uuid::Uuid::from_u64_pair(seed, 7),
            partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::new(),
        },
        tx,
    });
    m.run_until("the topic's partitions", 4_000, |m| {
        m.live().all(|d| {
            d.machine.metadata.topic("moves").is_some_and(|t| {
                t.partitions.iter().enumerate().all(|(p, pm)| {
                    !d.machine.metadata.shard_replicas[&pm.shard].contains(&d.config.node_id)
                        || d.machine
                            .parts
                            .contains_key(&TopicPartition::new(t.id, p as i32))
                })
            })
        })
    });

    // Appends through each partition's shard leader, all acknowledged.
    for n in 0..RECORDS {
        let p = n % 3;
        let shard = m
            .live()
            .next()
            .unwrap()
            .machine
            .metadata
            .topic("moves")
            .unwrap()
            .partitions[p]
            .shard;
        m.run_until("a shard leader", 4_000, |m| {
            m.live().any(|d| serving_leader(d, shard))
        });
        assert!(m.append(p));
        m.step();
    }
    m.run_until("every append answered", 4_000, |m| m.pending.is_empty());
    assert_eq!(
        m.acknowledged.len(),
        RECORDS,
        "seed {seed}: appends not acknowledged"
    );

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
    for d in m.drivers.iter_mut().flatten() {
        d.take(liveness(d.config.node_id));
    }
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
    m.run_until("re-placement and the new configurations", 40_000, |m| {
        m.live().all(|d| {
            let md = &d.machine.metadata;
            md.shard_replicas
                .values()
                .all(|r| !r.contains(&LOST) && r.len() == 3)
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
    m.run_until("every append answered", 4_000, |m| m.pending.is_empty());
    // Settle: every replica of a shard applied the same index.
    m.run_until("replicas applying alike", 4_000, |m| {
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

    let md = m.live().next().unwrap().machine.metadata.clone();
    let mut moved = 0;
    for (shard, replicas) in &md.shard_replicas {
        let holders: Vec<&Driver> = replicas
            .iter()
            .map(|n| m.live().find(|h| h.config.node_id == *n).unwrap())
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
        if *shard != 0 && placed_before[shard].contains(&LOST) {
            moved += 1;
        }
    }
    assert!(
        moved > 0,
        "seed {seed}: node {LOST} held no data shard, the test tested nothing"
    );
    let acknowledged = m.acknowledged.clone();
    assert!(
        acknowledged.len() >= RECORDS,
        "seed {seed}: acknowledged records went missing"
    );
    for (tp, offset, payload) in &acknowledged {
        let shard = md.topics["moves"].partitions[tp.partition as usize].shard;
        for n in &md.shard_replicas[&shard] {
            let h = m.live().find(|h| h.config.node_id == *n).unwrap();
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
    eprintln!(
        "seed {seed}: {} records, {moved} data shards moved off node {LOST}",
        acknowledged.len()
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
