//! Start-up: every local shard's Raft state and the applied state machine, from RocksDB.
//!
//! Only what is small is loaded: Raft hard and conf states, the entries not yet applied,
//! partition states, producer states and the metadata document. Batches stay where they are
//! (the partition index points into the Raft log), so start-up time does not grow with the
//! data a node holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use jet_storage::{ShardLog, Store};
use raft::eraftpb::ConfState;
use raft::RawNode;

use super::apply::{Machine, Part};
use super::{Driver, Shard};
use crate::metadata::ClusterMetadata;
use crate::node::{NodeConfig, Shared};
use crate::partition::PartitionHandle;
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
        let mut parts = HashMap::new();
        for (tp, state) in store.load_partition_states()? {
            let Some(status) = shared.shards.get(state.shard as usize) else {
                return Err(Error::Storage(format!(
                    "partition {tp:?} is on shard {}, which this node does not run",
                    state.shard
                )));
            };
            let handle =
                PartitionHandle::new(tp, status.clone(), &state, shared.tail_budget.clone());
            parts.insert(
                tp,
                Part {
                    state,
                    handle,
                    producers: HashMap::new(),
                },
            );
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
    ) -> Result<Driver, Error> {
        let metadata: ClusterMetadata = match store.load_cluster_metadata()? {
            Some(doc) => serde_json::from_slice(&doc)
                .map_err(|e| Error::Storage(format!("cluster metadata: {e}")))?,
            None => ClusterMetadata::default(),
        };

        let mut boot = store.batch();
        let mut shards = Vec::new();
        for id in 0..=config.data_shards {
            let log = match store.load_shard(id)? {
                Some(found) => found,
                None => {
                    let cs = ConfState {
                        voters: vec![config.node_id],
                        ..Default::default()
                    };
                    boot.put_conf_state(id, &cs)?;
                    ShardLog::bootstrap(store.clone(), id, cs)
                }
            };
            let applied = log.applied();
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
            });
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
            machine,
            reconciling: HashSet::new(),
            reconcile_due: true,
            next_producer_expiry: Instant::now(),
            next_metrics: Instant::now(),
            leadership_reported: false,
        })
    }
}
