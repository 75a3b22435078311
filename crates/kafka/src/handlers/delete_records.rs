//! DeleteRecords (key 21), versions 0–2: move partitions' log start offsets forward.
//!
//! Each partition's new start goes through its shard's Raft log (`Node::delete_records`), so
//! every replica drops the same batches; the answer is the log start offset afterwards (Kafka's
//! "low watermark"). Offset -1 means the high watermark (delete everything). Per partition:
//! - unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION;
//! - an offset below -1 or above the high watermark: OFFSET_OUT_OF_RANGE;
//! - not the leader here: NOT_LEADER_OR_FOLLOWER (from the one error map);
//! - on any error the low watermark is -1, as Kafka answers.
//!
//! Partitions are handled concurrently; each has its own error. A topic or partition named
//! twice is answered once, with the last offset given (Kafka reads the request into a map).
//! `timeout_ms` is not used (the node's proposal timeout bounds the wait).

use futures::future::join_all;
use indexmap::IndexMap;
use jet_replication::{Error, TopicPartition};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::VersionRange;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DeleteRecords;
/// Versions 0–2, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// The low watermark reported with an error.
const INVALID_LOW_WATERMARK: i64 = -1;

/// Answers a DeleteRecords request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut wanted: IndexMap<TopicName, IndexMap<i32, i64>> = IndexMap::new();
    for t in req.topics {
        let partitions = wanted.entry(t.name).or_default();
        for p in t.partitions {
            partitions.insert(p.partition_index, p.offset);
        }
    }
    let meta = ctx.node.metadata();
    let topics = join_all(wanted.into_iter().map(|(name, partitions)| {
        let topic_id = meta.topic(name.as_str()).map(|t| t.id);
        async move {
            let name_ref = &name;
            let results = join_all(partitions.into_iter().map(|(index, offset)| async move {
                let outcome = match topic_id {
                    Some(id) if index >= 0 => {
                        ctx.node
                            .delete_records(TopicPartition::new(id, index), offset)
                            .await
                    }
                    _ => Err(Error::UnknownTopicOrPartition),
                };
                let (low_watermark, error_code) = match outcome {
                    Ok(low) => (low, 0),
                    Err(e) => {
                        tracing::debug!(topic = %name_ref.as_str(), partition = index, offset, error = %e, "delete records refused");
                        (INVALID_LOW_WATERMARK, error_map::error_code(&e))
                    }
                };
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(index)
                    .with_low_watermark(low_watermark)
                    .with_error_code(error_code)
            }))
            .await;
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(results)
        }
    }))
    .await;
    DeleteRecordsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
}
