//! Raw-bytes TCP tests of the admin APIs: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, DescribeCluster, AlterConfigs, IncrementalAlterConfigs and DeleteRecords,
//! against a real node (RocksDB in a temporary directory) and the real server.

mod common;

use std::collections::HashMap;

use common::*;
use jet_replication::topic_config::TOPIC_CONFIGS;
use jet_replication::TopicPartition;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn creatable(topic: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

fn with_configs(t: CreatableTopic, configs: &[(&str, Option<&str>)]) -> CreatableTopic {
    t.with_configs(
        configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(s(k))
                    .with_value(v.map(s))
            })
            .collect(),
    )
}

fn create_request(topics: Vec<CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only)
}

async fn create_topics(
    c: &mut Client,
    version: i16,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
) -> Vec<CreatableTopicResult> {
    let resp: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            version,
            &create_request(topics, validate_only),
        )
        .await;
    resp.topics
}

fn describe_resource(resource_type: i8, resource_name: &str) -> DescribeConfigsResource {
    DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(resource_name))
        .with_configuration_keys(None)
}

async fn describe(
    c: &mut Client,
    version: i16,
    resources: Vec<DescribeConfigsResource>,
    synonyms: bool,
    docs: bool,
) -> Vec<DescribeConfigsResult> {
    let req = DescribeConfigsRequest::default()
        .with_resources(resources)
        .with_include_synonyms(synonyms)
        .with_include_documentation(docs);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, version, &req).await;
    resp.results
}

/// The topic's configs by name, as DescribeConfigs v4 reports them.
async fn topic_configs(
    c: &mut Client,
    topic: &str,
) -> HashMap<String, DescribeConfigsResourceResult> {
    let results = describe(c, 4, vec![describe_resource(TOPIC, topic)], true, false).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    results[0]
        .configs
        .iter()
        .map(|e| (e.name.to_string(), e.clone()))
        .collect()
}

fn value(
    configs: &HashMap<String, DescribeConfigsResourceResult>,
    key: &str,
) -> (Option<String>, i8) {
    let e = configs
        .get(key)
        .unwrap_or_else(|| panic!("{key} described"));
    (e.value.as_ref().map(|v| v.to_string()), e.config_source)
}

fn incremental(
    resource_type: i8,
    resource_name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> incremental_alter_configs_request::AlterConfigsResource {
    incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(resource_name))
        .with_configs(
            ops.iter()
                .map(|(k, op, v)| {
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s(k))
                        .with_config_operation(*op)
                        .with_value(v.map(s))
                })
                .collect(),
        )
}

async fn incremental_alter(
    c: &mut Client,
    resources: Vec<incremental_alter_configs_request::AlterConfigsResource>,
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    let req = IncrementalAlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(validate_only);
    let resp: IncrementalAlterConfigsResponse =
        c.call(ApiKey::IncrementalAlterConfigs, 1, &req).await;
    resp.responses
        .into_iter()
        .map(|r| (r.error_code, r.error_message.map(|m| m.to_string())))
        .collect()
}

fn legacy(
    resource_type: i8,
    resource_name: &str,
    configs: &[(&str, Option<&str>)],
) -> alter_configs_request::AlterConfigsResource {
    alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(resource_name))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s(k))
                        .with_value(v.map(s))
                })
                .collect(),
        )
}

async fn legacy_alter(
    c: &mut Client,
    version: i16,
    resources: Vec<alter_configs_request::AlterConfigsResource>,
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    let req = AlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(validate_only);
    let resp: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, version, &req).await;
    resp.responses
        .into_iter()
        .map(|r| (r.error_code, r.error_message.map(|m| m.to_string())))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CreateTopics

