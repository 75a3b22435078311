//! Metadata (key 3): brokers, topics, partitions and their leaders, versions 0–13.
//!
//! - Brokers: this node at [`Ctx::advertised`], and every other live node at the client address
//!   it publishes in gossip. The controller is the metadata shard's leader.
//! - Topics: all of them for a null list (and, in v0, for an empty one); otherwise the named
//!   ones, or — v10+ — the ones named by id (unknown ids answer UNKNOWN_TOPIC_ID).
//! - Auto-creation: an unknown topic named in a request is created with the server's default
//!   partitions and replication factor when the server allows it and the request does
//!   (`allow_auto_topic_creation`, v4+; always asked for before v4, as Kafka reads it). Two
//!   clients racing to create the same topic both succeed: TopicAlreadyExists is success here.
//!   Creation waits for the metadata shard, so the new topic is described in full in this
//!   response rather than with Kafka's LEADER_NOT_AVAILABLE-then-retry.
//! - Partitions: the leader is the leader of the partition's shard, with the shard's term as
//!   leader epoch; replicas are the shard's voters; ISR the voters in sync with the leader
//!   ([`jet_replication::Node::shard_isr`]). A partition whose shard has no known leader (an
//!   election in progress), or whose leader's address is not known yet, answers
//!   LEADER_NOT_AVAILABLE, which clients retry.

use futures::future::join_all;
use jet_replication::{CreateTopic, Error, TopicMeta};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::Metadata;
/// Versions 0–13, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 13 };

/// Topic operations a client may perform, as Kafka reports them without an authorizer: READ,
/// WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS (bit n = operation n).
const TOPIC_OPERATIONS: i32 = bits(&[3, 4, 5, 6, 7, 8, 10, 11]);
/// Cluster operations: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE.
const CLUSTER_OPERATIONS: i32 = bits(&[5, 7, 8, 9, 10, 11, 12]);

const fn bits(ops: &[u32]) -> i32 {
    let mut v = 0;
    let mut i = 0;
    while i < ops.len() {
        v |= 1 << ops[i];
        i += 1;
    }
    v
}

/// Answers a Metadata request.
pub async fn handle(ctx: &Ctx, header: &RequestHeader, req: MetadataRequest) -> MetadataResponse {
    let version = header.request_api_version;
    let brokers = ctx
        .live_brokers()
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    let controller = ctx.node.controller_id().map_or(-1, |c| c as i32);

    let include_topic_operations = version >= 8 && req.include_topic_authorized_operations;
    // v0 has no null list: an empty one means every topic.
    let requested = match req.topics {
        Some(topics) if version == 0 && topics.is_empty() => None,
        other => other,
    };
    let topics = match requested {
        None => {
            let meta = ctx.node.metadata();
            meta.topics
                .values()
                .map(|t| describe_topic(ctx, t, include_topic_operations))
                .collect()
        }
        Some(requested) => {
            let allow_auto_create =
                ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
            if allow_auto_create {
                auto_create(ctx, &requested).await;
            }
            let meta = ctx.node.metadata();
            requested
                .iter()
                .map(|r| match &r.name {
                    Some(name) => match meta.topic(name) {
                        Some(t) => describe_topic(ctx, t, include_topic_operations),
                        None => unknown_topic(
                            Some(name.clone()),
                            Uuid::nil(),
                            &auto_error(ctx, name, allow_auto_create),
                        ),
                    },
                    None => match meta.topic_by_id(&r.topic_id) {
                        Some(t) => describe_topic(ctx, t, include_topic_operations),
                        None => unknown_topic(None, r.topic_id, &ResponseError::UnknownTopicId),
                    },
                })
                .collect()
        }
    };

    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(ctx.config.cluster_id.clone())))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        // Only v8–v10 carry cluster operations; kafka-protocol refuses a value elsewhere.
        .with_cluster_authorized_operations(
            if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
                CLUSTER_OPERATIONS
            } else {
                i32::MIN
            },
        )
}

/// Creates every named topic that does not exist yet, concurrently. Failures are not returned:
/// the topic is simply still missing afterwards, and [`auto_error`] says why.
async fn auto_create(ctx: &Ctx, requested: &[MetadataRequestTopic]) {
    let meta = ctx.node.metadata();
    let missing: Vec<&TopicName> = requested
        .iter()
        .filter_map(|r| r.name.as_ref())
        .filter(|name| meta.topic(name).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let creations = missing.iter().map(|name| {
        let create = CreateTopic {
            name: name.to_string(),
            partitions: ctx.config.default_partitions,
            replication_factor: ctx.config.default_replication_factor,
            configs: Default::default(),
            validate_only: false,
        };
        async move {
            match ctx.node.create_topic(create).await {
                // Another client created it first: just as good.
                Ok(_) | Err(Error::TopicAlreadyExists(_)) => {}
                Err(e) => tracing::debug!(topic = %name.as_str(), error = %e, "auto-creating topic failed"),
            }
        }
    });
    join_all(creations).await;
}

/// Why a named topic is missing after auto-creation had its chance.
fn auto_error(ctx: &Ctx, name: &str, allow_auto_create: bool) -> ResponseError {
    if !allow_auto_create {
        return ResponseError::UnknownTopicOrPartition;
    }
    // The usual reason creation failed is the name itself; anything else (a replication factor
    // the cluster cannot place, a timeout) reads as the topic not being there yet.
    match jet_replication::metadata::validate_topic_name(name) {
        Err(e) => error_map::response_error(&e),
        Ok(()) if ctx.config.default_replication_factor > 1 => {
            ResponseError::InvalidReplicationFactor
        }
        Ok(()) => ResponseError::UnknownTopicOrPartition,
    }
}

fn unknown_topic(
    name: Option<TopicName>,
    id: Uuid,
    error: &ResponseError,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name)
        .with_topic_id(id)
}

fn describe_topic(ctx: &Ctx, topic: &TopicMeta, include_operations: bool) -> MetadataResponseTopic {
    let ids = |nodes: Vec<u64>| nodes.into_iter().map(|n| BrokerId(n as i32)).collect();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, pm)| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_replica_nodes(ids(ctx.node.shard_replicas(pm.shard)))
                .with_isr_nodes(ids(ctx.node.shard_isr(pm.shard)));
            match ctx.node.shard_leader(pm.shard) {
                Some((leader, epoch)) if ctx.broker_endpoint(leader).is_some() => partition
                    .with_leader_id(BrokerId(leader as i32))
                    .with_leader_epoch(epoch),
                _ => partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(ctx.node.leader_epoch(pm.shard)),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(if include_operations {
            TOPIC_OPERATIONS
        } else {
            i32::MIN
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_bits_match_kafka() {
        // What Kafka 3.x reports for a topic and the cluster without an authorizer.
        assert_eq!(TOPIC_OPERATIONS, 3576);
        assert_eq!(CLUSTER_OPERATIONS, 8096);
    }
}
