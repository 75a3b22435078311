//! Raw-bytes TCP tests of the group APIs — FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, DescribeGroups, ListGroups,
//! DeleteGroups — against a real node (RocksDB in a temporary directory) and the real server,
//! one test per error code a client must be able to act on.
//!
//! A group's first rebalance completes after Kafka's 3 s initial delay, so tests that form a
//! group take a few seconds; each member has its own connection, because a JoinGroup waiting
//! for its rebalance holds back later responses on its connection (responses keep request order).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// A version-0 consumer subscription to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = vec![0, 0];
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

fn join_req(group: &str, member: &str, protocols: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(p))
                        .with_metadata(subscription(&["t"]))
                })
                .collect(),
        )
}

async fn join(c: &mut Client, version: i16, req: &JoinGroupRequest) -> JoinGroupResponse {
    c.call(ApiKey::JoinGroup, version, req).await
}

/// A member of `group` (its own connection) that has joined and synced alone; returns the
/// connection, member id and generation.
async fn single_member(server: &TestServer, group: &str) -> (Client, String, i32) {
    let mut c = server.client().await;
    let first = join(&mut c, 9, &join_req(group, "", &["range"])).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let id = first.member_id.to_string();
    let r = join(&mut c, 9, &join_req(group, &id, &["range"])).await;
    assert_eq!(r.error_code, NONE);
    let sync = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(r.generation_id)
        .with_member_id(s(&id))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&id))
            .with_assignment(Bytes::from_static(b"assignment"))]);
    let sr: SyncGroupResponse = c.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(sr.error_code, NONE);
    assert_eq!(&sr.assignment[..], b"assignment");
    (c, id, r.generation_id)
}

async fn heartbeat(
    c: &mut Client,
    version: i16,
    group: &str,
    generation: i32,
    member: &str,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member));
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, version, &req).await;
    r.error_code
}

/// Stops the server and the node, so that no RocksDB is still open (and its threads running)
/// when the test process exits.
async fn finish(mut server: TestServer) {
    server.stop().await.expect("server stops");
    server.node.shutdown().await;
}

#[tokio::test]
async fn find_coordinator_answers_this_node_for_groups_only() {
    let server = start().await;
    let mut c = server.client().await;
    for version in 0..=3 {
        let req = FindCoordinatorRequest::default()
            .with_key(s("g"))
            .with_key_type(0);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, version, &req).await;
        assert_eq!(r.error_code, NONE, "v{version}");
        assert_eq!(
            (r.node_id.0, r.port),
            (1, i32::from(server.addr.port())),
            "v{version}"
        );
        assert_eq!(&*r.host, "127.0.0.1");
    }
    let txn = FindCoordinatorRequest::default()
        .with_key(s("tx"))
        .with_key_type(1);
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &txn).await;
    assert_eq!((r.error_code, r.node_id.0), (COORDINATOR_NOT_AVAILABLE, -1));
    for version in 4..=6 {
        let batch = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("a"), s("b")]);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, version, &batch).await;
        assert_eq!(r.coordinators.len(), 2);
        for (co, key) in r.coordinators.iter().zip(["a", "b"]) {
            assert_eq!((&*co.key, co.error_code, co.node_id.0), (key, NONE, 1));
        }
        let txn = batch.clone().with_key_type(1);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, version, &txn).await;
        assert!(r
            .coordinators
            .iter()
            .all(|co| co.error_code == COORDINATOR_NOT_AVAILABLE));
        let bad = batch.with_key_type(9);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, version, &bad).await;
        assert!(r
            .coordinators
            .iter()
            .all(|co| co.error_code == INVALID_REQUEST));
    }
    finish(server).await;
}

#[tokio::test]
async fn join_sync_heartbeat_and_the_member_id_round_trip() {
    let server = start().await;
    let mut c = server.client().await;
    // v4+: the first join without a member id gets one back with MEMBER_ID_REQUIRED.
    for version in [4, 7, 9] {
        let r = join(&mut c, version, &join_req("g", "", &["range"])).await;
        assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "v{version}");
        assert!(r.member_id.starts_with("jet-test-"), "{}", r.member_id);
        assert_eq!(r.generation_id, -1);
    }
    let (mut c, id, generation) = single_member(&server, "g2").await;
    assert_eq!(generation, 1);
    for version in 0..=4 {
        assert_eq!(
            heartbeat(&mut c, version, "g2", generation, &id).await,
            NONE,
            "v{version}"
        );
    }
    // Old clients (v0–v3) join in one round trip; v0 has no rebalance timeout.
    let mut old = server.client().await;
    let started = Instant::now();
    let r = join(
        &mut old,
        0,
        &join_req("g-old", "", &["range"]).with_rebalance_timeout_ms(-1),
    )
    .await;
    assert_eq!(r.error_code, NONE);
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "the initial rebalance delay"
    );
    assert_eq!(
        (r.generation_id, r.leader.clone()),
        (1, r.member_id.clone())
    );
    assert_eq!(r.members.len(), 1);
    // A follower-style SyncGroup v0 with no assignment for itself gets zero-length bytes.
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g-old"))
        .with_generation_id(1)
        .with_member_id(r.member_id.clone());
    let sr: SyncGroupResponse = old.call(ApiKey::SyncGroup, 0, &sync).await;
    assert_eq!((sr.error_code, sr.assignment.len()), (NONE, 0));
    finish(server).await;
}

