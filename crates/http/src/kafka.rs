//! [`Kafka`]: the in-process Kafka client of the HTTP layer.
//!
//! Each method builds a `kafka-protocol` request and runs it through
//! `jet_kafka::handlers::call`, the dispatch Kafka clients' requests go through: REST produce
//! and consume get the same validation, limits, error codes and metrics as a Kafka client, and
//! once requests are routed to leaders and coordinators across a cluster, so are these. Nothing
//! here touches partitions or groups directly.
//!
//! Versions are chosen per API (the newest that still names topics by name, since REST paths
//! carry names) and clamped to what the registry accepts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use jet_kafka::handlers::{self, Request, Response};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::HttpError;

/// The client id of every in-process request (shown by DescribeGroups for REST consumers).
pub const CLIENT_ID: &str = "jet-http";

/// Where in-process requests come from when no HTTP client address is at hand.
const LOCAL_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Kafka's "latest" and "earliest" ListOffsets timestamps.
pub const LATEST: i64 = -1;
/// See [`LATEST`].
pub const EARLIEST: i64 = -2;

/// Partitions by topic: `(topic, partitions)`, as the consumer protocol carries them.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// Each member's assignment: `(member id, partitions by topic)`.
pub type MemberAssignments = Vec<(String, TopicPartitions)>;

/// One partition's answer to a fetch.
#[derive(Debug)]
pub struct Fetched {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Kafka error code (0: none).
    pub error_code: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Record batches as stored.
    pub records: Bytes,
}

/// A committed offset as OffsetFetch reports it (-1: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset, -1 when nothing is committed.
    pub offset: i64,
    /// The metadata committed with it.
    pub metadata: String,
}

/// The in-process Kafka client.
pub struct Kafka {
    server: Arc<jet_kafka::Server>,
    correlation: AtomicI32,
}

macro_rules! expect {
    ($resp:expr, $variant:ident) => {
        match $resp {
            Response::$variant(r) => Ok(r),
            other => Err(HttpError::Internal(format!(
                "expected a {} response, got {other:?}",
                stringify!($variant)
            ))),
        }
    };
}

impl Kafka {
    /// A client of `server`'s handlers.
    pub fn new(server: Arc<jet_kafka::Server>) -> Kafka {
        Kafka {
            server,
            correlation: AtomicI32::new(0),
        }
    }

    /// Runs one request through the Kafka dispatch at `want` (clamped to the registry's range).
    async fn call(&self, api: ApiKey, want: i16, request: Request) -> Result<Response, HttpError> {
        let range = handlers::versions(api)
            .ok_or_else(|| HttpError::Internal(format!("{api:?} is not served")))?;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(want.clamp(range.min, range.max))
            .with_correlation_id(self.correlation.fetch_add(1, Ordering::Relaxed))
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let ctx = self.server.context(LOCAL_PEER);
        handlers::call(&ctx, &header, request)
            .await
            .ok_or_else(|| HttpError::Internal(format!("{api:?} sent no response")))
    }

