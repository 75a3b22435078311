//! The peer frame format. Pure encoding and decoding, no I/O: the connection code in
//! [`crate::transport`] reads the length prefix, checks it against the limit *before* reading the
//! body (a stranger cannot make us allocate what it claims), and hands the body to [`decode_body`].
//!
//! ```text
//! frame      := body_len:u32 body                    body_len ≤ max_frame_bytes
//! body       := kind:u8 payload
//! Hello      (kind 1) := magic "JETP" version:u16 cluster_id_len:u16 cluster_id node_id:u64 to_node_id:u64
//! HelloReply (kind 2) := version:u16 status:u8 node_id:u64          status 0 = accepted, else a RefusalReason
//! Batch      (kind 3) := count:u32 count × (shard_id:u64 message_len:u32 message)
//! ```
//!
//! Integers are big-endian. A batch carries every shard's messages for one peer from one Ready,
//! so a busy node sends one frame per peer per Ready rather than one per Raft message.
//! Decoding checks every length against the bytes that remain, and refuses trailing bytes, so
//! garbage is an error, never a panic or an allocation it did not pay for.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use crate::wire::{DecodeError, WireMessage};
use crate::{NodeId, ShardId};

/// The first bytes of every Hello: a cheap check that the other end speaks this protocol.
pub const MAGIC: [u8; 4] = *b"JETP";
/// The version of this frame format. A peer with another version is refused at the handshake.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of the length prefix in front of every body.
pub const LEN_PREFIX_BYTES: usize = 4;
/// The longest cluster id a Hello may carry.
pub const MAX_CLUSTER_ID_BYTES: usize = 255;
/// The limit on handshake frames, whatever `max_frame_bytes` is: a Hello is small, and an
/// unauthenticated peer gets no more than this.
pub const MAX_HANDSHAKE_BODY_BYTES: usize = 1 + 4 + 2 + 2 + MAX_CLUSTER_ID_BYTES + 8 + 8;

const KIND_HELLO: u8 = 1;
const KIND_HELLO_REPLY: u8 = 2;
const KIND_BATCH: u8 = 3;

/// Bytes of a batch body before its messages: kind and count.
const BATCH_HEADER_BYTES: usize = 1 + 4;
/// Bytes in front of each message in a batch: shard id and message length.
const MESSAGE_HEADER_BYTES: usize = 8 + 4;

/// The dialer's opening frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The frame format version the dialer speaks.
    pub version: u16,
    /// The dialer's cluster id; a node of another cluster is refused.
    pub cluster_id: String,
    /// The dialer's node id.
    pub node_id: NodeId,
    /// The node id the dialer expects to reach; a node reached at a stale address refuses.
    pub to_node_id: NodeId,
}

/// Why a handshake was refused. The code travels in the HelloReply so the dialer can log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The dialer belongs to another cluster.
    WrongCluster,
    /// The dialer expected another node at this address.
    WrongNode,
    /// The dialer's node id is not one of this node's peers.
    UnknownNode,
    /// The dialer claims this node's own id.
    DuplicateNodeId,
    /// The dialer speaks another frame format version.
    UnsupportedVersion,
}

impl RefusalReason {
    fn code(self) -> u8 {
        match self {
            RefusalReason::WrongCluster => 1,
            RefusalReason::WrongNode => 2,
            RefusalReason::UnknownNode => 3,
            RefusalReason::DuplicateNodeId => 4,
            RefusalReason::UnsupportedVersion => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => RefusalReason::WrongCluster,
            2 => RefusalReason::WrongNode,
            3 => RefusalReason::UnknownNode,
            4 => RefusalReason::DuplicateNodeId,
            5 => RefusalReason::UnsupportedVersion,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusalReason::WrongCluster => "another cluster id",
            RefusalReason::WrongNode => "another node id expected at this address",
            RefusalReason::UnknownNode => "unknown node id",
            RefusalReason::DuplicateNodeId => "node id already used by the accepting node",
            RefusalReason::UnsupportedVersion => "unsupported protocol version",
        })
    }
}

