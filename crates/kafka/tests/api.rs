//! Raw-bytes TCP tests, one or more per API: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
//! against a real node (RocksDB in a temporary directory) and the real server.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

#[tokio::test]
async fn api_versions_lists_the_registry() {
    let server = start().await;
    let mut c = server.client().await;
    for version in 0..=4 {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("jet-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, version, &req).await;
        assert_eq!(resp.error_code, 0, "v{version}");
        let range = |key: ApiKey| {
            let k = resp
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .unwrap_or_else(|| panic!("{key:?} listed"));
            (k.min_version, k.max_version)
        };
        assert_eq!(range(ApiKey::Produce), (0, 13));
        assert_eq!(range(ApiKey::Fetch), (4, 18));
        assert_eq!(range(ApiKey::ListOffsets), (1, 10));
        assert_eq!(range(ApiKey::Metadata), (0, 13));
        assert_eq!(range(ApiKey::ApiVersions), (0, 4));
        assert_eq!(resp.finalized_features_epoch, -1, "no tagged fields sent");
        assert!(resp.supported_features.is_empty());
    }
}

#[tokio::test]
async fn api_versions_unknown_version_gets_the_v0_error_response() {
    let server = start().await;
    let mut c = server.client().await;
    // Version 99 with a body no version has: only the header prefix is read.
    let body = [0u8, 18, 0, 99, 0, 0, 0, 42, 0xde, 0xad, 0xbe, 0xef];
    c.send_raw(&frame_bytes(&body)).await;
    let (correlation_id, resp): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(correlation_id, 42);
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    // The connection stays usable, as clients retry on it.
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    assert_eq!(resp.error_code, 0);
}

#[tokio::test]
async fn api_versions_v3_checks_the_client_software_name() {
    let server = start().await;
    let mut c = server.client().await;
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("bad name"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &req).await;
    assert_eq!(resp.error_code, 42, "INVALID_REQUEST");
}

#[tokio::test]
async fn metadata_describes_brokers_and_topics() {
    let server = start().await;
    let topic = server.create_topic("described", 3).await;
    let mut c = server.client().await;
    for version in [0i16, 1, 4, 9, 10, 12, 13] {
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("described"))),
        ]));
        let resp: MetadataResponse = c.call(ApiKey::Metadata, version, &req).await;
        assert_eq!(resp.brokers.len(), 1, "v{version}");
        let broker = &resp.brokers[0];
        assert_eq!(broker.node_id, BrokerId(server.node.node_id()));
        assert_eq!(broker.host.as_str(), "127.0.0.1");
        assert_eq!(broker.port, i32::from(server.addr.port()));
        if version >= 1 {
            assert_eq!(resp.controller_id, BrokerId(server.node.node_id()));
        }
        if version >= 2 {
            assert_eq!(resp.cluster_id.as_deref(), Some("jet-test-cluster"));
        }
        let t = &resp.topics[0];
        assert_eq!(t.error_code, 0);
        if version >= 10 {
            assert_eq!(t.topic_id, topic.id);
        }
        assert_eq!(t.partitions.len(), 3);
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition_index, i as i32);
            assert_eq!(p.error_code, 0);
            assert_eq!(p.leader_id, BrokerId(server.node.node_id()));
            assert_eq!(p.replica_nodes, vec![BrokerId(server.node.node_id())]);
            assert_eq!(p.isr_nodes, vec![BrokerId(server.node.node_id())]);
            if version >= 7 {
                assert!(p.leader_epoch >= 0);
            }
        }
    }
}

#[tokio::test]
async fn metadata_lists_every_topic_for_null_and_v0_empty() {
    let server = start().await;
    server.create_topic("one", 1).await;
    server.create_topic("two", 2).await;
    let mut c = server.client().await;
    let all: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let mut names: Vec<String> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["one", "two"]);
    let v0: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            0,
            &MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await;
    assert_eq!(v0.topics.len(), 2);
    let none: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await;
    assert!(
        none.topics.is_empty(),
        "an empty list is no topics from v1 on"
    );
}