#[tokio::test]
async fn create_topics_uses_defaults_and_reports_the_topic() {
    let server = start_with(
        |n| n.max_batch_bytes = 1 << 20,
        |c| c.default_partitions = 3,
    )
    .await;
    let mut c = server.client().await;
    let results = create_topics(
        &mut c,
        7,
        vec![with_configs(
            creatable("orders", -1, -1),
            &[("retention.ms", Some("1000"))],
        )],
        false,
    )
    .await;
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r.name.as_str(), "orders");
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.error_message, None);
    assert_eq!(r.num_partitions, 3, "server default partitions");
    assert_eq!(r.replication_factor, 1, "server default replication factor");
    let meta = server.node.metadata();
    let topic = meta.topic("orders").expect("topic created");
    assert_eq!(topic.partitions.len(), 3);
    assert_eq!(r.topic_id, topic.id, "v7 carries the topic id");
    assert!(!r.topic_id.is_nil());

    let configs = r.configs.as_ref().expect("v5+ configs");
    assert_eq!(
        configs.len(),
        TOPIC_CONFIGS.len(),
        "the full effective list"
    );
    let get = |k: &str| configs.iter().find(|e| e.name.as_str() == k).expect(k);
    let retention = get("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("1000"));
    assert_eq!(retention.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    assert!(!retention.read_only && !retention.is_sensitive);
    let cleanup = get("cleanup.policy");
    assert_eq!(cleanup.value.as_deref(), Some("delete"));
    assert_eq!(cleanup.config_source, 5, "DEFAULT_CONFIG");
    // The node's batch limit (1 MiB) stands in for Kafka's 1048588 default.
    let max = get("max.message.bytes");
    assert_eq!(max.value.as_deref(), Some("1048576"));
    assert_eq!(max.config_source, 4, "STATIC_BROKER_CONFIG");

    // Older versions carry no id; v2–4 carry no counts.
    let results = create_topics(&mut c, 6, vec![creatable("six", 2, 1)], false).await;
    assert_eq!(results[0].error_code, 0);
    assert!(results[0].topic_id.is_nil());
    assert_eq!(results[0].num_partitions, 2);
    let results = create_topics(&mut c, 2, vec![creatable("two", 1, 1)], false).await;
    assert_eq!(results[0].error_code, 0);
    assert_eq!(results[0].name.as_str(), "two");
    assert!(server.node.metadata().topic("two").is_some());
}

#[tokio::test]
async fn create_topics_validate_only_creates_nothing() {
    let server = start().await;
    let mut c = server.client().await;
    let results = create_topics(
        &mut c,
        7,
        vec![
            with_configs(
                creatable("dry", 4, 1),
                &[("cleanup.policy", Some("compact"))],
            ),
            creatable("dry-bad", 0, 1),
        ],
        true,
    )
    .await;
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    assert_eq!(results[0].num_partitions, 4);
    assert_eq!(results[0].replication_factor, 1);
    let configs = results[0].configs.as_ref().expect("configs");
    let cleanup = configs
        .iter()
        .find(|e| e.name.as_str() == "cleanup.policy")
        .expect("cleanup.policy");
    assert_eq!(cleanup.value.as_deref(), Some("compact"));
    assert_eq!(results[1].error_code, 37, "INVALID_PARTITIONS");
    assert!(
        server.node.metadata().topics.is_empty(),
        "validate_only created a topic"
    );
}

#[tokio::test]
async fn create_topics_refuses_each_bad_topic_with_its_code() {
    let server = start().await;
    server.create_topic("exists", 1).await;
    server.create_topic("a_b", 1).await;
    let mut c = server.client().await;
    let assign = |partition_index: i32, brokers: &[i32]| {
        CreatableReplicaAssignment::default()
            .with_partition_index(partition_index)
            .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
    };
    let topics = vec![
        creatable("dup", 1, 1),
        creatable("bad/name", 1, 1),
        creatable("dup", 2, 1),
        creatable("exists", 1, 1),
        creatable("a.b", 1, 1),
        with_configs(
            creatable("bad-value", 1, 1),
            &[("retention.ms", Some("abc"))],
        ),
        with_configs(creatable("bad-key", 1, 1), &[("no.such.config", Some("1"))]),
        with_configs(creatable("null-value", 1, 1), &[("retention.ms", None)]),
        creatable("zero-partitions", 0, 1),
        creatable("negative-partitions", -2, 1),
        creatable("zero-rf", 1, 0),
        creatable("rf3", 1, 3),
        creatable("other-broker", -1, -1).with_assignments(vec![assign(0, &[2])]),
        creatable("assign-and-count", 1, -1).with_assignments(vec![assign(0, &[1])]),
        creatable("gap", -1, -1).with_assignments(vec![assign(0, &[1]), assign(2, &[1])]),
        creatable("assigned", -1, -1).with_assignments(vec![assign(0, &[1]), assign(1, &[1])]),
        creatable("too-many", 20_000, 1),
        creatable("ok", 2, 1),
    ];
    let results = create_topics(&mut c, 7, topics, false).await;
    let got: Vec<(&str, i16)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.error_code))
        .collect();
    assert_eq!(
        got,
        vec![
            ("dup", 42),
            ("bad/name", 17),
            ("exists", 36),
            ("a.b", 17),
            ("bad-value", 40),
            ("bad-key", 40),
            ("null-value", 40),
            ("zero-partitions", 37),
            ("negative-partitions", 37),
            ("zero-rf", 38),
            ("rf3", 38),
            ("other-broker", 39),
            ("assign-and-count", 42),
            ("gap", 39),
            ("assigned", 0),
            ("too-many", 44),
            ("ok", 0),
        ]
    );
    for r in &results {
        if r.error_code != 0 {
            let message = r.error_message.as_deref().unwrap_or("");
            assert!(!message.is_empty(), "{} has a message", r.name.as_str());
            assert_eq!(r.num_partitions, -1);
            assert_eq!(r.replication_factor, -1);
            assert!(r.topic_id.is_nil());
        }
    }
    let msg = |n: &str| {
        results
            .iter()
            .find(|r| r.name.as_str() == n)
            .and_then(|r| r.error_message.as_deref().map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(msg("dup"), "Duplicate topic name.");
    assert_eq!(msg("exists"), "Topic 'exists' already exists.");
    assert_eq!(msg("a.b"), "Topic 'a.b' collides with existing topic: a_b");
    assert!(
        msg("bad-value").contains("retention.ms"),
        "{}",
        msg("bad-value")
    );
    assert!(
        msg("null-value").contains("Null value"),
        "{}",
        msg("null-value")
    );
    let meta = server.node.metadata();
    assert!(
        meta.topic("dup").is_none(),
        "a duplicated name creates nothing"
    );
    assert_eq!(meta.topic("assigned").map(|t| t.partitions.len()), Some(2));
    assert_eq!(meta.topic("ok").map(|t| t.partitions.len()), Some(2));
    assert!(meta.topic("too-many").is_none());
    let mut names: Vec<&str> = meta.topics.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["a_b", "assigned", "exists", "ok"]);
}

