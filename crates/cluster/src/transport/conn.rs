//! One peer connection: reading length-prefixed frames with limits, both sides of the
//! handshake, and the read loop that feeds the inbound channel.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::frame::{
    check_body_len, decode_body, encode_hello, encode_hello_reply, DecodeLimits, Frame, FrameError,
    Hello, HelloReply, RefusalReason, MAX_HANDSHAKE_BODY_BYTES, PROTOCOL_VERSION,
};
use crate::transport::stats::{PeerCounters, TransportCounters};
use crate::transport::Inbound;
use crate::wire::WireMessage;
use crate::NodeId;

/// Read buffer of a connection: big enough that a busy peer's frames cost few syscalls.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// A frame buffer grown past this by one large frame is given back afterwards.
const KEEP_FRAME_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A connection that passed the handshake, on its way to the peer task.
pub(crate) struct Established {
    pub(crate) stream: TcpStream,
    /// The node that dialed: decides which connection of a pair is kept.
    pub(crate) initiator: NodeId,
    pub(crate) remote: SocketAddr,
}

/// Why a handshake failed.
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("unexpected frame during the handshake")]
    UnexpectedFrame,
    #[error("connection closed during the handshake")]
    Closed,
    #[error("refused by the peer: {0}")]
    RefusedByPeer(RefusalReason),
    #[error("refused: {reason} (their node id {node_id}, their cluster id {cluster_id:?})")]
    Refused {
        reason: RefusalReason,
        node_id: NodeId,
        cluster_id: String,
    },
    #[error("reached node {got}, expected node {expected}")]
    WrongPeer { expected: NodeId, got: NodeId },
}

/// Why reading a frame failed.
#[derive(Debug, Error)]
pub(crate) enum ReadError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// Reads one frame body into `buf`. `Ok(false)` is a clean close between frames.
///
/// The length prefix is checked against `max_body_bytes` before any of the body is read, and
/// the body is read as it arrives rather than allocated up front at the claimed size.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body_bytes: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, ReadError> {
    let mut prefix = [0u8; 4];
    if reader.read(&mut prefix[..1]).await? == 0 {
        return Ok(false);
    }
    reader.read_exact(&mut prefix[1..]).await?;
    let len = check_body_len(u32::from_be_bytes(prefix), max_body_bytes)?;
    buf.clear();
    if buf.capacity() > KEEP_FRAME_BUFFER_BYTES && len <= KEEP_FRAME_BUFFER_BYTES {
        buf.shrink_to(KEEP_FRAME_BUFFER_BYTES);
    }
    let read = (&mut *reader).take(len as u64).read_to_end(buf).await?;
    if read != len {
        return Err(
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-frame").into(),
        );
    }
    Ok(true)
}

/// Handshake limits: a Hello never carries messages.
const HANDSHAKE_LIMITS: DecodeLimits = DecodeLimits {
    max_messages_per_frame: 0,
};