#[tokio::test]
async fn metadata_auto_creates_only_when_both_sides_allow() {
    let server = start_with(|_| {}, |c| c.default_partitions = 2).await;
    let mut c = server.client().await;
    let ask = |topic: &str, allow: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ]))
            .with_allow_auto_topic_creation(allow)
    };
    let refused: MetadataResponse = c.call(ApiKey::Metadata, 12, &ask("not-yet", false)).await;
    assert_eq!(
        refused.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert!(server.node.metadata().topic("not-yet").is_none());

    let created: MetadataResponse = c.call(ApiKey::Metadata, 12, &ask("auto", true)).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].partitions.len(), 2);
    assert!(server.node.metadata().topic("auto").is_some());

    let invalid: MetadataResponse = c.call(ApiKey::Metadata, 12, &ask("a/b", true)).await;
    assert_eq!(invalid.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");

    // Racing creators: both succeed.
    let mut c2 = server.client().await;
    let raced = ask("raced", true);
    let (a, b) = tokio::join!(
        c.call::<_, MetadataResponse>(ApiKey::Metadata, 12, &raced),
        c2.call::<_, MetadataResponse>(ApiKey::Metadata, 12, &raced),
    );
    assert_eq!(a.topics[0].error_code, 0);
    assert_eq!(b.topics[0].error_code, 0);
    assert_eq!(a.topics[0].topic_id, b.topics[0].topic_id);
}

#[tokio::test]
async fn metadata_by_unknown_topic_id_answers_unknown_topic_id() {
    let server = start().await;
    let mut c = server.client().await;
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(None)
        .with_topic_id(uuid::Uuid::new_v4())]));
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert_eq!(resp.topics[0].error_code, 100, "UNKNOWN_TOPIC_ID");
}

#[tokio::test]
async fn produce_then_fetch_round_trip() {
    let server = start().await;
    let topic = server.create_topic("round-trip", 1).await;
    let mut c = server.client().await;
    assert_eq!(
        produce(&mut c, "round-trip", 0, batch(&[b"a", b"b", b"c"])).await,
        0
    );
    assert_eq!(produce(&mut c, "round-trip", 0, batch(&[b"d"])).await, 3);

    // By name (v12) and by id (v13+).
    for version in [4i16, 12, 13, 18] {
        let mut req = fetch_request("round-trip", 0, 0, 0, 0);
        if version >= 13 {
            req.topics[0].topic_id = topic.id;
        }
        let resp: FetchResponse = c.call(ApiKey::Fetch, version, &req).await;
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.session_id, 0);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.high_watermark, 4);
        assert_eq!(p.last_stable_offset, 4);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let values = decode_values(p.records.as_ref().unwrap());
        let want: Vec<(i64, Bytes)> = [b"a", b"b", b"c", b"d"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, Bytes::from_static(*v)))
            .collect();
        assert_eq!(values, want, "v{version}");
    }

    // From the middle of a batch: the whole batch comes back, as Kafka sends it.
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("round-trip", 0, 1, 0, 0))
        .await;
    let values = decode_values(resp.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(values.first().map(|v| v.0), Some(0));
}

