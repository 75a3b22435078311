//! Leader epochs over real TCP: OffsetForLeaderEpoch end offsets (within one epoch and across a
//! restart, which starts a new Raft term and so a new leader epoch), KIP-320 fencing of
//! `current_leader_epoch` on Fetch, ListOffsets and OffsetForLeaderEpoch, and the KIP-951 leader
//! hints a fenced Fetch and a turned-away Produce carry, and FindCoordinator naming the node
//! gossip says leads the group's shard.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jet_replication::{BrokerInfo, Directory, Node, TopicPartition};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// One partition of an OffsetForLeaderEpoch request: (partition, current_leader_epoch,
/// leader_epoch).
type Ask = (i32, i32, i32);

fn epoch_request(version: i16, topics: &[(&str, &[Ask])]) -> OffsetForLeaderEpochRequest {
    let req = OffsetForLeaderEpochRequest::default().with_topics(
        topics
            .iter()
            .map(|(topic, asks)| {
                OffsetForLeaderTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(
                        asks.iter()
                            .map(|(partition, current, epoch)| {
                                OffsetForLeaderPartition::default()
                                    .with_partition(*partition)
                                    .with_current_leader_epoch(*current)
                                    .with_leader_epoch(*epoch)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    // v3+ names the asking replica; a consumer is -1.
    if version >= 3 {
        req.with_replica_id(BrokerId(-1))
    } else {
        req
    }
}

/// OffsetForLeaderEpoch for one partition: (error, epoch, end offset).
async fn end_offset(
    c: &mut Client,
    version: i16,
    topic: &str,
    partition: i32,
    current: i32,
    epoch: i32,
) -> (i16, i32, i64) {
    let req = epoch_request(version, &[(topic, &[(partition, current, epoch)])]);
    let resp: OffsetForLeaderEpochResponse =
        c.call(ApiKey::OffsetForLeaderEpoch, version, &req).await;
    assert_eq!(resp.topics.len(), 1, "v{version}");
    assert_eq!(resp.topics[0].topic.as_str(), topic, "v{version}");
    let p: &EpochEndOffset = &resp.topics[0].partitions[0];
    assert_eq!(p.partition, partition, "v{version}");
    (p.error_code, p.leader_epoch, p.end_offset)
}

fn epoch_of(node: &Node, tp: &TopicPartition) -> i32 {
    node.partition(tp).expect("partition").leader_epoch()
}

/// Waits (bounded) until this node leads the partition, as after a restart.
async fn await_leader(node: &Node, tp: &TopicPartition) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.partition(tp).is_some_and(|h| h.is_leader()) {
        assert!(Instant::now() < deadline, "no leader for {tp:?} in 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Fetch for one partition at `offset` with a `current_leader_epoch`, by name before v13 and
/// by id from v13.
fn fetch(version: i16, topic: &str, id: Uuid, offset: i64, current: i32) -> FetchRequest {
    let t = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_current_leader_epoch(current)
        .with_partition_max_bytes(1 << 20)]);
    let t = if version >= 13 {
        t.with_topic_id(id)
    } else {
        t.with_topic(name(topic))
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t])
}

fn list_latest(topic: &str, current: i32) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(current)
                .with_timestamp(-1)])])
}

#[tokio::test]
async fn offset_for_leader_epoch_within_one_epoch() {
    let server = start().await;
    let topic = server.create_topic("epochs", 1).await;
    let tp = TopicPartition::new(topic.id, 0);
    let mut c = server.client().await;
    for _ in 0..3 {
        produce(&mut c, "epochs", 0, batch(&[b"a", b"b"])).await;
    }
    let hw = 6;
    let epoch = epoch_of(&server.node, &tp);
    assert!(epoch >= 1, "a single node's first term, got {epoch}");

    for version in 2..=4 {
        for (current, requested, want) in [
            // The current epoch is still being written: it ends at the high watermark.
            (-1, epoch, (NONE, epoch, hw)),
            (epoch, epoch, (NONE, epoch, hw)),
            // Older than every batch: the requested epoch, ending where the first batch starts.
            (-1, epoch - 1, (NONE, epoch - 1, 0)),
            // Newer than the leader, or undefined: UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
            (-1, epoch + 1, (NONE, -1, -1)),
            (-1, -1, (NONE, -1, -1)),
            // KIP-320 fencing of the caller's idea of the current epoch.
            (epoch - 1, epoch, (FENCED_LEADER_EPOCH, -1, -1)),
            (epoch + 1, epoch, (UNKNOWN_LEADER_EPOCH, -1, -1)),
        ] {
            assert_eq!(
                end_offset(&mut c, version, "epochs", 0, current, requested).await,
                want,
                "v{version} current {current} requested {requested}"
            );
        }
        assert_eq!(
            end_offset(&mut c, version, "no-such-topic", 0, -1, epoch).await,
            (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            "v{version}"
        );
        assert_eq!(
            end_offset(&mut c, version, "epochs", 7, -1, epoch).await,
            (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            "v{version}"
        );
    }

    // Several topics and partitions in one request are answered in request order.
    let req = epoch_request(
        4,
        &[
            ("epochs", &[(0, -1, epoch), (9, -1, epoch)]),
            ("missing", &[(0, -1, epoch)]),
        ],
    );
    let resp: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, &req).await;
    let got: Vec<(String, i32, i16, i64)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic.to_string(), p.partition, p.error_code, p.end_offset))
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("epochs".to_string(), 0, NONE, hw),
            ("epochs".to_string(), 9, UNKNOWN_TOPIC_OR_PARTITION, -1),
            ("missing".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION, -1),
        ]
    );
}

