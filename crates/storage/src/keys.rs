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

/// `raft_log`: shard (8) + index (8).
pub fn raft_entry(shard: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&shard.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
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

/// `log`: topic id (16) + partition (4) + base offset (8).
pub fn log_entry(tp: &TopicPartition, base_offset: i64) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..20].copy_from_slice(&log_prefix(tp));
    // Offsets are never negative, so the sign bit never reorders keys.
    k[20..].copy_from_slice(&(base_offset.max(0) as u64).to_be_bytes());
    k
}

/// `log`: the 20-byte prefix shared by every batch of a partition.
pub fn log_prefix(tp: &TopicPartition) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(tp.topic_id.as_bytes());
    k[16..].copy_from_slice(&(tp.partition.max(0) as u32).to_be_bytes());
    k
}

/// The base offset stored in a `log` key.
pub fn log_entry_offset(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(20..28)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail) as i64)
}

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
    k[1..].copy_from_slice(&log_prefix(tp));
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
    k[1..].copy_from_slice(&log_prefix(tp));
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
    fn log_keys_sort_by_offset() {
        let tp = TopicPartition::new(Uuid::new_v4(), 3);
        let a = log_entry(&tp, 9);
        let b = log_entry(&tp, 10);
        let c = log_entry(&tp, 256);
        assert!(a < b && b < c);
        assert_eq!(log_entry_offset(&c), Some(256));
        let other = TopicPartition::new(tp.topic_id, 4);
        assert!(c < log_entry(&other, 0));
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