    /// Metadata of `topics` (all topics when `None`); never creates a topic.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<m::MetadataResponse, HttpError> {
        let req = m::MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        m::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(name(t)))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        expect!(
            self.call(ApiKey::Metadata, 12, Request::Metadata(req))
                .await?,
            Metadata
        )
    }

    /// Metadata of one topic; [`HttpError::TopicNotFound`] when it does not exist.
    pub async fn topic(
        &self,
        topic: &str,
    ) -> Result<m::metadata_response::MetadataResponseTopic, HttpError> {
        let resp = self.metadata(Some(&[topic.to_string()])).await?;
        let t = resp
            .topics
            .into_iter()
            .next()
            .ok_or_else(|| HttpError::TopicNotFound(topic.to_string()))?;
        match t.error_code {
            0 => Ok(t),
            3 => Err(HttpError::TopicNotFound(topic.to_string())),
            code => Err(kafka_error(code, format!("metadata of '{topic}'"))),
        }
    }

    /// The partition count of `topic`, checking that `partition` (if given) exists.
    pub async fn partitions(
        &self,
        topic: &str,
        partition: Option<i32>,
    ) -> Result<usize, HttpError> {
        let count = self.topic(topic).await?.partitions.len();
        if let Some(p) = partition {
            if p < 0 || p as usize >= count {
                return Err(HttpError::PartitionNotFound {
                    topic: topic.to_string(),
                    partition: p,
                });
            }
        }
        Ok(count)
    }

    /// Appends one batch per partition of `topic` with acks=all; per partition, the base offset
    /// or the Kafka error code and message.
    pub async fn produce(
        &self,
        topic: &str,
        batches: Vec<(i32, Bytes)>,
        timeout_ms: i32,
    ) -> Result<Vec<(i32, Result<i64, (i16, String)>)>, HttpError> {
        let partitions = batches
            .into_iter()
            .map(|(p, b)| {
                m::produce_request::PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(b))
            })
            .collect();
        let req = m::ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![m::produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(partitions)]);
        let resp = expect!(
            self.call(ApiKey::Produce, 12, Request::Produce(req))
                .await?,
            Produce
        )?;
        Ok(resp
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .map(|p| {
                let result = match p.error_code {
                    0 => Ok(p.base_offset),
                    code => Err((
                        code,
                        p.error_message.map(|m| m.to_string()).unwrap_or_default(),
                    )),
                };
                (p.index, result)
            })
            .collect())
    }

    /// Fetches from each `(topic, partition, offset)`, waiting up to `max_wait_ms` for at least
    /// one byte.
    pub async fn fetch(
        &self,
        wanted: &[(String, i32, i64)],
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<Vec<Fetched>, HttpError> {
        let mut topics: Vec<m::fetch_request::FetchTopic> = Vec::new();
        for (topic, partition, offset) in wanted {
            let p = m::fetch_request::FetchPartition::default()
                .with_partition(*partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(max_bytes);
            match topics.iter_mut().find(|t| t.topic.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    m::fetch_request::FetchTopic::default()
                        .with_topic(name(topic))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let req = m::FetchRequest::default()
            .with_replica_id(m::BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(topics);
        let resp = expect!(
            self.call(ApiKey::Fetch, 12, Request::Fetch(req)).await?,
            Fetch
        )?;
        if resp.error_code != 0 {
            return Err(kafka_error(resp.error_code, "fetch"));
        }
        Ok(resp
            .responses
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.to_string();
                t.partitions.into_iter().map(move |p| Fetched {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    records: p.records.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The offset at `timestamp` ([`LATEST`], [`EARLIEST`]) of each `(topic, partition)`:
    /// `Ok(offset)` or the Kafka error code.
    pub async fn list_offsets(
        &self,
        wanted: &[(String, i32)],
        timestamp: i64,
    ) -> Result<Vec<(String, i32, Result<i64, i16>)>, HttpError> {
        let mut topics: Vec<m::list_offsets_request::ListOffsetsTopic> = Vec::new();
        for (topic, partition) in wanted {
            let p = m::list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(*partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp);
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    m::list_offsets_request::ListOffsetsTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let req = m::ListOffsetsRequest::default()
            .with_replica_id(m::BrokerId(-1))
            .with_topics(topics);
        let resp = expect!(
            self.call(ApiKey::ListOffsets, 9, Request::ListOffsets(req))
                .await?,
            ListOffsets
        )?;
        Ok(resp
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.to_string();
                t.partitions.into_iter().map(move |p| {
                    let r = if p.error_code == 0 {
                        Ok(p.offset)
                    } else {
                        Err(p.error_code)
                    };
                    (topic.clone(), p.partition_index, r)
                })
            })
            .collect())
    }

    /// Earliest and latest offsets of every partition of `topic`, by partition.
    pub async fn watermarks(
        &self,
        topic: &str,
        partitions: usize,
    ) -> Result<Vec<(i64, i64)>, HttpError> {
        let wanted: Vec<(String, i32)> = (0..partitions as i32)
            .map(|p| (topic.to_string(), p))
            .collect();
        let earliest = self.list_offsets(&wanted, EARLIEST).await?;
        let latest = self.list_offsets(&wanted, LATEST).await?;
        let mut out = vec![(-1, -1); partitions];
        for (_, p, r) in earliest {
            if let (Some(slot), Ok(o)) = (out.get_mut(p as usize), r) {
                slot.0 = o;
            }
        }
        for (_, p, r) in latest {
            if let (Some(slot), Ok(o)) = (out.get_mut(p as usize), r) {
                slot.1 = o;
            }
        }
        Ok(out)
    }

    /// Creates a topic (`partitions`/`replication_factor` of -1 take the broker defaults).
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(), HttpError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                m::create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let req = m::CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![m::create_topics_request::CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(configs)]);
        let resp = expect!(
            self.call(ApiKey::CreateTopics, 7, Request::CreateTopics(req))
                .await?,
            CreateTopics
        )?;
        match resp.topics.first() {
            Some(t) if t.error_code != 0 => {
                let message = t
                    .error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                Err(match t.error_code {
                    // TOPIC_ALREADY_EXISTS
                    36 => HttpError::Conflict(format!("topic '{topic}' already exists")),
                    // INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
                    // INVALID_CONFIG, POLICY_VIOLATION: the caller's values.
                    17 | 37 | 38 | 40 | 44 => HttpError::Unprocessable(message),
                    code => kafka_error(code, message),
                })
            }
            Some(_) => Ok(()),
            None => Err(HttpError::Internal("empty CreateTopics response".into())),
        }
    }

    /// The configs of `topic`: `(name, value, is_default)`.
    pub async fn topic_configs(
        &self,
        topic: &str,
    ) -> Result<Vec<(String, Option<String>, bool)>, HttpError> {
        const TOPIC: i8 = 2;
        // ConfigSource DEFAULT_CONFIG: the value was not set on the topic.
        const DEFAULT_CONFIG: i8 = 5;
        let req = m::DescribeConfigsRequest::default().with_resources(vec![
            m::describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_string())),
        ]);
        let resp = expect!(
            self.call(ApiKey::DescribeConfigs, 4, Request::DescribeConfigs(req))
                .await?,
            DescribeConfigs
        )?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| HttpError::Internal("empty DescribeConfigs response".into()))?;
        match result.error_code {
            0 => Ok(result
                .configs
                .into_iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.value.map(|v| v.to_string()),
                        c.config_source == DEFAULT_CONFIG,
                    )
                })
                .collect()),
            3 => Err(HttpError::TopicNotFound(topic.to_string())),
            code => Err(kafka_error(code, format!("configs of '{topic}'"))),
        }
    }

    /// JoinGroup for a consumer subscribed to `topics` with the range assignor.
    pub async fn join_group(
        &self,
        group: &str,
        member_id: &str,
        topics: &[String],
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
    ) -> Result<m::JoinGroupResponse, HttpError> {
        let subscription = m::ConsumerProtocolSubscription::default().with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        );
        let req = m::JoinGroupRequest::default()
            .with_group_id(m::GroupId(StrBytes::from_string(group.to_string())))
            .with_session_timeout_ms(session_timeout_ms)
            .with_rebalance_timeout_ms(rebalance_timeout_ms)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                m::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(versioned(&subscription, 0)?),
            ]);
        expect!(
            self.call(ApiKey::JoinGroup, 9, Request::JoinGroup(req))
                .await?,
            JoinGroup
        )
    }

    /// SyncGroup; the leader passes every member's assignment.
    pub async fn sync_group(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: MemberAssignments,
    ) -> Result<m::SyncGroupResponse, HttpError> {
        let mut encoded = Vec::with_capacity(assignments.len());
        for (member, parts) in assignments {
            let a = m::ConsumerProtocolAssignment::default().with_assigned_partitions(
                parts
                    .into_iter()
                    .map(|(t, ps)| {
                        m::consumer_protocol_assignment::TopicPartition::default()
                            .with_topic(name(&t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
            encoded.push(
                m::sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(versioned(&a, 0)?),
            );
        }
        let req = m::SyncGroupRequest::default()
            .with_group_id(m::GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(encoded);
        expect!(
            self.call(ApiKey::SyncGroup, 5, Request::SyncGroup(req))
                .await?,
            SyncGroup
        )
    }

    /// Heartbeat; the Kafka error code.
    pub async fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<i16, HttpError> {
        let req = m::HeartbeatRequest::default()
            .with_group_id(m::GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        Ok(expect!(
            self.call(ApiKey::Heartbeat, 4, Request::Heartbeat(req))
                .await?,
            Heartbeat
        )?
        .error_code)
    }

    /// LeaveGroup for one member.
    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), HttpError> {
        let req = m::LeaveGroupRequest::default()
            .with_group_id(m::GroupId(StrBytes::from_string(group.to_string())))
            .with_members(vec![m::leave_group_request::MemberIdentity::default()
                .with_member_id(StrBytes::from_string(member_id.to_string()))
                .with_reason(Some(StrBytes::from_static_str(
                    "rest consumer instance deleted",
                )))]);
        let resp = expect!(
            self.call(ApiKey::LeaveGroup, 5, Request::LeaveGroup(req))
                .await?,
            LeaveGroup
        )?;
        match resp.error_code {
            0 => Ok(()),
            code => Err(kafka_error(code, "leave group")),
        }
    }

    /// OffsetCommit of `(topic, partition, offset, metadata)`s; per partition, the Kafka error
    /// code.
    pub async fn commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64, Option<String>)],
    ) -> Result<Vec<(String, i32, i16)>, HttpError> {
        let mut topics: Vec<m::offset_commit_request::OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset, metadata) in offsets {
            let p = m::offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(metadata.clone().map(StrBytes::from_string));
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    m::offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let req = m::OffsetCommitRequest::default()
            .with_group_id(m::GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let resp = expect!(
            self.call(ApiKey::OffsetCommit, 8, Request::OffsetCommit(req))
                .await?,
            OffsetCommit
        )?;
        Ok(resp
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.to_string();
                t.partitions
                    .into_iter()
                    .map(move |p| (topic.clone(), p.partition_index, p.error_code))
            })
            .collect())
    }

    /// The committed offsets of `group`: of the given partitions, or of everything it committed
    /// when `None`.
    pub async fn committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<Committed>, HttpError> {
        let topics = partitions.map(|ps| {
            let mut topics: Vec<m::offset_fetch_request::OffsetFetchRequestTopic> = Vec::new();
            for (topic, partition) in ps {
                match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                    Some(t) => t.partition_indexes.push(*partition),
                    None => topics.push(
                        m::offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name(topic))
                            .with_partition_indexes(vec![*partition]),
                    ),
                }
            }
            topics
        });
        let req = m::OffsetFetchRequest::default()
            .with_group_id(m::GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(topics);
        let resp = expect!(
            self.call(ApiKey::OffsetFetch, 7, Request::OffsetFetch(req))
                .await?,
            OffsetFetch
        )?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                resp.error_code,
                format!("offsets of group '{group}'"),
            ));
        }
        Ok(resp
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.to_string();
                t.partitions.into_iter().map(move |p| Committed {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Every group: `(id, state, protocol type)`.
    pub async fn list_groups(&self) -> Result<Vec<(String, String, String)>, HttpError> {
        let resp = expect!(
            self.call(
                ApiKey::ListGroups,
                4,
                Request::ListGroups(m::ListGroupsRequest::default())
            )
            .await?,
            ListGroups
        )?;
        if resp.error_code != 0 {
            return Err(kafka_error(resp.error_code, "list groups"));
        }
        Ok(resp
            .groups
            .into_iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.group_state.to_string(),
                    g.protocol_type.to_string(),
                )
            })
            .collect())
    }

    /// DescribeGroups of `groups`.
    pub async fn describe_groups(
        &self,
        groups: &[String],
    ) -> Result<Vec<m::describe_groups_response::DescribedGroup>, HttpError> {
        let req = m::DescribeGroupsRequest::default().with_groups(
            groups
                .iter()
                .map(|g| m::GroupId(StrBytes::from_string(g.clone())))
                .collect(),
        );
        Ok(expect!(
            self.call(ApiKey::DescribeGroups, 5, Request::DescribeGroups(req))
                .await?,
            DescribeGroups
        )?
        .groups)
    }

    /// The cluster: id, controller, brokers `(id, host, port, rack)`.
    pub async fn cluster(&self) -> Result<m::DescribeClusterResponse, HttpError> {
        let req = m::DescribeClusterRequest::default();
        expect!(
            self.call(ApiKey::DescribeCluster, 1, Request::DescribeCluster(req))
                .await?,
            DescribeCluster
        )
    }
}

