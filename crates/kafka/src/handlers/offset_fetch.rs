//! OffsetFetch (key 9), versions 1–9: a group's committed offsets.
//!
//! v1–7 ask for one group; v8+ for several at once (each answered with its own error code).
//! A null topic list (v2+) asks for every offset the group has. Partitions without a committed
//! offset report offset -1, leader epoch -1 and metadata "" with no error, as Kafka does. With
//! `require_stable` (v7+), a partition whose commit is still being written answers
//! UNSTABLE_OFFSET_COMMIT, which clients retry.
//!
//! A group-level error (NOT_COORDINATOR, …) is the top-level error code from v2 on; v1 has no
//! such field, so every requested partition carries it instead (Kafka's `getErrorResponse`).
//! (kafka-protocol 0.18 lists v10, the topic-id form, but does not decode it.)

use jet_groups::FetchedOffset;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::OffsetFetch;
/// Versions 1–9, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

/// Answers an OffsetFetch request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let version = header.request_api_version;
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let wanted = g
                    .topics
                    .as_ref()
                    .map(|topics| flatten(topics.iter().map(|t| (&t.name, &t.partition_indexes))));
                let response =
                    OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match ctx
                    .groups
                    .fetch_offsets(&g.group_id.0, wanted.as_deref(), req.require_stable)
                {
                    Ok(fetched) => response.with_topics(
                        by_topic(fetched)
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(topic)))
                                    .with_partitions(
                                        partitions.into_iter().map(partition_v8).collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(e) => response.with_error_code(error_map::group_error(&e).code()),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req
        .topics
        .as_ref()
        .map(|topics| flatten(topics.iter().map(|t| (&t.name, &t.partition_indexes))));
    match ctx
        .groups
        .fetch_offsets(&req.group_id.0, wanted.as_deref(), req.require_stable)
    {
        Ok(fetched) => OffsetFetchResponse::default().with_topics(topics_v1(by_topic(fetched))),
        Err(e) => {
            let code = error_map::group_error(&e).code();
            if version >= 2 {
                return OffsetFetchResponse::default().with_error_code(code);
            }
            let failed = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partition)| FetchedOffset {
                    topic,
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: Some(e.clone()),
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics_v1(by_topic(failed)))
        }
    }
}

fn flatten<'a>(topics: impl Iterator<Item = (&'a TopicName, &'a Vec<i32>)>) -> Vec<(String, i32)> {
    topics
        .flat_map(|(name, partitions)| partitions.iter().map(move |p| (name.0.to_string(), *p)))
        .collect()
}

/// Groups fetched offsets by topic, keeping the order topics first appear in.
fn by_topic(fetched: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for f in fetched {
        match out.iter_mut().find(|(t, _)| *t == f.topic) {
            Some((_, list)) => list.push(f),
            None => out.push((f.topic.clone(), vec![f])),
        }
    }
    out
}

fn topics_v1(topics: Vec<(String, Vec<FetchedOffset>)>) -> Vec<OffsetFetchResponseTopic> {
    topics
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|f| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(f.partition)
                                .with_committed_offset(f.offset)
                                .with_committed_leader_epoch(f.leader_epoch)
                                .with_metadata(Some(StrBytes::from_string(f.metadata)))
                                .with_error_code(
                                    f.error
                                        .as_ref()
                                        .map_or(0, |e| error_map::group_error(e).code()),
                                )
                        })
                        .collect(),
                )
        })
        .collect()
}

fn partition_v8(f: FetchedOffset) -> OffsetFetchResponsePartitions {
    OffsetFetchResponsePartitions::default()
        .with_partition_index(f.partition)
        .with_committed_offset(f.offset)
        .with_committed_leader_epoch(f.leader_epoch)
        .with_metadata(Some(StrBytes::from_string(f.metadata)))
        .with_error_code(
            f.error
                .as_ref()
                .map_or(0, |e| error_map::group_error(e).code()),
        )
}
