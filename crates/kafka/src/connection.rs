//! One client connection: the socket, its read buffer, and the requests in progress.
//!
//! **Pipelining.** Each decoded request becomes its own future in a [`FuturesOrdered`]: a Produce
//! waiting for its commit does not hold up a Metadata request behind it, yet responses come out in
//! request order, as the Kafka protocol requires. All of a connection's futures run on its one task
//! (no spawn per request); they make progress whenever the task is polled.
//!
//! **Order of effects.** A request's in-order part (`handlers::start`: a Produce hands its appends
//! to the shards) runs right after it is decoded and before the next request is read, so pipelined
//! Produce requests reach the replication layer in the order they were sent (an idempotent
//! producer with several requests in flight depends on it); only the rest (waiting for commit) runs
//! concurrently in the `FuturesOrdered`. Polling order alone does not give this: an `async fn`
//! does nothing until polled, and pipelined appends raced into the driver. Reads get no such
//! promise: a Fetch or ListOffsets pipelined behind a Produce may run before that Produce
//! commits. Kafka, which handles one request per connection at a time, would show the write;
//! clients do not rely on it (producers and consumers use separate connections, and a client
//! that needs it waits for the Produce response first).
//!
//! **Limits.** The size prefix is checked before the body is buffered
//! ([`jet_protocol::frame::check`]); at most `max_in_flight_per_connection` requests are in progress
//! (beyond that the socket is not read, so TCP pushes back on the client); finished responses wait
//! in an output queue that stops taking more above [`OUTPUT_HIGH_WATER_BYTES`].
//!
//! **Bad input.** A frame that cannot be read or decoded ends this connection only, with one
//! `warn` line: nothing after it is read, the responses to earlier requests are still written, then
//! the socket is closed.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use jet_protocol::frame::{self, SIZE_PREFIX_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::error::RequestError;
use crate::handlers::{self, Ctx};

/// Read-buffer growth while no frame length is known yet.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// Most buffer reserved at once for a frame whose length is known: a large request is read in
/// steps of this size rather than allocated in full on the word of its size prefix.
const READ_RESERVE_MAX_BYTES: usize = 8 << 20;

/// Above this many encoded-but-unwritten bytes, finished responses are left where they are until
/// the client reads (bounds memory per slow reader).
pub const OUTPUT_HIGH_WATER_BYTES: usize = 16 << 20;

/// Most responses handed to one vectored write.
const WRITE_SLICES_MAX: usize = 64;

/// What woke the connection.
enum Event {
    Wrote(std::io::Result<usize>),
    Responded(Result<Option<BytesMut>, RequestError>),
    Read(std::io::Result<usize>),
    Shutdown,
}

/// Serves one connection until the client closes it, it breaks the protocol, or the server shuts
/// down (`stop` turns true); in-flight requests are finished and answered before returning.
pub async fn serve(mut socket: TcpStream, ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let peer = ctx.peer_addr;
    let max_request_bytes = ctx.config.max_request_bytes;
    let max_in_flight = ctx.config.max_in_flight_per_connection.max(1);
    let (mut rd, mut wr) = socket.split();
    let mut read_buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output: VecDeque<Bytes> = VecDeque::new();
    let mut output_bytes = 0usize;
    let mut in_flight = FuturesOrdered::new();
    // False once nothing more will be read: end of stream, a bad frame, or shutdown.
    let mut reading = !*stop.borrow();

    loop {
        // Turn every complete frame in the buffer into a request in progress, up to the limit.
        while reading && in_flight.len() < max_in_flight {
            match next_frame(&mut read_buf, max_request_bytes) {
                Ok(Some(body)) => match handlers::decode_request(body) {
                    Ok(incoming) => {
                        // In arrival order, before anything later is read: a Produce's appends
                        // reach their shards here (waiting only for room in the shards' queue).
                        let started = handlers::start(&ctx, incoming).await;
                        in_flight.push_back(handlers::finish(&ctx, started));
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer, listener = %ctx.listener, error = %e, "closing connection: bad request");
                        reading = false;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %peer, listener = %ctx.listener, error = %e, "closing connection: bad frame");
                    reading = false;
                }
            }
        }
        if !reading && in_flight.is_empty() && output.is_empty() {
            break;
        }

        let can_read = reading && in_flight.len() < max_in_flight;
        let can_respond = !in_flight.is_empty() && output_bytes < OUTPUT_HIGH_WATER_BYTES;
        if can_read {
            reserve_for_next_frame(&mut read_buf, max_request_bytes);
        }
        let event = tokio::select! {
            biased;
            n = write_some(&mut wr, &output), if !output.is_empty() => Event::Wrote(n),
            Some(r) = in_flight.next(), if can_respond => Event::Responded(r),
            n = rd.read_buf(&mut read_buf), if can_read => Event::Read(n),
            _ = stop.changed(), if reading => Event::Shutdown,
        };

        match event {
            Event::Wrote(Ok(n)) => {
                output_bytes -= n;
                consume(&mut output, n);
            }
            Event::Wrote(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "write failed; closing connection");
                return;
            }
            Event::Responded(Ok(Some(frame))) => {
                output_bytes += frame.len();
                output.push_back(frame.freeze());
            }
            // acks=0 Produce: nothing goes back.
            Event::Responded(Ok(None)) => {}
            Event::Responded(Err(RequestError::InjectedFault)) => {
                tracing::warn!(peer = %peer, "fault injection: dropped produce response; closing connection");
                return;
            }
            Event::Responded(Err(e)) => {
                // A response we cannot encode is a bug; the client would wait forever for it,
                // and every later response would be out of order without it.
                tracing::warn!(peer = %peer, error = %e, "closing connection: response failed");
                return;
            }
            Event::Read(Ok(0)) => {
                // The client closed its side; what it already sent is still answered.
                if !read_buf.is_empty() {
                    tracing::debug!(peer = %peer, bytes = read_buf.len(), "connection closed mid-request");
                }
                reading = false;
            }
            Event::Read(Ok(_)) => {}
            Event::Read(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "read failed; closing connection");
                return;
            }
            Event::Shutdown => reading = false,
        }
    }
    let _ = wr.shutdown().await;
}

