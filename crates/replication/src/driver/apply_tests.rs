//! Apply is a pure function of the Raft log: the same entries give byte-identical RocksDB
//! contents however they are grouped into turns, in whatever order the shards' turns come, and
//! after crashes that lose everything written since the last flush, followed by replay.
//!
//! A run applies a generated log (metadata shard plus two data shards: appends with idempotent
//! producers, duplicates and sequence gaps, DeleteRecords, producer expiry, group records,
//! partition deletion) through [`Machine`], exactly as the driver does. The reference run applies
//! one entry per turn; the other groups entries at random, takes RocksDB checkpoints at random
//! turns (a flush), and at random later turns "crashes": it reopens the last checkpoint and
//! replays from the applied indexes found there. Any failure prints its proptest seed, which
//! replays it.

use std::path::Path;

use bytes::Bytes;
use jet_protocol::batch;
use jet_storage::{Store, StoreOptions, TopicPartition};
use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState};
use uuid::Uuid;

use super::apply::{Machine, Turn};
use crate::command::{AppendItem, Command};
use crate::metadata::{ClusterMetadata, MetaCommand};
use crate::node::{NodeConfig, Shared};

const DATA_SHARDS: u64 = 2;
const PARTITIONS: i32 = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Append `count` records of `len` bytes to partition `part`; `producer` is an idempotent
    /// producer (id index, and 0 = next sequence, 1 = resend the last, 2 = gap).
    Append {
        part: i32,
        count: i32,
        len: usize,
        ts: i64,
        producer: Option<(i64, u8)>,
    },
    /// DeleteRecords at `percent` of the records appended so far.
    Delete {
        part: i32,
        percent: i64,
    },
    Expire {
        now_ms: i64,
    },
    Group {
        key: u8,
    },
    DropPartition {
        part: i32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..PARTITIONS, 1..6i32, 0..300usize, 0..1000i64, proptest::option::of((0..3i64, 0..3u8)))
            .prop_map(|(part, count, len, ts, producer)| Op::Append { part, count, len, ts, producer }),
        2 => (0..PARTITIONS, 0..=110i64).prop_map(|(part, percent)| Op::Delete { part, percent }),
        1 => (0..2000i64).prop_map(|now_ms| Op::Expire { now_ms }),
        1 => any::<u8>().prop_map(|key| Op::Group { key }),
        1 => (0..PARTITIONS).prop_map(|part| Op::DropPartition { part }),
    ]
}

/// The entries of each shard, in log order.
struct Log {
    shards: Vec<Vec<Entry>>,
}

fn build_log(ops: &[Op]) -> Log {
    let topic = Uuid::from_u128(0x1e7);
    let tp = |p: i32| TopicPartition::new(topic, p);
    let mut shards: Vec<Vec<Entry>> = vec![Vec::new(); DATA_SHARDS as usize + 1];
    let mut push = |shard: u64, term: u64, cmd: Command| {
        let log = &mut shards[shard as usize];
        let data = match cmd {
            Command::Append {
                timestamp_ms,
                items,
            } => Command::encode_append(timestamp_ms, &items, |_| false),
            other => other.encode(),
        };
        log.push(Entry {
            index: log.len() as u64 + 1,
            term,
            data: data.into(),
            ..Default::default()
        });
    };
    push(
        0,
        1,
        Command::Meta(MetaCommand::Init {
            data_shards: DATA_SHARDS,
            members: Vec::new(),
            replication_factor: 1,
            shards_per_node: 0,
        }),
    );
    push(
        0,
        1,
        Command::Meta(MetaCommand::CreateTopic {
            name: "t".into(),
            id: topic,
            partitions: PARTITIONS,
            replication_factor: 1,
            configs: Default::default(),
        }),
    );
    // Placement is round robin from shard 1, as the metadata's.
    let shard_of = |p: i32| 1 + (p as u64) % DATA_SHARDS;
    for s in 1..=DATA_SHARDS {
        let tps = (0..PARTITIONS)
            .filter(|p| shard_of(*p) == s)
            .map(tp)
            .collect();
        push(s, 1, Command::CreatePartitions { tps });
    }
    let mut appended = [0i64; PARTITIONS as usize];
    let mut seqs = std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        // Terms grow now and then, as leaders change.
        let term = 1 + i as u64 / 7;
        match op {
            Op::Append {
                part,
                count,
                len,
                ts,
                producer,
            } => {
                let (pid, seq) = match producer {
                    None => (-1, -1),
                    Some((pid, kind)) => {
                        let next: &mut (i32, i32) = seqs.entry((*pid, *part)).or_insert((0, -1));
                        let seq = match kind {
                            0 => next.0,
                            1 if next.1 >= 0 => next.1,
                            1 => next.0,
                            _ => next.0 + 5,
                        };
                        if *kind != 1 {
                            *next = (seq + count, seq);
                        }
                        (*pid + 1000, seq)
                    }
                };
                let payload = vec![(i % 251) as u8; *len];
                let b = batch::build_uncompressed(*ts, (pid, 0, seq), *count, &payload);
                appended[*part as usize] += i64::from(*count);
                push(
                    shard_of(*part),
                    term,
                    Command::Append {
                        timestamp_ms: 10 * i as i64,
                        items: vec![AppendItem::new(tp(*part), Bytes::from(b))],
                    },
                );
            }
            Op::Delete { part, percent } => push(
                shard_of(*part),
                term,
                Command::DeleteRecords {
                    tp: tp(*part),
                    offset: appended[*part as usize] * percent / 100,
                },
            ),
            Op::Expire { now_ms } => {
                for s in 1..=DATA_SHARDS {
                    push(
                        s,
                        term,
                        Command::ExpireProducers {
                            now_ms: *now_ms,
                            expiration_ms: 500,
                        },
                    );
                }
            }
            Op::Group { key } => push(
                1 + u64::from(*key) % DATA_SHARDS,
                term,
                Command::GroupWrite {
                    ops: vec![(vec![b'g', *key], (key % 3 != 0).then(|| vec![*key; 3]))],
                },
            ),
            Op::DropPartition { part } => push(
                shard_of(*part),
                term,
                Command::DeletePartitions {
                    tps: vec![tp(*part)],
                },
            ),
        }
    }
    Log { shards }
}

