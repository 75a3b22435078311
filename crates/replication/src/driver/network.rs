//! Raft messages between nodes: the driver's side of the peer transport (`jet-cluster`).
//!
//! - [`RaftMessage`] carries a raft-rs `Message` through [`WireMessage`]. Frames are bounded by
//!   the transport before a message is decoded, and a message that does not decode closes only
//!   that connection.
//! - [`Outbox`] gathers one Ready phase's messages per peer, so each peer gets one frame per
//!   phase with every shard's messages for it; a peer whose queue is full is reported
//!   unreachable to each shard in the dropped frame, so raft-rs probes it instead of streaming.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use jet_cluster::{DecodeError, PeerTransport, WireMessage};
use protobuf::Message as _;
use raft::eraftpb::Message;

/// Largest frame the driver hands the transport; a bigger phase is cut into several frames.
const MAX_FRAME_BODY: usize = 32 << 20;

/// One Raft message on the wire.
#[derive(Debug, Clone)]
pub struct RaftMessage(pub Message);

impl WireMessage for RaftMessage {
    fn encoded_len(&self) -> usize {
        self.0.compute_size() as usize
    }

    fn encode(&self, buf: &mut BytesMut) {
        // Encoding a message raft-rs built cannot fail; an empty body would fail to decode on
        // the other side and cost only that message.
        match self.0.write_to_bytes() {
            Ok(bytes) => buf.put_slice(&bytes),
            Err(e) => tracing::error!(error = %e, "cannot encode raft message"),
        }
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        // prost, with its depth limit: these are bytes from the network (see `wire`).
        super::wire::decode_message(buf)
            .map(RaftMessage)
            .map_err(DecodeError::new)
    }
}

/// The transport as the driver uses it.
pub type Transport = Arc<PeerTransport<RaftMessage>>;

/// Where the driver's frames go: the peer transport, or a simulated network in tests. Never
/// blocks; a frame that cannot be queued is dropped (Raft retransmits).
pub(crate) trait PeerSink: Send + Sync {
    /// Queues one frame for `to`; `false` when it was dropped.
    fn send(&self, to: u64, frame: Vec<(u64, RaftMessage)>) -> bool;
}

impl PeerSink for PeerTransport<RaftMessage> {
    fn send(&self, to: u64, frame: Vec<(u64, RaftMessage)>) -> bool {
        match PeerTransport::send(self, to, frame) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(peer = to, error = %e, "raft messages dropped");
                false
            }
        }
    }
}

/// One phase's outgoing messages, per peer.
#[derive(Default)]
pub(crate) struct Outbox {
    by_peer: BTreeMap<u64, Vec<(u64, RaftMessage)>>,
}

impl Outbox {
    pub fn push(&mut self, shard: u64, msgs: Vec<Message>) {
        for m in msgs {
            self.by_peer
                .entry(m.to)
                .or_default()
                .push((shard, RaftMessage(m)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// Sends one frame (or a few, when large) per peer. Returns `(peer, shard)` pairs whose
    /// messages were dropped, for `report_unreachable`.
    pub fn flush(&mut self, transport: &dyn PeerSink) -> Vec<(u64, u64)> {
        let mut dropped = Vec::new();
        for (peer, msgs) in std::mem::take(&mut self.by_peer) {
            let mut frame = Vec::new();
            let mut size = 0;
            for (shard, m) in msgs {
                let len = m.encoded_len() + 16;
                if !frame.is_empty() && size + len > MAX_FRAME_BODY {
                    Self::send(transport, peer, std::mem::take(&mut frame), &mut dropped);
                    size = 0;
                }
                size += len;
                frame.push((shard, m));
            }
            Self::send(transport, peer, frame, &mut dropped);
        }
        dropped
    }

    fn send(
        transport: &dyn PeerSink,
        peer: u64,
        frame: Vec<(u64, RaftMessage)>,
        dropped: &mut Vec<(u64, u64)>,
    ) {
        if frame.is_empty() {
            return;
        }
        let shards: Vec<u64> = frame.iter().map(|(s, _)| *s).collect();
        if !transport.send(peer, frame) {
            dropped.extend(shards.into_iter().map(|s| (peer, s)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    #[test]
    fn raft_messages_round_trip_and_garbage_is_an_error() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.term = 7;
        let e = Entry {
            index: 5,
            term: 7,
            data: vec![1u8, 2, 3].into(),
            ..Default::default()
        };
        m.entries = vec![e].into();
        let mut buf = BytesMut::new();
        let wire = RaftMessage(m.clone());
        wire.encode(&mut buf);
        assert_eq!(buf.len(), wire.encoded_len());
        let back = RaftMessage::decode(&buf).unwrap();
        assert_eq!(back.0, m);
        assert!(RaftMessage::decode(&[0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
