//! Counters the transport keeps, and the snapshot callers read (metrics, tests).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::NodeId;

/// Live counters of one peer, shared by `send`, the peer task and the read loops.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) connected: AtomicBool,
    /// Who dialed the connection in use; meaningful while `connected`.
    pub(crate) initiator: AtomicU64,
    pub(crate) connections_established: AtomicU64,
    pub(crate) batches_dropped_queue_full: AtomicU64,
    pub(crate) batches_dropped_write_failed: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) messages_received: AtomicU64,
}

/// Live counters of the whole transport.
#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) handshakes_failed: AtomicU64,
    pub(crate) frames_refused: AtomicU64,
    pub(crate) connections_shed: AtomicU64,
    pub(crate) batches_refused_too_large: AtomicU64,
}

/// One peer's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// A connection to the peer is up.
    pub connected: bool,
    /// The node that dialed the connection in use, while connected. Both ends of a pair
    /// settle on the same connection, the one the lower node id dialed when both dialed.
    pub initiator: Option<NodeId>,
    /// Handshakes completed with this peer, either direction (reconnects and replaced
    /// connections included).
    pub connections_established: u64,
    /// Batches `send` dropped because the peer's queue was full.
    pub batches_dropped_queue_full: u64,
    /// Batches lost because the write carrying them failed (the connection is then redialed).
    pub batches_dropped_write_failed: u64,
    /// Frames written to the peer.
    pub frames_sent: u64,
    /// Messages written to the peer.
    pub messages_sent: u64,
    /// Frames read from the peer.
    pub frames_received: u64,
    /// Messages read from the peer.
    pub messages_received: u64,
}

impl PeerCounters {
    pub(crate) fn snapshot(&self) -> PeerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let connected = self.connected.load(Ordering::Relaxed);
        PeerStats {
            connected,
            initiator: connected.then(|| self.initiator.load(Ordering::Relaxed)),
            connections_established: get(&self.connections_established),
            batches_dropped_queue_full: get(&self.batches_dropped_queue_full),
            batches_dropped_write_failed: get(&self.batches_dropped_write_failed),
            frames_sent: get(&self.frames_sent),
            messages_sent: get(&self.messages_sent),
            frames_received: get(&self.frames_received),
            messages_received: get(&self.messages_received),
        }
    }
}

/// The transport's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Per known peer.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Inbound handshakes refused: another cluster, an unknown or duplicate node id, a node id
    /// that is not ours, another protocol version.
    pub handshakes_refused: u64,
    /// Handshakes that failed otherwise (timeout, garbage, closed early), either direction.
    pub handshakes_failed: u64,
    /// Connections closed because a frame was over the limit or did not decode.
    pub frames_refused: u64,
    /// Inbound connections closed at once because too many handshakes were in flight.
    pub connections_shed: u64,
    /// Batches `send` refused because their frame would be over the limits.
    pub batches_refused_too_large: u64,
}

impl TransportCounters {
    pub(crate) fn snapshot(&self, peers: BTreeMap<NodeId, PeerStats>) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            peers,
            handshakes_refused: get(&self.handshakes_refused),
            handshakes_failed: get(&self.handshakes_failed),
            frames_refused: get(&self.frames_refused),
            connections_shed: get(&self.connections_shed),
            batches_refused_too_large: get(&self.batches_refused_too_large),
        }
    }
}