/// The dialer's side: connect, send Hello, check the reply names the node we meant to reach.
pub(crate) async fn dial(
    addr: SocketAddr,
    me: NodeId,
    peer: NodeId,
    cluster_id: Arc<str>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<Established, HandshakeError> {
    let mut stream = timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(HandshakeError::Connect)?;
    stream.set_nodelay(true)?;
    timeout(handshake_timeout, async {
        let mut out = BytesMut::new();
        encode_hello(
            &Hello {
                version: PROTOCOL_VERSION,
                cluster_id: cluster_id.to_string(),
                node_id: me,
                to_node_id: peer,
            },
            &mut out,
        );
        stream.write_all(&out).await?;
        let mut body = Vec::new();
        if !read_body(&mut stream, MAX_HANDSHAKE_BODY_BYTES, &mut body)
            .await
            .map_err(read_to_handshake)?
        {
            return Err(HandshakeError::Closed);
        }
        // `Bytes` stands in for the message type: a handshake frame never carries messages.
        match decode_body::<bytes::Bytes>(&body, HANDSHAKE_LIMITS)? {
            Frame::HelloReply(HelloReply::Accepted { node_id }) if node_id == peer => Ok(()),
            Frame::HelloReply(HelloReply::Accepted { node_id }) => Err(HandshakeError::WrongPeer {
                expected: peer,
                got: node_id,
            }),
            Frame::HelloReply(HelloReply::Refused { reason, .. }) => {
                Err(HandshakeError::RefusedByPeer(reason))
            }
            _ => Err(HandshakeError::UnexpectedFrame),
        }
    })
    .await
    .map_err(|_| HandshakeError::Timeout)??;
    Ok(Established {
        stream,
        initiator: me,
        remote: addr,
    })
}

/// The acceptor's side: read the Hello, check it, answer. Returns the dialer's node id.
///
/// `is_peer` says whether a node id is one of this node's peers. A refusal is answered with its
/// reason before the connection is closed, so the dialer can log why.
pub(crate) async fn accept_handshake(
    stream: &mut TcpStream,
    me: NodeId,
    cluster_id: &str,
    is_peer: impl Fn(NodeId) -> bool,
) -> Result<NodeId, HandshakeError> {
    let mut body = Vec::new();
    if !read_body(stream, MAX_HANDSHAKE_BODY_BYTES, &mut body)
        .await
        .map_err(read_to_handshake)?
    {
        return Err(HandshakeError::Closed);
    }
    let hello = match decode_body::<bytes::Bytes>(&body, HANDSHAKE_LIMITS)? {
        Frame::Hello(hello) => hello,
        _ => return Err(HandshakeError::UnexpectedFrame),
    };
    let refusal = if hello.version != PROTOCOL_VERSION {
        Some(RefusalReason::UnsupportedVersion)
    } else if hello.cluster_id != cluster_id {
        Some(RefusalReason::WrongCluster)
    } else if hello.to_node_id != me {
        Some(RefusalReason::WrongNode)
    } else if hello.node_id == me {
        Some(RefusalReason::DuplicateNodeId)
    } else if !is_peer(hello.node_id) {
        Some(RefusalReason::UnknownNode)
    } else {
        None
    };
    let reply = match refusal {
        Some(reason) => HelloReply::Refused {
            node_id: me,
            reason,
        },
        None => HelloReply::Accepted { node_id: me },
    };
    let mut out = BytesMut::new();
    encode_hello_reply(&reply, &mut out);
    // A refused dialer may already be gone; its refusal is logged here whether or not the reply
    // reached it.
    let written = stream.write_all(&out).await;
    if let Some(reason) = refusal {
        return Err(HandshakeError::Refused {
            reason,
            node_id: hello.node_id,
            cluster_id: hello.cluster_id,
        });
    }
    written?;
    Ok(hello.node_id)
}

fn read_to_handshake(error: ReadError) -> HandshakeError {
    match error {
        ReadError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
        ReadError::Io(e) => HandshakeError::Io(e),
        ReadError::Frame(e) => HandshakeError::Frame(e),
    }
}

/// What a read loop needs besides its socket.
pub(crate) struct ReadContext<M> {
    pub(crate) peer: NodeId,
    pub(crate) remote: SocketAddr,
    pub(crate) max_frame_bytes: usize,
    pub(crate) limits: DecodeLimits,
    pub(crate) inbound: mpsc::Sender<Inbound<M>>,
    pub(crate) peer_counters: Arc<PeerCounters>,
    pub(crate) transport_counters: Arc<TransportCounters>,
}

/// Reads batches until the connection closes or misbehaves, delivering each message to the
/// inbound channel. Waiting on a full inbound channel stops reading, which is the backpressure:
/// the peer's writes then block and its send queue drops.
pub(crate) async fn read_loop<M: WireMessage>(read_half: OwnedReadHalf, ctx: ReadContext<M>) {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read_half);
    let mut body = Vec::new();
    loop {
        match read_body(&mut reader, ctx.max_frame_bytes, &mut body).await {
            Ok(true) => {}
            Ok(false) => {
                debug!(peer = ctx.peer, remote = %ctx.remote, "peer closed the connection");
                return;
            }
            Err(ReadError::Io(error)) => {
                debug!(peer = ctx.peer, remote = %ctx.remote, %error, "peer connection failed");
                return;
            }
            Err(ReadError::Frame(error)) => {
                ctx.transport_counters
                    .frames_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(peer = ctx.peer, remote = %ctx.remote, %error, "closing peer connection: frame refused");
                return;
            }
        }
        let messages = match decode_body::<M>(&body, ctx.limits) {
            Ok(Frame::Batch(messages)) => messages,
            Ok(_) => {
                ctx.transport_counters
                    .frames_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(peer = ctx.peer, remote = %ctx.remote, "closing peer connection: handshake frame after the handshake");
                return;
            }
            Err(error) => {
                ctx.transport_counters
                    .frames_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(peer = ctx.peer, remote = %ctx.remote, %error, "closing peer connection: frame does not decode");
                return;
            }
        };
        ctx.peer_counters
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        ctx.peer_counters
            .messages_received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        for (shard_id, message) in messages {
            let inbound = Inbound {
                from_node: ctx.peer,
                shard_id,
                message,
            };
            if ctx.inbound.send(inbound).await.is_err() {
                // The driver dropped its receiver: the node is stopping.
                return;
            }
        }
    }
}
