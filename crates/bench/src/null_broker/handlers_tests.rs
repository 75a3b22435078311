//! Tests of the null broker's handlers: requests encoded with kafka-protocol, fed to
//! [`super::handle`], responses decoded back.

use std::sync::Mutex;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::protocol::encode_request_header_into_buffer;
use tokio::sync::Notify;

use super::*;
use crate::null_broker::state::fake_batch;

fn shared() -> Shared {
    Shared {
        state: Mutex::new(State::new(1 << 30)),
        appended: Notify::new(),
        addr: "127.0.0.1:9999".parse().unwrap(),
    }
}

/// Encodes a request frame body (header + body, no size prefix).
fn request<R: Encodable>(api: ApiKey, version: i16, body: &R) -> Bytes {
    let mut b = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(77);
    encode_request_header_into_buffer(&mut b, &header).unwrap();
    body.encode(&mut b, version).unwrap();
    b.freeze()
}

/// Runs one request that answers at once; decodes its response.
fn call<Req: Encodable, Resp: Decodable>(
    s: &Shared,
    api: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    let mut out = BytesMut::new();
    let reply = handle(request(api, version, body), s, &mut out).unwrap();
    assert!(matches!(reply, Reply::Done));
    decode_response(api, version, out.freeze())
}

fn decode_response<Resp: Decodable>(api: ApiKey, version: i16, mut out: Bytes) -> Resp {
    let size = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(size + 4, out.len(), "one whole frame");
    let _ = out.split_to(4);
    let header = ResponseHeader::decode(&mut out, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 77);
    Resp::decode(&mut out, version).unwrap()
}

fn create(s: &Shared, name: &str, partitions: i32) -> i16 {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 4, &req);
    resp.topics[0].error_code
}

fn produce_req(name: &str, partition: i32, records: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])])
}

fn fetch_req(name: &str, offset: i64, partition_max: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max)])])
}

#[test]
fn api_versions_lists_the_registry_and_downgrades_unknown_versions() {
    let s = shared();
    let resp: ApiVersionsResponse = call(
        &s,
        ApiKey::ApiVersions,
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.api_keys.len(), APIS.len());
    // v4 is newer than we speak: a v0 response with UNSUPPORTED_VERSION and our range.
    let mut out = BytesMut::new();
    let frame = request(
        ApiKey::ApiVersions,
        4,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    handle(frame, &s, &mut out).unwrap();
    let resp: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 0, out.freeze());
    assert_eq!(resp.error_code, 35);
    let av = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!((av.min_version, av.max_version), (0, 3));
}

#[test]
fn create_topics_then_metadata() {
    let s = shared();
    assert_eq!(create(&s, "t", 3), 0);
    assert_eq!(create(&s, "t", 3), ResponseError::TopicAlreadyExists.code());
    assert_eq!(
        create(&s, "bad", 0),
        ResponseError::InvalidPartitions.code()
    );
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
            MetadataRequestTopic::default().with_name(Some(topic_name("auto"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let resp: MetadataResponse = call(&s, ApiKey::Metadata, 12, &req);
    assert_eq!(resp.brokers[0].port, 9999);
    assert_eq!(resp.topics[0].partitions.len(), 3);
    assert_eq!(resp.topics[1].partitions.len(), AUTO_CREATE_PARTITIONS);
    assert!(resp
        .topics
        .iter()
        .all(|t| t.error_code == 0 && !t.topic_id.is_nil()));
}

#[test]
fn produce_assigns_offsets_and_fetch_patches_them_within_limits() {
    let s = shared();
    create(&s, "t", 1);
    lock(&s).retain("t");
    for _ in 0..3 {
        let resp: ProduceResponse = call(
            &s,
            ApiKey::Produce,
            7,
            &produce_req("t", 0, fake_batch(10, 100), -1),
        );
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let resp: ProduceResponse = call(
        &s,
        ApiKey::Produce,
        7,
        &produce_req("t", 5, fake_batch(1, 0), 1),
    );
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // acks=0: appended, no response.
    let mut out = BytesMut::new();
    handle(
        request(
            ApiKey::Produce,
            7,
            &produce_req("t", 0, fake_batch(10, 100), 0),
        ),
        &s,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());

    // A 1-byte partition limit still returns the first batch whole (KIP-74), and only it.
    let resp: FetchResponse = call(&s, ApiKey::Fetch, 12, &fetch_req("t", 15, 1, 0));
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 40));
    let records = p.records.clone().unwrap();
    assert_eq!(records.len(), fake_batch(10, 100).len());
    assert_eq!(i64::from_be_bytes(records[..8].try_into().unwrap()), 10);
    // A generous limit returns everything from the batch holding the offset.
    let resp: FetchResponse = call(&s, ApiKey::Fetch, 12, &fetch_req("t", 15, 1 << 20, 0));
    assert_eq!(
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .len(),
        3 * records.len()
    );
    // Past the end: out of range.
    let resp: FetchResponse = call(&s, ApiKey::Fetch, 12, &fetch_req("t", 41, 1 << 20, 0));
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
}

#[test]
fn fetch_at_the_end_waits_for_an_append() {
    let s = shared();
    create(&s, "t", 1);
    lock(&s).retain("t");
    let mut out = BytesMut::new();
    let Reply::Wait(pending) = handle(
        request(ApiKey::Fetch, 12, &fetch_req("t", 0, 1 << 20, 5_000)),
        &s,
        &mut out,
    )
    .unwrap() else {
        panic!("an empty partition should make the fetch wait");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let wait = finish_fetch(pending, &s, &mut out, Duration::from_secs(10));
        let append = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut ignored = BytesMut::new();
            handle(
                request(
                    ApiKey::Produce,
                    7,
                    &produce_req("t", 0, fake_batch(2, 10), 1),
                ),
                &s,
                &mut ignored,
            )
            .unwrap();
        };
        let (done, ()) = tokio::join!(wait, append);
        done.unwrap();
    });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken by the append, not the timeout"
    );
    let resp: FetchResponse = decode_response(ApiKey::Fetch, 12, out.freeze());
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 2);
}
