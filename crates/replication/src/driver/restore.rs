//! Start-up: every local shard's Raft state and the applied state machine, from RocksDB.
//!
//! Only what is small is loaded: Raft hard and conf states, the entries not yet applied,
//! partition states, producer states and the metadata document. Batches stay where they are
//! (the partition index points into the Raft log), so start-up time does not grow with the
//! data a node holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jet_storage::{ShardLog, Store};
use raft::eraftpb::ConfState;
use raft::RawNode;

use super::apply::{Machine, Part};
use super::network::PeerSink;
use super::{Clock, Driver, Shard, METADATA_SHARD};
use crate::metadata::ClusterMetadata;
use crate::node::{NodeConfig, Shared};
use crate::placement;
use crate::producer::ProducerEntry;
use crate::Error;

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Machine {
    /// The applied state as RocksDB holds it: partition states, producer states and the
    /// metadata document, published to readers through `shared`.
    pub(crate) fn load(
        store: Store,
        shared: Arc<Shared>,
        metadata: ClusterMetadata,
    ) -> Result<Machine, Error> {
        shared.grow_shards(metadata.data_shards);
        let mut parts = HashMap::new();
        for (tp, state) in store.load_partition_states()? {
            let shard = state.shard;
            let part = Part::new(tp, state, &shared).ok_or_else(|| {
                Error::Storage(format!(
                    "partition {tp:?} is on shard {shard}, which this node does not run"
                ))
            })?;
            parts.insert(tp, part);
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
        Ok(Machine {
            store,
            shared,
            metadata,
            parts,
        })
    }
}

impl Driver {
    pub(super) fn open(
        config: NodeConfig,
        store: Store,
        shared: Arc<Shared>,
        net: Option<Arc<dyn PeerSink>>,
        clock: Clock,
    ) -> Result<Driver, Error> {
        let now = clock.now();
        let metadata: ClusterMetadata = match store.load_cluster_metadata()? {
            Some(doc) => serde_json::from_slice(&doc)
                .map_err(|e| Error::Storage(format!("cluster metadata: {e}")))?,
            None => ClusterMetadata::default(),
        };
        let me = config.node_id;
        // A new shard's first configuration comes from placement over the members the cluster
        // is formed with: every node started with the same flags derives the same voters.
        let mut members = config.members.clone();
        if members.is_empty() {
            members.push(me);
        }
        let placement = placement::place_shards(
            &members,
            config.data_shards,
            config.replication_factor as usize,
        );

        let mut boot = store.batch();
        let mut shards = Vec::new();
        let mut slots = vec![None; config.data_shards as usize + 1];
        // Shards are only ever created with the cluster: a data directory that holds the
        // metadata shard never bootstraps another (its members were fixed when it was made).
        let mut new_cluster = !config.join;
        // Every stored replica, also of shards the cluster added after the metadata this
        // node stored last (a crash can lose the metadata's apply but not the replica).
        let mut ids: Vec<u64> = (0..=config.data_shards).collect();
        ids.extend(store.stored_shards()?);
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if id > crate::metadata::MAX_DATA_SHARDS {
                return Err(Error::Storage(format!(
                    "a replica of shard {id} is stored: no cluster has that shard"
                )));
            }
            let (log, fresh, preferred) = match store.load_shard(id)? {
                Some(found) => {
                    if id == METADATA_SHARD {
                        new_cluster = false;
                    }
                    (found, false, None)
                }
                None if !new_cluster => continue,
                None => {
                    let voters = placement.get(&id).cloned().unwrap_or_default();
                    let holds =
                        voters.contains(&me) || (id == METADATA_SHARD && members.contains(&me));
                    if !holds {
                        continue;
                    }
                    let learners = if id == METADATA_SHARD {
                        members
                            .iter()
                            .copied()
                            .filter(|m| !voters.contains(m))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let cs = ConfState {
                        voters: voters.clone(),
                        learners,
                        ..Default::default()
                    };
                    boot.put_conf_state(id, &cs)?;
                    (
                        ShardLog::bootstrap(store.clone(), id, cs),
                        true,
                        voters.first().copied(),
                    )
                }
            };
            let raw = new_raw_node(&config, id, log)?;
            let voters = &raw.store().conf_state().voters;
            let alone = voters.len() == 1 && voters[0] == me;
            let mut shard = new_shard(id, raw, now);
            if alone || (fresh && preferred == Some(me)) {
                // The only voter need not wait an election timeout to lead; in a new cluster the
                // preferred leader stands first, so leaders start spread out.
                shard
                    .raw
                    .campaign()
                    .map_err(|e| Error::Storage(format!("shard {id}: {e}")))?;
            }
            shared.grow_shards(id);
            if let Some(status) = shared.shard(id) {
                status
                    .local
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            if slots.len() <= id as usize {
                slots.resize(id as usize + 1, None);
            }
            slots[id as usize] = Some(shards.len());
            shards.push(shard);
        }
        if !boot.is_empty() {
            store.write(boot, true)?;
        }

        let machine = Machine::load(store.clone(), shared.clone(), metadata)?;
        tracing::info!(
            shards = shards.len(),
            topics = machine.metadata.topics.len(),
            partitions = machine.parts.len(),
            "shards restored"
        );
        Ok(Driver {
            config,
            store: store.clone(),
            shared: shared.clone(),
            shards,
            slots,
            net,
            forwarded: HashMap::new(),
            forward_seq: 0,
            hand_off: None,
            members_due: true,
            clock,
            machine,
            reconciling: HashSet::new(),
            reconcile_due: true,
            next_producer_expiry: now,
            next_metrics: now,
            leadership_reported: false,
            dead: Default::default(),
            alive: Default::default(),
            liveness_known: false,
            last_replacement: None,
            added_shards: Vec::new(),
        })
    }
}

/// raft-rs's node for shard `id` over `log`, with Jet's Raft settings.
pub(super) fn new_raw_node(
    config: &NodeConfig,
    id: u64,
    log: ShardLog,
) -> Result<RawNode<ShardLog>, Error> {
    let applied = log.applied();
    let raft_config = raft::Config {
        id: config.node_id,
        election_tick: config.election_ticks.0,
        min_election_tick: config.election_ticks.0,
        max_election_tick: config.election_ticks.1,
        heartbeat_tick: 3,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        pre_vote: true,
        // A leader cut off from a majority steps down after an election timeout, so a
        // partitioned node stops claiming partitions.
        check_quorum: true,
        ..Default::default()
    };
    RawNode::new(&raft_config, log, &raft_logger())
        .map_err(|e| Error::Storage(format!("shard {id}: {e}")))
}

/// The driver's record of a local replica.
pub(super) fn new_shard(id: u64, raw: RawNode<ShardLog>, now: std::time::Instant) -> Shard {
    let applied = raw.store().applied();
    let applied_term = raft::Storage::term(raw.store(), applied).unwrap_or(0);
    Shard {
        id,
        raw,
        applied,
        applied_term,
        leader_since: None,
        caught_up: HashMap::new(),
        last_transfer: None,
        prev_last: (0, now),
        truncate_proposed: 0,
        truncate_now: false,
        last_truncate_proposal: now,
        pending: BTreeMap::new(),
        queued: Vec::new(),
        prepared_at: None,
        last_conf_change: None,
        snapshotting: HashMap::new(),
        last_config_report: None,
    }
}