/// A Kafka error code as an HTTP error (an unknown code is still an error).
pub fn kafka_error(code: i16, context: impl Into<String>) -> HttpError {
    let context = context.into();
    HttpError::from_kafka_code(code, context.clone()).unwrap_or(HttpError::Kafka {
        code,
        name: "UNKNOWN".into(),
        message: context,
        retriable: false,
    })
}

fn name(topic: &str) -> m::TopicName {
    m::TopicName(StrBytes::from_string(topic.to_string()))
}

/// The consumer protocol's framing: an int16 version, then the struct at that version.
fn versioned<T: Encodable>(value: &T, version: i16) -> Result<Bytes, HttpError> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    value
        .encode(&mut buf, version)
        .map_err(|e| HttpError::Internal(format!("encoding consumer protocol: {e:#}")))?;
    Ok(buf.freeze())
}

/// Decodes a member's `ConsumerProtocolAssignment` into `(topic, partitions)`; `None` when the
/// bytes are not one (another protocol type, or empty before the first sync).
pub fn decode_assignment(bytes: &[u8]) -> Option<TopicPartitions> {
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut rest = Bytes::copy_from_slice(&bytes[2..]);
    // Newer versions only add fields after the ones read here; decode as the newest we know.
    let a = m::ConsumerProtocolAssignment::decode(&mut rest, version.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.to_string(), tp.partitions))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_round_trip() {
        let a = m::ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            m::consumer_protocol_assignment::TopicPartition::default()
                .with_topic(name("t"))
                .with_partitions(vec![0, 2]),
        ]);
        let bytes = versioned(&a, 0).unwrap();
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![("t".to_string(), vec![0, 2])])
        );
        assert_eq!(decode_assignment(&[]), None);
        assert_eq!(decode_assignment(&[0, 0, 0, 0, 0]), None);
    }
}