#[tokio::test]
async fn invalid_group_id_and_inconsistent_protocol() {
    let server = start().await;
    let mut c = server.client().await;
    let r = join(&mut c, 5, &join_req("", "", &["range"])).await;
    assert_eq!(r.error_code, INVALID_GROUP_ID);
    assert_eq!(
        &*r.protocol_name.unwrap_or_default(),
        "",
        "v5 never sends a null protocol"
    );
    let r = join(
        &mut c,
        9,
        &join_req("g", "", &["range"]).with_protocol_type(s("")),
    )
    .await;
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let (_m, _, _) = single_member(&server, "g").await;
    let mut other = server.client().await;
    let r = join(
        &mut other,
        9,
        &join_req("g", "", &["range"]).with_protocol_type(s("connect")),
    )
    .await;
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let r = join(&mut other, 9, &join_req("g", "", &["roundrobin"])).await;
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);
    finish(server).await;
}

#[tokio::test]
async fn unknown_member_illegal_generation_and_rebalance_in_progress() {
    let server = start().await;
    let (mut a, a_id, generation) = single_member(&server, "g").await;
    assert_eq!(
        heartbeat(&mut a, 4, "g", generation, "stranger").await,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut a, 4, "nope", generation, &a_id).await,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut a, 4, "g", generation + 1, &a_id).await,
        ILLEGAL_GENERATION
    );
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(generation + 5)
        .with_member_id(s(&a_id));
    let sr: SyncGroupResponse = a.call(ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(sr.error_code, ILLEGAL_GENERATION);
    // A second member arrives: the first learns it from its heartbeat.
    let mut b = server.client().await;
    let first = join(&mut b, 9, &join_req("g", "", &["range"])).await;
    let b_id = first.member_id.to_string();
    let b_join = tokio::spawn(async move {
        let r = join(&mut b, 9, &join_req("g", &b_id, &["range"])).await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        heartbeat(&mut a, 4, "g", generation, &a_id).await,
        REBALANCE_IN_PROGRESS
    );
    let ra = join(&mut a, 9, &join_req("g", &a_id, &["range"])).await;
    let (_b, rb) = b_join.await.unwrap();
    assert_eq!((ra.error_code, rb.error_code), (NONE, NONE));
    assert_eq!(ra.generation_id, generation + 1);
    assert_eq!(rb.generation_id, generation + 1);
    finish(server).await;
}

#[tokio::test]
async fn a_replaced_static_member_is_fenced() {
    let server = start().await;
    let mut c = server.client().await;
    let req = join_req("g", "", &["range"]).with_group_instance_id(Some(s("instance-1")));
    let r = join(&mut c, 5, &req).await;
    assert_eq!(r.error_code, NONE, "static members skip MEMBER_ID_REQUIRED");
    let old_id = r.member_id.to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(r.generation_id)
        .with_member_id(s(&old_id))
        .with_group_instance_id(Some(s("instance-1")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&old_id))
            .with_assignment(Bytes::from_static(b"mine"))]);
    let sr: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(sr.error_code, NONE);
    // The same instance restarts: new member id, same generation, old assignment.
    let mut restarted = server.client().await;
    let r2 = join(&mut restarted, 5, &req).await;
    assert_eq!(r2.error_code, NONE);
    assert_ne!(&*r2.member_id, old_id.as_str());
    assert_eq!(r2.generation_id, r.generation_id);
    let sync2 = sync
        .clone()
        .with_member_id(r2.member_id.clone())
        .with_assignments(vec![]);
    let sr2: SyncGroupResponse = restarted.call(ApiKey::SyncGroup, 3, &sync2).await;
    assert_eq!((sr2.error_code, &sr2.assignment[..]), (NONE, &b"mine"[..]));
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(r.generation_id)
        .with_member_id(s(&old_id))
        .with_group_instance_id(Some(s("instance-1")));
    let old: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &hb).await;
    assert_eq!(old.error_code, FENCED_INSTANCE_ID);
    finish(server).await;
}

