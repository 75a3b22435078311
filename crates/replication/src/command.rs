//! What a Raft entry carries, and its byte encoding.
//!
//! Data entries hold record batches as bytes: the encoding is a small binary frame around them
//! and decoding slices the entry's `Bytes` rather than copying batches. Metadata commands are
//! rare and small, so they are JSON.

use bytes::{Buf, BufMut, Bytes};
use jet_storage::TopicPartition;
use uuid::Uuid;

use crate::metadata::MetaCommand;

const TAG_APPEND: u8 = 1;
const TAG_DELETE_RECORDS: u8 = 2;
const TAG_META: u8 = 3;
const TAG_GROUP_WRITE: u8 = 4;

/// Batches for one partition, as one producer request sent them.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendItem {
    /// Target partition.
    pub tp: TopicPartition,
    /// One or more validated record batches (magic 2), back to back.
    pub batches: Bytes,
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
            } => {
                let size: usize = items.iter().map(|i| 24 + i.batches.len()).sum();
                let mut b = Vec::with_capacity(13 + size);
                b.put_u8(TAG_APPEND);
                b.put_i64(*timestamp_ms);
                b.put_u32(items.len() as u32);
                for item in items {
                    put_tp(&mut b, &item.tp);
                    b.put_u32(item.batches.len() as u32);
                    b.put_slice(&item.batches);
                }
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
            Command::Meta(cmd) => {
                let mut b = Vec::new();
                b.put_u8(TAG_META);
                // Serialising plain data to JSON cannot fail.
                b.put_slice(&serde_json::to_vec(cmd).expect("meta command serialises"));
                b
            }
        }
    }

    /// Decodes entry bytes.
    pub fn decode(mut data: Bytes) -> Result<Command, DecodeError> {
        let err = |what: &str| DecodeError(what.to_string());
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
                    let batches = data.split_to(len);
                    items.push(AppendItem { tp, batches });
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
                    },
                    AppendItem {
                        tp,
                        batches: Bytes::from_static(b""),
                    },
                ],
            },
            Command::DeleteRecords { tp, offset: 99 },
            Command::Meta(MetaCommand::DeleteTopic { name: "x".into() }),
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
            items: vec![AppendItem {
                tp,
                batches: Bytes::from_static(b"abcdef"),
            }],
        }
        .encode();
        let full = Bytes::from(full);
        for n in 0..full.len() {
            assert!(Command::decode(full.slice(..n)).is_err(), "prefix {n}");
        }
    }
}
