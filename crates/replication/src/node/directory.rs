//! Who is where: the brokers clients may dial and who leads each shard, as this node knows it.
//!
//! Local Raft state answers first (a shard this node is a replica of knows its leader and
//! voters); gossip fills in the rest ([`Directory`], fed by the broker from the chitchat view):
//! the client address of every live broker, and the leaders of shards this node does not hold.
//! Gossip is eventually consistent, so everything here is a hint that clients refresh on their
//! next Metadata request, as they do with Kafka.

use crate::driver::DriverMsg;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Node;
use crate::driver::METADATA_SHARD;
use crate::{Error, PartitionHandle, TopicPartition};

/// A broker as Kafka clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id (the Kafka broker id).
    pub node_id: u64,
    /// Host clients of the default listener dial.
    pub host: String,
    /// Port clients of the default listener dial.
    pub port: i32,
    /// `--rack`, if set.
    pub rack: Option<String>,
    /// Host and port per named listener the broker publishes (`--listener NAME=...`), the
    /// default listener included when it is published under its name.
    pub listeners: BTreeMap<String, (String, i32)>,
}

impl BrokerInfo {
    /// Where clients of listener `name` dial this broker: its address for that listener, or its
    /// default listener's when it has none by that name.
    pub fn endpoint(&self, name: &str) -> (&str, i32) {
        match self.listeners.get(name) {
            Some((host, port)) => (host, *port),
            None => (&self.host, self.port),
        }
    }
}

/// What gossip says about the other nodes.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Live brokers other than this node, by node id.
    pub brokers: BTreeMap<u64, BrokerInfo>,
    /// Shard → (leader node, term), as each leader publishes it.
    pub leaders: BTreeMap<u64, (u64, u64)>,
    /// Shard → in-sync replicas, as each leader publishes them.
    pub isr: BTreeMap<u64, Vec<u64>>,
    /// Nodes gossip has not heard from for `--node-dead-after`: the metadata leader re-places
    /// their replicas.
    pub dead: Vec<u64>,
    /// Other nodes gossip sees alive (ready or not: a joining node is not ready until it is
    /// admitted).
    pub alive: Vec<u64>,
}

impl Node {
    /// Replaces what gossip says about the other nodes.
    pub fn set_directory(&self, directory: Directory) {
        let mut current = self.directory.write().expect("directory lock");
        let first = !self.liveness_sent.swap(true, Ordering::AcqRel);
        if first || current.dead != directory.dead || current.alive != directory.alive {
            // The driver keeps its own copy; if its queue is full, the next view retries.
            let msg = DriverMsg::Liveness {
                alive: directory.alive.clone(),
                dead: directory.dead.clone(),
            };
            if self.tx.try_send(msg).is_err() {
                self.liveness_sent.store(false, Ordering::Release);
            }
        }
        *current = Arc::new(directory);
    }

    /// What gossip last said about the other nodes.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().expect("directory lock").clone()
    }

    /// Live brokers other than this one, by node id.
    pub fn other_brokers(&self) -> Vec<BrokerInfo> {
        self.directory().brokers.values().cloned().collect()
    }

    /// The client address of another live broker.
    pub fn broker(&self, node_id: u64) -> Option<BrokerInfo> {
        self.directory().brokers.get(&node_id).cloned()
    }

    /// The node leading `shard` and the leader epoch (its term): this node's Raft state when it
    /// is a replica of the shard and knows a leader, else the leader's own gossip.
    pub fn shard_leader(&self, shard: u64) -> Option<(u64, i32)> {
        let status = self.shared.shard(shard)?;
        let leader = status.leader.load(Ordering::Acquire);
        if leader != 0 {
            if leader == self.config.node_id && !status.is_leader.load(Ordering::Acquire) {
                // Elected but still applying the previous terms' entries: not serving yet.
                return None;
            }
            return Some((leader, status.leader_epoch()));
        }
        self.directory()
            .leaders
            .get(&shard)
            .map(|&(node, term)| (node, term.min(i32::MAX as u64) as i32))
    }

    /// The shard's replicas, placement order.
    pub fn shard_replicas(&self, shard: u64) -> Vec<u64> {
        self.metadata().shard_replicas(shard, self.config.node_id)
    }

    /// The shard's in-sync replicas: the leader's own computation when this node leads it or
    /// follows it, else what the leader published through gossip, else the replicas gossip
    /// sees alive.
    pub fn shard_isr(&self, shard: u64) -> Vec<u64> {
        if let Some(status) = self.shared.shard(shard) {
            let members = status.members();
            if !members.isr.is_empty() {
                return members.isr;
            }
        }
        let directory = self.directory();
        if let Some(isr) = directory.isr.get(&shard) {
            return isr.clone();
        }
        self.shard_replicas(shard)
            .into_iter()
            .filter(|n| *n == self.config.node_id || directory.brokers.contains_key(n))
            .collect()
    }

    /// The partition's handle on this node; for a partition the cluster has but this node holds
    /// no replica of (or has not created yet), [`Error::NotLeader`], which clients answer by
    /// asking Metadata where the leader is.
    pub fn partition_here(&self, tp: &TopicPartition) -> Result<PartitionHandle, Error> {
        if let Some(h) = self.partition(tp) {
            return Ok(h);
        }
        let exists = self
            .metadata()
            .topic_by_id(&tp.topic_id)
            .is_some_and(|t| tp.partition >= 0 && (tp.partition as usize) < t.partitions.len());
        Err(if exists {
            Error::NotLeader
        } else {
            Error::UnknownTopicOrPartition
        })
    }

    /// The metadata shard's leader: Kafka's controller id.
    pub fn controller_id(&self) -> Option<u64> {
        self.shard_leader(METADATA_SHARD).map(|(node, _)| node)
    }
}
