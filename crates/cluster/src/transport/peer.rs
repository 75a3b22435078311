//! The task that owns everything about one peer: its one connection, the dialing, the backoff
//! and the writes.
//!
//! One task per peer, and it alone writes, so writes need no lock and frames never interleave.
//! Connections reach it two ways, both through its `conn_rx`-style select branches: its own
//! dials, and connections the peer dialed to us (handed over by the accept loop after the
//! handshake). When both nodes dial at once there are two connections for the pair; both sides
//! keep the one dialed by the lower node id and retire the other, so they settle on the same
//! one. Retiring shuts our write side and lets the reader drain, so frames already in flight on
//! the losing connection are still delivered.
//!
//! Batches wait in the bounded queue while there is no connection; `send` drops when it is
//! full. The task does not take batches off the queue while disconnected, so exactly
//! `send_queue_batches` are kept and the rest dropped.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::frame::{encode_batch, DecodeLimits};
use crate::task::AbortOnDrop;
use crate::transport::conn::{dial, read_loop, Established, HandshakeError, ReadContext};
use crate::transport::stats::{PeerCounters, TransportCounters};
use crate::transport::{Inbound, TransportConfig};
use crate::wire::WireMessage;
use crate::{NodeId, ShardId};

/// A batch of messages for one peer: one frame.
pub(crate) type Batch<M> = Vec<(ShardId, M)>;

type DialFuture = Pin<Box<dyn Future<Output = Result<Established, HandshakeError>> + Send>>;

/// A frame buffer grown past this many coalesce windows is given back after the write.
const KEEP_WRITE_BUFFER_FACTOR: usize = 4;

/// What the peer task shares with the rest of the transport.
pub(crate) struct PeerContext<M> {
    pub(crate) me: NodeId,
    pub(crate) peer: NodeId,
    pub(crate) config: Arc<TransportConfig>,
    pub(crate) cluster_id: Arc<str>,
    pub(crate) inbound: mpsc::Sender<Inbound<M>>,
    pub(crate) counters: Arc<PeerCounters>,
    pub(crate) transport_counters: Arc<TransportCounters>,
}