#[tokio::test]
async fn produce_v13_addresses_topics_by_id() {
    let server = start().await;
    let topic = server.create_topic("by-id", 1).await;
    let mut c = server.client().await;
    let req = |id| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_topic_id(id)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[b"x"])))])])
    };
    let ok: ProduceResponse = c.call(ApiKey::Produce, 13, &req(topic.id)).await;
    assert_eq!(ok.responses[0].topic_id, topic.id);
    assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
    let unknown: ProduceResponse = c
        .call(ApiKey::Produce, 13, &req(uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        unknown.responses[0].partition_responses[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );
}

#[tokio::test]
async fn produce_errors_are_per_partition() {
    let server = start_with(|n| n.max_batch_bytes = 64 << 10, |_| {}).await;
    server.create_topic("mixed", 6).await;
    let mut c = server.client().await;

    let good = batch(&[b"fine"]);
    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let truncated = good.slice(..good.len() - 3);
    let big_value = vec![7u8; 100 << 10];
    let oversize = batch(&[&big_value]);
    let mut old_magic = good.to_vec();
    old_magic[16] = 1;

    let partitions = vec![
        (0, good.clone()),
        (1, Bytes::from(bad_crc)),
        (2, truncated),
        (3, oversize),
        (4, Bytes::from(old_magic)),
        (5, Bytes::new()),
        (9, good.clone()),
    ];
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("mixed"))
                .with_partition_data(
                    partitions
                        .into_iter()
                        .map(|(i, r)| {
                            PartitionProduceData::default()
                                .with_index(i)
                                .with_records(Some(r))
                        })
                        .collect(),
                ),
            TopicProduceData::default()
                .with_name(name("no-such-topic"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(good))]),
        ]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await;
    let codes: Vec<(i32, i16)> = resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.index, p.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (0, 0),  // appended
            (1, 2),  // CORRUPT_MESSAGE: crc
            (2, 2),  // CORRUPT_MESSAGE: truncated
            (3, 10), // MESSAGE_TOO_LARGE
            (4, 87), // INVALID_RECORD: magic 1
            (5, 87), // INVALID_RECORD: no batch
            (9, 3),  // UNKNOWN_TOPIC_OR_PARTITION: no partition 9
        ]
    );
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    assert_eq!(resp.responses[1].partition_responses[0].error_code, 3);
}

/// Kafka refuses more than one batch for a partition in one Produce request (magic 2,
/// INVALID_RECORD), and stores none of them: here the second batch would be a fine append on its
/// own, and the first a duplicate of an earlier idempotent batch.
#[tokio::test]
async fn produce_of_several_batches_for_one_partition_is_invalid_record() {
    let server = start().await;
    server.create_topic("multi", 1).await;
    let mut c = server.client().await;
    assert_eq!(produce(&mut c, "multi", 0, batch(&[b"first"])).await, 0);
    let two = [batch(&[b"a"]), batch(&[b"b", b"c"])].concat();
    for version in [3, 9, 12] {
        let resp: ProduceResponse = c
            .call(
                ApiKey::Produce,
                version,
                &produce_request("multi", 0, Bytes::from(two.clone()), -1),
            )
            .await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 87, "v{version}: INVALID_RECORD");
    }
    // Nothing of them was stored: the next append lands right after the first one.
    assert_eq!(produce(&mut c, "multi", 0, batch(&[b"next"])).await, 1);
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("multi", 0, 0, 0, 1))
        .await;
    let records = resp.responses[0].partitions[0].records.clone().unwrap();
    let values: Vec<Bytes> = decode_values(&records)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        values,
        vec![Bytes::from_static(b"first"), Bytes::from_static(b"next")]
    );
}

/// A compacted topic refuses records without a key (Kafka's LogValidator): INVALID_RECORD, with
/// KIP-467's per-record errors from v8 on naming each keyless record's index, only the code and
/// message before v8, and nothing of the batch stored.
#[tokio::test]
async fn produce_without_keys_to_a_compacted_topic_names_each_record() {
    let server = start().await;
    server
        .create_topic_with("compacted", 1, &[("cleanup.policy", "compact")])
        .await;
    let mut c = server.client().await;
    for version in [7, 8, 12] {
        let resp: ProduceResponse = c
            .call(
                ApiKey::Produce,
                version,
                &produce_request("compacted", 0, batch(&[b"a", b"b", b"c"]), -1),
            )
            .await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 87, "v{version}: INVALID_RECORD");
        let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        if version >= 8 {
            assert_eq!(indexes, vec![0, 1, 2], "v{version}");
            let m = p.record_errors[1]
                .batch_index_error_message
                .as_deref()
                .unwrap_or("");
            assert!(m.contains("without key"), "v{version}: {m}");
        } else {
            assert!(indexes.is_empty(), "v{version}: no record errors before v8");
        }
    }
    // Nothing was stored: the partition is still empty.
    let tp = jet_replication::TopicPartition::new(
        server.node.metadata().topic("compacted").unwrap().id,
        0,
    );
    assert_eq!(server.node.partition(&tp).unwrap().high_watermark(), 0);
}

