//! The metadata shard's state machine: topics, their configs and partition → shard placement.
//!
//! Every change is a [`MetaCommand`] that goes through the metadata shard's Raft log; applying it
//! is deterministic (ids and timestamps are chosen by the proposer and carried in the command),
//! so every replica holds the same document. The whole document is small and is stored as JSON
//! in one RocksDB key on every apply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_config;
use crate::Error;

/// Most data shards a cluster grows to.
pub const MAX_DATA_SHARDS: u64 = 4096;

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// The cluster metadata every node holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next unallocated producer id.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Data shards of the cluster (ids `1..=data_shards`): replicated, set by
    /// [`MetaCommand::Init`] and grown by [`MetaCommand::AddShards`] as nodes join, so
    /// placement never depends on a node's flags.
    #[serde(default)]
    pub data_shards: u64,
    /// The data shards consumer groups are hashed over (the count the cluster was formed
    /// with): fixed, so a group's coordinator shard never moves. 0 in metadata made before
    /// shards could grow: `data_shards`, which then never grew.
    #[serde(default)]
    pub group_shards: u64,
    /// Data shard replicas per node the cluster aims for (`--shards` at forming): the shard
    /// count grows to about this × members ÷ replication factor. 0 in metadata made before
    /// shards could grow: the count stays.
    #[serde(default)]
    pub shards_per_node: u64,
    /// The ids of deleted topics. A data shard's leader deletes a partition its metadata
    /// does not list only when its topic is here (or when it serves the metadata itself): a
    /// replica whose metadata lags has not seen the topic yet, which is not the same as gone.
    #[serde(default)]
    pub deleted_topics: std::collections::BTreeSet<Uuid>,
    /// Each data shard's replicas (voters and learners) as its leader last reported them, and
    /// the leader's applied index then: how a node learns that a replica it holds was removed
    /// (see `driver/retire.rs`).
    #[serde(default)]
    pub shard_configs: BTreeMap<u64, (u64, Vec<u64>)>,
    /// The first voters of the shards [`MetaCommand::AddShards`] made: their configuration
    /// at index 0, which a replica that missed the command starts from.
    #[serde(default)]
    pub initial_voters: BTreeMap<u64, Vec<u64>>,
    /// The nodes the cluster was formed with, sorted. Empty in a data directory made before
    /// clusters existed: a cluster of this node alone.
    #[serde(default)]
    pub members: Vec<u64>,
    /// The nodes [`MetaCommand::Init`] formed the cluster with, sorted; `members` grows as nodes
    /// join, this never changes. Gossip publishes it so that a new node started with
    /// `--bootstrap-expect` knows whether it is one of them (it forms) or not (it joins).
    /// Empty in metadata made before it was recorded: `members` stands for it.
    #[serde(default)]
    pub formed_with: Vec<u64>,
    /// Each shard's voters, placement order (shard 0, the metadata shard, included); set by
    /// [`MetaCommand::Init`] from [`crate::placement`].
    #[serde(default)]
    pub shard_replicas: BTreeMap<u64, Vec<u64>>,
    /// Replicas per data shard the cluster aims for (`--replication-factor` at forming): a
    /// shard with fewer (a cluster that started smaller) grows as nodes join. 0 in metadata
    /// made before this was recorded: each shard keeps its size.
    #[serde(default)]
    pub replication_factor: u64,
}

/// One topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    /// The topic name.
    pub name: String,
    /// The topic id.
    pub id: Uuid,
    /// Partitions, by index.
    pub partitions: Vec<PartitionMeta>,
    /// The replication factor asked for at creation.
    pub replication_factor: i16,
    /// Explicitly set configs (defaults are not stored).
    pub configs: BTreeMap<String, String>,
}

/// Placement of one partition.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionMeta {
    /// The data shard that owns the partition.
    pub shard: u64,
}