// ---------------------------------------------------------------------------------------------
// DeleteTopics

#[tokio::test]
async fn delete_topics_by_name_and_by_id() {
    let server = start().await;
    let by_name = server.create_topic("by-name", 1).await;
    let by_id = server.create_topic("by-id", 2).await;
    server.create_topic("old", 1).await;
    server.create_topic("dup", 1).await;
    let mut c = server.client().await;

    let unknown_id = Uuid::new_v4();
    let state = |n: Option<&str>, id: Uuid| {
        DeleteTopicState::default()
            .with_name(n.map(name))
            .with_topic_id(id)
    };
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            state(Some("by-name"), Uuid::nil()),
            state(None, by_id.id),
            state(Some("missing"), Uuid::nil()),
            state(None, unknown_id),
            state(Some("dup"), by_name.id),
            state(None, Uuid::nil()),
            state(Some("dup"), Uuid::nil()),
            state(Some("dup"), Uuid::nil()),
        ]);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &req).await;
    let got: Vec<(Option<String>, Uuid, i16)> = resp
        .responses
        .iter()
        .map(|r| {
            (
                r.name.as_ref().map(|n| n.to_string()),
                r.topic_id,
                r.error_code,
            )
        })
        .collect();
    let some = |n: &str| Some(n.to_string());
    assert_eq!(
        got,
        vec![
            (some("dup"), by_name.id, 42),     // name and id both given
            (None, Uuid::nil(), 42),           // neither
            (some("by-name"), by_name.id, 0),  // by name: the id is resolved
            (some("by-id"), by_id.id, 0),      // by id: the name is resolved
            (some("missing"), Uuid::nil(), 3), // UNKNOWN_TOPIC_OR_PARTITION
            (None, unknown_id, 100),           // UNKNOWN_TOPIC_ID
            (some("dup"), Uuid::nil(), 42),    // duplicate name
        ]
    );
    assert_eq!(
        resp.responses[6].error_message.as_deref(),
        Some("Duplicate topic name.")
    );
    let meta = server.node.metadata();
    assert!(meta.topic("by-name").is_none());
    assert!(meta.topic("by-id").is_none());
    assert!(
        meta.topic("dup").is_some(),
        "a duplicated name is not deleted"
    );
    assert!(server
        .node
        .partition(&TopicPartition::new(by_id.id, 0))
        .is_none());

    // v1: names only.
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topic_names(vec![name("old"), name("old-missing")]);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 1, &req).await;
    let got: Vec<(String, i16)> = resp
        .responses
        .iter()
        .map(|r| {
            (
                r.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                r.error_code,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("old".to_string(), 0), ("old-missing".to_string(), 3)]
    );
    assert!(server.node.metadata().topic("old").is_none());
}

