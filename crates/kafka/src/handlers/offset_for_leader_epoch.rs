//! OffsetForLeaderEpoch (key 23), versions 2–4: where a leader epoch ends in a partition.
//!
//! Consumers ask it after a leader change (KIP-320): given the epoch of the last record they
//! consumed, the leader answers the largest epoch at or below it that its log holds and the
//! offset where that epoch ends. A consumer whose position is past that end offset holds records
//! the new leader does not have (log truncation) and resets. Followers ask the same question in
//! Kafka's replication; Jet's replicas follow through Raft and never do.
//!
//! - **Versions.** kafka-protocol decodes 2–4, which is also what Kafka 4 accepts (KIP-896
//!   removed 0–1). v3 adds `replica_id`, v4 is flexible.
//! - **Per partition, in Kafka's order**: an unknown topic or partition is
//!   UNKNOWN_TOPIC_OR_PARTITION; a partition this node does not lead is NOT_LEADER_OR_FOLLOWER
//!   (Jet checks leadership before the epoch, as Fetch and ListOffsets here do: a follower's idea
//!   of the epoch may be stale); `current_leader_epoch` other than -1 is fenced like Fetch
//!   (FENCED_LEADER_EPOCH when older, UNKNOWN_LEADER_EPOCH when newer); then the answer is
//!   Kafka's `LeaderEpochFileCache.endOffsetFor` (`Node::epoch_end_offset`): the current epoch
//!   ends at the high watermark, an older one where the first batch of a newer epoch starts, an
//!   epoch newer than the leader's (or -1) is answered with epoch -1 and offset -1.
//! - **`replica_id`.** Kafka lets a request with the debugging id (-2) be answered by a
//!   follower; Jet's followers are Raft replicas whose published state may lag, so every request
//!   is answered by the leader only.
//! - **Errors.** Partitions that fail carry epoch -1 and offset -1, as Kafka's defaults do.

use futures::future::join_all;
use jet_replication::{PartitionHandle, TopicPartition};
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::fetch::check_leader_epoch;
use super::Ctx;
use crate::error_map;
use crate::metrics::ErrorCode;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::OffsetForLeaderEpoch;
/// Versions 2–4, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 4 };

/// Answers an OffsetForLeaderEpoch request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let meta = ctx.node.metadata();
    let mut lookups = Vec::new();
    let mut shapes = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let resolved = meta.topic(&topic.topic);
        for p in &topic.partitions {
            let target = match resolved {
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(t) => {
                    let tp = TopicPartition::new(t.id, p.partition);
                    // A partition this node holds no replica of: NOT_LEADER_OR_FOLLOWER.
                    ctx.node
                        .partition_here(&tp)
                        .map(|h| (tp, h))
                        .map_err(|e| error_map::response_error(&e))
                }
            };
            lookups.push(lookup(ctx, target, p));
        }
        shapes.push((topic.topic.clone(), topic.partitions.len()));
    }
    let mut answers = join_all(lookups).await.into_iter();
    let topics = shapes
        .into_iter()
        .map(|(name, count)| {
            OffsetForLeaderTopicResult::default()
                .with_topic(name)
                .with_partitions(answers.by_ref().take(count).collect())
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The request metrics count a response under its first partition error, as for ListOffsets.
impl ErrorCode for OffsetForLeaderEpochResponse {
    fn error_code(&self) -> i16 {
        self.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .find(|c| *c != 0)
            .unwrap_or(0)
    }
}

async fn lookup(
    ctx: &Ctx,
    target: Result<(TopicPartition, PartitionHandle), ResponseError>,
    p: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    let response = EpochEndOffset::default().with_partition(p.partition);
    match end_offset(ctx, target, p).await {
        Ok((epoch, end_offset)) => response
            .with_leader_epoch(epoch)
            .with_end_offset(end_offset),
        Err(code) => response.with_error_code(code.code()),
    }
}

async fn end_offset(
    ctx: &Ctx,
    target: Result<(TopicPartition, PartitionHandle), ResponseError>,
    p: &OffsetForLeaderPartition,
) -> Result<(i32, i64), ResponseError> {
    let (tp, handle) = target?;
    if !handle.is_leader() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    check_leader_epoch(p.current_leader_epoch, handle.leader_epoch())?;
    let end = ctx
        .node
        .epoch_end_offset(tp, p.leader_epoch)
        .await
        .map_err(|e| error_map::response_error(&e))?;
    Ok((end.epoch, end.end_offset))
}
