//! Pipelining, limits and shutdown over real TCP: requests on one connection run concurrently,
//! responses leave in request order; the connection limit holds extra clients back; shutdown
//! lets in-flight requests finish.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceResponse,
};

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start().await;
    server.create_topic("pipe", 1).await;
    let mut c = server.client().await;

    // Five different requests written in one go before anything is read.
    let mut wire = BytesMut::new();
    let mut ids = Vec::new();
    let (id, f) = c.frame(
        ApiKey::Produce,
        9,
        &produce_request("pipe", 0, batch(&[b"1"]), -1),
    );
    ids.push(id);
    wire.extend_from_slice(&f);
    let (id, f) = c.frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    ids.push(id);
    wire.extend_from_slice(&f);
    let (id, f) = c.frame(ApiKey::Metadata, 12, &MetadataRequest::default());
    ids.push(id);
    wire.extend_from_slice(&f);
    let (id, f) = c.frame(
        ApiKey::Produce,
        9,
        &produce_request("pipe", 0, batch(&[b"2"]), -1),
    );
    ids.push(id);
    wire.extend_from_slice(&f);
    let list = kafka_protocol::messages::ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(name("pipe"))
            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
    ]);
    let (id, f) = c.frame(ApiKey::ListOffsets, 5, &list);
    ids.push(id);
    wire.extend_from_slice(&f);
    c.send_raw(&wire).await;

    let (a, first): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let (b, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    let (d, _): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;
    let (e, second): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let (f, offsets): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 5).await;
    assert_eq!(vec![a, b, d, e, f], ids);
    // Appends happen in the order the requests were sent.
    assert_eq!(first.responses[0].partition_responses[0].base_offset, 0);
    assert_eq!(second.responses[0].partition_responses[0].base_offset, 1);
    // The ListOffsets ran concurrently with the produces (that is the point of pipelining), so
    // it saw any high watermark from before the first to after the second.
    let latest = offsets.topics[0].partitions[0].offset;
    assert!((0..=2).contains(&latest), "{latest}");
}

#[tokio::test]
async fn a_waiting_request_does_not_block_the_ones_behind_it() {
    let server = start().await;
    server.create_topic("concurrent", 1).await;
    let mut c = server.client().await;
    let started = Instant::now();
    // A fetch that would wait 10 s for data, then on the same connection the produce that
    // brings the data. Served one at a time this takes 10 s; pipelined, the produce runs while
    // the fetch waits and wakes it.
    let fetch_id = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_request("concurrent", 0, 0, 10_000, 1),
        )
        .await;
    let produce_id = c
        .send(
            ApiKey::Produce,
            9,
            &produce_request("concurrent", 0, batch(&[b"go"]), -1),
        )
        .await;
    let (got, fetched): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, fetch_id);
    let (got, _): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    assert_eq!(got, produce_id);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let values = decode_values(fetched.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(values.len(), 1);
}

#[tokio::test]
async fn responses_keep_request_order_when_a_later_one_finishes_first() {
    let server = start().await;
    server.create_topic("ordered", 1).await;
    let mut c = server.client().await;
    let fetch_id = c
        .send(ApiKey::Fetch, 12, &fetch_request("ordered", 0, 0, 500, 1))
        .await;
    let versions_id = c
        .send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    let (got, _): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, fetch_id);
    let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, versions_id);
}

#[tokio::test]
async fn in_flight_limit_bounds_a_connection_without_losing_requests() {
    let server = start_with(|_| {}, |c| c.max_in_flight_per_connection = 2).await;
    server.create_topic("limited", 1).await;
    let mut c = server.client().await;
    let mut wire = BytesMut::new();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (id, f) = c.frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        ids.push(id);
        wire.extend_from_slice(&f);
    }
    c.send_raw(&wire).await;
    for id in ids {
        let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
        assert_eq!(got, id);
    }
}

#[tokio::test]
async fn connection_limit_holds_extra_clients_back() {
    let server = start_with(|_| {}, |c| c.max_connections = 1).await;
    let mut first = server.client().await;
    let _: ApiVersionsResponse = first
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    // The second connection is accepted by the kernel but not served while the first is open.
    let mut second = server.client().await;
    let id = second
        .send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    let early = tokio::time::timeout(Duration::from_millis(300), second.recv_frame()).await;
    assert!(
        early.is_err(),
        "second connection served while the first is open"
    );
    drop(first);
    let (got, _): (i32, ApiVersionsResponse) = second.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, id);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_returns() {
    let mut server = start().await;
    server.create_topic("draining", 1).await;
    let mut c = server.client().await;
    let id = c
        .send(ApiKey::Fetch, 12, &fetch_request("draining", 0, 0, 500, 1))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(async move {
        let result = server.stop().await;
        (server, result)
    });
    let (got, _): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, id, "the in-flight fetch is answered");
    assert!(
        c.is_closed_by_server().await,
        "then the connection is closed"
    );
    let (server, result) = stopping.await.expect("stop task");
    result.expect("run returns Ok");
    assert!(started.elapsed() < Duration::from_secs(5));
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

/// Many pipelined produces to one partition on one connection must be stored in the order they
/// were sent (an idempotent producer with several requests in flight depends on it). This failed
/// before produce was split into an in-order enqueue phase and a concurrent commit wait: the
/// appends raced into the driver in poll order and runs of records came out reversed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_append_in_send_order() {
    let server = start().await;
    server.create_topic("order", 1).await;
    let mut c = server.client().await;
    const N: usize = 200;
    let mut wire = BytesMut::new();
    for i in 0..N {
        let value = format!("{i:05}");
        let (_, f) = c.frame(
            ApiKey::Produce,
            9,
            &produce_request("order", 0, batch(&[value.as_bytes()]), -1),
        );
        wire.extend_from_slice(&f);
    }
    c.send_raw(&wire).await;
    for i in 0..N {
        let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, i as i64, "response {i} got the wrong offset");
    }
    let fetched: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("order", 0, 0, 0, 1))
        .await;
    let records = fetched.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let values: Vec<String> = decode_values(&records)
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("{i:05}")).collect();
    assert_eq!(values, want);
}

/// One connection pipelining more produce bytes than the node's whole in-flight budget must not
/// wedge: the budget is returned when an append is applied, not when the connection gets round
/// to polling its response (which it cannot while it waits for budget). This deadlocked when the
/// permit lived in the append ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_beyond_the_byte_budget_on_one_connection_complete() {
    let server = start_with(|n| n.max_append_bytes_in_flight = 4096, |_| {}).await;
    server.create_topic("budget", 1).await;
    let mut c = server.client().await;
    const N: usize = 40;
    let value = vec![7u8; 1000];
    let mut wire = BytesMut::new();
    for _ in 0..N {
        let (_, f) = c.frame(
            ApiKey::Produce,
            9,
            &produce_request("budget", 0, batch(&[&value]), -1),
        );
        wire.extend_from_slice(&f);
    }
    c.send_raw(&wire).await;
    for i in 0..N {
        let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i as i64));
    }
}