// ---------------------------------------------------------------------------------------------
// CreatePartitions

#[tokio::test]
async fn create_partitions_grows_and_refuses_shrinking() {
    let server = start().await;
    for t in [
        "grow",
        "same",
        "shrink",
        "dry",
        "assigned",
        "foreign",
        "short",
        "dup",
        "empty-list",
    ] {
        server.create_topic(t, 2).await;
    }
    let mut c = server.client().await;
    let topic = |n: &str, count: i32, assignments: Option<Vec<Vec<i32>>>| {
        CreatePartitionsTopic::default()
            .with_name(name(n))
            .with_count(count)
            .with_assignments(assignments.map(|a| {
                a.into_iter()
                    .map(|brokers| {
                        CreatePartitionsAssignment::default()
                            .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
                    })
                    .collect()
            }))
    };
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            topic("grow", 5, None),
            topic("same", 2, None),
            topic("shrink", 1, None),
            topic("missing", 3, None),
            topic("assigned", 4, Some(vec![vec![1], vec![1]])),
            topic("foreign", 3, Some(vec![vec![2]])),
            topic("short", 4, Some(vec![vec![1]])),
            topic("dup", 3, None),
            topic("dup", 4, None),
            topic("empty-list", 3, Some(vec![])),
        ]);
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req).await;
    let got: Vec<(String, i16, Option<String>)> = resp
        .results
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    let some = |m: &str| Some(m.to_string());
    assert_eq!(got[0], ("grow".into(), 0, None));
    assert_eq!(
        got[1],
        ("same".into(), 37, some("Topic already has 2 partition(s)."))
    );
    assert_eq!(
        got[2],
        (
            "shrink".into(),
            37,
            some("The topic shrink currently has 2 partition(s); 1 would not be an increase.")
        )
    );
    assert_eq!(got[3], ("missing".into(), 3, None));
    assert_eq!(got[4], ("assigned".into(), 0, None));
    assert_eq!(got[5].1, 39, "INVALID_REPLICA_ASSIGNMENT: {:?}", got[5]);
    assert_eq!(got[6].1, 39, "INVALID_REPLICA_ASSIGNMENT: {:?}", got[6]);
    assert_eq!(got[7], ("dup".into(), 42, some("Duplicate topic name.")));
    assert_eq!(
        got[8],
        ("empty-list".into(), 0, None),
        "an empty assignment list is null"
    );
    assert_eq!(got.len(), 9);

    let meta = server.node.metadata();
    let count = |n: &str| meta.topic(n).map(|t| t.partitions.len());
    assert_eq!(count("grow"), Some(5));
    assert_eq!(count("same"), Some(2));
    assert_eq!(count("shrink"), Some(2));
    assert_eq!(count("assigned"), Some(4));
    assert_eq!(count("foreign"), Some(2));
    assert_eq!(count("dup"), Some(2));
    assert_eq!(count("empty-list"), Some(3));
    let grow = meta.topic("grow").expect("grow");
    assert!(server
        .node
        .partition(&TopicPartition::new(grow.id, 4))
        .is_some());

    // validate_only checks and changes nothing; v0 works the same.
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![topic("dry", 6, None), topic("dry", 6, None)]);
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 0, &req).await;
    assert_eq!(resp.results.len(), 1);
    assert_eq!(resp.results[0].error_code, 42);
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![topic("dry", 6, None)]);
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 0, &req).await;
    assert_eq!(resp.results[0].error_code, 0);
    assert_eq!(
        server
            .node
            .metadata()
            .topic("dry")
            .map(|t| t.partitions.len()),
        Some(2)
    );
}

// ---------------------------------------------------------------------------------------------
// DescribeConfigs

