//! Jet's node-to-node layer: how nodes find each other and how Raft messages travel between them.
//!
//! The multi-raft driver sends through [`PeerTransport`] (`jet_replication::driver::network`) and
//! the broker runs [`Gossip`] (`broker/src/cluster.rs`); see docs/architecture.md, "Peer
//! transport and gossip". The crate depends on no other jet crate and not on `raft`: the driver
//! plugs its message type in through [`WireMessage`].
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | [`WireMessage`], the seam between the transport and the Raft message encoding |
//! | [`frame`] | the peer frame format: length prefix, handshake frames, message batches; no I/O |
//! | [`transport`] | [`PeerTransport`]: one TCP connection per node pair, handshake, bounded send queues that drop, reconnect with backoff, the bounded inbound channel |
//! | [`backoff`] | exponential reconnect backoff with jitter |
//! | [`gossip`] | [`Gossip`]: chitchat membership, the keys each node publishes, the typed [`ClusterView`], dead and duplicate node detection |
//!
//! A node runs one of each. Gossip says who is in the cluster and where their peer listeners
//! are; the caller feeds those addresses to [`PeerTransport::set_peer_addr`]; the driver sends
//! each peer one frame per Ready with every shard's messages for it and reads what arrives from
//! the inbound channel ([`ClusterView::peer_addrs`] is what to feed).
//!
//! Tests: unit and proptest tests beside the code (frame round trips, garbage never panics, the
//! view tracker's dead and duplicate rules with an injected clock); `tests/transport.rs`,
//! `tests/gossip.rs` and `tests/wiring.rs` run real sockets on 127.0.0.1, each bounded in time.

#![deny(missing_docs)]

pub mod backoff;
pub mod frame;
pub mod gossip;
mod task;
pub mod transport;
pub mod wire;

pub use gossip::{
    ClusterView, DuplicateNodeId, Gossip, GossipConfig, GossipError, Liveness, NodeInfo,
};
pub use transport::{
    Inbound, PeerStats, PeerTransport, SendError, TransportConfig, TransportError, TransportStats,
};
pub use wire::{DecodeError, WireMessage};

/// A node's stable id: the Kafka broker id.
pub type NodeId = u64;

/// A Raft group's id.
pub type ShardId = u64;

/// A Raft term; a shard's term is the Kafka leader epoch of its partitions.
pub type Term = u64;