/// The acceptor's answer to a Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloReply {
    /// The connection is accepted; `node_id` is the acceptor's, checked by the dialer.
    Accepted {
        /// The acceptor's node id.
        node_id: NodeId,
    },
    /// The connection is refused and will be closed.
    Refused {
        /// The acceptor's node id.
        node_id: NodeId,
        /// Why.
        reason: RefusalReason,
    },
}

/// One decoded frame body.
#[derive(Debug, PartialEq)]
pub enum Frame<M> {
    /// The dialer's opening frame.
    Hello(Hello),
    /// The acceptor's answer.
    HelloReply(HelloReply),
    /// Raft messages for several shards.
    Batch(Vec<(ShardId, M)>),
}

/// The limits a body is decoded with.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most messages one batch may carry.
    pub max_messages_per_frame: usize,
}

/// A frame that cannot be decoded. Every variant closes the connection it arrived on.
#[derive(Debug, Error, PartialEq)]
pub enum FrameError {
    /// The length prefix is over the limit.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Claimed body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A body with no kind byte.
    #[error("empty frame")]
    Empty,
    /// A length inside the body runs past its end.
    #[error("frame truncated: {needed} bytes needed, {remaining} remain")]
    Truncated {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// Bytes left after the last field.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
    /// An unknown kind byte.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A Hello without the magic bytes: not a Jet peer.
    #[error("not a jet peer (bad magic)")]
    BadMagic,
    /// A cluster id over [`MAX_CLUSTER_ID_BYTES`] or not UTF-8.
    #[error("invalid cluster id")]
    InvalidClusterId,
    /// A HelloReply with an unknown status.
    #[error("unknown handshake status {0}")]
    UnknownStatus(u8),
    /// A batch claiming more messages than allowed.
    #[error("batch of {count} messages is over the limit of {max}")]
    TooManyMessages {
        /// Claimed count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A message inside a batch did not decode.
    #[error("message for shard {shard_id}: {source}")]
    Message {
        /// The shard the message was for.
        shard_id: ShardId,
        /// The codec's error.
        #[source]
        source: DecodeError,
    },
}

/// Appends a length-prefixed Hello frame to `buf`.
///
/// The caller checks the cluster id length (`TransportConfig::validate`); a longer one is cut
/// to [`MAX_CLUSTER_ID_BYTES`] here so the frame always decodes, and is then refused as another
/// cluster.
pub fn encode_hello(hello: &Hello, buf: &mut BytesMut) {
    let cluster_id = truncate_utf8(&hello.cluster_id, MAX_CLUSTER_ID_BYTES);
    let body_len = 1 + MAGIC.len() + 2 + 2 + cluster_id.len() + 8 + 8;
    buf.reserve(LEN_PREFIX_BYTES + body_len);
    buf.put_u32(body_len as u32);
    buf.put_u8(KIND_HELLO);
    buf.put_slice(&MAGIC);
    buf.put_u16(hello.version);
    buf.put_u16(cluster_id.len() as u16);
    buf.put_slice(cluster_id.as_bytes());
    buf.put_u64(hello.node_id);
    buf.put_u64(hello.to_node_id);
}

/// Appends a length-prefixed HelloReply frame to `buf`.
pub fn encode_hello_reply(reply: &HelloReply, buf: &mut BytesMut) {
    let (node_id, status) = match *reply {
        HelloReply::Accepted { node_id } => (node_id, 0),
        HelloReply::Refused { node_id, reason } => (node_id, reason.code()),
    };
    buf.put_u32(1 + 2 + 1 + 8);
    buf.put_u8(KIND_HELLO_REPLY);
    buf.put_u16(PROTOCOL_VERSION);
    buf.put_u8(status);
    buf.put_u64(node_id);
}

/// The body length (what the length prefix will say) of a batch frame.
pub fn batch_body_len<M: WireMessage>(messages: &[(ShardId, M)]) -> usize {
    BATCH_HEADER_BYTES
        + messages
            .iter()
            .map(|(_, message)| MESSAGE_HEADER_BYTES + message.encoded_len())
            .sum::<usize>()
}

/// Appends a length-prefixed batch frame to `buf` and returns its body length.
///
/// Message lengths are measured from what `encode` actually wrote, not from `encoded_len`, so a
/// codec whose estimate is off still produces frames that decode.
///
/// # Panics
/// If a message or the whole body is over 4 GiB; `PeerTransport::send` refuses batches over
/// `max_frame_bytes` (itself capped far below that) before they reach this function.
pub fn encode_batch<M: WireMessage>(messages: &[(ShardId, M)], buf: &mut BytesMut) -> usize {
    let frame_start = buf.len();
    buf.reserve(LEN_PREFIX_BYTES + batch_body_len(messages));
    buf.put_u32(0); // patched below
    buf.put_u8(KIND_BATCH);
    buf.put_u32(messages.len() as u32);
    for (shard_id, message) in messages {
        buf.put_u64(*shard_id);
        let len_at = buf.len();
        buf.put_u32(0); // patched below
        let message_start = buf.len();
        message.encode(buf);
        let message_len = u32::try_from(buf.len() - message_start)
            .expect("message over 4 GiB: send() bounds batches far below that");
        buf[len_at..len_at + 4].copy_from_slice(&message_len.to_be_bytes());
    }
    let body_len = buf.len() - frame_start - LEN_PREFIX_BYTES;
    let body_len_u32 =
        u32::try_from(body_len).expect("frame over 4 GiB: send() bounds batches far below that");
    buf[frame_start..frame_start + LEN_PREFIX_BYTES].copy_from_slice(&body_len_u32.to_be_bytes());
    body_len
}

/// Checks a length prefix against the limit before the body is read.
pub fn check_body_len(body_len: u32, max_body_bytes: usize) -> Result<usize, FrameError> {
    let len = body_len as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_body_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_body_bytes,
        });
    }
    Ok(len)
}