fn commit_req(group: &str, topic: &str, partitions: &[(i32, i64)]) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(s(&format!("meta-{o}"))))
                    })
                    .collect(),
            )])
}

fn codes(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[tokio::test]
async fn offsets_commit_and_fetch_in_every_form() {
    let server = start().await;
    server.create_topic("t", 3).await;
    let mut c = server.client().await;
    for version in [2, 5, 8, 9] {
        let r: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                version,
                &commit_req("solo", "t", &[(0, 10), (1, 11)]),
            )
            .await;
        assert_eq!(codes(&r), vec![NONE, NONE], "v{version}");
    }
    // A missing topic, or a partition the topic does not have.
    let r: OffsetCommitResponse = c
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_req("solo", "missing", &[(0, 1)]),
        )
        .await;
    assert_eq!(codes(&r), vec![UNKNOWN_TOPIC_OR_PARTITION]);
    let r: OffsetCommitResponse = c
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_req("solo", "t", &[(7, 1), (2, 12)]),
        )
        .await;
    assert_eq!(codes(&r), vec![UNKNOWN_TOPIC_OR_PARTITION, NONE]);
    for version in 1..=7 {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid("solo"))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0, 1, 2])]))
            .with_require_stable(version >= 7);
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, version, &req).await;
        let got: Vec<(i32, i64, String, i16)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.clone().unwrap_or_default().to_string(),
                    p.error_code,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 10, "meta-10".into(), NONE),
                (1, 11, "meta-11".into(), NONE),
                (2, 12, "meta-12".into(), NONE)
            ],
            "v{version}"
        );
    }
    // v8+: several groups at once; a null topic list means every committed offset.
    let req = OffsetFetchRequest::default()
        .with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("solo"))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("nobody"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0])])),
        ])
        .with_require_stable(true);
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &req).await;
    assert_eq!(r.groups.len(), 2);
    let solo: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(solo, vec![(0, 10), (1, 11), (2, 12)]);
    let nobody = &r.groups[1].topics[0].partitions[0];
    assert_eq!((nobody.committed_offset, nobody.error_code), (-1, NONE));
    finish(server).await;
}

#[tokio::test]
async fn members_commit_with_their_generation() {
    let server = start().await;
    server.create_topic("t", 1).await;
    let (mut c, id, generation) = single_member(&server, "g").await;
    let as_member = |generation: i32, member: &str| {
        commit_req("g", "t", &[(0, 5)])
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
    };
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &as_member(generation, &id))
        .await;
    assert_eq!(codes(&r), vec![NONE]);
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &as_member(generation + 1, &id))
        .await;
    assert_eq!(codes(&r), vec![ILLEGAL_GENERATION]);
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &as_member(generation, "x"))
        .await;
    assert_eq!(codes(&r), vec![UNKNOWN_MEMBER_ID]);
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit_req("g", "t", &[(0, 6)]))
        .await;
    assert_eq!(
        codes(&r),
        vec![UNKNOWN_MEMBER_ID],
        "only members commit to a group with members"
    );
    finish(server).await;
}

