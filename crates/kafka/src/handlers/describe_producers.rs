//! DescribeProducers (key 61): the idempotent producers each partition remembers, version 0.
//!
//! The state comes from the partition's producer records (written with every idempotent append,
//! so it is what the apply path checks against). Jet has no transactions, so coordinator epoch
//! and transaction start offset are always -1.

use jet_replication::TopicPartition;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, ProducerId, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DescribeProducers;
/// Version 0, the only one.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

/// Answers a DescribeProducers request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let meta = ctx.node.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = meta.topic(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partition_indexes.len());
        for p in t.partition_indexes {
            let part = PartitionResponse::default().with_partition_index(p);
            let Some(topic) = topic else {
                partitions
                    .push(part.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let tp = TopicPartition::new(topic.id, p);
            match ctx.node.producers(tp).await {
                Ok(producers) => {
                    let active = producers
                        .into_iter()
                        .map(|(pid, e)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(pid))
                                .with_producer_epoch(i32::from(e.epoch))
                                .with_last_sequence(e.last_sequence())
                                .with_last_timestamp(e.last_timestamp_ms)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(-1)
                        })
                        .collect();
                    partitions.push(part.with_active_producers(active));
                }
                Err(e) => partitions.push(
                    part.with_error_code(error_map::error_code(&e))
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                ),
            }
        }
        topics.push(
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