#[tokio::test]
async fn fetch_fences_leader_epochs_and_names_the_leader() {
    let server = start().await;
    let topic = server.create_topic("fenced", 1).await;
    let tp = TopicPartition::new(topic.id, 0);
    let mut c = server.client().await;
    produce(&mut c, "fenced", 0, batch(&[b"x"])).await;
    let epoch = epoch_of(&server.node, &tp);
    let me = BrokerId(server.node.node_id());

    for version in [9i16, 11, 12, 15, 16, 18] {
        let current: FetchResponse = c
            .call(
                ApiKey::Fetch,
                version,
                &fetch(version, "fenced", topic.id, 0, epoch),
            )
            .await;
        let p = &current.responses[0].partitions[0];
        assert_eq!(p.error_code, NONE, "v{version}");
        assert_eq!(decode_values(p.records.as_ref().unwrap()).len(), 1);

        let stale: FetchResponse = c
            .call(
                ApiKey::Fetch,
                version,
                &fetch(version, "fenced", topic.id, 0, epoch - 1),
            )
            .await;
        let p = &stale.responses[0].partitions[0];
        assert_eq!(p.error_code, FENCED_LEADER_EPOCH, "v{version}");
        assert_eq!(p.high_watermark, -1, "v{version}: no data with an error");
        if version >= 12 {
            // KIP-951: the leader this node knows (itself) and its epoch.
            assert_eq!(
                (p.current_leader.leader_id, p.current_leader.leader_epoch),
                (me, epoch),
                "v{version}"
            );
        }
        if version >= 16 {
            let endpoints: Vec<(BrokerId, String, i32)> = stale
                .node_endpoints
                .iter()
                .map(|e| (e.node_id, e.host.to_string(), e.port))
                .collect();
            assert_eq!(
                endpoints,
                vec![(me, "127.0.0.1".to_string(), i32::from(server.addr.port()))],
                "v{version}"
            );
        }

        let ahead: FetchResponse = c
            .call(
                ApiKey::Fetch,
                version,
                &fetch(version, "fenced", topic.id, 0, epoch + 1),
            )
            .await;
        let p = &ahead.responses[0].partitions[0];
        assert_eq!(p.error_code, UNKNOWN_LEADER_EPOCH, "v{version}");
        // Not a leader change: no hint, as Kafka sends none for this error.
        assert_eq!(p.current_leader.leader_id, BrokerId(-1), "v{version}");
        assert!(ahead.node_endpoints.is_empty(), "v{version}");
    }

    // A fenced long poll is answered at once, not after max_wait_ms.
    let started = Instant::now();
    let waiting = fetch(12, "fenced", topic.id, 1, epoch - 1)
        .with_max_wait_ms(10_000)
        .with_min_bytes(1);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &waiting).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        FENCED_LEADER_EPOCH
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fenced fetch waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn list_offsets_fences_leader_epochs() {
    let server = start().await;
    let topic = server.create_topic("listed", 1).await;
    let tp = TopicPartition::new(topic.id, 0);
    let mut c = server.client().await;
    produce(&mut c, "listed", 0, batch(&[b"x", b"y"])).await;
    let epoch = epoch_of(&server.node, &tp);
    for version in 4..=10 {
        let answer = |resp: ListOffsetsResponse| {
            let p = resp.topics[0].partitions[0].clone();
            (p.error_code, p.offset, p.leader_epoch)
        };
        let current: ListOffsetsResponse = c
            .call(ApiKey::ListOffsets, version, &list_latest("listed", epoch))
            .await;
        assert_eq!(answer(current), (NONE, 2, epoch), "v{version}");
        let unchecked: ListOffsetsResponse = c
            .call(ApiKey::ListOffsets, version, &list_latest("listed", -1))
            .await;
        assert_eq!(answer(unchecked), (NONE, 2, epoch), "v{version}");
        let stale: ListOffsetsResponse = c
            .call(
                ApiKey::ListOffsets,
                version,
                &list_latest("listed", epoch - 1),
            )
            .await;
        assert_eq!(
            answer(stale).0,
            FENCED_LEADER_EPOCH,
            "v{version}: an older epoch"
        );
        let ahead: ListOffsetsResponse = c
            .call(
                ApiKey::ListOffsets,
                version,
                &list_latest("listed", epoch + 1),
            )
            .await;
        assert_eq!(
            answer(ahead).0,
            UNKNOWN_LEADER_EPOCH,
            "v{version}: a newer epoch"
        );
    }
}

