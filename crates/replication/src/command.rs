//! What a Raft entry carries, and its byte encoding.
//!
//! Data entries hold record batches as bytes: the encoding is a small binary frame around them
//! and decoding slices the entry's `Bytes` rather than copying batches. The entry's data is also
//! where the batches are stored for good (the partition index points at their position), so
//! everything an apply needs is in the entry: LogAppendTime is stamped into the batches by the
//! proposer, and partitions come and go by commands of their own shard. Metadata commands are
//! rare and small, so they are JSON.

use bytes::{Buf, BufMut, Bytes};
use jet_storage::TopicPartition;
use uuid::Uuid;

use crate::metadata::MetaCommand;

const TAG_APPEND: u8 = 1;
const TAG_DELETE_RECORDS: u8 = 2;
const TAG_META: u8 = 3;
const TAG_GROUP_WRITE: u8 = 4;
const TAG_CREATE_PARTITIONS: u8 = 5;
const TAG_DELETE_PARTITIONS: u8 = 6;
const TAG_EXPIRE_PRODUCERS: u8 = 7;
const TAG_COMPACT: u8 = 8;
const TAG_TRUNCATE_LOG: u8 = 9;
const TAG_FORWARDED_META: u8 = 10;

/// Batches for one partition, as one producer request sent them.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendItem {
    /// Target partition.
    pub tp: TopicPartition,
    /// One or more validated record batches (magic 2), back to back.
    pub batches: Bytes,
    /// Where `batches` starts in the entry's data (set by [`Command::decode`]; 0 otherwise).
    pub position: u32,
}

impl AppendItem {
    /// An item to propose.
    pub fn new(tp: TopicPartition, batches: Bytes) -> Self {
        Self {
            tp,
            batches,
            position: 0,
        }
    }
}

/// One batch a compaction keeps (rewritten, or whole), with the index facts of the batch it
/// replaces, so that searches over the index keep working across compacted batches.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactedBatch {
    /// Bytes appended to the partition before the original batch.
    pub cum_bytes: u64,
    /// The running maximum timestamp at the original batch.
    pub cum_max_timestamp: i64,
    /// The leader epoch the original batch was stamped with.
    pub leader_epoch: i32,
    /// The batch (base offset set, records with their original offsets).
    pub batch: Bytes,
    /// Where `batch` starts in the entry's data (set by [`Command::decode`]).
    pub position: u32,
}

/// A key-based compaction of one partition, computed by its leader: every replica replaces the
/// index below `up_to` with `batches`, which this entry stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    /// The partition.
    pub tp: TopicPartition,
    /// The log start offset the leader computed from; a replica whose partition has another
    /// (a DeleteRecords came first) skips the compaction, as every replica then does.
    pub log_start: i64,
    /// Likewise, the cleaned offset the leader computed from.
    pub cleaned_offset: i64,
    /// The batches below this offset are replaced; it becomes the cleaned offset.
    pub up_to: i64,
    /// Bytes of the batches replaced.
    pub replaced_bytes: u64,
    /// Raft index of the batch holding `up_to`: the oldest entry the partition still needs
    /// besides this one.
    pub tail_raft_index: u64,
    /// What is kept, in offset order.
    pub batches: Vec<CompactedBatch>,
}

/// A Raft entry's command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Append batches to partitions of a data shard. Many produce requests share one entry
    /// (group commit).
    Append {
        /// Wall-clock time at the proposer, used as LogAppendTime, so replicas agree.
        timestamp_ms: i64,
        /// The appends, answered in this order.
        items: Vec<AppendItem>,
    },
    /// Move a partition's log start offset forward (retention, DeleteRecords).
    DeleteRecords {
        /// Partition.
        tp: TopicPartition,
        /// New log start offset.
        offset: i64,
    },
    /// A cluster-metadata change (metadata shard only).
    Meta(MetaCommand),
    /// A metadata change proposed on a node that does not lead the metadata shard, forwarded
    /// by Raft to the leader: applied as [`Command::Meta`], and answered on the `origin` node by
    /// its `seq` when the entry comes back through the log there.
    ForwardedMeta {
        /// The proposing node.
        origin: u64,
        /// Its proposal number.
        seq: u64,
        /// The change.
        cmd: MetaCommand,
    },
    /// Partitions that now belong to this data shard (empty, at offset 0).
    CreatePartitions {
        /// The new partitions.
        tps: Vec<TopicPartition>,
    },
    /// Partitions of this data shard to delete with all their data.
    DeletePartitions {
        /// The partitions.
        tps: Vec<TopicPartition>,
    },
    /// Forget idempotent producers of this shard's partitions idle for `expiration_ms` at
    /// `now_ms` (both chosen by the proposer, so every replica forgets the same).
    ExpireProducers {
        /// The proposer's clock.
        now_ms: i64,
        /// Kafka's `producer.id.expiration.ms`.
        expiration_ms: i64,
    },
    /// Key-based compaction of a partition (cleanup.policy=compact).
    Compact(Compaction),
    /// Every replica may delete this shard's Raft entries up to `up_to`: the leader saw every
    /// replica hold them, and no partition's kept batches lie there. Deletion is a replicated
    /// decision so that no future leader lacks an entry a lagging replica still needs.
    TruncateLog {
        /// Last index that may be deleted.
        up_to: u64,
    },
    /// Consumer-group records (committed offsets, group state) to set (`Some`) or delete
    /// (`None`) in the `meta` column family. Keys always carry the group prefix.
    GroupWrite {
        /// Key/value changes, applied in order.
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
}