/// One node is one in-sync replica: a topic asking for two refuses acks=all writes with
/// NOT_ENOUGH_REPLICAS and stores nothing, while acks=1 still appends.
#[tokio::test]
async fn produce_acks_all_honours_min_insync_replicas() {
    let server = start().await;
    server
        .create_topic_with("isr", 1, &[("min.insync.replicas", "2")])
        .await;
    let mut c = server.client().await;
    let resp: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_request("isr", 0, batch(&[b"x"]), -1),
        )
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 19,
        "NOT_ENOUGH_REPLICAS"
    );
    let resp: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_request("isr", 0, batch(&[b"y"]), 1),
        )
        .await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "acks=1 appends");
}

#[tokio::test]
async fn produce_invalid_acks_is_refused() {
    let server = start().await;
    server.create_topic("acks", 1).await;
    let mut c = server.client().await;
    let resp: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_request("acks", 0, batch(&[b"x"]), 2),
        )
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 21,
        "INVALID_REQUIRED_ACKS"
    );
}

#[tokio::test]
async fn produce_acks_zero_sends_no_response_but_appends() {
    let server = start().await;
    server.create_topic("fire-and-forget", 1).await;
    let mut c = server.client().await;
    c.send(
        ApiKey::Produce,
        9,
        &produce_request("fire-and-forget", 0, batch(&[b"x"]), 0),
    )
    .await;
    // The next response on the connection is the ApiVersions one.
    let id = c
        .send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    let (got, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, id);
    let resp: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch_request("fire-and-forget", 0, 0, 0, 0),
        )
        .await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
}

#[tokio::test]
async fn fetch_long_poll_is_woken_by_a_produce() {
    let server = start().await;
    server.create_topic("long-poll", 1).await;
    let mut consumer = server.client().await;
    let started = Instant::now();
    let id = consumer
        .send(
            ApiKey::Fetch,
            12,
            &fetch_request("long-poll", 0, 0, 10_000, 1),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut producer = server.client().await;
    produce(&mut producer, "long-poll", 0, batch(&[b"wake up"])).await;
    let (got, resp): (i32, FetchResponse) = consumer.recv(ApiKey::Fetch, 12).await;
    let elapsed = started.elapsed();
    assert_eq!(got, id);
    assert!(
        elapsed >= Duration::from_millis(200),
        "answered before the produce: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "woken late: {elapsed:?}");
    let values = decode_values(resp.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(values, vec![(0, Bytes::from_static(b"wake up"))]);
}

#[tokio::test]
async fn fetch_long_poll_times_out_empty() {
    let server = start().await;
    server.create_topic("quiet", 1).await;
    let mut c = server.client().await;
    let started = Instant::now();
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("quiet", 0, 0, 300, 1))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(290));
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.records.as_ref().map(Bytes::len), Some(0));
}

#[tokio::test]
async fn fetch_respects_max_bytes_but_always_returns_one_batch() {
    let server = start().await;
    server.create_topic("sized", 2).await;
    let mut c = server.client().await;
    let value = vec![1u8; 1000];
    let mut batch_len = 0;
    for _ in 0..5 {
        let b = batch(&[&value]);
        batch_len = b.len();
        produce(&mut c, "sized", 0, b.clone()).await;
        produce(&mut c, "sized", 1, b).await;
    }
    let fetch = |max_bytes: i32, partition_max_bytes: i32| {
        FetchRequest::default()
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("sized"))
                .with_partitions(
                    (0..2)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(partition_max_bytes)
                        })
                        .collect(),
                )])
    };
    let sizes = |resp: &FetchResponse| -> Vec<usize> {
        resp.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect()
    };

    // Two and a half batches of response budget: two batches from partition 0, none from 1.
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch(batch_len as i32 * 5 / 2, 1 << 20))
        .await;
    assert_eq!(sizes(&resp), vec![2 * batch_len, 0]);

    // A response budget smaller than one batch still returns the first batch (KIP-74) and only it.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch(10, 1 << 20)).await;
    assert_eq!(sizes(&resp), vec![batch_len, 0]);

    // The partition limit applies per partition; only the first partition may exceed it.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch(1 << 20, 10)).await;
    assert_eq!(sizes(&resp), vec![batch_len, 0]);
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch(1 << 20, batch_len as i32 * 3))
        .await;
    assert_eq!(sizes(&resp), vec![3 * batch_len, 3 * batch_len]);
}

