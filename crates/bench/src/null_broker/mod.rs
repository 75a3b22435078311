//! The null broker: the ceiling every Jet figure is compared with.
//!
//! It speaks just enough Kafka (through the `kafka-protocol` crate) for librdkafka to produce,
//! fetch and create topics, and does as little as possible beyond that: produce is acknowledged
//! without checking CRCs or writing anything, and only the topics the bench marks with
//! [`NullBroker::retain`] keep their batches (in memory, for Fetch). What a client achieves against
//! it is what the client library plus the loopback interface can do on this machine — a broker
//! cannot beat it, so Jet's figures are reported as a ratio to it.
//!
//! It runs on its own thread with its own current-thread tokio runtime, so its work never shares
//! a scheduler (or a core budget decision) with the client under test, and so that its CPU time
//! can be read alone from `/proc/self/task/<tid>/stat` ([`NullBroker::thread_id`]).
//!
//! Map:
//! - this file — start/stop, the accept loop, one task per connection (framing, pipelined
//!   requests answered in order, fetch long-poll);
//! - `handlers` — one function per API and the version registry ApiVersions is built from;
//! - `state` — topics, partitions, offsets and the retained batches.

mod handlers;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

use handlers::Reply;
use state::State;

/// Largest request frame accepted (Kafka's `socket.request.max.bytes` default); checked against
/// the 4-byte size prefix before the body is read.
const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Upper bound on bytes kept for retained topics; a produce beyond it gets KAFKA_STORAGE_ERROR,
/// so a run that would exhaust memory fails loudly instead.
const RETAINED_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// Longest a Fetch may long-poll, whatever the client asks, so a connection task always returns
/// to its read loop in bounded time.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(10);

/// State shared by the connection tasks and the [`NullBroker`] handle.
///
/// A std `Mutex`, not a tokio one: it is never held across an `.await`, and the runtime is
/// single-threaded, so it is never contended by the broker itself.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Woken on every append, for fetches that long-poll.
    pub(crate) appended: Notify,
    /// The address advertised in Metadata.
    pub(crate) addr: SocketAddr,
}

/// A running null broker; stopped (and its thread joined) on [`NullBroker::stop`] or drop.
pub struct NullBroker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tid: i32,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NullBroker {
    /// Starts a null broker on 127.0.0.1 with an ephemeral port.
    pub fn start() -> anyhow::Result<NullBroker> {
        NullBroker::start_on("127.0.0.1:0".parse()?)
    }

    /// Starts a null broker on `listen`, on a thread of its own.
    pub fn start_on(listen: SocketAddr) -> anyhow::Result<NullBroker> {
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("null broker: cannot bind {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(RETAINED_BYTES_MAX)),
            appended: Notify::new(),
            addr,
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        // The thread reports its tid once its runtime is up, or why it could not start.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<i32, String>>();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("null-broker".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    // SAFETY: gettid has no preconditions.
                    let _ = ready_tx.send(Ok(unsafe { libc::gettid() }));
                    runtime.block_on(accept_loop(std_listener, shared, shutdown_rx));
                    // Dropping the runtime cancels the connection tasks.
                })?
        };
        let tid = match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(tid)) => tid,
            Ok(Err(e)) => bail!("null broker: cannot start its runtime: {e}"),
            Err(_) => bail!("null broker: its thread did not start within 10 s"),
        };
        Ok(NullBroker {
            addr,
            shared,
            tid,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `bootstrap.servers` string for it.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The Linux thread id of the broker thread (for its CPU time).
    pub fn thread_id(&self) -> i32 {
        self.tid
    }

    /// Keeps the batches produced to `topic` from now on, so they can be fetched.
    pub fn retain(&self, topic: &str) {
        self.lock().retain(topic);
    }

    /// Keeps the batches of every topic from now on (up to the retained-bytes limit), as a
    /// stand-alone null broker serving arbitrary clients must.
    pub fn retain_all(&self) {
        self.lock().retain_all(true);
    }

    /// Drops the batches kept for `topic` and stops keeping them.
    pub fn forget(&self, topic: &str) {
        self.lock().forget(topic);
    }

    /// Bytes currently kept for retained topics.
    pub fn retained_bytes(&self) -> u64 {
        self.lock().retained_bytes()
    }

    /// Stops the broker and waits for its thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for NullBroker {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

async fn accept_loop(
    std_listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("null broker: cannot register the listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        // A client that goes away mid-request is normal at the end of a run.
                        let _ = serve_connection(stream, shared).await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("null broker: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// One connection: reads whatever frames have arrived, answers each in order into one output
/// buffer, and writes that buffer once per read — so pipelined requests cost one syscall per
/// burst, not one per request. A fetch that has to wait flushes the answers before it first.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(256 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        while let Some(frame) = take_frame(&mut inbuf)? {
            match handlers::handle(frame, &shared, &mut out)? {
                Reply::Done => {}
                Reply::Wait(pending) => {
                    if !out.is_empty() {
                        wr.write_all(&out).await?;
                        out.clear();
                    }
                    handlers::finish_fetch(pending, &shared, &mut out, FETCH_WAIT_MAX).await?;
                }
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        }
        if rd.read_buf(&mut inbuf).await? == 0 {
            return Ok(());
        }
    }
}

/// Splits one whole request frame (without its size prefix) off `inbuf`, if one has arrived.
fn take_frame(inbuf: &mut BytesMut) -> anyhow::Result<Option<bytes::Bytes>> {
    if inbuf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([inbuf[0], inbuf[1], inbuf[2], inbuf[3]]);
    if size < 0 || size as usize > REQUEST_BYTES_MAX {
        bail!("request size {size} outside 0..={REQUEST_BYTES_MAX}");
    }
    let size = size as usize;
    if inbuf.len() < 4 + size {
        inbuf.reserve(4 + size - inbuf.len());
        return Ok(None);
    }
    inbuf.advance(4);
    Ok(Some(inbuf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_frame_waits_for_whole_frames() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0, 0, 0, 3, 1, 2]);
        assert!(take_frame(&mut b).unwrap().is_none());
        b.extend_from_slice(&[3, 0, 0]);
        assert_eq!(&take_frame(&mut b).unwrap().unwrap()[..], &[1, 2, 3]);
        assert!(take_frame(&mut b).unwrap().is_none());
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn take_frame_rejects_oversized_and_negative() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(take_frame(&mut b).is_err());
        let mut b = BytesMut::new();
        b.extend_from_slice(&((REQUEST_BYTES_MAX as i32) + 1).to_be_bytes());
        assert!(take_frame(&mut b).is_err());
    }
}
