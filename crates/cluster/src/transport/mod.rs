//! The peer transport: Raft messages between nodes over TCP.
//!
//! - **One connection per node pair**, used both ways. Both nodes dial; when both connections
//!   come up, both sides keep the one dialed by the lower node id (`peer.rs`).
//! - **Handshake** (`conn.rs`): the dialer sends its cluster id, its node id and the node id it
//!   means to reach; the acceptor refuses another cluster, another protocol version, a node id
//!   that is not one of its peers or that is its own, with a reason in the reply and a log line.
//! - **Frames** (`crate::frame`): length-prefixed, the prefix checked against
//!   `max_frame_bytes` before the body is read; each frame is one batch, every shard's messages
//!   for that peer from one Ready. A frame over the limit or that does not decode closes that
//!   connection only.
//! - **Send queues**: one bounded queue per peer; `send` never waits, it drops when the queue
//!   is full and counts the drop. Raft retransmits what is lost.
//! - **Reconnect** with exponential backoff and jitter (`crate::backoff`).
//! - **Inbound**: one bounded channel of `(from_node, shard_id, message)` for the driver.
//!
//! `send`, `set_peer_addr` and `remove_peer` are plain functions, callable from the driver's own
//! thread; the transport's tasks run on the tokio runtime it was bound in.

mod config;
mod conn;
mod peer;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::timeout;
use tracing::{debug, info, warn};

pub use self::config::TransportConfig;
pub use self::stats::{PeerStats, TransportStats};

use self::conn::{accept_handshake, Established, HandshakeError};
use self::peer::{run_peer, Batch, PeerChannels, PeerContext};
use self::stats::{PeerCounters, TransportCounters};
use crate::frame::batch_body_len;
use crate::task::AbortOnDrop;
use crate::wire::WireMessage;
use crate::{NodeId, ShardId};

/// Accepted connections waiting for their peer task; more than a few means the peer is
/// reconnecting in a loop, and the extra ones are closed.
const ACCEPTED_QUEUE: usize = 4;
/// Pause after a failed accept (for example out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound<M> {
    /// The node that sent it.
    pub from_node: NodeId,
    /// The shard it is for.
    pub shard_id: ShardId,
    /// The message.
    pub message: M,
}

/// The transport could not start or was misused.
#[derive(Debug, Error)]
pub enum TransportError {
    /// A setting is out of range.
    #[error("invalid peer transport config: {0}")]
    InvalidConfig(String),
    /// The peer listener could not bind.
    #[error("cannot bind the peer listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `set_peer_addr` was given this node's own id.
    #[error("node {0} is this node; it cannot be its own peer")]
    OwnNodeId(NodeId),
    /// `bind` was called outside a tokio runtime.
    #[error("the peer transport must be bound inside a tokio runtime")]
    NoRuntime,
}

/// A batch was not queued. The transport never blocks the sender: Raft retransmits, so the
/// driver may ignore these, but they are counted in [`TransportStats`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// No address was ever given for this node.
    #[error("node {0} is not a known peer")]
    UnknownPeer(NodeId),
    /// The peer's queue is full (it is slow or unreachable); the batch was dropped.
    #[error("send queue of node {0} is full; batch dropped")]
    QueueFull(NodeId),
    /// The batch's frame would be over `max_frame_bytes` or `max_messages_per_frame`.
    #[error("batch of {messages} messages, {bytes} bytes, is over the frame limits")]
    TooLarge {
        /// Messages in the batch.
        messages: usize,
        /// Body bytes of its frame.
        bytes: usize,
    },
    /// The transport is shutting down.
    #[error("the peer transport is stopped")]
    Stopped,
}

/// The sending side of one peer's task.
struct PeerHandle<M> {
    queue: mpsc::Sender<Batch<M>>,
    addr: watch::Sender<SocketAddr>,
    accepted: mpsc::Sender<Established>,
    counters: Arc<PeerCounters>,
    _task: AbortOnDrop<()>,
}

