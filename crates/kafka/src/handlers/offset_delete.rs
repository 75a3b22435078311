//! OffsetDelete (key 47), version 0: removes a group's committed offsets of some partitions.
//!
//! Refused with GROUP_ID_NOT_FOUND for an unknown group and NON_EMPTY_GROUP for a non-consumer
//! group with members; in a consumer group with members, partitions of topics the members
//! subscribe to answer GROUP_SUBSCRIBED_TO_TOPIC. Unknown topics answer
//! UNKNOWN_TOPIC_OR_PARTITION, as Kafka checks them against the metadata first.

use jet_groups::Error;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::OffsetDelete;
/// Version 0, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

/// Answers an OffsetDelete request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let meta = ctx.node.metadata();
    let mut wanted = Vec::new();
    let mut slots: Vec<Vec<Result<usize, Error>>> = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let exists = meta.topic(&topic.name.0).is_some();
        slots.push(
            topic
                .partitions
                .iter()
                .map(|p| {
                    if !exists {
                        return Err(Error::UnknownTopicOrPartition);
                    }
                    wanted.push((topic.name.0.to_string(), p.partition_index));
                    Ok(wanted.len() - 1)
                })
                .collect(),
        );
    }
    let results = match ctx.groups.delete_offsets(&req.group_id.0, &wanted).await {
        Ok(results) => results,
        Err(e) => {
            return OffsetDeleteResponse::default()
                .with_error_code(error_map::group_error(&e).code())
        }
    };
    let topics = req
        .topics
        .into_iter()
        .zip(slots)
        .map(|(topic, slots)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(slots)
                .map(|(p, slot)| {
                    let code = match slot {
                        Ok(i) => results.get(i).map_or(0, error_map::group_error_code),
                        Err(e) => error_map::group_error(&e).code(),
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