#[tokio::test]
async fn describe_list_delete_and_offset_delete() {
    let server = start().await;
    server.create_topic("t", 1).await;
    server.create_topic("u", 1).await;
    let (mut c, id, generation) = single_member(&server, "busy").await;
    let r: OffsetCommitResponse = c
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_req("busy", "u", &[(0, 3)])
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(&id)),
        )
        .await;
    assert_eq!(codes(&r), vec![NONE]);
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit_req("idle", "t", &[(0, 1)]))
        .await;
    assert_eq!(codes(&r), vec![NONE]);

    let req = DescribeGroupsRequest::default().with_groups(vec![gid("busy"), gid("nobody")]);
    let r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &req).await;
    let busy = &r.groups[0];
    assert_eq!(
        (
            &*busy.group_state,
            &*busy.protocol_type,
            &*busy.protocol_data
        ),
        ("Stable", "consumer", "range")
    );
    assert_eq!(busy.members.len(), 1);
    assert_eq!(&busy.members[0].member_assignment[..], b"assignment");
    assert_eq!(&*busy.members[0].client_host, "/127.0.0.1");
    assert_eq!(
        (r.groups[1].error_code, &*r.groups[1].group_state),
        (NONE, "Dead")
    );
    let r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 6, &req).await;
    assert_eq!(r.groups[1].error_code, GROUP_ID_NOT_FOUND);

    let all: ListGroupsResponse = c
        .call(ApiKey::ListGroups, 3, &ListGroupsRequest::default())
        .await;
    let ids: Vec<&str> = all.groups.iter().map(|g| &*g.group_id.0).collect();
    assert_eq!(ids, vec!["busy", "idle"]);
    let stable = ListGroupsRequest::default().with_states_filter(vec![s("stable")]);
    let r: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &stable).await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(
        (&*r.groups[0].group_id.0, &*r.groups[0].group_state),
        ("busy", "Stable")
    );
    let typed = ListGroupsRequest::default().with_types_filter(vec![s("consumer")]);
    let r: ListGroupsResponse = c.call(ApiKey::ListGroups, 5, &typed).await;
    assert!(r.groups.is_empty(), "every Jet group is a classic group");

    let del = |group: &str, topic: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(gid(group))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])])
    };
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &del("nobody", "t")).await;
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &del("busy", "t")).await;
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].error_code),
        (NONE, 86),
        "subscribed to t"
    );
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &del("busy", "u")).await;
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].error_code),
        (NONE, NONE)
    );
    let r: OffsetDeleteResponse = c
        .call(ApiKey::OffsetDelete, 0, &del("busy", "missing"))
        .await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );

    let req = DeleteGroupsRequest::default().with_groups_names(vec![
        gid("busy"),
        gid("idle"),
        gid("nobody"),
    ]);
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 2, &req).await;
    let got: Vec<(&str, i16)> = r
        .results
        .iter()
        .map(|g| (&*g.group_id.0, g.error_code))
        .collect();
    assert_eq!(
        got,
        vec![
            ("busy", NON_EMPTY_GROUP),
            ("idle", NONE),
            ("nobody", GROUP_ID_NOT_FOUND)
        ]
    );

    // Leaving (v3 batch form) empties the group; now it can go.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("busy"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&id)),
            MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 3, &leave).await;
    let got: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!((r.error_code, got), (NONE, vec![NONE, UNKNOWN_MEMBER_ID]));
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid("busy")]);
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 0, &req).await;
    assert_eq!(r.results[0].error_code, NONE);
    // Single-member LeaveGroup (v0–v2) answers with the member's error.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("busy"))
        .with_member_id(s("ghost"));
    let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 1, &leave).await;
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    finish(server).await;
}

/// A node and server on `dir`, which outlives them (for restarts).
async fn serve_on(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<jet_replication::Node>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut config = jet_replication::NodeConfig::new(dir.to_path_buf());
    config.data_shards = 2;
    config.tick = Duration::from_millis(20);
    let node = jet_replication::Node::start(config)
        .await
        .expect("node starts");
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
async fn offsets_and_the_stable_group_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, node, stop, served) = serve_on(dir.path()).await;
    node.create_topic(jet_replication::CreateTopic {
        name: "t".into(),
        partitions: 2,
        replication_factor: 1,
        configs: Default::default(),
        validate_only: false,
    })
    .await
    .expect("topic");
    let mut c = Client::connect(addr).await;
    let first = join(&mut c, 9, &join_req("g", "", &["range"])).await;
    let id = first.member_id.to_string();
    let r = join(&mut c, 9, &join_req("g", &id, &["range"])).await;
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(r.generation_id)
        .with_member_id(s(&id))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&id))
            .with_assignment(Bytes::from_static(b"kept"))]);
    let sr: SyncGroupResponse = c.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(sr.error_code, NONE);
    let commit = commit_req("g", "t", &[(0, 40), (1, 41)])
        .with_generation_id_or_member_epoch(r.generation_id)
        .with_member_id(s(&id));
    let cr: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &commit).await;
    assert_eq!(codes(&cr), vec![NONE, NONE]);
    drop(c);
    let _ = stop.send(());
    served.await.expect("server task").expect("server");
    node.shutdown().await;
    drop(node);

    let (addr, node, stop, served) = serve_on(dir.path()).await;
    let mut c = Client::connect(addr).await;
    let req = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_topics(None)
        .with_require_stable(true);
    let f: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &req).await;
    let got: Vec<(i32, i64)> = f.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(got, vec![(0, 40), (1, 41)]);
    // The member carries on with its generation and gets its assignment back.
    assert_eq!(heartbeat(&mut c, 4, "g", r.generation_id, &id).await, NONE);
    let again: SyncGroupResponse = c
        .call(ApiKey::SyncGroup, 5, &sync.with_assignments(vec![]))
        .await;
    assert_eq!(
        (again.error_code, &again.assignment[..]),
        (NONE, &b"kept"[..])
    );
    drop(c);
    let _ = stop.send(());
    served.await.expect("server task").expect("server");
    node.shutdown().await;
}