/// The receiving ends the peer task listens on.
pub(crate) struct PeerChannels<M> {
    pub(crate) queue: mpsc::Receiver<Batch<M>>,
    pub(crate) addr: watch::Receiver<SocketAddr>,
    pub(crate) accepted: mpsc::Receiver<Established>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The connection in use.
struct Live {
    writer: OwnedWriteHalf,
    reader: AbortOnDrop<()>,
    initiator: NodeId,
    remote: SocketAddr,
}

/// The peer task's state between events.
struct PeerState {
    live: Option<Live>,
    dialing: Option<DialFuture>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    failed_dials: u64,
    /// Retired connections still delivering what the peer sent before it saw our FIN.
    draining: Vec<AbortOnDrop<()>>,
}

/// Runs until the transport shuts down or the peer is removed.
pub(crate) async fn run_peer<M: WireMessage>(ctx: PeerContext<M>, mut ch: PeerChannels<M>) {
    let config = ctx.config.clone();
    let mut state = PeerState {
        live: None,
        dialing: None,
        retry_at: Some(Instant::now()),
        backoff: Backoff::new(
            config.backoff_initial,
            config.backoff_max,
            RandomState::new().hash_one((ctx.me, ctx.peer)),
        ),
        failed_dials: 0,
        draining: Vec::new(),
    };
    let mut buf = BytesMut::new();
    loop {
        let may_dial = state.live.is_none() && state.dialing.is_none() && state.retry_at.is_some();
        let retry_at = state.retry_at.unwrap_or_else(Instant::now);
        tokio::select! {
            changed = ch.shutdown.changed() => {
                if changed.is_err() || *ch.shutdown.borrow() {
                    return;
                }
            }
            accepted = ch.accepted.recv() => match accepted {
                Some(conn) => adopt(&ctx, &mut state, conn),
                // The transport forgot this peer.
                None => return,
            },
            dialed = await_dial(&mut state.dialing) => {
                state.dialing = None;
                match dialed {
                    Ok(conn) => {
                        state.failed_dials = 0;
                        adopt(&ctx, &mut state, conn);
                    }
                    Err(error) => {
                        dial_failed(&ctx, &mut state, error);
                    }
                }
            }
            () = reader_finished(&mut state.live) => {
                if let Some(live) = state.live.take() {
                    info!(peer = ctx.peer, remote = %live.remote, "peer connection closed");
                }
                ctx.counters.connected.store(false, Ordering::Relaxed);
                state.retry_at = Some(Instant::now() + state.backoff.next_delay());
            }
            () = sleep_until(retry_at), if may_dial => {
                state.retry_at = None;
                let addr = *ch.addr.borrow_and_update();
                debug!(peer = ctx.peer, %addr, "dialing peer");
                state.dialing = Some(Box::pin(dial(
                    addr,
                    ctx.me,
                    ctx.peer,
                    ctx.cluster_id.clone(),
                    config.connect_timeout,
                    config.handshake_timeout,
                )));
            }
            batch = ch.queue.recv(), if state.live.is_some() => match batch {
                Some(batch) => {
                    if let Some(live) = state.live.as_mut() {
                        if let Err(error) = write_batches(&ctx, live, batch, &mut ch.queue, &mut buf).await {
                            warn!(peer = ctx.peer, remote = %live.remote, %error, "peer write failed; reconnecting");
                            state.live = None;
                            ctx.counters.connected.store(false, Ordering::Relaxed);
                            state.retry_at = Some(Instant::now() + state.backoff.next_delay());
                        }
                    }
                }
                None => return,
            },
            changed = ch.addr.changed() => {
                if changed.is_err() {
                    return;
                }
                // A new address is worth trying at once, whatever the backoff had reached.
                state.backoff.reset();
                if state.live.is_none() && state.dialing.is_none() {
                    state.retry_at = Some(Instant::now());
                }
            }
        }
    }
}

/// Makes `conn` the peer's connection, unless the one in use is the one this pair keeps.
///
/// The connection that loses is retired, not cut: our write side is shut (the other end reads
/// to the end of what we sent, then sees EOF) and its reader goes on delivering what the peer
/// already wrote until the peer shuts its side too. So the swap loses nothing.
fn adopt<M: WireMessage>(ctx: &PeerContext<M>, state: &mut PeerState, conn: Established) {
    let kept_initiator = ctx.me.min(ctx.peer);
    let keep_current = state
        .live
        .as_ref()
        .is_some_and(|live| live.initiator != conn.initiator && live.initiator == kept_initiator);
    let live = start_reading(ctx, conn);
    if keep_current {
        debug!(
            peer = ctx.peer,
            remote = %live.remote,
            "retiring the pair's second connection; keeping the one the lower node id dialed"
        );
        retire(ctx, state, live);
        return;
    }
    info!(
        peer = ctx.peer,
        remote = %live.remote,
        dialed_by_us = live.initiator == ctx.me,
        replaced = state.live.is_some(),
        "peer connected"
    );
    ctx.counters
        .initiator
        .store(live.initiator, Ordering::Relaxed);
    ctx.counters.connected.store(true, Ordering::Relaxed);
    ctx.counters
        .connections_established
        .fetch_add(1, Ordering::Relaxed);
    if let Some(old) = state.live.replace(live) {
        retire(ctx, state, old);
    }
    state.backoff.reset();
    state.retry_at = None;
}

/// Splits a connection and starts delivering what arrives on it.
fn start_reading<M: WireMessage>(ctx: &PeerContext<M>, conn: Established) -> Live {
    let (read_half, writer) = conn.stream.into_split();
    let reader = AbortOnDrop::new(tokio::spawn(read_loop(
        read_half,
        ReadContext {
            peer: ctx.peer,
            remote: conn.remote,
            max_frame_bytes: ctx.config.max_frame_bytes,
            limits: DecodeLimits {
                max_messages_per_frame: ctx.config.max_messages_per_frame,
            },
            inbound: ctx.inbound.clone(),
            peer_counters: ctx.counters.clone(),
            transport_counters: ctx.transport_counters.clone(),
        },
    )));
    Live {
        writer,
        reader,
        initiator: conn.initiator,
        remote: conn.remote,
    }
}

/// Shuts our side of a connection and lets its reader finish, for at most
/// `connection_drain_timeout`. The drain is kept in the peer's state, so it ends with the
/// peer task at the latest.
fn retire<M>(ctx: &PeerContext<M>, state: &mut PeerState, live: Live) {
    let Live {
        writer, mut reader, ..
    } = live;
    // Dropping the write half sends FIN.
    drop(writer);
    let drain = ctx.config.connection_drain_timeout;
    state.draining.retain(|task| !task.is_finished());
    state
        .draining
        .push(AbortOnDrop::new(tokio::spawn(async move {
            // On timeout `reader` is dropped here, which aborts it.
            let _ = timeout(drain, reader.finished()).await;
        })));
}

fn dial_failed<M>(ctx: &PeerContext<M>, state: &mut PeerState, error: HandshakeError) {
    state.failed_dials += 1;
    if !matches!(error, HandshakeError::Connect(_) | HandshakeError::Timeout) {
        ctx.transport_counters
            .handshakes_failed
            .fetch_add(1, Ordering::Relaxed);
    }
    let delay = state.backoff.next_delay();
    // The first failure is worth a line; a peer that stays down would otherwise log at every
    // retry, so later ones are debug, with a reminder every 100.
    if state.failed_dials == 1 || state.failed_dials.is_multiple_of(100) {
        warn!(peer = ctx.peer, %error, failed_dials = state.failed_dials, retry_in_ms = delay.as_millis() as u64, "cannot reach peer");
    } else {
        debug!(peer = ctx.peer, %error, failed_dials = state.failed_dials, retry_in_ms = delay.as_millis() as u64, "cannot reach peer");
    }
    state.retry_at = Some(Instant::now() + delay);
}

/// Writes `first` and whatever else is queued, up to the coalesce size, in one write.
async fn write_batches<M: WireMessage>(
    ctx: &PeerContext<M>,
    live: &mut Live,
    first: Batch<M>,
    queue: &mut mpsc::Receiver<Batch<M>>,
    buf: &mut BytesMut,
) -> io::Result<()> {
    let config = &ctx.config;
    buf.clear();
    let mut frames = 1u64;
    let mut messages = first.len() as u64;
    encode_batch(&first, buf);
    drop(first);
    while buf.len() < config.write_coalesce_bytes {
        let Ok(batch) = queue.try_recv() else { break };
        frames += 1;
        messages += batch.len() as u64;
        encode_batch(&batch, buf);
    }
    let written = match timeout(config.write_timeout, live.writer.write_all(buf)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "peer write timed out",
        )),
    };
    if buf.capacity() > KEEP_WRITE_BUFFER_FACTOR * config.write_coalesce_bytes {
        *buf = BytesMut::new();
    }
    match written {
        Ok(()) => {
            ctx.counters
                .frames_sent
                .fetch_add(frames, Ordering::Relaxed);
            ctx.counters
                .messages_sent
                .fetch_add(messages, Ordering::Relaxed);
            Ok(())
        }
        Err(error) => {
            ctx.counters
                .batches_dropped_write_failed
                .fetch_add(frames, Ordering::Relaxed);
            Err(error)
        }
    }
}

async fn await_dial(dialing: &mut Option<DialFuture>) -> Result<Established, HandshakeError> {
    match dialing {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

async fn reader_finished(live: &mut Option<Live>) {
    match live {
        Some(live) => live.reader.finished().await,
        None => std::future::pending().await,
    }
}