/// How a run groups entries: per turn, how many entries each shard applies, in which shard
/// order, and where it flushes (checkpoints) and crashes.
#[derive(Debug, Clone, Default)]
struct Schedule {
    chunks: Vec<usize>,
    reverse: Vec<bool>,
    checkpoint_at: Vec<usize>,
    crash_at: Vec<usize>,
}

fn open(path: &Path) -> (Store, Machine) {
    let store = Store::open(path, &StoreOptions::default()).unwrap();
    // As the driver bootstraps a shard: its configuration is what marks it as created, so that
    // the applied index found after a crash is read back (without it, replay starts at 0).
    let mut boot = store.batch();
    for s in 0..=DATA_SHARDS {
        if store.load_shard(s).unwrap().is_none() {
            boot.put_conf_state(s, &raft::eraftpb::ConfState::default())
                .unwrap();
        }
    }
    if !boot.is_empty() {
        store.write(boot, true).unwrap();
    }
    let mut config = NodeConfig::new(path.to_path_buf());
    config.data_shards = DATA_SHARDS;
    let metadata: ClusterMetadata = store
        .load_cluster_metadata()
        .unwrap()
        .map(|d| serde_json::from_slice(&d).unwrap())
        .unwrap_or_default();
    let machine = Machine::load(store.clone(), Shared::new(&config), metadata).unwrap();
    (store, machine)
}

fn applied(store: &Store, shard: u64) -> u64 {
    store.load_shard(shard).unwrap().map_or(0, |l| l.applied())
}

/// Applies the whole log under `schedule` and returns the applied state RocksDB holds.
/// Every key and value of the applied state, by column family.
type Dump = Vec<(&'static str, (Vec<u8>, Vec<u8>))>;

fn run(dir: &Path, log: &Log, schedule: &Schedule) -> Dump {
    let mut db = dir.join("db");
    let (mut store, mut machine) = open(&db);
    let mut next: Vec<usize> = vec![0; log.shards.len()];
    let mut last_checkpoint: Option<std::path::PathBuf> = None;
    let mut turn_no = 0usize;
    while next.iter().zip(&log.shards).any(|(n, l)| *n < l.len()) {
        let chunk = |k: usize| {
            schedule
                .chunks
                .get((turn_no * 3 + k) % schedule.chunks.len().max(1))
                .copied()
                .unwrap_or(1)
        };
        let mut order: Vec<usize> = (0..log.shards.len()).collect();
        if schedule
            .reverse
            .get(turn_no % schedule.reverse.len().max(1))
            == Some(&true)
        {
            order.reverse();
        }
        let mut turn = Turn::new(&store);
        for s in order {
            let take = chunk(s).min(log.shards[s].len() - next[s]);
            if take == 0 {
                continue;
            }
            turn.applied
                .insert(s as u64, (next[s] as u64, HardState::default()));
            for e in &log.shards[s][next[s]..next[s] + take] {
                let _ = machine.apply_entry(s as u64, e, &mut turn);
            }
            next[s] += take;
        }
        machine.finish_writes(&mut turn).unwrap();
        store.write_unlogged(turn.wb).unwrap();
        turn_no += 1;
        if schedule.checkpoint_at.contains(&turn_no) {
            let path = dir.join(format!("checkpoint-{turn_no}"));
            store.checkpoint(&path).unwrap();
            last_checkpoint = Some(path);
        }
        if schedule.crash_at.contains(&turn_no) {
            // Everything since the last flush is lost; start again from what it holds.
            drop(machine);
            drop(store);
            db = match &last_checkpoint {
                Some(p) => p.clone(),
                None => {
                    let fresh = dir.join(format!("fresh-{turn_no}"));
                    std::fs::create_dir_all(&fresh).unwrap();
                    fresh
                }
            };
            last_checkpoint = None;
            (store, machine) = open(&db);
            for (s, n) in next.iter_mut().enumerate() {
                *n = applied(&store, s as u64) as usize;
            }
        }
    }
    store.dump_applied_state().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn apply_is_a_pure_function_of_the_log(
        ops in proptest::collection::vec(op(), 1..60),
        chunks in proptest::collection::vec(1..8usize, 1..12),
        reverse in proptest::collection::vec(any::<bool>(), 1..5),
        checkpoint_at in proptest::collection::vec(1..30usize, 0..4),
        crash_at in proptest::collection::vec(1..40usize, 0..3),
    ) {
        let log = build_log(&ops);
        let reference_dir = tempfile::tempdir().unwrap();
        let reference = run(reference_dir.path(), &log, &Schedule { chunks: vec![1], ..Default::default() });
        let dir = tempfile::tempdir().unwrap();
        let other = run(dir.path(), &log, &Schedule { chunks, reverse, checkpoint_at, crash_at });
        prop_assert!(reference.len() > 4, "the log wrote state");
        prop_assert_eq!(reference, other);
    }
}