/// A node and server on `dir`, which outlives them (for restarts).
async fn serve_on(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    Arc<Node>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut config = jet_replication::NodeConfig::new(dir.to_path_buf());
    config.data_shards = 2;
    config.fsync = false;
    config.tick = Duration::from_millis(20);
    let node = Node::start(config).await.expect("node starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(jet_kafka::run(
        jet_kafka::ServerConfig::new(addr, "jet-test-cluster"),
        node.clone(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    (addr, node, stop_tx, served)
}

#[tokio::test]
async fn end_offsets_of_earlier_epochs_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, node, stop, served) = serve_on(dir.path()).await;
    let topic = node
        .create_topic(jet_replication::CreateTopic {
            name: "restarted".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
            validate_only: false,
        })
        .await
        .expect("topic");
    let tp = TopicPartition::new(topic.id, 0);
    await_leader(&node, &tp).await;
    let mut c = Client::connect(addr).await;
    produce(&mut c, "restarted", 0, batch(&[b"a", b"b"])).await;
    produce(&mut c, "restarted", 0, batch(&[b"c", b"d"])).await;
    let first = epoch_of(&node, &tp);
    drop(c);
    let _ = stop.send(());
    served.await.expect("server task").expect("server");
    node.shutdown().await;
    drop(node);

    let (addr, node, stop, served) = serve_on(dir.path()).await;
    await_leader(&node, &tp).await;
    let second = epoch_of(&node, &tp);
    assert!(
        second > first,
        "a restart starts a new term: {first} then {second}"
    );
    let mut c = Client::connect(addr).await;
    assert_eq!(
        produce(&mut c, "restarted", 0, batch(&[b"e", b"f"])).await,
        4
    );

    // The first epoch's batches end where the second epoch's first batch starts.
    assert_eq!(
        end_offset(&mut c, 4, "restarted", 0, second, first).await,
        (NONE, first, 4)
    );
    assert_eq!(
        end_offset(&mut c, 4, "restarted", 0, -1, second).await,
        (NONE, second, 6)
    );
    assert_eq!(
        end_offset(&mut c, 3, "restarted", 0, -1, first - 1).await,
        (NONE, first - 1, 0)
    );
    if second > first + 1 {
        // An epoch in which nothing was written answers with the epoch below it.
        assert_eq!(
            end_offset(&mut c, 2, "restarted", 0, -1, first + 1).await,
            (NONE, first, 4)
        );
    }
    assert_eq!(
        end_offset(&mut c, 4, "restarted", 0, -1, second + 1).await,
        (NONE, -1, -1)
    );
    // A consumer that last saw the first epoch is fenced, and told the new one.
    let stale: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch(12, "restarted", topic.id, 4, first),
        )
        .await;
    let p = &stale.responses[0].partitions[0];
    assert_eq!(p.error_code, FENCED_LEADER_EPOCH);
    assert_eq!(
        (p.current_leader.leader_id, p.current_leader.leader_epoch),
        (BrokerId(node.node_id()), second)
    );

    drop(c);
    let _ = stop.send(());
    served.await.expect("server task").expect("server");
    node.shutdown().await;
}

/// Produce (Produce v`version`) one record to partition 0 of `topic`: the partition's response
/// and the response's node endpoints.
async fn produce_at(
    c: &mut Client,
    version: i16,
    topic: &str,
) -> (i16, (BrokerId, i32), Vec<(BrokerId, String, i32)>) {
    let resp: ProduceResponse = c
        .call(
            ApiKey::Produce,
            version,
            &produce_request(topic, 0, batch(&[b"y"]), -1),
        )
        .await;
    let p = &resp.responses[0].partition_responses[0];
    let endpoints = resp
        .node_endpoints
        .iter()
        .map(|e| (e.node_id, e.host.to_string(), e.port))
        .collect();
    (
        p.error_code,
        (p.current_leader.leader_id, p.current_leader.leader_epoch),
        endpoints,
    )
}