#[tokio::test]
async fn describe_configs_of_a_topic() {
    let server = start_with(|n| n.max_batch_bytes = 1 << 20, |_| {}).await;
    server
        .create_topic_with("described", 1, &[("retention.bytes", "4096")])
        .await;
    let mut c = server.client().await;

    // v4, every key, synonyms and documentation.
    let results = describe(
        &mut c,
        4,
        vec![describe_resource(TOPIC, "described")],
        true,
        true,
    )
    .await;
    let r = &results[0];
    assert_eq!(
        (r.error_code, r.resource_type, r.resource_name.as_str()),
        (0, TOPIC, "described")
    );
    assert_eq!(r.error_message, None);
    assert_eq!(r.configs.len(), TOPIC_CONFIGS.len());
    for def in TOPIC_CONFIGS {
        let e = r
            .configs
            .iter()
            .find(|e| e.name.as_str() == def.name)
            .unwrap_or_else(|| panic!("{} described", def.name));
        assert!(!e.read_only && !e.is_sensitive, "{}", def.name);
        assert!(
            e.documentation.as_deref().is_some_and(|d| !d.is_empty()),
            "{}",
            def.name
        );
        assert!(!e.synonyms.is_empty(), "{} has synonyms", def.name);
        assert_eq!(e.synonyms[0].source, e.config_source, "{}", def.name);
        match def.name {
            "retention.bytes" => {
                assert_eq!(e.value.as_deref(), Some("4096"));
                assert_eq!(e.config_source, 1);
                assert_eq!(e.synonyms[0].name.as_str(), "retention.bytes");
                assert_eq!(e.synonyms[1].name.as_str(), "log.retention.bytes");
                assert_eq!(e.synonyms[1].value.as_deref(), Some("-1"));
                assert_eq!(e.synonyms[1].source, 5);
                assert_eq!(e.config_type, 5, "LONG");
            }
            "max.message.bytes" => {
                assert_eq!(e.value.as_deref(), Some("1048576"));
                assert_eq!(e.config_source, 4);
                assert_eq!(e.config_type, 3, "INT");
            }
            "cleanup.policy" => {
                assert_eq!(e.value.as_deref(), Some("delete"));
                assert_eq!(e.config_source, 5);
                assert_eq!(e.config_type, 7, "LIST, as Kafka types it");
            }
            _ => {
                assert_eq!(e.value.as_deref(), Some(def.default), "{}", def.name);
                assert_eq!(e.config_source, 5, "{}", def.name);
                assert_eq!(e.config_type, def.kind.kafka_code(), "{}", def.name);
            }
        }
    }

    // Synonyms and documentation only when asked for; a key filter; v1.
    let mut filtered = describe_resource(TOPIC, "described");
    filtered.configuration_keys = Some(vec![s("retention.ms"), s("retention.bytes"), s("nope")]);
    let results = describe(&mut c, 1, vec![filtered], false, false).await;
    let mut names: Vec<&str> = results[0].configs.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["retention.bytes", "retention.ms"]);
    for e in &results[0].configs {
        assert!(e.synonyms.is_empty());
    }
    let mut filtered = describe_resource(TOPIC, "described");
    filtered.configuration_keys = Some(vec![s("retention.ms")]);
    let results = describe(&mut c, 3, vec![filtered], false, false).await;
    assert_eq!(results[0].configs.len(), 1);
    assert_eq!(results[0].configs[0].documentation, None, "not asked for");
    // An empty key list means every key, as in Kafka.
    let mut empty = describe_resource(TOPIC, "described");
    empty.configuration_keys = Some(vec![]);
    let results = describe(&mut c, 3, vec![empty], false, false).await;
    assert_eq!(results[0].configs.len(), TOPIC_CONFIGS.len());

    // Errors, each on its own resource.
    let results = describe(
        &mut c,
        4,
        vec![
            describe_resource(TOPIC, "missing"),
            describe_resource(TOPIC, "bad/name"),
            describe_resource(99, "x"),
            describe_resource(TOPIC, "described"),
        ],
        false,
        false,
    )
    .await;
    let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [3, 17, 42, 0]);
    assert!(results[0].configs.is_empty());
    assert_eq!(
        results[2].error_message.as_deref(),
        Some("Unsupported resource type: 99")
    );
}