/// Decodes one frame body (the bytes after the length prefix).
pub fn decode_body<M: WireMessage>(
    body: &[u8],
    limits: DecodeLimits,
) -> Result<Frame<M>, FrameError> {
    let mut cursor = Cursor { rest: body };
    let kind = cursor.u8().map_err(|_| FrameError::Empty)?;
    let frame = match kind {
        KIND_HELLO => Frame::Hello(decode_hello(&mut cursor)?),
        KIND_HELLO_REPLY => Frame::HelloReply(decode_hello_reply(&mut cursor)?),
        KIND_BATCH => Frame::Batch(decode_batch(&mut cursor, limits)?),
        other => return Err(FrameError::UnknownKind(other)),
    };
    if !cursor.rest.is_empty() {
        return Err(FrameError::TrailingBytes(cursor.rest.len()));
    }
    Ok(frame)
}

fn decode_hello(cursor: &mut Cursor<'_>) -> Result<Hello, FrameError> {
    if cursor.take(MAGIC.len())? != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let version = cursor.u16()?;
    let cluster_id_len = cursor.u16()? as usize;
    if cluster_id_len > MAX_CLUSTER_ID_BYTES {
        return Err(FrameError::InvalidClusterId);
    }
    let cluster_id = std::str::from_utf8(cursor.take(cluster_id_len)?)
        .map_err(|_| FrameError::InvalidClusterId)?
        .to_owned();
    let node_id = cursor.u64()?;
    let to_node_id = cursor.u64()?;
    Ok(Hello {
        version,
        cluster_id,
        node_id,
        to_node_id,
    })
}

fn decode_hello_reply(cursor: &mut Cursor<'_>) -> Result<HelloReply, FrameError> {
    // The reply's version is informative: a dialer speaking another version was refused.
    let _version = cursor.u16()?;
    let status = cursor.u8()?;
    let node_id = cursor.u64()?;
    if status == 0 {
        return Ok(HelloReply::Accepted { node_id });
    }
    let reason = RefusalReason::from_code(status).ok_or(FrameError::UnknownStatus(status))?;
    Ok(HelloReply::Refused { node_id, reason })
}