/// A change to the cluster metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum MetaCommand {
    /// Create a topic.
    CreateTopic {
        /// Name.
        name: String,
        /// Id, chosen by the proposer.
        id: Uuid,
        /// Partition count.
        partitions: i32,
        /// Replication factor.
        replication_factor: i16,
        /// Explicit configs.
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic and all its data.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Grow a topic to `total` partitions.
    CreatePartitions {
        /// Name.
        name: String,
        /// New partition count.
        total: i32,
    },
    /// Set (`Some`) or remove (`None`) topic configs.
    AlterConfigs {
        /// Name.
        name: String,
        /// Changes.
        changes: Vec<(String, Option<String>)>,
        /// Replace the whole set rather than change the named keys (legacy AlterConfigs).
        replace: bool,
    },
    /// Set the number of data shards of a new cluster and where their replicas are (ignored
    /// once set).
    Init {
        /// Data shards.
        data_shards: u64,
        /// The nodes the cluster is formed with (empty: the proposer alone, as before clusters).
        #[serde(default)]
        members: Vec<u64>,
        /// Replicas per data shard.
        #[serde(default)]
        replication_factor: u64,
        /// Data shard replicas per node the cluster aims for as it grows (0: never grow).
        #[serde(default)]
        shards_per_node: u64,
    },
    /// Add data shards `first..first + replicas.len()` (the metadata leader's answer to nodes
    /// that joined): each replica named here creates the shard with these voters.
    AddShards {
        /// The first new shard id: must be `data_shards + 1`, so a repeated proposal is
        /// refused rather than adding shards twice.
        first: u64,
        /// Each new shard's voters, placement order (the first is the preferred leader).
        replicas: Vec<Vec<u64>>,
    },
    /// Re-place one shard's replicas (the metadata leader's answer to a dead node): the shard's
    /// leader then changes the Raft configuration to match, one step at a time.
    SetShardReplicas {
        /// The shard (0 is the metadata shard).
        shard: u64,
        /// Its replicas from now on, placement order (the first is the preferred leader).
        replicas: Vec<u64>,
    },
    /// A data shard's leader reports the shard's configuration (sorted voters and learners) as
    /// of its applied index `index`; a report older than the recorded one is refused.
    ShardConfigured {
        /// The data shard.
        shard: u64,
        /// The leader's applied index when the configuration held.
        index: u64,
        /// Voters and learners, sorted.
        members: Vec<u64>,
    },
    /// Admit a node that joined through gossip: it becomes a member, first a learner of the
    /// metadata shard, then a replica of the shards placement moves to it.
    AddMember {
        /// The node id.
        node: u64,
    },
    /// Allocate a block of `count` producer ids.
    AllocateProducerIds {
        /// Block size.
        count: i64,
    },
}