/// A payload that does not decode: a bug or a damaged log, never client input.
#[derive(Debug, thiserror::Error)]
#[error("undecodable raft entry: {0}")]
pub struct DecodeError(pub String);

impl Command {
    /// Encodes the command into entry bytes (a `Vec`, which raft-rs's `propose` takes).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Command::Append {
                timestamp_ms,
                items,
            } => Self::encode_append(*timestamp_ms, items, |_| false),
            Command::CreatePartitions { tps } | Command::DeletePartitions { tps } => {
                let tag = if matches!(self, Command::CreatePartitions { .. }) {
                    TAG_CREATE_PARTITIONS
                } else {
                    TAG_DELETE_PARTITIONS
                };
                let mut b = Vec::with_capacity(5 + 20 * tps.len());
                b.put_u8(tag);
                b.put_u32(tps.len() as u32);
                for tp in tps {
                    put_tp(&mut b, tp);
                }
                b
            }
            Command::Compact(c) => {
                let size: usize = c.batches.iter().map(|b| 24 + b.batch.len()).sum();
                let mut b = Vec::with_capacity(69 + size);
                b.put_u8(TAG_COMPACT);
                put_tp(&mut b, &c.tp);
                b.put_i64(c.log_start);
                b.put_i64(c.cleaned_offset);
                b.put_i64(c.up_to);
                b.put_u64(c.replaced_bytes);
                b.put_u64(c.tail_raft_index);
                b.put_u32(c.batches.len() as u32);
                for k in &c.batches {
                    b.put_u64(k.cum_bytes);
                    b.put_i64(k.cum_max_timestamp);
                    b.put_i32(k.leader_epoch);
                    b.put_u32(k.batch.len() as u32);
                    b.put_slice(&k.batch);
                }
                b
            }
            Command::TruncateLog { up_to } => {
                let mut b = Vec::with_capacity(9);
                b.put_u8(TAG_TRUNCATE_LOG);
                b.put_u64(*up_to);
                b
            }
            Command::ExpireProducers {
                now_ms,
                expiration_ms,
            } => {
                let mut b = Vec::with_capacity(17);
                b.put_u8(TAG_EXPIRE_PRODUCERS);
                b.put_i64(*now_ms);
                b.put_i64(*expiration_ms);
                b
            }
            Command::DeleteRecords { tp, offset } => {
                let mut b = Vec::with_capacity(29);
                b.put_u8(TAG_DELETE_RECORDS);
                put_tp(&mut b, tp);
                b.put_i64(*offset);
                b
            }
            Command::GroupWrite { ops } => {
                let size: usize = ops
                    .iter()
                    .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum();
                let mut b = Vec::with_capacity(5 + size);
                b.put_u8(TAG_GROUP_WRITE);
                b.put_u32(ops.len() as u32);
                for (k, v) in ops {
                    b.put_u32(k.len() as u32);
                    b.put_slice(k);
                    match v {
                        Some(v) => {
                            b.put_u8(1);
                            b.put_u32(v.len() as u32);
                            b.put_slice(v);
                        }
                        None => b.put_u8(0),
                    }
                }
                b
            }
            Command::ForwardedMeta { origin, seq, cmd } => {
                let mut b = Vec::new();
                b.put_u8(TAG_FORWARDED_META);
                b.put_u64(*origin);
                b.put_u64(*seq);
                b.put_slice(&serde_json::to_vec(cmd).expect("meta command serialises"));
                b
            }
            Command::Meta(cmd) => {
                let mut b = Vec::new();
                b.put_u8(TAG_META);
                // Serialising plain data to JSON cannot fail.
                b.put_slice(&serde_json::to_vec(cmd).expect("meta command serialises"));
                b
            }
        }
    }

    /// Encodes an append entry. Batches of partitions for which `log_append_time` holds are
    /// stamped with `timestamp_ms` as they are copied in (Kafka's LogAppendTime), so the stored
    /// bytes, and every replica's apply, carry the proposer's time. This copy is the only one
    /// the broker makes of a batch between the socket and RocksDB.
    pub fn encode_append(
        timestamp_ms: i64,
        items: &[AppendItem],
        log_append_time: impl Fn(&TopicPartition) -> bool,
    ) -> Vec<u8> {
        let size: usize = items.iter().map(|i| 24 + i.batches.len()).sum();
        let mut b = Vec::with_capacity(13 + size);
        b.put_u8(TAG_APPEND);
        b.put_i64(timestamp_ms);
        b.put_u32(items.len() as u32);
        for item in items {
            put_tp(&mut b, &item.tp);
            b.put_u32(item.batches.len() as u32);
            let at = b.len();
            b.put_slice(&item.batches);
            if log_append_time(&item.tp) {
                let starts: Vec<(usize, usize)> = jet_protocol::batch::iter(&b[at..])
                    .map(|(start, h)| (at + start, h.total_len()))
                    .collect();
                for (start, len) in starts {
                    jet_protocol::batch::patch_log_append_time(
                        &mut b[start..start + len],
                        timestamp_ms,
                    );
                }
            }
        }
        b
    }

    /// Decodes entry bytes.
    pub fn decode(mut data: Bytes) -> Result<Command, DecodeError> {
        let err = |what: &str| DecodeError(what.to_string());
        let total = data.len();
        if data.is_empty() {
            return Err(err("empty"));
        }
        match data.get_u8() {
            TAG_APPEND => {
                if data.remaining() < 12 {
                    return Err(err("append header"));
                }
                let timestamp_ms = data.get_i64();
                let n = data.get_u32() as usize;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let tp = get_tp(&mut data).ok_or_else(|| err("append item"))?;
                    if data.remaining() < 4 {
                        return Err(err("append length"));
                    }
                    let len = data.get_u32() as usize;
                    if data.remaining() < len {
                        return Err(err("append batches"));
                    }
                    let position = (total - data.remaining()) as u32;
                    let batches = data.split_to(len);
                    items.push(AppendItem {
                        tp,
                        batches,
                        position,
                    });
                }
                Ok(Command::Append {
                    timestamp_ms,
                    items,
                })
            }
            TAG_DELETE_RECORDS => {
                let tp = get_tp(&mut data).ok_or_else(|| err("delete records"))?;
                if data.remaining() < 8 {
                    return Err(err("delete records offset"));
                }
                Ok(Command::DeleteRecords {
                    tp,
                    offset: data.get_i64(),
                })
            }
            tag @ (TAG_CREATE_PARTITIONS | TAG_DELETE_PARTITIONS) => {
                if data.remaining() < 4 {
                    return Err(err("partition count"));
                }
                let n = data.get_u32() as usize;
                let mut tps = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    tps.push(get_tp(&mut data).ok_or_else(|| err("partition"))?);
                }
                Ok(if tag == TAG_CREATE_PARTITIONS {
                    Command::CreatePartitions { tps }
                } else {
                    Command::DeletePartitions { tps }
                })
            }
            TAG_COMPACT => {
                let tp = get_tp(&mut data).ok_or_else(|| err("compact partition"))?;
                if data.remaining() < 44 {
                    return Err(err("compact header"));
                }
                let (log_start, cleaned_offset, up_to) =
                    (data.get_i64(), data.get_i64(), data.get_i64());
                let (replaced_bytes, tail_raft_index) = (data.get_u64(), data.get_u64());
                let n = data.get_u32() as usize;
                let mut batches = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    if data.remaining() < 24 {
                        return Err(err("compacted batch header"));
                    }
                    let (cum_bytes, cum_max_timestamp) = (data.get_u64(), data.get_i64());
                    let (leader_epoch, len) = (data.get_i32(), data.get_u32() as usize);
                    if data.remaining() < len {
                        return Err(err("compacted batch"));
                    }
                    let position = (total - data.remaining()) as u32;
                    batches.push(CompactedBatch {
                        cum_bytes,
                        cum_max_timestamp,
                        leader_epoch,
                        batch: data.split_to(len),
                        position,
                    });
                }
                Ok(Command::Compact(Compaction {
                    tp,
                    log_start,
                    cleaned_offset,
                    up_to,
                    replaced_bytes,
                    tail_raft_index,
                    batches,
                }))
            }
            TAG_TRUNCATE_LOG => {
                if data.remaining() < 8 {
                    return Err(err("truncate log"));
                }
                Ok(Command::TruncateLog {
                    up_to: data.get_u64(),
                })
            }
            TAG_EXPIRE_PRODUCERS => {
                if data.remaining() < 16 {
                    return Err(err("expire producers"));
                }
                Ok(Command::ExpireProducers {
                    now_ms: data.get_i64(),
                    expiration_ms: data.get_i64(),
                })
            }
            TAG_GROUP_WRITE => {
                let take = |data: &mut Bytes| -> Result<Vec<u8>, DecodeError> {
                    if data.remaining() < 4 {
                        return Err(err("group write length"));
                    }
                    let len = data.get_u32() as usize;
                    if data.remaining() < len {
                        return Err(err("group write bytes"));
                    }
                    Ok(data.split_to(len).to_vec())
                };
                if data.remaining() < 4 {
                    return Err(err("group write count"));
                }
                let n = data.get_u32() as usize;
                let mut ops = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let k = take(&mut data)?;
                    if data.remaining() < 1 {
                        return Err(err("group write flag"));
                    }
                    let v = match data.get_u8() {
                        0 => None,
                        _ => Some(take(&mut data)?),
                    };
                    ops.push((k, v));
                }
                Ok(Command::GroupWrite { ops })
            }
            TAG_META => serde_json::from_slice(&data)
                .map(Command::Meta)
                .map_err(|e| DecodeError(e.to_string())),
            TAG_FORWARDED_META => {
                if data.remaining() < 16 {
                    return Err(err("forwarded meta"));
                }
                let origin = data.get_u64();
                let seq = data.get_u64();
                serde_json::from_slice(&data)
                    .map(|cmd| Command::ForwardedMeta { origin, seq, cmd })
                    .map_err(|e| DecodeError(e.to_string()))
            }
            t => Err(DecodeError(format!("unknown tag {t}"))),
        }
    }
}

