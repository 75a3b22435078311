//! Gossip between real chitchat nodes on 127.0.0.1 UDP, with fast timings (100 ms rounds,
//! seconds instead of minutes for `node_dead_after`). Each test is bounded by `within`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use jet_cluster::gossip::generation_now;
use jet_cluster::{ClusterView, Gossip, GossipConfig, GossipError, Liveness, NodeId};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

const CLUSTER: &str = "gossip-test";
const WAIT: Duration = Duration::from_secs(15);

async fn within<F: Future>(limit: Duration, test: F) -> F::Output {
    timeout(limit, test)
        .await
        .expect("test ran past its time bound")
}

/// A UDP port free right now on 127.0.0.1 (chitchat needs a concrete advertise address).
fn free_udp_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe socket address")
}

fn config(node_id: NodeId, generation: u64, seeds: &[SocketAddr]) -> GossipConfig {
    let gossip_addr = free_udp_addr();
    let peer_addr = SocketAddr::from(([127, 0, 0, 1], 19_000 + node_id as u16));
    let mut config = GossipConfig::new(CLUSTER, node_id, generation, gossip_addr, peer_addr);
    config.seeds = seeds.iter().map(|s| s.to_string()).collect();
    config.listeners = BTreeMap::from([(
        "plain".to_owned(),
        format!("localhost:{}", 29_000 + node_id),
    )]);
    config.gossip_interval = Duration::from_millis(100);
    config.view_refresh_interval = Duration::from_millis(50);
    config.failure_detector_initial_interval = Duration::from_millis(200);
    config.node_dead_after = Duration::from_secs(5);
    config.forget_dead_after = Duration::from_secs(60);
    config.duplicate_grace = Duration::from_secs(1);
    config
}

async fn start(config: GossipConfig) -> Gossip {
    Gossip::start(config).await.expect("gossip start")
}

/// Waits on the view's watch channel until `condition` holds; returns that view.
async fn view_where(
    gossip: &Gossip,
    what: &str,
    condition: impl Fn(&ClusterView) -> bool,
) -> Arc<ClusterView> {
    let mut rx: watch::Receiver<Arc<ClusterView>> = gossip.subscribe();
    let found = timeout(WAIT, async {
        loop {
            let view = rx.borrow_and_update().clone();
            if condition(&view) {
                return view;
            }
            if rx.changed().await.is_err() {
                panic!("gossip view channel closed");
            }
        }
    })
    .await;
    match found {
        Ok(view) => view,
        Err(_) => panic!(
            "node {}: timed out waiting for {what}; last view {:#?}",
            gossip.node_id(),
            gossip.view()
        ),
    }
}

fn alive(view: &ClusterView, node_id: NodeId) -> bool {
    view.node(node_id).is_some_and(|n| n.is_alive())
}

