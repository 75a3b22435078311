//! OffsetCommit (key 8), versions 2–9: a group's consumed positions, written through the group
//! coordinator shard's Raft log before the response says they are committed.
//!
//! Partitions of topics (or partition indexes) that do not exist answer
//! UNKNOWN_TOPIC_OR_PARTITION and are not stored, as Kafka filters them; the rest are committed
//! together, with the group's checks (generation, member, fencing) applied to all of them.
//! Consumers that only store offsets here send generation -1 and an empty member id.
//! (kafka-protocol 0.18 lists v10, the topic-id form, but does not decode it.)

use jet_groups::{CommitRequest, Error, OffsetCommit};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::OffsetCommit;
/// Versions 2–9, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

/// Answers an OffsetCommit request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let meta = ctx.node.metadata();
    let mut offsets = Vec::new();
    // Per request partition: Ok(index into `offsets`) or its error.
    let mut slots: Vec<Vec<Result<usize, Error>>> = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let partitions = meta.topic(&topic.name.0).map_or(0, |t| t.partitions.len());
        slots.push(
            topic
                .partitions
                .iter()
                .map(|p| {
                    if p.partition_index < 0 || p.partition_index as usize >= partitions {
                        return Err(Error::UnknownTopicOrPartition);
                    }
                    offsets.push(OffsetCommit {
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    });
                    Ok(offsets.len() - 1)
                })
                .collect(),
        );
    }
    let results = if offsets.is_empty() {
        Vec::new()
    } else {
        ctx.groups
            .commit_offsets(CommitRequest {
                group_id: req.group_id.0.to_string(),
                generation_id: req.generation_id_or_member_epoch,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                retention_time_ms: req.retention_time_ms,
                offsets,
            })
            .await
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
                        Ok(i) => results.get(i).map_or_else(
                            || error_map::group_error(&Error::CoordinatorNotAvailable).code(),
                            error_map::group_error_code,
                        ),
                        Err(e) => error_map::group_error(&e).code(),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