fn put_tp(b: &mut Vec<u8>, tp: &TopicPartition) {
    b.put_slice(tp.topic_id.as_bytes());
    b.put_i32(tp.partition);
}

fn get_tp(b: &mut Bytes) -> Option<TopicPartition> {
    if b.remaining() < 20 {
        return None;
    }
    let id = Uuid::from_slice(&b.split_to(16)).ok()?;
    Some(TopicPartition::new(id, b.get_i32()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let tp = TopicPartition::new(Uuid::new_v4(), 3);
        let cmds = [
            Command::Append {
                timestamp_ms: 17,
                items: vec![
                    AppendItem {
                        tp,
                        batches: Bytes::from_static(b"abc"),
                        position: 37,
                    },
                    AppendItem {
                        tp,
                        batches: Bytes::from_static(b""),
                        position: 64,
                    },
                ],
            },
            Command::DeleteRecords { tp, offset: 99 },
            Command::TruncateLog { up_to: 1 << 40 },
            Command::CreatePartitions { tps: vec![tp, tp] },
            Command::DeletePartitions { tps: vec![tp] },
            Command::ExpireProducers {
                now_ms: 5,
                expiration_ms: 7,
            },
            Command::Compact(Compaction {
                tp,
                log_start: 3,
                cleaned_offset: 2,
                up_to: 40,
                replaced_bytes: 999,
                tail_raft_index: 12,
                batches: vec![CompactedBatch {
                    cum_bytes: 5,
                    cum_max_timestamp: -1,
                    leader_epoch: 4,
                    batch: Bytes::from_static(b"xyz"),
                    // 1 tag + 20 partition + 44 header + 24 batch header.
                    position: 89,
                }],
            }),
            Command::Meta(MetaCommand::DeleteTopic { name: "x".into() }),
            Command::ForwardedMeta {
                origin: 3,
                seq: 9,
                cmd: MetaCommand::DeleteTopic { name: "y".into() },
            },
            Command::GroupWrite {
                ops: vec![
                    (b"gk".to_vec(), Some(b"v".to_vec())),
                    (b"gx".to_vec(), None),
                ],
            },
        ];
        for c in cmds {
            assert_eq!(Command::decode(c.encode().into()).unwrap(), c);
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let tp = TopicPartition::new(Uuid::new_v4(), 0);
        let full = Command::Append {
            timestamp_ms: 1,
            items: vec![AppendItem::new(tp, Bytes::from_static(b"abcdef"))],
        }
        .encode();
        let full = Bytes::from(full);
        for n in 0..full.len() {
            assert!(Command::decode(full.slice(..n)).is_err(), "prefix {n}");
        }
    }
}
