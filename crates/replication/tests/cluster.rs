//! Three nodes in one process, each with its own RocksDB and a real peer transport on
//! 127.0.0.1: a cluster formed from the same member list, metadata changes from any node
//! (forwarded to the metadata leader by Raft), appends replicated to every replica, and a
//! leader's loss: another replica leads, nothing committed is lost, and the old node catches up
//! when it comes back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jet_cluster::{PeerTransport, TransportConfig};
use jet_protocol::batch;
use jet_replication::driver::network::RaftMessage;
use jet_replication::driver::Network;
use jet_replication::{CreateTopic, Error, Node, NodeConfig, TopicPartition};

const MEMBERS: [u64; 3] = [1, 2, 3];

fn config(dir: &Path, id: u64) -> NodeConfig {
    let mut c = NodeConfig::new(dir.to_path_buf());
    c.node_id = id;
    c.data_shards = 2;
    c.members = MEMBERS.to_vec();
    c.replication_factor = 3;
    c.tick = Duration::from_millis(50);
    c.retention_check_interval = Duration::from_secs(3600);
    c.proposal_timeout = Duration::from_secs(10);
    c
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Binds node `id`'s transport on its address and points it at the others.
async fn network(id: u64, addrs: &BTreeMap<u64, SocketAddr>) -> Network {
    let (t, inbound) =
        PeerTransport::<RaftMessage>::bind(TransportConfig::new("test", id, addrs[&id]))
            .await
            .unwrap();
    for (&peer, &addr) in addrs {
        if peer != id {
            t.set_peer_addr(peer, addr).unwrap();
        }
    }
    Network {
        transport: Arc::new(t),
        inbound,
    }
}

async fn start(dir: &Path, id: u64, addrs: &BTreeMap<u64, SocketAddr>) -> Arc<Node> {
    let net = network(id, addrs).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        Node::start_clustered(config(dir, id), Some(net)),
    )
    .await
    .expect("node started in time")
    .unwrap()
}

fn batch_of(payload: &[u8]) -> Bytes {
    Bytes::from(batch::build_uncompressed(
        1_700_000_000_000,
        (-1, -1, -1),
        1,
        payload,
    ))
}

/// Polls `f` every 50 ms for up to `secs` seconds.
async fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends through whichever node leads the partition, retrying across elections.
async fn append(nodes: &[Option<Arc<Node>>], tp: TopicPartition, payload: &[u8]) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for node in nodes.iter().flatten() {
            if let Some(h) = node.partition(&tp) {
                if h.is_leader() {
                    match node.append(tp, batch_of(payload)).await {
                        Ok(o) => return o.base_offset,
                        Err(Error::NotLeader | Error::Timeout | Error::ShuttingDown) => {}
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader took the append"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_fail_over_and_catch_up() {
    let dirs: Vec<_> = MEMBERS
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let addrs: BTreeMap<u64, SocketAddr> = MEMBERS.iter().map(|&id| (id, free_addr())).collect();
    // Started together: each waits for a quorum of the others.
    let started = futures::future::join_all(
        MEMBERS
            .iter()
            .zip(&dirs)
            .map(|(&id, d)| start(d.path(), id, &addrs)),
    )
    .await;
    let mut nodes: Vec<Option<Arc<Node>>> = started.into_iter().map(Some).collect();

    // Every node holds every shard, and they agree on the metadata leader.
    let controller = eventually(10, || {
        let c: Vec<_> = nodes.iter().flatten().map(|n| n.controller_id()).collect();
        (c.iter().all(|x| x.is_some() && *x == c[0])).then(|| c[0].unwrap())
    })
    .await;
    for n in nodes.iter().flatten() {
        assert_eq!(n.metadata().members, MEMBERS.to_vec());
        assert_eq!(n.shard_replicas(1).len(), 3);
    }

    // A topic created through a node that does not lead the metadata shard.
    let creator = nodes
        .iter()
        .flatten()
        .find(|n| n.config().node_id != controller)
        .unwrap()
        .clone();
    let topic = creator
        .create_topic(CreateTopic {
            name: "replicated".into(),
            partitions: 2,
            replication_factor: 3,
            configs: BTreeMap::new(),
            validate_only: false,
        })
        .await
        .unwrap();
    let too_many = creator
        .create_topic(CreateTopic {
            name: "too-many".into(),
            partitions: 1,
            replication_factor: 4,
            configs: BTreeMap::new(),
            validate_only: false,
        })
        .await;
    assert!(matches!(too_many, Err(Error::InvalidReplicationFactor(_))));
    let tp = TopicPartition::new(topic.id, 0);
    let shard = topic.partitions[0].shard;
    eventually(10, || {
        nodes
            .iter()
            .flatten()
            .all(|n| n.partition(&tp).is_some())
            .then_some(())
    })
    .await;

    for i in 0..20 {
        assert_eq!(append(&nodes, tp, format!("a{i}").as_bytes()).await, i);
    }
    // Every replica applies what was committed.
    eventually(10, || {
        nodes
            .iter()
            .flatten()
            .all(|n| n.partition(&tp).unwrap().high_watermark() == 20)
            .then_some(())
    })
    .await;
    let isr = nodes
        .iter()
        .flatten()
        .find(|n| n.partition(&tp).unwrap().is_leader())
        .unwrap()
        .shard_isr(shard);
    assert_eq!(isr.len(), 3, "{isr:?}");

    // The leader goes away: another replica leads, with a higher epoch, and has everything.
    let (leader_at, old_epoch) = nodes
        .iter()
        .enumerate()
        .find_map(|(i, n)| {
            let h = n.as_ref()?.partition(&tp)?;
            h.is_leader().then(|| (i, h.leader_epoch()))
        })
        .unwrap();
    let old = nodes[leader_at].take().unwrap();
    old.shutdown().await;
    drop(old);
    for i in 20..30 {
        assert_eq!(append(&nodes, tp, format!("b{i}").as_bytes()).await, i);
    }
    let new_leader = nodes
        .iter()
        .flatten()
        .find(|n| n.partition(&tp).unwrap().is_leader())
        .unwrap()
        .clone();
    assert!(new_leader.partition(&tp).unwrap().leader_epoch() > old_epoch);
    let r = new_leader.read(tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(r.high_watermark, 30);
    assert_eq!(batch::iter(&r.records).count(), 30);

    // It comes back with its data and catches up.
    let id = MEMBERS[leader_at];
    nodes[leader_at] = Some(start(dirs[leader_at].path(), id, &addrs).await);
    let back = nodes[leader_at].clone().unwrap();
    eventually(15, || {
        (back.partition(&tp).unwrap().high_watermark() == 30).then_some(())
    })
    .await;
    let r = back.read(tp, 0, 1 << 20, true).await.unwrap();
    let want = new_leader.read(tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(r.records, want.records, "replicas hold identical batches");

    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}