#[tokio::test]
async fn describe_configs_of_the_broker() {
    let server = start_with(
        |n| n.max_batch_bytes = 1 << 20,
        |c| c.rack = Some("rack-a".into()),
    )
    .await;
    let mut c = server.client().await;
    let results = describe(
        &mut c,
        4,
        vec![
            describe_resource(BROKER, "1"),
            describe_resource(BROKER, ""),
            describe_resource(BROKER, "7"),
            describe_resource(BROKER, "one"),
            describe_resource(BROKER_LOGGER, "1"),
            describe_resource(BROKER_LOGGER, ""),
        ],
        true,
        false,
    )
    .await;
    let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [0, 0, 42, 42, 0, 42]);
    assert_eq!(
        results[3].error_message.as_deref(),
        Some("Broker id must be an integer, but it is: one")
    );
    assert!(results[1].configs.is_empty(), "no dynamic cluster defaults");
    assert!(results[4].configs.is_empty(), "no named loggers");

    let configs: HashMap<&str, &DescribeConfigsResourceResult> = results[0]
        .configs
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let get = |k: &str| {
        let e = configs.get(k).unwrap_or_else(|| panic!("{k} described"));
        assert!(e.read_only, "{k} is read-only");
        (e.value.as_ref().map(|v| v.to_string()), e.config_source)
    };
    assert_eq!(get("broker.id"), (Some("1".into()), 4));
    assert_eq!(get("node.id"), (Some("1".into()), 4));
    assert_eq!(get("num.partitions"), (Some("1".into()), 5));
    assert_eq!(get("default.replication.factor"), (Some("1".into()), 5));
    assert_eq!(get("auto.create.topics.enable"), (Some("true".into()), 5));
    assert_eq!(
        get("socket.request.max.bytes"),
        (Some((4 << 20).to_string()), 4)
    );
    assert_eq!(get("message.max.bytes"), (Some("1048576".into()), 4));
    assert_eq!(get("log.retention.hours"), (Some("168".into()), 5));
    assert_eq!(get("log.retention.ms"), (None, 5));
    assert_eq!(get("log.retention.bytes"), (Some("-1".into()), 5));
    assert_eq!(get("broker.rack"), (Some("rack-a".into()), 4));
    let port = server.addr.port();
    assert_eq!(
        get("advertised.listeners"),
        (Some(format!("PLAINTEXT://127.0.0.1:{port}")), 4)
    );
    assert_eq!(
        get("listeners"),
        (Some(format!("PLAINTEXT://127.0.0.1:{port}")), 4)
    );
    let (dirs, _) = get("log.dirs");
    assert!(dirs.is_some_and(|d| !d.is_empty()));
    // A static value lists itself, then Kafka's default.
    let msg = configs["message.max.bytes"];
    let syn: Vec<(&str, Option<&str>, i8)> = msg
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_deref(), s.source))
        .collect();
    assert_eq!(
        syn,
        [
            ("message.max.bytes", Some("1048576"), 4),
            ("message.max.bytes", Some("1048588"), 5)
        ]
    );
    let mut names: Vec<&str> = configs.keys().copied().collect();
    names.sort_unstable();
    let sorted: Vec<&str> = results[0].configs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, sorted, "broker configs are sorted by name");
}

// ---------------------------------------------------------------------------------------------
// IncrementalAlterConfigs and AlterConfigs