fn decode_batch<M: WireMessage>(
    cursor: &mut Cursor<'_>,
    limits: DecodeLimits,
) -> Result<Vec<(ShardId, M)>, FrameError> {
    let count = cursor.u32()? as usize;
    if count > limits.max_messages_per_frame {
        return Err(FrameError::TooManyMessages {
            count,
            max: limits.max_messages_per_frame,
        });
    }
    // Each message needs at least its header, so a count the body cannot hold is refused
    // before anything is allocated for it.
    let room = cursor.rest.len() / MESSAGE_HEADER_BYTES;
    if count > room {
        return Err(FrameError::Truncated {
            needed: count * MESSAGE_HEADER_BYTES,
            remaining: cursor.rest.len(),
        });
    }
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let shard_id = cursor.u64()?;
        let len = cursor.u32()? as usize;
        let bytes = cursor.take(len)?;
        let message =
            M::decode(bytes).map_err(|source| FrameError::Message { shard_id, source })?;
        messages.push((shard_id, message));
    }
    Ok(messages)
}

/// Reads fields off the front of a body, each checked against what remains.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.rest.len() {
            return Err(FrameError::Truncated {
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_messages_per_frame: 10_000,
    };

    /// Splits one encoded frame into its body, checking the prefix says the body's length.
    fn body_of(buf: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(
            len,
            buf.len() - LEN_PREFIX_BYTES,
            "length prefix is the body length"
        );
        &buf[LEN_PREFIX_BYTES..]
    }

    /// A message whose codec refuses one byte value, to exercise message decode errors.
    #[derive(Debug, PartialEq)]
    struct Picky(u8);

    impl WireMessage for Picky {
        fn encoded_len(&self) -> usize {
            1
        }
        fn encode(&self, buf: &mut BytesMut) {
            buf.put_u8(self.0);
        }
        fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
            match buf {
                [0xff] => Err(DecodeError::new("0xff is refused")),
                [b] => Ok(Picky(*b)),
                _ => Err(DecodeError::new("one byte expected")),
            }
        }
    }

    #[test]
    fn hello_and_reply_round_trip() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "prod-eu".into(),
            node_id: 3,
            to_node_id: 7,
        };
        let mut buf = BytesMut::new();
        encode_hello(&hello, &mut buf);
        assert!(buf.len() - LEN_PREFIX_BYTES <= MAX_HANDSHAKE_BODY_BYTES);
        assert_eq!(
            decode_body::<Bytes>(body_of(&buf), LIMITS),
            Ok(Frame::Hello(hello))
        );

        for reply in [
            HelloReply::Accepted { node_id: 9 },
            HelloReply::Refused {
                node_id: 9,
                reason: RefusalReason::UnknownNode,
            },
        ] {
            let mut buf = BytesMut::new();
            encode_hello_reply(&reply, &mut buf);
            assert_eq!(
                decode_body::<Bytes>(body_of(&buf), LIMITS),
                Ok(Frame::HelloReply(reply))
            );
        }
    }

    #[test]
    fn hello_with_longest_cluster_id_fits_the_handshake_limit() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "é".repeat(200), // 400 bytes, cut at a char boundary
            node_id: u64::MAX,
            to_node_id: u64::MAX,
        };
        let mut buf = BytesMut::new();
        encode_hello(&hello, &mut buf);
        assert!(buf.len() - LEN_PREFIX_BYTES <= MAX_HANDSHAKE_BODY_BYTES);
        let Ok(Frame::Hello(decoded)) = decode_body::<Bytes>(body_of(&buf), LIMITS) else {
            panic!("hello did not decode");
        };
        assert_eq!(decoded.cluster_id, "é".repeat(127));
    }

    #[test]
    fn bad_magic_unknown_kind_and_trailing_bytes_are_errors() {
        let mut buf = BytesMut::new();
        encode_hello(
            &Hello {
                version: 1,
                cluster_id: "c".into(),
                node_id: 1,
                to_node_id: 2,
            },
            &mut buf,
        );
        let mut body = body_of(&buf).to_vec();
        body[1] = b'X';
        assert_eq!(
            decode_body::<Bytes>(&body, LIMITS),
            Err(FrameError::BadMagic)
        );
        assert_eq!(
            decode_body::<Bytes>(&[9, 0, 0], LIMITS),
            Err(FrameError::UnknownKind(9))
        );
        let mut batch = BytesMut::new();
        encode_batch::<Bytes>(&[], &mut batch);
        let mut body = body_of(&batch).to_vec();
        body.push(0);
        assert_eq!(
            decode_body::<Bytes>(&body, LIMITS),
            Err(FrameError::TrailingBytes(1))
        );
        assert_eq!(decode_body::<Bytes>(&[], LIMITS), Err(FrameError::Empty));
    }

    #[test]
    fn batch_count_over_limit_or_over_body_is_refused_before_allocating() {
        let mut body = vec![KIND_BATCH];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_body::<Bytes>(&body, LIMITS),
            Err(FrameError::TooManyMessages {
                count: u32::MAX as usize,
                max: LIMITS.max_messages_per_frame
            })
        );
        let mut body = vec![KIND_BATCH];
        body.extend_from_slice(&100u32.to_be_bytes());
        assert!(matches!(
            decode_body::<Bytes>(&body, LIMITS),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn message_decode_error_names_the_shard() {
        let mut buf = BytesMut::new();
        encode_batch(&[(4, Picky(1)), (5, Picky(0xff))], &mut buf);
        assert!(matches!(
            decode_body::<Picky>(body_of(&buf), LIMITS),
            Err(FrameError::Message { shard_id: 5, .. })
        ));
    }

    #[test]
    fn length_prefix_is_checked_against_the_limit() {
        assert_eq!(check_body_len(0, 10), Err(FrameError::Empty));
        assert_eq!(check_body_len(10, 10), Ok(10));
        assert_eq!(
            check_body_len(11, 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
    }

    fn batch_strategy() -> impl Strategy<Value = Vec<(ShardId, Vec<u8>)>> {
        proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..40,
        )
    }

    proptest! {
        #[test]
        fn batch_round_trips(batch in batch_strategy()) {
            let messages: Vec<(ShardId, Bytes)> =
                batch.into_iter().map(|(s, m)| (s, Bytes::from(m))).collect();
            let mut buf = BytesMut::new();
            let body_len = encode_batch(&messages, &mut buf);
            prop_assert_eq!(body_len, batch_body_len(&messages));
            prop_assert_eq!(buf.len(), LEN_PREFIX_BYTES + body_len);
            let decoded = decode_body::<Bytes>(body_of(&buf), LIMITS);
            prop_assert_eq!(decoded, Ok(Frame::Batch(messages)));
        }

        #[test]
        fn hello_round_trips(
            cluster_id in "[a-zA-Z0-9_.-]{0,255}",
            node_id in any::<u64>(),
            to_node_id in any::<u64>(),
            version in any::<u16>(),
        ) {
            let hello = Hello { version, cluster_id, node_id, to_node_id };
            let mut buf = BytesMut::new();
            encode_hello(&hello, &mut buf);
            prop_assert_eq!(decode_body::<Bytes>(body_of(&buf), LIMITS), Ok(Frame::Hello(hello)));
        }

        /// Random bytes never panic the decoder, whatever the kind byte says.
        #[test]
        fn garbage_never_panics(kind in 0u8..5, rest in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut body = vec![kind];
            body.extend_from_slice(&rest);
            let _ = decode_body::<Bytes>(&body, LIMITS);
            let _ = decode_body::<Picky>(&body, LIMITS);
            let _ = decode_body::<Bytes>(&rest, LIMITS);
        }

        /// A valid batch with bytes flipped or cut decodes to an error or to some batch,
        /// never a panic.
        #[test]
        fn corrupted_batches_never_panic(
            batch in batch_strategy(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let messages: Vec<(ShardId, Bytes)> =
                batch.into_iter().map(|(s, m)| (s, Bytes::from(m))).collect();
            let mut buf = BytesMut::new();
            encode_batch(&messages, &mut buf);
            let mut body = buf[LEN_PREFIX_BYTES..].to_vec();
            for (at, byte) in flips {
                let i = at % body.len();
                body[i] ^= byte;
            }
            let keep = cut % (body.len() + 1);
            let _ = decode_body::<Bytes>(&body, LIMITS);
            let _ = decode_body::<Picky>(&body[..keep], LIMITS);
        }
    }
}
