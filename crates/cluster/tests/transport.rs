//! The peer transport over real sockets on 127.0.0.1. Each test is bounded by `within`, and
//! every wait inside it has its own deadline, so a regression fails in seconds, never hangs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use jet_cluster::frame::{
    decode_body, encode_batch, encode_hello, DecodeLimits, Frame, Hello, HelloReply, RefusalReason,
    LEN_PREFIX_BYTES, PROTOCOL_VERSION,
};
use jet_cluster::{Inbound, NodeId, PeerTransport, SendError, ShardId, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep, timeout, Instant};

const CLUSTER: &str = "transport-test";
const WAIT: Duration = Duration::from_secs(10);

type Transport = PeerTransport<Bytes>;

async fn within<F: Future>(limit: Duration, test: F) -> F::Output {
    timeout(limit, test)
        .await
        .expect("test ran past its time bound")
}

fn config(node_id: NodeId) -> TransportConfig {
    let mut config = TransportConfig::new(CLUSTER, node_id, "127.0.0.1:0".parse().unwrap());
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    config.handshake_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    config
}

async fn start(config: TransportConfig) -> (Transport, Receiver<Inbound<Bytes>>) {
    PeerTransport::bind(config).await.expect("bind")
}

fn introduce(transports: &[&Transport]) {
    for a in transports {
        for b in transports {
            if a.node_id() != b.node_id() {
                a.set_peer_addr(b.node_id(), b.local_addr()).unwrap();
            }
        }
    }
}

fn batch(items: &[(ShardId, &str)]) -> Vec<(ShardId, Bytes)> {
    items
        .iter()
        .map(|(shard, text)| (*shard, Bytes::from(text.to_string())))
        .collect()
}

async fn recv(rx: &mut Receiver<Inbound<Bytes>>) -> Inbound<Bytes> {
    timeout(WAIT, rx.recv())
        .await
        .expect("no message in time")
        .expect("inbound channel closed")
}

fn inbound(from_node: NodeId, shard_id: ShardId, text: &str) -> Inbound<Bytes> {
    Inbound {
        from_node,
        shard_id,
        message: Bytes::from(text.to_string()),
    }
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a Hello from a raw socket and returns the decoded reply.
async fn hello(addr: SocketAddr, hello: Hello) -> (HelloReply, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    encode_hello(&hello, &mut out);
    stream.write_all(&out).await.unwrap();
    let mut prefix = [0u8; LEN_PREFIX_BYTES];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.unwrap();
    match decode_body::<Bytes>(
        &body,
        DecodeLimits {
            max_messages_per_frame: 0,
        },
    ) {
        Ok(Frame::HelloReply(reply)) => (reply, stream),
        other => panic!("expected a hello reply, got {other:?}"),
    }
}

/// A raw client that passes the handshake as `node_id`, for sending hand-made frames.
async fn raw_peer(addr: SocketAddr, node_id: NodeId, to_node_id: NodeId) -> TcpStream {
    let (reply, stream) = hello(
        addr,
        Hello {
            version: PROTOCOL_VERSION,
            cluster_id: CLUSTER.into(),
            node_id,
            to_node_id,
        },
    )
    .await;
    assert_eq!(
        reply,
        HelloReply::Accepted {
            node_id: to_node_id
        }
    );
    stream
}

/// Reads until the other end closes; true if it did within the wait.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn two_nodes_exchange_batches_over_one_connection() {
    within(Duration::from_secs(20), async {
        let (a, mut a_rx) = start(config(1)).await;
        let (b, mut b_rx) = start(config(2)).await;
        introduce(&[&a, &b]);

        // Queued before any connection exists: delivered once one does.
        a.send(2, batch(&[(1, "a-1"), (7, "a-7")])).unwrap();
        assert_eq!(recv(&mut b_rx).await, inbound(1, 1, "a-1"));
        assert_eq!(recv(&mut b_rx).await, inbound(1, 7, "a-7"));
        b.send(1, batch(&[(3, "b-3")])).unwrap();
        assert_eq!(recv(&mut a_rx).await, inbound(2, 3, "b-3"));

        // Both dialed; both ends settle on the connection node 1 (the lower id) dialed.
        eventually("both ends on node 1's connection", || {
            a.stats().peers[&2].initiator == Some(1) && b.stats().peers[&1].initiator == Some(1)
        })
        .await;

        // Order within and across batches is kept on the one connection.
        for i in 0..200u64 {
            a.send(2, batch(&[(i, &format!("m{i}"))])).unwrap();
        }
        for i in 0..200u64 {
            assert_eq!(recv(&mut b_rx).await, inbound(1, i, &format!("m{i}")));
        }
        let stats = a.stats();
        assert_eq!(stats.peers[&2].batches_dropped_queue_full, 0);
        assert_eq!(stats.handshakes_refused, 0);
        assert_eq!(b.stats().peers[&1].messages_received, 202);
    })
    .await;
}

