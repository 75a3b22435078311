//! The seam between the transport and the Raft message encoding.
//!
//! The transport moves opaque messages; the multi-raft driver decides what they are. The
//! workspace's `raft` crate is moving from `protobuf-codec` to `prost-codec` (protobuf 2.x has
//! RUSTSEC-2024-0437 and would parse bytes from the network), so the driver implements
//! [`WireMessage`] for `raft::eraftpb::Message` with prost, and this crate never names `raft`.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// A message the peer transport can carry.
///
/// `decode` receives exactly the bytes `encode` wrote, already bounded by the frame limits, so
/// an implementation needs no length prefix of its own. It must not panic on any input: the
/// bytes come from the network.
pub trait WireMessage: Send + Sized + 'static {
    /// The number of bytes `encode` will write; used to refuse an over-limit batch at `send`,
    /// before it is queued.
    fn encoded_len(&self) -> usize;
    /// Appends the encoded message to `buf`.
    fn encode(&self, buf: &mut BytesMut);
    /// Decodes one message from exactly the bytes one `encode` wrote.
    fn decode(buf: &[u8]) -> Result<Self, DecodeError>;
}

/// A message's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("message decode failed: {reason}")]
pub struct DecodeError {
    reason: String,
}

impl DecodeError {
    /// Wraps the reason given by the codec (for example a `prost::DecodeError`).
    pub fn new(reason: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }

    /// Why decoding failed.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Opaque bytes: a message the transport carries as it is. Used by the tests, and by any caller
/// that encodes its messages itself.
impl WireMessage for Bytes {
    fn encoded_len(&self) -> usize {
        self.len()
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(self);
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(Bytes::copy_from_slice(buf))
    }
}