#[tokio::test]
async fn incremental_alter_configs_set_delete_append_subtract() {
    let server = start().await;
    server.create_topic("t", 1).await;
    let mut c = server.client().await;

    let got = incremental_alter(
        &mut c,
        vec![incremental(
            TOPIC,
            "t",
            &[
                ("retention.ms", SET, Some("1000")),
                ("cleanup.policy", APPEND, Some("compact")),
            ],
        )],
        false,
    )
    .await;
    assert_eq!(got, [(0, None)]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(value(&configs, "retention.ms"), (Some("1000".into()), 1));
    assert_eq!(
        value(&configs, "cleanup.policy"),
        (Some("delete,compact".into()), 1)
    );

    let got = incremental_alter(
        &mut c,
        vec![incremental(
            TOPIC,
            "t",
            &[
                ("retention.ms", DELETE, None),
                ("cleanup.policy", SUBTRACT, Some("delete")),
            ],
        )],
        false,
    )
    .await;
    assert_eq!(got, [(0, None)]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(
        value(&configs, "retention.ms"),
        (Some("604800000".into()), 5)
    );
    assert_eq!(
        value(&configs, "cleanup.policy"),
        (Some("compact".into()), 1)
    );

    // validate_only changes nothing.
    let got = incremental_alter(
        &mut c,
        vec![incremental(
            TOPIC,
            "t",
            &[("retention.bytes", SET, Some("1"))],
        )],
        true,
    )
    .await;
    assert_eq!(got, [(0, None)]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(value(&configs, "retention.bytes"), (Some("-1".into()), 5));

    // Refusals, each in its own request (a resource named twice is refused as such), each
    // changing nothing.
    let mut got = Vec::new();
    for resource in [
        incremental(TOPIC, "t", &[("retention.ms", APPEND, Some("5"))]),
        incremental(TOPIC, "t", &[("no.such.config", SET, Some("5"))]),
        incremental(TOPIC, "t", &[("retention.ms", SET, Some("soon"))]),
        incremental(TOPIC, "missing", &[("retention.ms", SET, Some("5"))]),
        incremental(
            TOPIC,
            "t",
            &[
                ("retention.ms", SET, Some("5")),
                ("retention.ms", DELETE, None),
            ],
        ),
        incremental(TOPIC, "t", &[("retention.ms", SET, None)]),
        incremental(TOPIC, "t", &[("retention.ms", 9, Some("5"))]),
        incremental(BROKER, "1", &[("num.partitions", SET, Some("3"))]),
        incremental(BROKER, "", &[]),
        incremental(BROKER_LOGGER, "1", &[("root", SET, Some("DEBUG"))]),
    ] {
        let mut one = incremental_alter(&mut c, vec![resource], false).await;
        assert_eq!(one.len(), 1);
        got.append(&mut one);
    }
    let codes: Vec<i16> = got.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, [40, 40, 40, 3, 42, 42, 42, 42, 0, 42]);
    assert_eq!(
        got[0].1.as_deref(),
        Some("Can't APPEND to key retention.ms because its type is not LIST.")
    );
    assert_eq!(
        got[3].1.as_deref(),
        Some("The topic 'missing' does not exist.")
    );
    assert_eq!(
        got[4].1.as_deref(),
        Some("Error due to duplicate config keys")
    );
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(
        value(&configs, "retention.ms"),
        (Some("604800000".into()), 5)
    );

    // The same resource twice: both refused.
    let got = incremental_alter(
        &mut c,
        vec![
            incremental(TOPIC, "t", &[("retention.ms", SET, Some("7"))]),
            incremental(TOPIC, "t", &[("retention.bytes", SET, Some("7"))]),
        ],
        false,
    )
    .await;
    assert_eq!(got.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [42, 42]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(value(&configs, "retention.ms").1, 5);
}

#[tokio::test]
async fn legacy_alter_configs_replaces_the_whole_set() {
    let server = start().await;
    server
        .create_topic_with(
            "t",
            1,
            &[("retention.ms", "1000"), ("retention.bytes", "2048")],
        )
        .await;
    let mut c = server.client().await;

    // Only segment.ms named: retention.* return to their defaults.
    let got = legacy_alter(
        &mut c,
        2,
        vec![legacy(
            TOPIC,
            "t",
            &[("segment.ms", Some("60000")), ("flush.ms", None)],
        )],
        false,
    )
    .await;
    assert_eq!(got, [(0, None)]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(value(&configs, "segment.ms"), (Some("60000".into()), 1));
    assert_eq!(
        value(&configs, "retention.ms"),
        (Some("604800000".into()), 5)
    );
    assert_eq!(value(&configs, "retention.bytes"), (Some("-1".into()), 5));
    assert_eq!(value(&configs, "flush.ms").1, 5);

    let mut got = Vec::new();
    for resource in [
        legacy(TOPIC, "t", &[("retention.ms", Some("-5"))]),
        legacy(TOPIC, "missing", &[("retention.ms", Some("5"))]),
        legacy(BROKER, "1", &[("num.partitions", Some("3"))]),
        legacy(BROKER, "1", &[]),
        legacy(BROKER_LOGGER, "1", &[]),
    ] {
        let mut one = legacy_alter(&mut c, 0, vec![resource], false).await;
        assert_eq!(one.len(), 1);
        got.append(&mut one);
    }
    let codes: Vec<i16> = got.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, [40, 3, 42, 0, 42]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(
        value(&configs, "segment.ms"),
        (Some("60000".into()), 1),
        "a refused change changes nothing"
    );

    // validate_only.
    let got = legacy_alter(&mut c, 1, vec![legacy(TOPIC, "t", &[])], true).await;
    assert_eq!(got, [(0, None)]);
    let configs = topic_configs(&mut c, "t").await;
    assert_eq!(value(&configs, "segment.ms").1, 1);
}

// ---------------------------------------------------------------------------------------------
// DescribeCluster

#[tokio::test]
async fn describe_cluster_lists_this_node() {
    let server = start_with(|_| {}, |c| c.rack = Some("r1".into())).await;
    let mut c = server.client().await;
    for version in 0..=2 {
        let req = DescribeClusterRequest::default();
        let resp: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, version, &req).await;
        assert_eq!(resp.error_code, 0, "v{version}");
        assert_eq!(resp.error_message, None);
        assert_eq!(resp.cluster_id.as_str(), "jet-test-cluster");
        assert_eq!(resp.controller_id, BrokerId(1));
        assert_eq!(resp.cluster_authorized_operations, i32::MIN);
        assert_eq!(resp.endpoint_type, 1);
        assert_eq!(resp.brokers.len(), 1);
        let b = &resp.brokers[0];
        assert_eq!(b.broker_id, BrokerId(1));
        assert_eq!(b.host.as_str(), "127.0.0.1");
        assert_eq!(b.port, i32::from(server.addr.port()));
        assert_eq!(b.rack.as_deref(), Some("r1"));
        assert!(!b.is_fenced);
    }
    let req = DescribeClusterRequest::default()
        .with_include_cluster_authorized_operations(true)
        .with_include_fenced_brokers(true);
    let resp: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 2, &req).await;
    assert_eq!(resp.brokers.len(), 1);
    // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    assert_eq!(resp.cluster_authorized_operations, 0b1_1111_1010_0000);

    let req = DescribeClusterRequest::default().with_endpoint_type(2);
    let resp: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 1, &req).await;
    assert_eq!(resp.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");
    assert!(resp.brokers.is_empty());
    let req = DescribeClusterRequest::default().with_endpoint_type(9);
    let resp: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 1, &req).await;
    assert_eq!(resp.error_code, 115, "UNSUPPORTED_ENDPOINT_TYPE");
}

// ---------------------------------------------------------------------------------------------
// DeleteRecords

#[tokio::test]
async fn delete_records_moves_the_low_watermark() {
    let server = start().await;
    let topic = server.create_topic("log", 2).await;
    let mut c = server.client().await;
    for i in 0..4u8 {
        produce(&mut c, "log", 0, batch(&[&[i]])).await;
    }
    produce(&mut c, "log", 1, batch(&[b"a", b"b"])).await;
    let tp0 = TopicPartition::new(topic.id, 0);
    let tp1 = TopicPartition::new(topic.id, 1);

    let part = |index: i32, offset: i64| {
        DeleteRecordsPartition::default()
            .with_partition_index(index)
            .with_offset(offset)
    };
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(name("log"))
                .with_partitions(vec![part(0, 2), part(1, -1), part(7, 0)]),
            DeleteRecordsTopic::default()
                .with_name(name("missing"))
                .with_partitions(vec![part(0, 0)]),
        ]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req).await;
    let got: Vec<(String, i32, i64, i16)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.low_watermark,
                    p.error_code,
                )
            })
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("log".into(), 0, 2, 0),
            ("log".into(), 1, 2, 0),      // -1: up to the high watermark
            ("log".into(), 7, -1, 3),     // unknown partition
            ("missing".into(), 0, -1, 3), // unknown topic
        ]
    );
    let p0 = server.node.partition(&tp0).expect("partition 0");
    assert_eq!(p0.log_start_offset(), 2);
    assert_eq!(p0.high_watermark(), 4);
    let p1 = server.node.partition(&tp1).expect("partition 1");
    assert_eq!(p1.log_start_offset(), 2);

    // Past the high watermark, or below -1: OFFSET_OUT_OF_RANGE; v0 answers the same.
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("log"))
            .with_partitions(vec![part(0, 5), part(1, -2)])]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 0, &req).await;
    let got: Vec<(i64, i16)> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.low_watermark, p.error_code))
        .collect();
    assert_eq!(got, [(-1, 1), (-1, 1)]);
    assert_eq!(p0.log_start_offset(), 2);

    // Fetching below the new start is out of range; reading from it works.
    let read = server.node.read(tp0, 2, 1 << 20, true).await.expect("read");
    assert_eq!(read.log_start_offset, 2);
    let values = decode_values(&read.records);
    assert_eq!(values.first().map(|(o, _)| *o), Some(2));
    assert!(server.node.read(tp0, 1, 1 << 20, true).await.is_err());
}
