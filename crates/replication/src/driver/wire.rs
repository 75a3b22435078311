//! Raft messages from the network, decoded with `prost` rather than raft-rs's protobuf 2.x codec.
//!
//! protobuf 2.x parses unknown groups recursively without a depth limit (RUSTSEC-2024-0437,
//! CVE-2025-53605), and peer frames are bytes from the network. raft-rs's `prost-codec` would
//! change every raft type the storage layer uses (and copy every entry's data into a `Vec`), so
//! instead the wire format is decoded here into prost mirrors of `eraftpb` — same field numbers,
//! so the bytes are the ones protobuf writes — with prost's recursion limit, then converted
//! field by field. Encoding (of messages this node built) stays with protobuf.

use bytes::Bytes;
use protobuf::ProtobufEnum;
use raft::eraftpb::{
    ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};

#[derive(Clone, PartialEq, prost::Message)]
struct WireEntry {
    #[prost(int32, tag = "1")]
    entry_type: i32,
    #[prost(uint64, tag = "2")]
    term: u64,
    #[prost(uint64, tag = "3")]
    index: u64,
    #[prost(bytes = "bytes", tag = "4")]
    data: Bytes,
    #[prost(bytes = "bytes", tag = "6")]
    context: Bytes,
    #[prost(bool, tag = "5")]
    sync_log: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireConfState {
    #[prost(uint64, repeated, tag = "1")]
    voters: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    learners: Vec<u64>,
    #[prost(uint64, repeated, tag = "3")]
    voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, tag = "4")]
    learners_next: Vec<u64>,
    #[prost(bool, tag = "5")]
    auto_leave: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireSnapshotMetadata {
    #[prost(message, optional, tag = "1")]
    conf_state: Option<WireConfState>,
    #[prost(uint64, tag = "2")]
    index: u64,
    #[prost(uint64, tag = "3")]
    term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireSnapshot {
    #[prost(bytes = "bytes", tag = "1")]
    data: Bytes,
    #[prost(message, optional, tag = "2")]
    metadata: Option<WireSnapshotMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireRaftMessage {
    #[prost(int32, tag = "1")]
    msg_type: i32,
    #[prost(uint64, tag = "2")]
    to: u64,
    #[prost(uint64, tag = "3")]
    from: u64,
    #[prost(uint64, tag = "4")]
    term: u64,
    #[prost(uint64, tag = "5")]
    log_term: u64,
    #[prost(uint64, tag = "6")]
    index: u64,
    #[prost(message, repeated, tag = "7")]
    entries: Vec<WireEntry>,
    #[prost(uint64, tag = "8")]
    commit: u64,
    #[prost(uint64, tag = "15")]
    commit_term: u64,
    #[prost(message, optional, tag = "9")]
    snapshot: Option<WireSnapshot>,
    #[prost(uint64, tag = "13")]
    request_snapshot: u64,
    #[prost(bool, tag = "10")]
    reject: bool,
    #[prost(uint64, tag = "11")]
    reject_hint: u64,
    #[prost(bytes = "bytes", tag = "12")]
    context: Bytes,
    #[prost(uint64, tag = "14")]
    deprecated_priority: u64,
    #[prost(int64, tag = "16")]
    priority: i64,
}

/// Why bytes from a peer are not a Raft message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not protobuf, or nested deeper than prost allows.
    #[error("{0}")]
    Decode(#[from] prost::DecodeError),
    /// An enum value raft-rs does not define.
    #[error("unknown {what} {value}")]
    UnknownEnum {
        /// Which enum.
        what: &'static str,
        /// The value.
        value: i32,
    },
}

/// Decodes one Raft message from a peer.
pub fn decode_message(buf: &[u8]) -> Result<Message, WireError> {
    let w = <WireRaftMessage as prost::Message>::decode(buf)?;
    let mut m = Message::default();
    m.set_msg_type(
        MessageType::from_i32(w.msg_type).ok_or(WireError::UnknownEnum {
            what: "message type",
            value: w.msg_type,
        })?,
    );
    m.to = w.to;
    m.from = w.from;
    m.term = w.term;
    m.log_term = w.log_term;
    m.index = w.index;
    m.commit = w.commit;
    m.commit_term = w.commit_term;
    m.request_snapshot = w.request_snapshot;
    m.reject = w.reject;
    m.reject_hint = w.reject_hint;
    m.context = w.context;
    m.deprecated_priority = w.deprecated_priority;
    m.priority = w.priority;
    let mut entries = Vec::with_capacity(w.entries.len());
    for e in w.entries {
        let mut entry = Entry {
            term: e.term,
            index: e.index,
            data: e.data,
            context: e.context,
            sync_log: e.sync_log,
            ..Default::default()
        };
        entry.set_entry_type(
            EntryType::from_i32(e.entry_type).ok_or(WireError::UnknownEnum {
                what: "entry type",
                value: e.entry_type,
            })?,
        );
        entries.push(entry);
    }
    m.entries = entries.into();
    if let Some(s) = w.snapshot {
        let mut snap = Snapshot {
            data: s.data,
            ..Default::default()
        };
        if let Some(md) = s.metadata {
            let mut meta = SnapshotMetadata {
                index: md.index,
                term: md.term,
                ..Default::default()
            };
            if let Some(cs) = md.conf_state {
                meta.set_conf_state(ConfState {
                    voters: cs.voters,
                    learners: cs.learners,
                    voters_outgoing: cs.voters_outgoing,
                    learners_next: cs.learners_next,
                    auto_leave: cs.auto_leave,
                    ..Default::default()
                });
            }
            snap.set_metadata(meta);
        }
        m.set_snapshot(snap);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use protobuf::Message as _;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            0..3i32,
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..8),
            any::<bool>(),
        )
            .prop_map(|(t, term, index, data, context, sync_log)| {
                let mut e = Entry {
                    term,
                    index,
                    data: data.into(),
                    context: context.into(),
                    sync_log,
                    ..Default::default()
                };
                e.set_entry_type(EntryType::from_i32(t).unwrap());
                e
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            0..19i32,
            proptest::collection::vec(any::<u64>(), 9),
            proptest::collection::vec(entry(), 0..4),
            any::<bool>(),
            proptest::option::of((
                proptest::collection::vec(any::<u8>(), 0..32),
                proptest::collection::vec(1..10u64, 0..4),
                proptest::collection::vec(1..10u64, 0..3),
                any::<bool>(),
            )),
            any::<i64>(),
        )
            .prop_map(|(t, n, entries, reject, snap, priority)| {
                let mut m = Message::default();
                m.set_msg_type(MessageType::from_i32(t).unwrap());
                (m.to, m.from, m.term, m.log_term, m.index) = (n[0], n[1], n[2], n[3], n[4]);
                (m.commit, m.commit_term, m.request_snapshot, m.reject_hint) =
                    (n[5], n[6], n[7], n[8]);
                m.reject = reject;
                m.priority = priority;
                m.entries = entries.into();
                if let Some((data, voters, learners, auto_leave)) = snap {
                    let mut s = Snapshot {
                        data: data.into(),
                        ..Default::default()
                    };
                    let mut md = SnapshotMetadata {
                        index: n[0],
                        term: n[1],
                        ..Default::default()
                    };
                    md.set_conf_state(ConfState {
                        voters,
                        learners,
                        auto_leave,
                        ..Default::default()
                    });
                    s.set_metadata(md);
                    m.set_snapshot(s);
                }
                m
            })
    }

    proptest! {
        /// What protobuf writes, prost reads back to the same message.
        #[test]
        fn protobuf_bytes_decode_to_the_same_message(m in message()) {
            let bytes = m.write_to_bytes().unwrap();
            prop_assert_eq!(decode_message(&bytes).unwrap(), m);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_message(&b);
        }
    }

    /// Unknown groups nested far deeper than any stack allows: protobuf 2.x recursed through
    /// them (RUSTSEC-2024-0437); prost stops at its depth limit with an error.
    #[test]
    fn deeply_nested_groups_are_refused() {
        // Field 20, wire type 3 (start group), repeated 100,000 times.
        let tag = (20 << 3) | 3;
        let bytes: Vec<u8> = std::iter::repeat_n([tag as u8 | 0x80, (tag >> 7) as u8], 100_000)
            .flatten()
            .collect();
        assert!(decode_message(&bytes).is_err());
    }
}
