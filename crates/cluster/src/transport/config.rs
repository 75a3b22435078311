//! Every limit and timing of the peer transport, in one struct.

use std::net::SocketAddr;
use std::time::Duration;

use crate::frame::MAX_CLUSTER_ID_BYTES;
use crate::transport::TransportError;
use crate::NodeId;

/// The peer transport's settings. [`TransportConfig::new`] gives the defaults; every node of a
/// cluster should use the same frame limits, since a receiver closes a connection that sends it
/// a frame over its own limit.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The cluster this node belongs to; peers of another cluster are refused at the handshake.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: NodeId,
    /// The address the peer listener binds (`--peer-listen`). Port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// Largest frame body accepted or sent. A received frame over it closes the connection; a
    /// batch over it is refused by `send`. Default 64 MiB: one Ready can carry entries of many
    /// shards, each up to raft's `max_size_per_msg`.
    pub max_frame_bytes: usize,
    /// Most messages one frame may carry. Default 100,000.
    pub max_messages_per_frame: usize,
    /// Batches queued per peer before `send` drops. Default 1,024. Raft retransmits, so a
    /// dropped batch costs a retry, where an unbounded queue could cost the node its memory.
    pub send_queue_batches: usize,
    /// Messages buffered in the inbound channel. When it is full the connections stop reading,
    /// so TCP pushes back on the senders, whose queues then drop. Default 65,536.
    pub inbound_queue_messages: usize,
    /// How long a TCP connect may take. Default 3 s.
    pub connect_timeout: Duration,
    /// How long a handshake may take, either side. Default 5 s.
    pub handshake_timeout: Duration,
    /// How long one write may block before the connection is closed and redialed. Default 10 s.
    pub write_timeout: Duration,
    /// Queued batches are written together up to about this many bytes, to save syscalls.
    /// Default 1 MiB.
    pub write_coalesce_bytes: usize,
    /// How long a retired connection (the loser when both nodes dialed, or one replaced by a
    /// reconnect) may go on delivering what the peer had already sent. Default 5 s.
    pub connection_drain_timeout: Duration,
    /// First reconnect delay. Default 50 ms.
    pub backoff_initial: Duration,
    /// Longest reconnect delay. Default 5 s.
    pub backoff_max: Duration,
    /// Inbound connections still in their handshake; more are closed at once, so strangers
    /// cannot tie up tasks. Default 64.
    pub max_handshakes_in_flight: usize,
}

impl TransportConfig {
    /// The defaults, for `node_id` of `cluster_id` listening on `listen_addr`.
    pub fn new(cluster_id: impl Into<String>, node_id: NodeId, listen_addr: SocketAddr) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            node_id,
            listen_addr,
            max_frame_bytes: 64 * 1024 * 1024,
            max_messages_per_frame: 100_000,
            send_queue_batches: 1024,
            inbound_queue_messages: 65_536,
            connect_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            write_coalesce_bytes: 1024 * 1024,
            connection_drain_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            max_handshakes_in_flight: 64,
        }
    }

    /// Refuses settings the transport cannot run with.
    pub fn validate(&self) -> Result<(), TransportError> {
        let invalid = |what: &str| Err(TransportError::InvalidConfig(what.to_owned()));
        if self.cluster_id.is_empty() || self.cluster_id.len() > MAX_CLUSTER_ID_BYTES {
            return invalid("cluster id must be 1 to 255 bytes");
        }
        // The length prefix is a u32; staying under 1 GiB keeps a frame far from it.
        if !(64..=1 << 30).contains(&self.max_frame_bytes) {
            return invalid("max_frame_bytes must be between 64 bytes and 1 GiB");
        }
        if self.max_messages_per_frame == 0
            || self.send_queue_batches == 0
            || self.inbound_queue_messages == 0
            || self.max_handshakes_in_flight == 0
            || self.write_coalesce_bytes == 0
        {
            return invalid("queue sizes and counts must be at least 1");
        }
        if self.connect_timeout.is_zero()
            || self.handshake_timeout.is_zero()
            || self.write_timeout.is_zero()
            || self.connection_drain_timeout.is_zero()
            || self.backoff_initial.is_zero()
            || self.backoff_max < self.backoff_initial
        {
            return invalid("timeouts must be positive and backoff_max at least backoff_initial");
        }
        Ok(())
    }
}
