//! Every API at every version that ApiVersions advertises gets an answer over real TCP that
//! decodes at that version, on a connection that stays open; and docs/compatibility.md lists
//! exactly the advertised APIs and ranges.

mod common;

use bytes::{Buf, BytesMut};
use common::*;
use jet_kafka::handlers::HANDLERS;
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeProducersRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, RequestHeader, RequestKind, ResponseHeader,
    ResponseKind, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A request of `api_key` with default fields, except where a default would not be a request a
/// client can send (a software name, a group id, a producer).
fn request(api_key: ApiKey, version: i16) -> RequestKind {
    match api_key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("jet-test"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        ),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default().with_max_bytes(1 << 20)),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default())
        }
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(None),
        ),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default())
        }
        // v4 moved the single key into a list.
        ApiKey::FindCoordinator if version < 4 => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::default())
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
        }
        other => panic!("no request for {other:?}: add one here when the registry grows"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_answered() {
    let server = start().await;
    server.create_topic("v", 1).await;
    let mut c = server.client().await;
    let mut answered = 0;
    for (api_key, range) in HANDLERS {
        for version in range.min..=range.max {
            let mut body = BytesMut::new();
            let id = 1000 + answered;
            RequestHeader::default()
                .with_request_api_key(*api_key as i16)
                .with_request_api_version(version)
                .with_correlation_id(id)
                .with_client_id(Some(StrBytes::from_static_str("jet-test")))
                .encode(&mut body, api_key.request_header_version(version))
                .unwrap();
            if *api_key == ApiKey::Produce {
                produce_request("v", 0, batch(&[b"x"]), -1)
                    .encode(&mut body, version)
                    .unwrap();
            } else {
                request(*api_key, version)
                    .encode(&mut body, version)
                    .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e:#}"));
            }
            c.send_raw(&frame_bytes(&body)).await;
            let mut resp = c
                .recv_frame()
                .await
                .unwrap_or_else(|| panic!("{api_key:?} v{version}: connection closed"));
            // ApiVersions always answers with response header v0.
            let header_version = api_key.response_header_version(version);
            let header = ResponseHeader::decode(&mut resp, header_version).unwrap();
            assert_eq!(header.correlation_id, id, "{api_key:?} v{version}");
            ResponseKind::decode(*api_key, &mut resp, version)
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e:#}"));
            assert!(
                !resp.has_remaining(),
                "{api_key:?} v{version}: trailing bytes"
            );
            answered += 1;
        }
    }
    assert!(answered > 150, "{answered} API versions answered");
}

#[test]
fn compatibility_doc_lists_exactly_the_advertised_apis() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/compatibility.md"),
    )
    .expect("docs/compatibility.md");
    // Table rows: | Name | key | min–max | ...
    let mut listed = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let (Ok(key), Some((min, max))) = (cells[2].parse::<i16>(), cells[3].split_once('–'))
        else {
            continue;
        };
        listed.push((
            key,
            min.parse::<i16>().unwrap(),
            max.parse::<i16>().unwrap(),
        ));
    }
    let mut advertised: Vec<(i16, i16, i16)> = HANDLERS
        .iter()
        .map(|(k, r)| {
            let min = if *k == ApiKey::Produce {
                jet_kafka::handlers::produce::ADVERTISED_MIN_VERSION
            } else {
                r.min
            };
            (*k as i16, min, r.max)
        })
        .collect();
    listed.sort();
    advertised.sort();
    assert_eq!(
        listed, advertised,
        "docs/compatibility.md vs the handler registry"
    );
}