#[tokio::test]
async fn three_nodes_exchange_batches() {
    within(Duration::from_secs(20), async {
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(start(config(id)).await);
        }
        let transports: Vec<&Transport> = nodes.iter().map(|(t, _)| t).collect();
        introduce(&transports);
        for (t, _) in &nodes {
            for to in 1..=3 {
                if to != t.node_id() {
                    // One frame with many shards' messages, as the driver sends per Ready.
                    let items: Vec<(ShardId, Bytes)> = (0..300)
                        .map(|shard| (shard, Bytes::from(format!("{}->{to}:{shard}", t.node_id()))))
                        .collect();
                    t.send(to, items).unwrap();
                }
            }
        }
        for (t, rx) in &mut nodes {
            let me = t.node_id();
            let mut got = Vec::new();
            for _ in 0..600 {
                got.push(recv(rx).await);
            }
            for from in (1..=3).filter(|n| *n != me) {
                let mut from_this: Vec<_> = got.iter().filter(|m| m.from_node == from).collect();
                assert_eq!(from_this.len(), 300, "node {me} from node {from}");
                from_this.sort_by_key(|m| m.shard_id);
                for (shard, m) in from_this.iter().enumerate() {
                    assert_eq!(m.message, Bytes::from(format!("{from}->{me}:{shard}")));
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn handshake_refuses_another_cluster_and_an_unknown_node() {
    within(Duration::from_secs(20), async {
        let (a, mut a_rx) = start(config(1)).await;
        a.set_peer_addr(2, "127.0.0.1:9".parse().unwrap()).unwrap();

        // Node 2 of another cluster.
        let mut other = config(2);
        other.cluster_id = "someone-else".into();
        let (stranger, _stranger_rx) = start(other).await;
        stranger.set_peer_addr(1, a.local_addr()).unwrap();
        stranger.send(1, batch(&[(1, "intruder")])).unwrap();

        // A node of this cluster that node 1 does not know.
        let (unknown, _unknown_rx) = start(config(9)).await;
        unknown.set_peer_addr(1, a.local_addr()).unwrap();
        unknown.send(1, batch(&[(1, "unknown")])).unwrap();

        eventually("both handshakes refused", || {
            a.stats().handshakes_refused >= 2
        })
        .await;
        eventually("dialers saw the refusals", || {
            stranger.stats().handshakes_failed >= 1 && unknown.stats().handshakes_failed >= 1
        })
        .await;
        assert!(!stranger.is_connected(1));
        assert!(!unknown.is_connected(1));
        assert!(!a.is_connected(2));
        assert!(
            timeout(Duration::from_millis(300), a_rx.recv())
                .await
                .is_err(),
            "a refused peer's message was delivered"
        );

        // A raw client claiming node 1's own id is refused too, with the reason in the reply.
        let (reply, mut raw) = hello(
            a.local_addr(),
            Hello {
                version: PROTOCOL_VERSION,
                cluster_id: CLUSTER.into(),
                node_id: 1,
                to_node_id: 1,
            },
        )
        .await;
        assert_eq!(
            reply,
            HelloReply::Refused {
                node_id: 1,
                reason: RefusalReason::DuplicateNodeId
            }
        );
        assert!(closed_by_peer(&mut raw).await);
        // And another protocol version.
        let (reply, _) = hello(
            a.local_addr(),
            Hello {
                version: 99,
                cluster_id: CLUSTER.into(),
                node_id: 2,
                to_node_id: 1,
            },
        )
        .await;
        assert_eq!(
            reply,
            HelloReply::Refused {
                node_id: 1,
                reason: RefusalReason::UnsupportedVersion
            }
        );
    })
    .await;
}

#[tokio::test]
async fn over_limit_frame_closes_that_connection_and_the_node_keeps_serving() {
    within(Duration::from_secs(20), async {
        let mut limited = config(1);
        limited.max_frame_bytes = 1024;
        let (a, mut a_rx) = start(limited).await;
        // Node 2 is the raw client; its listed address leads nowhere, so only it dials.
        a.set_peer_addr(2, "127.0.0.1:9".parse().unwrap()).unwrap();

        let mut raw = raw_peer(a.local_addr(), 2, 1).await;
        let mut frame = BytesMut::new();
        encode_batch(&batch(&[(1, "small")]), &mut frame);
        raw.write_all(&frame).await.unwrap();
        assert_eq!(recv(&mut a_rx).await, inbound(2, 1, "small"));

        // A prefix claiming 1 MB: refused before the body is read, connection closed.
        raw.write_all(&(1_000_000u32).to_be_bytes()).await.unwrap();
        raw.write_all(&[0u8; 64]).await.unwrap();
        assert!(
            closed_by_peer(&mut raw).await,
            "over-limit frame did not close the connection"
        );
        assert_eq!(a.stats().frames_refused, 1);

        // Garbage that is not a frame at all: closed too, the listener unaffected.
        let mut junk = TcpStream::connect(a.local_addr()).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_by_peer(&mut junk).await);

        // The node still serves: a real peer connects and both directions work.
        let (b, mut b_rx) = start(config(3)).await;
        introduce(&[&a, &b]);
        b.send(1, batch(&[(4, "after")])).unwrap();
        assert_eq!(recv(&mut a_rx).await, inbound(3, 4, "after"));
        a.send(3, batch(&[(5, "back")])).unwrap();
        assert_eq!(recv(&mut b_rx).await, inbound(1, 5, "back"));

        // And node 2 may come back on a new connection.
        let mut raw = raw_peer(a.local_addr(), 2, 1).await;
        raw.write_all(&frame).await.unwrap();
        assert_eq!(recv(&mut a_rx).await, inbound(2, 1, "small"));
    })
    .await;
}

#[tokio::test]
async fn full_queue_drops_and_counts_instead_of_blocking() {
    within(Duration::from_secs(20), async {
        let mut small = config(1);
        small.send_queue_batches = 8;
        let (a, _a_rx) = start(small).await;

        // Peer unreachable: nothing leaves the queue, so exactly its capacity is kept.
        a.set_peer_addr(2, "127.0.0.1:9".parse().unwrap()).unwrap();
        let started = Instant::now();
        let results: Vec<_> = (0..100u64).map(|i| a.send(2, batch(&[(i, "x")]))).collect();
        assert!(started.elapsed() < Duration::from_secs(1), "send blocked");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 8);
        assert!(results[8..]
            .iter()
            .all(|r| *r == Err(SendError::QueueFull(2))));
        assert_eq!(a.stats().peers[&2].batches_dropped_queue_full, 92);
        assert_eq!(
            a.send(5, batch(&[(1, "x")])),
            Err(SendError::UnknownPeer(5))
        );

        // Peer connected but never reading: the socket buffers fill, then the queue, then
        // sends drop; none of them waits.
        let mut slow_config = config(1);
        slow_config.send_queue_batches = 8;
        let (a, _a_rx) = start(slow_config).await;
        a.set_peer_addr(3, "127.0.0.1:9".parse().unwrap()).unwrap();
        let _silent = raw_peer(a.local_addr(), 3, 1).await;
        eventually("raw peer adopted", || a.is_connected(3)).await;
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let started = Instant::now();
        let mut accepted = 0u64;
        for i in 0..2_000u64 {
            if a.send(3, vec![(i, chunk.clone())]).is_ok() {
                accepted += 1;
            }
            if i % 100 == 0 {
                // Let the peer task run so the socket buffers really fill.
                sleep(Duration::from_millis(5)).await;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "send blocked");
        let dropped = a.stats().peers[&3].batches_dropped_queue_full;
        assert!(
            dropped > 0,
            "128 MB to a peer that never reads dropped nothing"
        );
        assert_eq!(accepted + dropped, 2_000);
    })
    .await;
}

#[tokio::test]
async fn killed_peer_is_redialed_when_it_comes_back_on_the_same_address() {
    within(Duration::from_secs(30), async {
        let (a, _a_rx) = start(config(1)).await;
        let (b, mut b_rx) = start(config(2)).await;
        let b_addr = b.local_addr();
        introduce(&[&a, &b]);
        a.send(2, batch(&[(1, "before")])).unwrap();
        assert_eq!(recv(&mut b_rx).await, inbound(1, 1, "before"));

        drop(b);
        drop(b_rx);
        eventually("node 1 saw node 2 go", || !a.is_connected(2)).await;

        // Node 2 restarts on the same address. It lists node 1 at an address leading nowhere,
        // so the connection that comes up can only be node 1's redial.
        let mut again = config(2);
        again.listen_addr = b_addr;
        let deadline = Instant::now() + WAIT;
        let (b2, mut b2_rx) = loop {
            match PeerTransport::<Bytes>::bind(again.clone()).await {
                Ok(started) => break started,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot rebind {b_addr}: {error}");
                    sleep(Duration::from_millis(50)).await;
                }
            }
        };
        b2.set_peer_addr(1, "127.0.0.1:9".parse().unwrap()).unwrap();
        eventually("node 1 redialed node 2", || a.is_connected(2)).await;
        a.send(2, batch(&[(2, "after")])).unwrap();
        assert_eq!(recv(&mut b2_rx).await, inbound(1, 2, "after"));
        assert_eq!(b2.stats().peers[&1].initiator, Some(1));
        assert!(a.stats().peers[&2].connections_established >= 2);
    })
    .await;
}

#[tokio::test]
async fn send_refuses_a_batch_over_the_frame_limits_and_bind_refuses_bad_config() {
    within(Duration::from_secs(10), async {
        let mut limited = config(1);
        limited.max_frame_bytes = 1024;
        limited.max_messages_per_frame = 3;
        let (a, _a_rx) = start(limited).await;
        a.set_peer_addr(2, "127.0.0.1:9".parse().unwrap()).unwrap();
        let big = vec![(1, Bytes::from(vec![0u8; 2048]))];
        assert!(matches!(
            a.send(2, big),
            Err(SendError::TooLarge { messages: 1, .. })
        ));
        let many = batch(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
        assert!(matches!(
            a.send(2, many),
            Err(SendError::TooLarge { messages: 4, .. })
        ));
        assert_eq!(a.stats().batches_refused_too_large, 2);
        assert_eq!(a.send(2, batch(&[(1, "fits")])), Ok(()));
        assert!(
            a.set_peer_addr(1, "127.0.0.1:9".parse().unwrap()).is_err(),
            "own id accepted as a peer"
        );

        let mut bad = config(3);
        bad.cluster_id = String::new();
        assert!(PeerTransport::<Bytes>::bind(bad).await.is_err());
        let mut bad = config(3);
        bad.send_queue_batches = 0;
        assert!(PeerTransport::<Bytes>::bind(bad).await.is_err());
        let mut bad = config(3);
        bad.backoff_max = Duration::from_millis(1);
        assert!(PeerTransport::<Bytes>::bind(bad).await.is_err());
    })
    .await;
}