/// What the transport handle, the accept loop and the handshake tasks share.
struct Shared<M> {
    config: Arc<TransportConfig>,
    cluster_id: Arc<str>,
    runtime: Handle,
    peers: Mutex<HashMap<NodeId, PeerHandle<M>>>,
    inbound: mpsc::Sender<Inbound<M>>,
    counters: Arc<TransportCounters>,
    shutdown: watch::Sender<bool>,
    handshake_permits: Arc<Semaphore>,
}

impl<M> Shared<M> {
    /// A std mutex, not a tokio one: nothing awaits while it is held. A panic elsewhere while
    /// holding it leaves the map consistent (every update is one insert or remove), so a
    /// poisoned lock is used as it is.
    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, PeerHandle<M>>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Raft messages to and from the other nodes. See the module doc.
pub struct PeerTransport<M: WireMessage> {
    shared: Arc<Shared<M>>,
    local_addr: SocketAddr,
    accept_task: Option<AbortOnDrop<()>>,
}

impl<M: WireMessage> PeerTransport<M> {
    /// Binds the peer listener and starts accepting. Returns the transport and the inbound
    /// channel the driver reads.
    pub async fn bind(
        config: TransportConfig,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), TransportError> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| TransportError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_messages);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cluster_id: Arc::from(config.cluster_id.as_str()),
            handshake_permits: Arc::new(Semaphore::new(config.max_handshakes_in_flight)),
            config: Arc::new(config),
            runtime,
            peers: Mutex::new(HashMap::new()),
            inbound: inbound_tx,
            counters: Arc::new(TransportCounters::default()),
            shutdown,
        });
        let accept_task = AbortOnDrop::new(shared.runtime.spawn(accept_loop(
            listener,
            shared.clone(),
            shared.shutdown.subscribe(),
        )));
        info!(node_id = shared.config.node_id, %local_addr, "peer transport listening");
        Ok((
            Self {
                shared,
                local_addr,
                accept_task: Some(accept_task),
            },
            inbound_rx,
        ))
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// Adds a peer, or changes its address. Gossip feeds this. A new address is dialed at once
    /// if the peer is not connected; an open connection is kept.
    pub fn set_peer_addr(&self, node_id: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        let me = self.shared.config.node_id;
        if node_id == me {
            return Err(TransportError::OwnNodeId(node_id));
        }
        let mut peers = self.shared.peers();
        if let Some(peer) = peers.get(&node_id) {
            peer.addr.send_if_modified(|current| {
                let changed = *current != addr;
                *current = addr;
                changed
            });
            return Ok(());
        }
        let config = &self.shared.config;
        let (queue_tx, queue_rx) = mpsc::channel(config.send_queue_batches);
        let (addr_tx, addr_rx) = watch::channel(addr);
        let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_QUEUE);
        let counters = Arc::new(PeerCounters::default());
        let ctx = PeerContext {
            me,
            peer: node_id,
            config: config.clone(),
            cluster_id: self.shared.cluster_id.clone(),
            inbound: self.shared.inbound.clone(),
            counters: counters.clone(),
            transport_counters: self.shared.counters.clone(),
        };
        let channels = PeerChannels {
            queue: queue_rx,
            addr: addr_rx,
            accepted: accepted_rx,
            shutdown: self.shared.shutdown.subscribe(),
        };
        let task = AbortOnDrop::new(self.shared.runtime.spawn(run_peer(ctx, channels)));
        debug!(peer = node_id, %addr, "peer added");
        peers.insert(
            node_id,
            PeerHandle {
                queue: queue_tx,
                addr: addr_tx,
                accepted: accepted_tx,
                counters,
                _task: task,
            },
        );
        Ok(())
    }

    /// Forgets a peer: its connection is closed, its queue dropped, and its handshakes are
    /// refused from then on. Returns whether it was known.
    pub fn remove_peer(&self, node_id: NodeId) -> bool {
        self.shared.peers().remove(&node_id).is_some()
    }

    /// The known peers and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.shared
            .peers()
            .iter()
            .map(|(id, peer)| (*id, *peer.addr.borrow()))
            .collect()
    }

    /// Queues one batch (one frame) for a peer. Never waits: a full queue drops the batch.
    pub fn send(&self, to: NodeId, batch: Vec<(ShardId, M)>) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let config = &self.shared.config;
        let bytes = batch_body_len(&batch);
        if bytes > config.max_frame_bytes || batch.len() > config.max_messages_per_frame {
            self.shared
                .counters
                .batches_refused_too_large
                .fetch_add(1, Ordering::Relaxed);
            return Err(SendError::TooLarge {
                messages: batch.len(),
                bytes,
            });
        }
        let peers = self.shared.peers();
        let peer = peers.get(&to).ok_or(SendError::UnknownPeer(to))?;
        match peer.queue.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                peer.counters
                    .batches_dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(SendError::QueueFull(to))
            }
            Err(TrySendError::Closed(_)) => Err(SendError::Stopped),
        }
    }

    /// Whether a connection to the peer is up.
    pub fn is_connected(&self, node_id: NodeId) -> bool {
        self.shared
            .peers()
            .get(&node_id)
            .is_some_and(|peer| peer.counters.connected.load(Ordering::Relaxed))
    }

    /// The counters, per peer and overall.
    pub fn stats(&self) -> TransportStats {
        let peers = self
            .shared
            .peers()
            .iter()
            .map(|(id, peer)| (*id, peer.counters.snapshot()))
            .collect();
        self.shared.counters.snapshot(peers)
    }

    /// Stops accepting, closes every connection and waits until the listener is closed, so its
    /// address can be bound again on return.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.accept_task.take() {
            task.abort_and_wait().await;
        }
        self.shared.peers().clear();
    }
}

