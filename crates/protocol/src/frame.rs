//! Request framing: the 4-byte size prefix and the first 8 bytes of a request header.
//!
//! A Kafka request on the wire is `size: i32` followed by `size` bytes of body, and every body
//! starts with `api_key: i16, api_version: i16, correlation_id: i32` whatever the header version.
//! The server needs both pieces before it decodes anything:
//!
//! - [`check`] reads only the prefix, so a size over the limit (or negative) is refused before a
//!   single body byte is buffered — the same order as mini-redis's `Frame::check` and Redpanda's
//!   `parse_size`. A peer cannot make the server allocate more than the limit.
//! - [`RequestPrefix::parse`] reads the api key, version and correlation id without decoding the
//!   rest, which is what answering an unknown ApiVersions version needs (Kafka answers it with a
//!   v0 response even though the body may be in a format it cannot read).
//!
//! Responses are framed the other way round: [`begin_frame`] reserves the prefix, the caller
//! encodes header and body behind it, and [`finish_frame`] writes the length in place, so one
//! buffer and one write carry the whole response.

use bytes::{BufMut, BytesMut};

/// Bytes of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

/// Bytes every request header starts with: api key (2), api version (2), correlation id (4).
pub const REQUEST_PREFIX_LEN: usize = 8;

/// Why a frame was refused. Every variant ends the connection: the stream cannot be resynced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is larger than the configured maximum request size.
    #[error("request of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The size the peer announced.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The size prefix is negative.
    #[error("negative request size {0}")]
    NegativeSize(i32),
    /// A body shorter than the fixed start of a request header.
    #[error("request of {0} bytes is shorter than a request header")]
    ShortHeader(usize),
    /// A response larger than a size prefix can express.
    #[error("response of {0} bytes does not fit a size prefix")]
    ResponseTooLarge(usize),
}

/// Reads the size prefix at the start of `buf` and checks it against `max_bytes`.
///
/// Returns `Ok(None)` while fewer than 4 bytes are buffered, and `Ok(Some(body_len))` as soon as
/// the prefix is readable and acceptable — whether or not the body has arrived yet, so the caller
/// can reserve room for it. The whole frame is in `buf` once
/// `buf.len() >= SIZE_PREFIX_LEN + body_len`.
pub fn check(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..SIZE_PREFIX_LEN) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size < 0 {
        return Err(FrameError::NegativeSize(size));
    }
    let size = size as usize;
    if size > max_bytes {
        return Err(FrameError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    Ok(Some(size))
}

/// The fields at the start of every request header, read without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    /// The API key (may be one this server does not know).
    pub api_key: i16,
    /// The API version (may be one this server does not support).
    pub api_version: i16,
    /// The correlation id the response must carry.
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// Reads the prefix from the start of a request body (the bytes after the size prefix).
    pub fn parse(body: &[u8]) -> Result<RequestPrefix, FrameError> {
        let Some(b) = body.get(..REQUEST_PREFIX_LEN) else {
            return Err(FrameError::ShortHeader(body.len()));
        };
        Ok(RequestPrefix {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// Starts a response frame in `buf`: reserves the size prefix and returns where it starts.
pub fn begin_frame(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_i32(0);
    start
}

/// Completes the frame started at `start` by writing the length of everything after its prefix.
pub fn finish_frame(buf: &mut BytesMut, start: usize) -> Result<(), FrameError> {
    let body_len = buf.len() - start - SIZE_PREFIX_LEN;
    let size = i32::try_from(body_len).map_err(|_| FrameError::ResponseTooLarge(body_len))?;
    buf[start..start + SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_waits_for_the_prefix() {
        assert_eq!(check(&[], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0], 100), Ok(None));
    }

    #[test]
    fn check_reports_the_body_length_before_the_body_arrives() {
        assert_eq!(check(&[0, 0, 0, 10], 100), Ok(Some(10)));
        assert_eq!(check(&[0, 0, 0, 10, 1, 2, 3], 100), Ok(Some(10)));
        assert_eq!(check(&[0, 0, 0, 0], 100), Ok(Some(0)));
        assert_eq!(check(&[0, 0, 0, 100], 100), Ok(Some(100)));
    }

    #[test]
    fn check_rejects_oversize_and_negative_sizes() {
        assert_eq!(
            check(&[0, 0, 0, 101], 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::NegativeSize(-1))
        );
        assert_eq!(
            check(&[0x80, 0, 0, 0], usize::MAX),
            Err(FrameError::NegativeSize(i32::MIN))
        );
        // "GET " read as a size: a plain-text peer is refused at once, not buffered.
        assert!(matches!(
            check(b"GET / HTTP/1.1", 100 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn prefix_parses_key_version_and_correlation_id() {
        let body = [0, 18, 0, 3, 0, 0, 1, 2, 0xff];
        assert_eq!(
            RequestPrefix::parse(&body),
            Ok(RequestPrefix {
                api_key: 18,
                api_version: 3,
                correlation_id: 258,
            })
        );
        let negative = [0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(
            RequestPrefix::parse(&negative),
            Ok(RequestPrefix {
                api_key: -1,
                api_version: i16::MAX,
                correlation_id: -2,
            })
        );
        assert_eq!(
            RequestPrefix::parse(&body[..7]),
            Err(FrameError::ShortHeader(7))
        );
    }

    #[test]
    fn response_frames_carry_their_length() {
        let mut buf = BytesMut::new();
        buf.put_slice(b"xx");
        let start = begin_frame(&mut buf);
        buf.put_slice(b"hello");
        finish_frame(&mut buf, start).unwrap();
        assert_eq!(&buf[..], b"xx\0\0\0\x05hello");
        assert_eq!(check(&buf[start..], 100), Ok(Some(5)));
    }
}
