//! Gossip feeding the peer transport, as the driver will wire them: each node learns the other's
//! peer address from gossip alone, and Raft-shaped batches then flow both ways.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use jet_cluster::gossip::generation_now;
use jet_cluster::{Gossip, GossipConfig, Inbound, NodeId, PeerTransport, TransportConfig};
use tokio::time::timeout;

const CLUSTER: &str = "wiring-test";

fn free_udp_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe socket address")
}

async fn node(
    node_id: NodeId,
    seeds: &[SocketAddr],
) -> (
    Gossip,
    PeerTransport<Bytes>,
    tokio::sync::mpsc::Receiver<Inbound<Bytes>>,
) {
    let mut transport_config =
        TransportConfig::new(CLUSTER, node_id, "127.0.0.1:0".parse().unwrap());
    transport_config.backoff_max = Duration::from_millis(200);
    let (transport, rx) = PeerTransport::bind(transport_config).await.unwrap();
    let mut config = GossipConfig::new(
        CLUSTER,
        node_id,
        generation_now(),
        free_udp_addr(),
        transport.local_addr(),
    );
    config.seeds = seeds.iter().map(|s| s.to_string()).collect();
    config.gossip_interval = Duration::from_millis(100);
    config.view_refresh_interval = Duration::from_millis(50);
    config.failure_detector_initial_interval = Duration::from_millis(200);
    let gossip = Gossip::start(config).await.unwrap();
    (gossip, transport, rx)
}

/// Feeds every view change into the transport until both peers are known.
async fn learn_peers(gossip: &Gossip, transport: &PeerTransport<Bytes>, expected: usize) {
    let mut views = gossip.subscribe();
    loop {
        let view = views.borrow_and_update().clone();
        for (node_id, addr) in view.peer_addrs() {
            transport.set_peer_addr(node_id, addr).unwrap();
        }
        if transport.peers().len() == expected {
            return;
        }
        views.changed().await.unwrap();
    }
}

#[tokio::test]
async fn gossip_supplies_the_peer_addresses_the_transport_dials() {
    timeout(Duration::from_secs(30), async {
        let (g1, t1, mut rx1) = node(1, &[]).await;
        let seed = g1.view().node(1).unwrap().gossip_addr;
        let (g2, t2, mut rx2) = node(2, &[seed]).await;
        let (g3, t3, mut rx3) = node(3, &[seed]).await;
        let nodes = [(&g1, &t1), (&g2, &t2), (&g3, &t3)];
        for (g, t) in nodes {
            timeout(Duration::from_secs(15), learn_peers(g, t, 2))
                .await
                .expect("peers learned from gossip in time");
        }
        assert_eq!(t2.peers()[&3], t3.local_addr());
        for (_, t) in nodes {
            for to in (1..=3).filter(|to| *to != t.node_id()) {
                t.send(to, vec![(0, Bytes::from(format!("{}", t.node_id())))])
                    .unwrap();
            }
        }
        for (me, rx) in [(1, &mut rx1), (2, &mut rx2), (3, &mut rx3)] {
            let mut from = Vec::new();
            for _ in 0..2 {
                let m = timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(m.message, Bytes::from(m.from_node.to_string()));
                from.push(m.from_node);
            }
            from.sort_unstable();
            let expected: Vec<NodeId> = (1..=3).filter(|n| *n != me).collect();
            assert_eq!(from, expected, "node {me}");
        }
        for g in [g1, g2, g3] {
            g.shutdown().await.unwrap();
        }
    })
    .await
    .expect("test ran past its time bound");
}
