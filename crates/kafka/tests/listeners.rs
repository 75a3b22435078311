//! Named listeners: one server accepting on several listeners answers Metadata and
//! DescribeCluster with every broker's address *for the listener the request came in on*; a
//! broker that does not publish that listener is reported at its default one, and a listener on
//! a wildcard address without an advertised address reports the address the client dialled.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::Client;
use jet_kafka::{ListenerConfig, Server, ServerConfig};
use jet_replication::{BrokerInfo, Directory, Node, NodeConfig};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
};
use tokio::net::TcpListener;

/// (node id, host, port), sorted by node id.
type Brokers = Vec<(i32, String, i32)>;

async fn metadata(addr: SocketAddr) -> Brokers {
    let mut c = Client::connect(addr).await;
    let resp: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    let mut out: Brokers = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect();
    out.sort();
    out
}

async fn describe_cluster(addr: SocketAddr) -> Brokers {
    let mut c = Client::connect(addr).await;
    let resp: DescribeClusterResponse = c
        .call(
            ApiKey::DescribeCluster,
            0,
            &DescribeClusterRequest::default(),
        )
        .await;
    let mut out: Brokers = resp
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn metadata_answers_with_the_addresses_of_the_listener_it_came_in_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node_config = NodeConfig::new(dir.path().to_path_buf());
    node_config.data_shards = 2;
    node_config.fsync = false;
    node_config.tick = Duration::from_millis(20);
    let node = Node::start(node_config).await.expect("node starts");

    // Default listener (no advertise: its listen address), "external" (advertised as a
    // published port), "wild" on 0.0.0.0 without an advertise (the address dialled).
    let default = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let default_addr = default.local_addr().unwrap();
    let external = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let external_addr = external.local_addr().unwrap();
    let wild = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let wild_port = wild.local_addr().unwrap().port();
    let mut config = ServerConfig::new(default_addr, "jet-test-cluster");
    config.listeners = vec![
        ListenerConfig {
            name: "external".into(),
            listen: external_addr,
            advertise: Some(("127.0.0.1".into(), 19092)),
        },
        ListenerConfig {
            name: "wild".into(),
            listen: wild.local_addr().unwrap(),
            advertise: None,
        },
    ];

    // What gossip would say: node 2 publishes both listeners, node 3 only its default one.
    let mut directory = Directory::default();
    directory.brokers.insert(
        2,
        BrokerInfo {
            node_id: 2,
            host: "jet-2".into(),
            port: 9092,
            rack: None,
            listeners: BTreeMap::from([
                ("kafka".to_string(), ("jet-2".to_string(), 9092)),
                ("external".to_string(), ("127.0.0.1".to_string(), 19093)),
            ]),
        },
    );
    directory.brokers.insert(
        3,
        BrokerInfo {
            node_id: 3,
            host: "jet-3".into(),
            port: 9092,
            rack: None,
            listeners: BTreeMap::from([("kafka".to_string(), ("jet-3".to_string(), 9092))]),
        },
    );
    node.set_directory(directory);

    let server = Server::start(config, node.clone(), default_addr)
        .await
        .expect("server starts");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        server
            .serve_listeners(
                vec![
                    ("kafka".to_string(), default),
                    ("external".to_string(), external),
                    ("wild".to_string(), wild),
                ],
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
    });

    let me = node.config().node_id as i32;
    let on_default = vec![
        (me, "127.0.0.1".to_string(), default_addr.port() as i32),
        (2, "jet-2".to_string(), 9092),
        (3, "jet-3".to_string(), 9092),
    ];
    assert_eq!(metadata(default_addr).await, on_default);
    assert_eq!(describe_cluster(default_addr).await, on_default);

    let on_external = vec![
        (me, "127.0.0.1".to_string(), 19092),
        (2, "127.0.0.1".to_string(), 19093),
        // Node 3 has no "external" listener: its default one.
        (3, "jet-3".to_string(), 9092),
    ];
    assert_eq!(metadata(external_addr).await, on_external);
    assert_eq!(describe_cluster(external_addr).await, on_external);

    // The wildcard listener, dialled at two loopback addresses: each client is told the
    // address it dialled.
    for host in ["127.0.0.1", "127.0.0.2"] {
        let addr: SocketAddr = format!("{host}:{wild_port}").parse().unwrap();
        assert_eq!(
            metadata(addr).await,
            vec![
                (me, host.to_string(), wild_port as i32),
                (2, "jet-2".to_string(), 9092),
                (3, "jet-3".to_string(), 9092),
            ],
            "dialled {addr}"
        );
    }

    let _ = stop_tx.send(());
    served.await.expect("server task").expect("served");
    node.shutdown().await;
}
