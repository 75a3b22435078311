//! Key layouts. Every integer is big-endian so that byte order is numeric order, which is what
//! makes `seek`, iteration bounds and `delete_range` work on offsets and indexes.

use uuid::Uuid;

/// One partition of one topic, named by topic id (stable across renames and re-creations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's id (Kafka topic id, a UUID).
    pub topic_id: Uuid,
    /// The partition index, never negative.
    pub partition: i32,
}

impl TopicPartition {
    /// A partition of a topic.
    pub fn new(topic_id: Uuid, partition: i32) -> Self {
        Self {
            topic_id,
            partition,
        }
    }
}

/// `raft_log`: shard (8) + index (8), the prefix of an entry's key and the bound of range
/// deletes (a 16-byte prefix sorts before every longer key that starts with it).
pub fn raft_entry(shard: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&shard.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// `raft_log`: the full key of an entry: shard (8) + index (8) + term (8) + entry type (1).
///
/// The term and type live in the key so that the value is the entry's data verbatim: a record
/// batch is then stored once, at a position the partition index can point into, without a
/// copy to put a header in front of it.
pub fn raft_entry_full(shard: u64, index: u64, term: u64, entry_type: u8) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..16].copy_from_slice(&raft_entry(shard, index));
    k[16..24].copy_from_slice(&term.to_be_bytes());
    k[24] = entry_type;
    k
}

/// Parses a full `raft_log` key: (shard, index, term, entry type).
pub fn parse_raft_entry(key: &[u8]) -> Option<(u64, u64, u64, u8)> {
    if key.len() != 25 {
        return None;
    }
    let at = |i: usize| u64::from_be_bytes(key[i..i + 8].try_into().expect("8 bytes"));
    Some((at(0), at(8), at(16), key[24]))
}

/// Fields of a shard's raft state in `raft_state`.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub enum RaftStateField {
    /// `eraftpb::HardState`.
    HardState = 1,
    /// `eraftpb::ConfState`.
    ConfState = 2,
    /// Index and term of the last entry removed from the raft log (16 bytes).
    Truncated = 3,
    /// Last applied index (8 bytes).
    Applied = 4,
}

/// `raft_state`: shard (8) + field (1).
pub fn raft_state(shard: u64, field: RaftStateField) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&shard.to_be_bytes());
    k[8] = field as u8;
    k
}

/// `index`: topic id (16) + partition (4) + base offset (8).
pub fn index_entry(tp: &TopicPartition, base_offset: i64) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..20].copy_from_slice(&partition_prefix(tp));
    // Offsets are never negative, so the sign bit never reorders keys.
    k[20..].copy_from_slice(&(base_offset.max(0) as u64).to_be_bytes());
    k
}

/// The 20-byte prefix shared by every record of a partition (index entries, states).
pub fn partition_prefix(tp: &TopicPartition) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(tp.topic_id.as_bytes());
    k[16..].copy_from_slice(&(tp.partition.max(0) as u32).to_be_bytes());
    k
}

/// The base offset stored in an `index` key.
pub fn index_entry_offset(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(20..28)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail) as i64)
}

/// `meta` tag: the storage format of the data directory.
pub const META_FORMAT: &[u8] = b"format";
/// `meta` tag: the node id the data directory belongs to.
pub const META_NODE_ID: &[u8] = b"node_id";
/// `meta` tag: the cluster metadata document.
pub const META_CLUSTER: &[u8] = b"cluster";
/// `meta` tag prefix: partition state records.
pub const META_PARTITION_PREFIX: u8 = b'p';
/// `meta` tag prefix: idempotent-producer state records.
pub const META_PRODUCER_PREFIX: u8 = b'q';
/// `meta` tag prefix: consumer group records.
pub const META_GROUP_PREFIX: u8 = b'g';

/// `meta`: partition state of `tp`: `p` + topic id + partition.
pub fn partition_state(tp: &TopicPartition) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = META_PARTITION_PREFIX;
    k[1..].copy_from_slice(&partition_prefix(tp));
    k
}

/// Parses a partition-state key back into its partition.
pub fn parse_partition_state(key: &[u8]) -> Option<TopicPartition> {
    if key.len() != 21 || key[0] != META_PARTITION_PREFIX {
        return None;
    }
    let topic_id = Uuid::from_slice(&key[1..17]).ok()?;
    let partition = u32::from_be_bytes(key[17..21].try_into().ok()?) as i32;
    Some(TopicPartition::new(topic_id, partition))
}

/// `meta`: producer state of `producer_id` on `tp`: `q` + topic id + partition + producer id.
pub fn producer_state(tp: &TopicPartition, producer_id: i64) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[..21].copy_from_slice(&producer_prefix(tp));
    k[21..].copy_from_slice(&(producer_id.max(0) as u64).to_be_bytes());
    k
}

/// `meta`: the prefix of every producer-state record of `tp`.
pub fn producer_prefix(tp: &TopicPartition) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = META_PRODUCER_PREFIX;
    k[1..].copy_from_slice(&partition_prefix(tp));
    k
}

/// Parses a producer-state key back into its partition and producer id.
pub fn parse_producer_state(key: &[u8]) -> Option<(TopicPartition, i64)> {
    if key.len() != 29 || key[0] != META_PRODUCER_PREFIX {
        return None;
    }
    let topic_id = Uuid::from_slice(&key[1..17]).ok()?;
    let partition = u32::from_be_bytes(key[17..21].try_into().ok()?) as i32;
    let pid = u64::from_be_bytes(key[21..29].try_into().ok()?) as i64;
    Some((TopicPartition::new(topic_id, partition), pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_offset() {
        let tp = TopicPartition::new(Uuid::new_v4(), 3);
        let a = index_entry(&tp, 9);
        let b = index_entry(&tp, 10);
        let c = index_entry(&tp, 256);
        assert!(a < b && b < c);
        assert_eq!(index_entry_offset(&c), Some(256));
        let other = TopicPartition::new(tp.topic_id, 4);
        assert!(c < index_entry(&other, 0));
    }

    #[test]
    fn raft_keys_sort_by_index_and_prefix_bounds_them() {
        let a = raft_entry_full(2, 9, 7, 0);
        let b = raft_entry_full(2, 10, 1, 0);
        assert!(a < b);
        assert!(raft_entry(2, 10).as_slice() < b.as_slice());
        assert!(raft_entry(2, 11).as_slice() > b.as_slice());
        assert!(raft_entry_full(3, 0, 0, 0).as_slice() > b.as_slice());
        assert_eq!(parse_raft_entry(&b), Some((2, 10, 1, 0)));
        assert_eq!(parse_raft_entry(&raft_entry(2, 10)), None);
    }

    #[test]
    fn partition_state_key_round_trips() {
        let tp = TopicPartition::new(Uuid::new_v4(), 7);
        assert_eq!(parse_partition_state(&partition_state(&tp)), Some(tp));
        assert_eq!(parse_partition_state(b"cluster"), None);
    }

    #[test]
    fn producer_state_key_round_trips() {
        let tp = TopicPartition::new(Uuid::new_v4(), 1);
        let k = producer_state(&tp, 4242);
        assert!(k.starts_with(&producer_prefix(&tp)));
        assert_eq!(parse_producer_state(&k), Some((tp, 4242)));
        assert_eq!(parse_producer_state(&partition_state(&tp)), None);
    }
}