/// What applying a [`MetaCommand`] changed, for the driver to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaEffect {
    /// Nothing beyond the document.
    None,
    /// These partitions now exist (with their shard).
    PartitionsCreated(Uuid, Vec<(i32, u64)>),
    /// This topic and all its partitions are gone.
    TopicDeleted(TopicMeta),
    /// The first id of an allocated producer-id block.
    ProducerIds(i64),
    /// These data shards now exist, with their first voters.
    ShardsAdded(Vec<(u64, Vec<u64>)>),
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::InvalidTopic("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(Error::InvalidTopic(format!(
            "topic name {name:?} is not allowed"
        )));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(Error::InvalidTopic(format!(
            "topic name is longer than {MAX_TOPIC_NAME_LEN} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::InvalidTopic(format!(
            "topic name {name:?} contains {c:?}; only ASCII alphanumerics, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

impl ClusterMetadata {
    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// The voters of `shard`, placement order; `me` alone in a cluster of one made before
    /// clusters existed.
    pub fn shard_replicas(&self, shard: u64, me: u64) -> Vec<u64> {
        match self.shard_replicas.get(&shard) {
            Some(r) => r.clone(),
            None if self.members.is_empty() => vec![me],
            None => Vec::new(),
        }
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.id == id)
    }

    /// Checks a command against the current document without changing it.
    pub fn check(&self, cmd: &MetaCommand) -> Result<(), Error> {
        self.clone().apply(cmd).map(|_| ())
    }

    /// Applies a command. On error the document is unchanged.
    pub fn apply(&mut self, cmd: &MetaCommand) -> Result<MetaEffect, Error> {
        let data_shards = self.data_shards;
        let placing = matches!(
            cmd,
            MetaCommand::CreateTopic { .. } | MetaCommand::CreatePartitions { .. }
        );
        if placing && data_shards == 0 {
            return Err(Error::InvalidRequest(
                "the cluster has no data shards yet".into(),
            ));
        }
        match cmd {
            MetaCommand::Init {
                data_shards,
                members,
                replication_factor,
                shards_per_node,
            } => {
                if self.data_shards == 0 {
                    self.data_shards = (*data_shards).max(1);
                    self.group_shards = self.data_shards;
                    self.shards_per_node = *shards_per_node;
                    if !members.is_empty() {
                        let mut members = members.clone();
                        members.sort_unstable();
                        members.dedup();
                        self.shard_replicas = crate::placement::place_shards(
                            &members,
                            self.data_shards,
                            *replication_factor as usize,
                        );
                        self.formed_with = members.clone();
                        self.members = members;
                        self.replication_factor = *replication_factor;
                    }
                }
                Ok(MetaEffect::None)
            }
            MetaCommand::AddShards { first, replicas } => {
                let valid = |r: &Vec<u64>| {
                    let mut unique = r.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    !r.is_empty()
                        && unique.len() == r.len()
                        && r.iter().all(|n| self.members.contains(n))
                };
                if self.members.is_empty()
                    || *first != self.data_shards + 1
                    || replicas.is_empty()
                    || !replicas.iter().all(valid)
                {
                    return Err(Error::InvalidRequest(format!(
                        "shards from {first} with replicas {replicas:?}: the next shard is {} and replicas must be distinct members",
                        self.data_shards + 1
                    )));
                }
                if self.group_shards == 0 {
                    self.group_shards = self.data_shards;
                }
                let mut added = Vec::with_capacity(replicas.len());
                for (k, r) in replicas.iter().enumerate() {
                    let shard = first + k as u64;
                    self.shard_replicas.insert(shard, r.clone());
                    self.initial_voters.insert(shard, r.clone());
                    added.push((shard, r.clone()));
                }
                self.data_shards += replicas.len() as u64;
                Ok(MetaEffect::ShardsAdded(added))
            }
            MetaCommand::ShardConfigured {
                shard,
                index,
                members,
            } => {
                let newer = self
                    .shard_configs
                    .get(shard)
                    .is_none_or(|(known, _)| known < index);
                if *shard == 0 || !self.shard_replicas.contains_key(shard) || !newer {
                    return Err(Error::InvalidRequest(format!(
                        "configuration of shard {shard} at {index}: not a data shard, or older than the one recorded"
                    )));
                }
                self.shard_configs.insert(*shard, (*index, members.clone()));
                Ok(MetaEffect::None)
            }
            MetaCommand::AddMember { node } => {
                if *node == 0 || self.members.is_empty() {
                    // A cluster made before clusters existed has no member list to extend.
                    return Err(Error::InvalidRequest(format!(
                        "node {node} cannot join this cluster"
                    )));
                }
                if !self.members.contains(node) {
                    self.members.push(*node);
                    self.members.sort_unstable();
                }
                Ok(MetaEffect::None)
            }
            MetaCommand::SetShardReplicas { shard, replicas } => {
                let known = self.shard_replicas.contains_key(shard);
                let mut unique = replicas.clone();
                unique.sort_unstable();
                unique.dedup();
                if !known
                    || replicas.is_empty()
                    || unique.len() != replicas.len()
                    || !replicas.iter().all(|r| self.members.contains(r))
                {
                    return Err(Error::InvalidRequest(format!(
                        "replicas {replicas:?} for shard {shard}: the shard must exist and the replicas be distinct members"
                    )));
                }
                self.shard_replicas.insert(*shard, replicas.clone());
                Ok(MetaEffect::None)
            }
            MetaCommand::CreateTopic {
                name,
                id,
                partitions,
                replication_factor,
                configs,
            } => {
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(Error::TopicAlreadyExists(name.clone()));
                }
                // Kafka refuses names that differ only in '.' versus '_': both map to the same
                // metric names.
                let folded = name.replace('.', "_");
                if let Some(other) = self.topics.keys().find(|t| t.replace('.', "_") == folded) {
                    return Err(Error::InvalidTopic(format!(
                        "Topic '{name}' collides with existing topic: {other}"
                    )));
                }
                if *partitions <= 0 {
                    return Err(Error::InvalidPartitions(format!(
                        "number of partitions must be larger than 0, got {partitions}"
                    )));
                }
                if *replication_factor <= 0 {
                    return Err(Error::InvalidReplicationFactor(format!(
                        "replication factor must be larger than 0, got {replication_factor}"
                    )));
                }
                let nodes = self.members.len().max(1);
                if *replication_factor as usize > nodes {
                    return Err(Error::InvalidReplicationFactor(format!(
                        "Replication factor: {replication_factor} larger than available brokers: {nodes}."
                    )));
                }
                topic_config::validate_all(configs).map_err(Error::InvalidConfig)?;
                let placed = self.place(0, *partitions, data_shards);
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        name: name.clone(),
                        id: *id,
                        partitions: placed
                            .iter()
                            .map(|(_, shard)| PartitionMeta { shard: *shard })
                            .collect(),
                        replication_factor: *replication_factor,
                        configs: configs.clone(),
                    },
                );
                Ok(MetaEffect::PartitionsCreated(*id, placed))
            }
            MetaCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(t) => {
                    self.deleted_topics.insert(t.id);
                    Ok(MetaEffect::TopicDeleted(t))
                }
                None => Err(Error::UnknownTopicOrPartition),
            },
            MetaCommand::CreatePartitions { name, total } => {
                let current = self
                    .topics
                    .get(name)
                    .ok_or(Error::UnknownTopicOrPartition)?
                    .partitions
                    .len() as i32;
                if *total <= current {
                    return Err(Error::InvalidPartitions(format!(
                        "topic currently has {current} partitions, which is higher than or equal to the requested {total}"
                    )));
                }
                let placed = self.place(current, *total, data_shards);
                let topic = self.topics.get_mut(name).expect("checked above");
                topic.partitions.extend(
                    placed
                        .iter()
                        .map(|(_, shard)| PartitionMeta { shard: *shard }),
                );
                Ok(MetaEffect::PartitionsCreated(topic.id, placed))
            }
            MetaCommand::AlterConfigs {
                name,
                changes,
                replace,
            } => {
                let topic = self
                    .topics
                    .get(name)
                    .ok_or(Error::UnknownTopicOrPartition)?;
                let mut configs = if *replace {
                    BTreeMap::new()
                } else {
                    topic.configs.clone()
                };
                for (k, v) in changes {
                    match v {
                        Some(v) => {
                            topic_config::validate(k, v).map_err(Error::InvalidConfig)?;
                            configs.insert(k.clone(), v.clone());
                        }
                        None => {
                            if topic_config::config_def(k).is_none() {
                                return Err(Error::InvalidConfig(format!(
                                    "unknown topic config {k}"
                                )));
                            }
                            configs.remove(k);
                        }
                    }
                }
                self.topics.get_mut(name).expect("checked above").configs = configs;
                Ok(MetaEffect::None)
            }
            MetaCommand::AllocateProducerIds { count } => {
                if *count <= 0 {
                    return Err(Error::InvalidRequest(
                        "producer id block must be positive".into(),
                    ));
                }
                let first = self.next_producer_id;
                self.next_producer_id += count;
                Ok(MetaEffect::ProducerIds(first))
            }
        }
    }

    /// Places partitions `from..to`, each on the data shard holding the fewest partitions
    /// (the lowest id among equals), so shards added as the cluster grows fill up first.
    fn place(&self, from: i32, to: i32, data_shards: u64) -> Vec<(i32, u64)> {
        let mut load = vec![0usize; data_shards.max(1) as usize];
        for p in self.topics.values().flat_map(|t| &t.partitions) {
            if let Some(n) = p
                .shard
                .checked_sub(1)
                .and_then(|i| load.get_mut(i as usize))
            {
                *n += 1;
            }
        }
        (from..to)
            .map(|p| {
                let (i, n) = load
                    .iter_mut()
                    .enumerate()
                    .min_by_key(|(i, n)| (**n, *i))
                    .expect("at least one shard");
                *n += 1;
                (p, 1 + i as u64)
            })
            .collect()
    }

    /// The data shards consumer groups are hashed over (fixed when the cluster formed).
    pub fn group_shard_count(&self) -> u64 {
        if self.group_shards > 0 {
            self.group_shards
        } else {
            self.data_shards
        }
    }

    /// The data shard count the cluster aims for with its members: never fewer than it has.
    pub fn wanted_data_shards(&self) -> u64 {
        if self.shards_per_node == 0 || self.members.is_empty() {
            return self.data_shards;
        }
        let rf = self.replication_factor.max(1) as usize;
        crate::placement::data_shard_count(self.shards_per_node, self.members.len(), rf)
            .min(MAX_DATA_SHARDS)
            .max(self.data_shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn members_join_and_replicas_move_only_to_members() {
        let mut m = ClusterMetadata::default();
        m.apply(&MetaCommand::Init {
            data_shards: 2,
            members: vec![1, 2, 3],
            replication_factor: 3,
            shards_per_node: 2,
        })
        .unwrap();
        assert_eq!(m.replication_factor, 3);
        let set = |shard, replicas: &[u64]| MetaCommand::SetShardReplicas {
            shard,
            replicas: replicas.to_vec(),
        };
        // Node 4 is not a member yet; a duplicate, an empty set, an unknown shard are refused,
        // and none of them changes the document.
        let before = m.clone();
        for bad in [
            set(1, &[1, 2, 4]),
            set(1, &[1, 1, 2]),
            set(1, &[]),
            set(9, &[1, 2, 3]),
        ] {
            assert!(
                matches!(m.apply(&bad), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
            assert_eq!(m, before);
        }
        m.apply(&MetaCommand::AddMember { node: 4 }).unwrap();
        m.apply(&MetaCommand::AddMember { node: 4 }).unwrap();
        assert_eq!(m.members, vec![1, 2, 3, 4]);
        m.apply(&set(1, &[1, 2, 4])).unwrap();
        assert_eq!(m.shard_replicas[&1], vec![1, 2, 4]);
        // Configuration reports only move forward.
        let conf = |shard, index, members: &[u64]| MetaCommand::ShardConfigured {
            shard,
            index,
            members: members.to_vec(),
        };
        m.apply(&conf(1, 10, &[1, 2, 3, 4])).unwrap();
        m.apply(&conf(1, 12, &[1, 2, 4])).unwrap();
        for bad in [
            conf(1, 11, &[1, 2, 3]),
            conf(1, 12, &[1]),
            conf(0, 20, &[1]),
            conf(9, 20, &[1]),
        ] {
            assert!(m.apply(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(m.shard_configs[&1], (12, vec![1, 2, 4]));
        assert!(m.apply(&MetaCommand::AddMember { node: 0 }).is_err());
        // A cluster made before clusters existed has no member list to extend.
        let mut old = ClusterMetadata {
            data_shards: 2,
            ..Default::default()
        };
        assert!(old.apply(&MetaCommand::AddMember { node: 2 }).is_err());
    }

    #[test]
    fn shards_grow_with_members_and_new_partitions_fill_them_first() {
        let mut m = ClusterMetadata::default();
        m.apply(&MetaCommand::Init {
            data_shards: 2,
            members: vec![1, 2, 3],
            replication_factor: 3,
            shards_per_node: 2,
        })
        .unwrap();
        assert_eq!((m.data_shards, m.wanted_data_shards()), (2, 2));
        m.apply(&create("old", 4)).unwrap();
        m.apply(&MetaCommand::AddMember { node: 4 }).unwrap();
        m.apply(&MetaCommand::AddMember { node: 5 }).unwrap();
        m.apply(&MetaCommand::AddMember { node: 6 }).unwrap();
        // 2 per node × 6 nodes ÷ 3 replicas.
        assert_eq!(m.wanted_data_shards(), 4);
        let add = |first, replicas: Vec<Vec<u64>>| MetaCommand::AddShards { first, replicas };
        let before = m.clone();
        for bad in [
            add(4, vec![vec![4, 5, 6]]),         // not the next id
            add(3, vec![vec![4, 5, 9]]),         // not a member
            add(3, vec![vec![4, 4, 5]]),         // not distinct
            add(3, vec![vec![4, 5, 6], vec![]]), // empty
            add(3, vec![]),
        ] {
            assert!(
                matches!(m.apply(&bad), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
            assert_eq!(m, before);
        }
        let eff = m
            .apply(&add(3, vec![vec![4, 5, 6], vec![5, 6, 4]]))
            .unwrap();
        assert_eq!(
            eff,
            MetaEffect::ShardsAdded(vec![(3, vec![4, 5, 6]), (4, vec![5, 6, 4])])
        );
        // The same proposal twice adds nothing more.
        assert!(m.apply(&add(3, vec![vec![4, 5, 6]])).is_err());
        assert_eq!((m.data_shards, m.group_shard_count()), (4, 2));
        assert_eq!(m.initial_voters[&4], vec![5, 6, 4]);
        // Shards 1 and 2 hold two partitions each: the next four go to 3 and 4 first.
        let MetaEffect::PartitionsCreated(_, placed) = m.apply(&create("new", 6)).unwrap() else {
            panic!("expected partitions");
        };
        assert_eq!(placed, vec![(0, 3), (1, 4), (2, 3), (3, 4), (4, 1), (5, 2)]);
    }

    #[test]
    fn topic_lifecycle() {
        let mut m = ClusterMetadata {
            data_shards: 2,
            ..Default::default()
        };
        let eff = m.apply(&create("orders", 3)).unwrap();
        let MetaEffect::PartitionsCreated(_, placed) = eff else {
            panic!("expected partitions");
        };
        assert_eq!(placed, vec![(0, 1), (1, 2), (2, 1)]);
        assert_eq!(
            m.apply(&create("orders", 1)),
            Err(Error::TopicAlreadyExists("orders".into()))
        );
        m.apply(&MetaCommand::CreatePartitions {
            name: "orders".into(),
            total: 5,
        })
        .unwrap();
        assert_eq!(m.topic("orders").unwrap().partitions.len(), 5);
        assert!(matches!(
            m.apply(&MetaCommand::CreatePartitions {
                name: "orders".into(),
                total: 2
            },),
            Err(Error::InvalidPartitions(_))
        ));
        assert!(matches!(
            m.apply(&MetaCommand::DeleteTopic {
                name: "orders".into()
            },),
            Ok(MetaEffect::TopicDeleted(_))
        ));
        assert!(m.topics.is_empty());
    }

    #[test]
    fn rejects_bad_topics() {
        let mut m = ClusterMetadata {
            data_shards: 2,
            ..Default::default()
        };
        for (cmd, want) in [
            (create("", 1), "InvalidTopic"),
            (create("..", 1), "InvalidTopic"),
            (create("a/b", 1), "InvalidTopic"),
            (create(&"x".repeat(250), 1), "InvalidTopic"),
            (create("ok", 0), "InvalidPartitions"),
        ] {
            let err = m.apply(&cmd).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{err:?}");
        }
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "nope".to_string());
        let cmd = MetaCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            replication_factor: 1,
            configs,
        };
        assert!(matches!(m.apply(&cmd), Err(Error::InvalidConfig(_))));
        assert!(m.topics.is_empty());

        m.apply(&create("a.b", 1)).unwrap();
        let err = m.apply(&create("a_b", 1)).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidTopic("Topic 'a_b' collides with existing topic: a.b".into())
        );
    }
}