#[tokio::test]
async fn three_nodes_with_seeds_see_each_others_keys() {
    within(Duration::from_secs(40), async {
        let c1 = config(1, generation_now(), &[]);
        let seed = c1.listen_addr;
        let mut c1 = c1;
        c1.rack = Some("rack-a".into());
        let n1 = start(c1).await;
        let n2 = start(config(2, generation_now(), &[seed])).await;
        let n3 = start(config(3, generation_now(), &[seed])).await;
        n2.set_ready(true).await;
        n3.set_leads(&[(5, 7), (6, 2)]).await;
        n3.set_listener("external", "broker3.example.com:19092")
            .await
            .unwrap();

        // A node of another cluster seeded with node 1 never enters the view.
        let mut foreign = config(4, generation_now(), &[seed]);
        foreign.cluster_id = "another-cluster".into();
        let foreign = start(foreign).await;

        for node in [&n1, &n2, &n3] {
            view_where(node, "three alive nodes with their keys", |v| {
                (1..=3).all(|id| alive(v, id))
                    && v.node(3).is_some_and(|n| n.leads == vec![(5, 7), (6, 2)])
                    && v.node(2).is_some_and(|n| n.ready)
            })
            .await;
        }
        let view = n1.view();
        assert_eq!(view.nodes.len(), 3, "foreign node leaked in: {view:#?}");
        assert!(view.node(4).is_none());
        assert!(view.duplicates.is_empty());
        let three = view.node(3).unwrap();
        assert_eq!(three.peer_addr, SocketAddr::from(([127, 0, 0, 1], 19_003)));
        assert_eq!(three.listeners["plain"], "localhost:29003");
        assert_eq!(three.listeners["external"], "broker3.example.com:19092");
        assert!(!three.ready);
        assert!(!three.is_self);
        assert_eq!(view.node(1).unwrap().rack.as_deref(), Some("rack-a"));
        assert!(view.node(1).unwrap().is_self);
        assert_eq!(view.leader_hint(5), Some((3, 7)));
        assert_eq!(n2.view().leader_hint(6), Some((3, 2)));

        // Losing leadership deletes the key, and the deletion spreads.
        n3.set_leads(&[(6, 3)]).await;
        view_where(&n1, "node 3's new leads", |v| {
            v.node(3).is_some_and(|n| n.leads == vec![(6, 3)])
        })
        .await;
        assert_eq!(n1.view().leader_hint(5), None);

        for node in [n1, n2, n3, foreign] {
            node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_stopped_node_is_unreachable_then_dead_after_node_dead_after() {
    within(Duration::from_secs(40), async {
        let c1 = config(1, generation_now(), &[]);
        let seed = c1.listen_addr;
        let dead_after = c1.node_dead_after;
        let n1 = start(c1).await;
        let n2 = start(config(2, generation_now(), &[seed])).await;
        let n3 = start(config(3, generation_now(), &[seed])).await;
        view_where(&n1, "three alive nodes", |v| (1..=3).all(|id| alive(v, id))).await;

        let stopped_at = Instant::now();
        n3.shutdown().await.unwrap();
        view_where(&n1, "node 3 unreachable", |v| {
            v.node(3)
                .is_some_and(|n| n.liveness == Liveness::Unreachable)
        })
        .await;
        assert!(
            stopped_at.elapsed() < dead_after,
            "failure detection took longer than node_dead_after"
        );
        view_where(&n1, "node 3 dead", |v| {
            v.node(3).is_some_and(|n| n.is_dead())
        })
        .await;
        let took = stopped_at.elapsed();
        // Dead counts from the last heartbeat node 1 saw, a gossip round or so before the stop.
        assert!(
            took + Duration::from_secs(1) >= dead_after,
            "dead after {took:?}, node_dead_after is {dead_after:?}"
        );
        let view = n2.view();
        assert!(
            alive(&view, 1) && alive(&view, 2),
            "survivors must stay alive: {view:#?}"
        );

        n1.shutdown().await.unwrap();
        n2.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn two_running_nodes_with_one_node_id_are_detected() {
    within(Duration::from_secs(40), async {
        let c1 = config(1, generation_now(), &[]);
        let seed = c1.listen_addr;
        let n1 = start(c1).await;
        let n2 = start(config(2, generation_now(), &[seed])).await;
        view_where(&n1, "two alive nodes", |v| alive(v, 1) && alive(v, 2)).await;
        assert!(n1.check_duplicate_node_id().is_ok());

        // A second process claims node id 1 (another generation, another address).
        let impostor = start(config(1, generation_now() + 1, &[seed])).await;
        for node in [&n1, &impostor] {
            view_where(node, "a duplicate of node 1", |v| {
                v.duplicates
                    .iter()
                    .any(|d| d.node_id == 1 && d.includes_self)
            })
            .await;
            match node.check_duplicate_node_id() {
                Err(GossipError::DuplicateNodeId {
                    node_id: 1,
                    identities,
                }) => {
                    assert!(
                        identities.contains(", "),
                        "both identities named: {identities}"
                    );
                }
                other => panic!("expected a duplicate node id error, got {other:?}"),
            }
        }
        // A bystander sees it too, and is not itself at fault.
        let view = view_where(&n2, "a duplicate of node 1", |v| {
            v.duplicates.iter().any(|d| d.node_id == 1)
        })
        .await;
        assert!(view.duplicates.iter().all(|d| !d.includes_self));
        assert!(n2.check_duplicate_node_id().is_ok());

        for node in [n1, n2, impostor] {
            node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_node_is_its_new_generation_not_a_duplicate() {
    within(Duration::from_secs(40), async {
        let c1 = config(1, generation_now(), &[]);
        let seed = c1.listen_addr;
        let n1 = start(c1).await;
        let c2 = config(2, 100, &[seed]);
        let mut c2_again = c2.clone();
        c2_again.generation = 101;
        let n2 = start(c2).await;
        view_where(&n1, "node 2 alive", |v| alive(v, 2)).await;

        n2.shutdown().await.unwrap();
        let n2 = start(c2_again).await;
        view_where(&n1, "node 2's new generation alive", |v| {
            v.node(2)
                .is_some_and(|n| n.generation == 101 && n.is_alive())
        })
        .await;
        // Watch long enough for the old incarnation to be declared not live.
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let view = n1.view();
            assert!(
                view.duplicates.is_empty(),
                "restart reported as duplicate: {view:#?}"
            );
            assert!(alive(&view, 2));
            sleep(Duration::from_millis(100)).await;
        }
        assert!(n2.check_duplicate_node_id().is_ok());
        n1.shutdown().await.unwrap();
        n2.shutdown().await.unwrap();
    })
    .await;
}
