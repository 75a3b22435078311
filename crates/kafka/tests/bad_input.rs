//! Bad input over real TCP, each with the exact answer: what Kafka 4 does, Jet does.
//!
//! - Unparseable bodies, oversize or negative size prefixes, unknown API keys, APIs the server
//!   does not serve, and unsupported versions of anything but ApiVersions: the connection is
//!   closed (Kafka's `SocketServer` closes the channel on `InvalidRequestException`), and every
//!   other connection is still served.
//! - Produce v0–v2: listed in ApiVersions (for librdkafka) but refused like any unsupported
//!   version — the connection closes, as on Kafka 4.
//! - Bad record batches are answered per partition (see `api.rs`), never by closing.

mod common;

use common::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};

/// The server still answers a fresh connection.
async fn still_serving(server: &TestServer) {
    let mut c = server.client().await;
    let resp: ApiVersionsResponse = c
        .call(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name("t".into())
                .with_client_software_version("1".into()),
        )
        .await;
    assert_eq!(resp.error_code, 0);
}

#[tokio::test]
async fn garbage_body_closes_only_that_connection() {
    let server = start().await;
    let mut bystander = server.client().await;
    let mut c = server.client().await;
    // A Metadata v12 header followed by bytes that are not a Metadata body.
    let body = [
        0u8, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x13, 0x37,
    ];
    c.send_raw(&frame_bytes(&body)).await;
    assert!(c.is_closed_by_server().await);

    let resp: MetadataResponse = bystander
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(resp.brokers.len(), 1);
    still_serving(&server).await;
}

#[tokio::test]
async fn body_shorter_than_a_header_closes() {
    let server = start().await;
    let mut c = server.client().await;
    c.send_raw(&frame_bytes(&[0, 18, 0])).await;
    assert!(c.is_closed_by_server().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn size_prefix_over_the_max_closes_before_the_body() {
    let server = start_with(|_| {}, |c| c.max_request_bytes = 1024).await;
    let mut c = server.client().await;
    // Only the prefix is sent: the server must not wait for 1025 bytes that never come.
    c.send_raw(&1025i32.to_be_bytes()).await;
    assert!(c.is_closed_by_server().await);

    let mut c = server.client().await;
    c.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(c.is_closed_by_server().await);

    // Exactly at the limit is fine (and this one decodes).
    let mut c = server.client().await;
    let (id, frame) = c.frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    c.send_raw(&frame).await;
    let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, id);
}

#[tokio::test]
async fn negative_size_prefix_closes() {
    let server = start().await;
    let mut c = server.client().await;
    c.send_raw(&(-1i32).to_be_bytes()).await;
    assert!(c.is_closed_by_server().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn unknown_api_key_closes() {
    let server = start().await;
    let mut c = server.client().await;
    c.send_raw(&frame_bytes(&[0x27, 0x0f, 0, 0, 0, 0, 0, 9, 0xff, 0xff]))
        .await; // key 9999
    assert!(c.is_closed_by_server().await);
    let mut c = server.client().await;
    c.send_raw(&frame_bytes(&[0xff, 0xff, 0, 0, 0, 0, 0, 9, 0xff, 0xff]))
        .await; // key -1
    assert!(c.is_closed_by_server().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn api_not_served_here_closes() {
    let server = start().await;
    let mut c = server.client().await;
    // DescribeQuorum (55) v0: a Kafka API, but not one a broker listener answers.
    c.send_raw(&frame_bytes(&[0, 55, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0]))
        .await;
    assert!(c.is_closed_by_server().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn unsupported_version_of_other_apis_closes() {
    let server = start().await;
    let mut c = server.client().await;
    c.send_raw(&frame_bytes(&[0, 3, 0, 99, 0, 0, 0, 9, 0xff, 0xff]))
        .await; // Metadata v99
    assert!(c.is_closed_by_server().await);

    // Fetch v3: below the supported range.
    let mut c = server.client().await;
    c.send_raw(&frame_bytes(&[0, 1, 0, 3, 0, 0, 0, 9, 0xff, 0xff]))
        .await;
    assert!(c.is_closed_by_server().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn produce_v0_to_v2_are_listed_but_close_the_connection() {
    let server = start().await;
    server.create_topic("legacy", 1).await;
    for version in 0..=2i16 {
        let mut c = server.client().await;
        // Produce v0-v2 body: acks, timeout, [topic, [partition, message set]].
        let mut body = vec![0u8, 0];
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 5, 0xff, 0xff]); // correlation id, null client id
        body.extend_from_slice(&[0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 1, 0, 6]);
        body.extend_from_slice(b"legacy");
        body.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        c.send_raw(&frame_bytes(&body)).await;
        assert!(c.is_closed_by_server().await, "produce v{version}");
    }
    assert_eq!(
        server
            .node
            .partition(&jet_replication::TopicPartition::new(
                server.node.metadata().topic("legacy").unwrap().id,
                0
            ))
            .unwrap()
            .high_watermark(),
        0,
        "nothing reached the log"
    );
    still_serving(&server).await;
}

#[tokio::test]
async fn a_request_cut_short_by_the_client_harms_nothing() {
    let server = start().await;
    let mut c = server.client().await;
    c.send_raw(&[0, 0, 0, 100, 0, 18, 0, 0]).await;
    drop(c);
    still_serving(&server).await;
}

#[tokio::test]
async fn responses_to_earlier_requests_are_sent_before_a_bad_one_closes() {
    let server = start().await;
    let mut c = server.client().await;
    let (id, good) = c.frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let mut bytes = good.to_vec();
    bytes.extend_from_slice(&frame_bytes(&[0x27, 0x0f, 0, 0, 0, 0, 0, 9]));
    c.send_raw(&bytes).await;
    let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, id);
    assert!(c.is_closed_by_server().await);
}