/// FindCoordinator for group "g": (error, node id, host, port).
async fn coordinator(c: &mut Client, version: i16) -> (i16, BrokerId, String, i32) {
    let req = FindCoordinatorRequest::default().with_key_type(0);
    let req = if version >= 4 {
        req.with_coordinator_keys(vec![StrBytes::from_static_str("g")])
    } else {
        req.with_key(StrBytes::from_static_str("g"))
    };
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, version, &req).await;
    if version >= 4 {
        let k = &resp.coordinators[0];
        return (k.error_code, k.node_id, k.host.to_string(), k.port);
    }
    (
        resp.error_code,
        resp.node_id,
        resp.host.to_string(),
        resp.port,
    )
}

#[tokio::test]
async fn turned_away_requests_name_the_leader_gossip_knows() {
    let server = start().await;
    let topic = server.create_topic("hinted", 1).await;
    let tp = TopicPartition::new(topic.id, 0);
    let epoch = epoch_of(&server.node, &tp);
    let shard = server.node.partition(&tp).expect("partition").shard();
    let mut c = server.client().await;
    produce(&mut c, "hinted", 0, batch(&[b"x"])).await;
    // A stopped node leads nothing and turns every request away with NOT_LEADER_OR_FOLLOWER,
    // while the server in front of it still answers: one node can show both hint branches.
    server.node.shutdown().await;
    let nobody = (BrokerId(-1), -1);
    for version in [9i16, 10, 12] {
        let (code, leader, endpoints) = produce_at(&mut c, version, "hinted").await;
        assert_eq!(code, NOT_LEADER_OR_FOLLOWER, "v{version}");
        assert_eq!(
            (leader, endpoints),
            (nobody, vec![]),
            "v{version}: no leader known"
        );
    }
    assert_eq!(
        coordinator(&mut c, 3).await,
        (COORDINATOR_NOT_AVAILABLE, BrokerId(-1), String::new(), -1)
    );

    // Gossip says node 2 leads the shard now, one epoch on.
    let mut directory = Directory::default();
    directory.brokers.insert(
        2,
        BrokerInfo {
            node_id: 2,
            host: "127.0.0.2".into(),
            port: 19092,
            rack: Some("r2".into()),
            listeners: Default::default(),
        },
    );
    directory.leaders.insert(shard, (2, (epoch + 1) as u64));
    // And every other data shard, so the group's coordinator shard too, whichever it is.
    for other in 1..=2 {
        directory.leaders.entry(other).or_insert((2, 7));
    }
    server.node.set_directory(directory);
    for version in [3i16, 4, 6] {
        assert_eq!(
            coordinator(&mut c, version).await,
            (NONE, BrokerId(2), "127.0.0.2".to_string(), 19092),
            "FindCoordinator v{version}"
        );
    }
    let there = vec![(BrokerId(2), "127.0.0.2".to_string(), 19092)];
    let (code, leader, endpoints) = produce_at(&mut c, 9, "hinted").await;
    assert_eq!(code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(
        (leader, endpoints),
        (nobody, vec![]),
        "v9 has no hint fields"
    );
    for version in [10i16, 12] {
        let (code, leader, endpoints) = produce_at(&mut c, version, "hinted").await;
        assert_eq!(code, NOT_LEADER_OR_FOLLOWER, "v{version}");
        assert_eq!(leader, (BrokerId(2), epoch + 1), "v{version}");
        assert_eq!(endpoints, there, "v{version}");
    }
    for version in [11i16, 12, 16] {
        let resp: FetchResponse = c
            .call(
                ApiKey::Fetch,
                version,
                &fetch(version, "hinted", topic.id, 0, -1),
            )
            .await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER, "v{version}");
        let leader = (p.current_leader.leader_id, p.current_leader.leader_epoch);
        let endpoints: Vec<(BrokerId, String, i32)> = resp
            .node_endpoints
            .iter()
            .map(|e| (e.node_id, e.host.to_string(), e.port))
            .collect();
        match version {
            11 => assert_eq!((leader, endpoints), (nobody, vec![]), "v11: no hint fields"),
            12..=15 => assert_eq!((leader, endpoints), ((BrokerId(2), epoch + 1), vec![])),
            _ => assert_eq!(
                (leader, endpoints),
                ((BrokerId(2), epoch + 1), there.clone())
            ),
        }
    }
}