impl<M: WireMessage> Drop for PeerTransport<M> {
    /// Dropping the transport stops it: the listener and the peer tasks are aborted, which
    /// closes their sockets.
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.accept_task.take();
        self.shared.peers().clear();
    }
}

async fn accept_loop<M: WireMessage>(
    listener: TcpListener,
    shared: Arc<Shared<M>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "peer accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = shared.handshake_permits.clone().try_acquire_owned() else {
            shared
                .counters
                .connections_shed
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, "too many peer handshakes in flight; closing the connection");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            handle_inbound(stream, remote, &shared).await;
            drop(permit);
        });
    }
}

/// Runs the acceptor's handshake and hands the connection to the dialer's peer task.
async fn handle_inbound<M: WireMessage>(
    mut stream: TcpStream,
    remote: SocketAddr,
    shared: &Shared<M>,
) {
    let config = &shared.config;
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%remote, %error, "cannot set TCP_NODELAY on a peer connection");
    }
    let handshake = accept_handshake(&mut stream, config.node_id, &shared.cluster_id, |node| {
        shared.peers().contains_key(&node)
    });
    let from_node = match timeout(config.handshake_timeout, handshake).await {
        Ok(Ok(node)) => node,
        Ok(Err(error @ HandshakeError::Refused { .. })) => {
            shared
                .counters
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, %error, "peer handshake refused");
            return;
        }
        Ok(Err(error)) => {
            shared
                .counters
                .handshakes_failed
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, %error, "peer handshake failed");
            return;
        }
        Err(_) => {
            shared
                .counters
                .handshakes_failed
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, "peer handshake timed out");
            return;
        }
    };
    let accepted = shared
        .peers()
        .get(&from_node)
        .map(|peer| peer.accepted.clone());
    let conn = Established {
        stream,
        initiator: from_node,
        remote,
    };
    match accepted.map(|tx| tx.try_send(conn)) {
        Some(Ok(())) => {}
        // Removed since the handshake, reconnecting in a loop, or stopping: the connection is
        // closed and the peer redials.
        _ => debug!(peer = from_node, %remote, "accepted peer connection not taken; closing it"),
    }
}