#[tokio::test]
async fn fetch_out_of_range_reports_the_log_bounds() {
    let server = start().await;
    server.create_topic("bounded", 1).await;
    let mut c = server.client().await;
    produce(&mut c, "bounded", 0, batch(&[b"a", b"b"])).await;
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("bounded", 0, 50, 0, 0))
        .await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!((p.log_start_offset, p.high_watermark), (0, 2));
}

#[tokio::test]
async fn fetch_unknown_topics_and_sessions() {
    let server = start().await;
    let mut c = server.client().await;
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("missing", 0, 0, 0, 0))
        .await;
    assert_eq!(resp.responses[0].partitions[0].error_code, 3);

    let mut by_id = fetch_request("", 0, 0, 0, 0);
    by_id.topics[0].topic_id = uuid::Uuid::new_v4();
    let resp: FetchResponse = c.call(ApiKey::Fetch, 13, &by_id).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );

    // A new session (epoch 0) is answered sessionless and in full; an incremental epoch refers to
    // a session that does not exist.
    let mut new_session = fetch_request("missing", 0, 0, 0, 0);
    new_session.session_epoch = 0;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &new_session).await;
    assert_eq!((resp.error_code, resp.session_id), (0, 0));
    assert_eq!(resp.responses.len(), 1);
    let mut incremental = fetch_request("missing", 0, 0, 0, 0);
    incremental.session_id = 7;
    incremental.session_epoch = 3;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &incremental).await;
    assert_eq!(resp.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    assert!(resp.responses.is_empty());
}

#[tokio::test]
async fn list_offsets_special_and_timestamp_lookups() {
    let server = start().await;
    server.create_topic("offsets", 1).await;
    let mut c = server.client().await;
    produce(&mut c, "offsets", 0, batch_at(&[b"a", b"b"], &[1000, 3000])).await;
    produce(&mut c, "offsets", 0, batch_at(&[b"c", b"d"], &[2000, 5000])).await;
    produce(&mut c, "offsets", 0, batch_at(&[b"e"], &[4000])).await;

    let ask = |timestamp: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("offsets"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp)])])
    };
    let cases: [(i64, i16, i64, i64); 10] = [
        (-1, 1, 5, -1),   // latest: high watermark
        (-2, 1, 0, -1),   // earliest: log start
        (-3, 7, 3, 5000), // max timestamp: the record that carries it
        (-4, 8, 0, -1),   // earliest local
        (-5, 9, -1, -1),  // latest tiered: none
        (0, 1, 0, 1000),  // before everything: the first record
        (1500, 4, 1, 3000),
        (2500, 10, 1, 3000), // first record at or after, in offset order
        (4500, 10, 3, 5000),
        (6000, 10, -1, -1), // after everything: none
    ];
    for (timestamp, version, offset, found_timestamp) in cases {
        let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, version, &ask(timestamp)).await;
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "timestamp {timestamp}");
        assert_eq!(
            (p.offset, p.timestamp),
            (offset, found_timestamp),
            "timestamp {timestamp} v{version}"
        );
        if version >= 4 && offset >= 0 {
            assert!(p.leader_epoch >= 0, "timestamp {timestamp}");
        }
    }

    let unknown = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name("nope"))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 5, &unknown).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 3);
}