/// Takes the next complete frame's body off the front of `buf`, if the buffer holds one. The size
/// prefix is checked against `max_request_bytes` as soon as it is readable.
fn next_frame(buf: &mut BytesMut, max_request_bytes: usize) -> Result<Option<Bytes>, RequestError> {
    let Some(body_len) = frame::check(buf, max_request_bytes)? else {
        return Ok(None);
    };
    if buf.len() < SIZE_PREFIX_LEN + body_len {
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX_LEN);
    Ok(Some(buf.split_to(body_len).freeze()))
}

/// Makes room for the rest of the frame being read (or a chunk when its size is not known yet),
/// so `read_buf` reads as much as the socket has without growing byte by byte.
fn reserve_for_next_frame(buf: &mut BytesMut, max_request_bytes: usize) {
    let wanted = match frame::check(buf, max_request_bytes) {
        Ok(Some(body_len)) => (SIZE_PREFIX_LEN + body_len)
            .saturating_sub(buf.len())
            .min(READ_RESERVE_MAX_BYTES),
        _ => READ_CHUNK_BYTES,
    };
    if buf.capacity() - buf.len() < wanted.max(1) {
        buf.reserve(wanted.max(READ_CHUNK_BYTES));
    }
}

/// Writes as much of the queued responses as the socket takes, in one vectored write.
async fn write_some(
    wr: &mut tokio::net::tcp::WriteHalf<'_>,
    output: &VecDeque<Bytes>,
) -> std::io::Result<usize> {
    let slices: Vec<IoSlice<'_>> = output
        .iter()
        .take(WRITE_SLICES_MAX)
        .map(|b| IoSlice::new(b))
        .collect();
    let n = wr.write_vectored(&slices).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}

/// Drops `n` written bytes from the front of the queue.
fn consume(output: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = output.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            output.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_off_whole() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 3, b'a', b'b']);
        assert!(next_frame(&mut buf, 100).unwrap().is_none());
        buf.extend_from_slice(&[b'c', 0, 0, 0, 1, b'd', 0]);
        assert_eq!(&next_frame(&mut buf, 100).unwrap().unwrap()[..], b"abc");
        assert_eq!(&next_frame(&mut buf, 100).unwrap().unwrap()[..], b"d");
        assert!(next_frame(&mut buf, 100).unwrap().is_none());
        assert_eq!(&buf[..], &[0]);
    }

    #[test]
    fn oversize_frames_are_refused_before_the_body() {
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert!(matches!(
            next_frame(&mut buf, 255),
            Err(RequestError::Frame(frame::FrameError::TooLarge {
                size: 256,
                max: 255
            }))
        ));
    }

    #[test]
    fn reserve_is_bounded() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        reserve_for_next_frame(&mut buf, usize::MAX);
        assert!(buf.capacity() < 2 * READ_RESERVE_MAX_BYTES);
    }

    #[test]
    fn consume_walks_across_responses() {
        let mut q: VecDeque<Bytes> = VecDeque::from(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"f"),
        ]);
        consume(&mut q, 4);
        assert_eq!(
            q,
            VecDeque::from(vec![Bytes::from_static(b"e"), Bytes::from_static(b"f")])
        );
        consume(&mut q, 2);
        assert!(q.is_empty());
    }
}
