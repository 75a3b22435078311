//! Produce (key 0): append record batches, versions 3–13.
//!
//! - **Versions.** kafka-protocol decodes 3–13, and Kafka 4 accepts no less (KIP-896 removed
//!   0–2). Kafka 4 still *lists* Produce from version 0 in ApiVersions (its
//!   `PRODUCE_API_VERSIONS_RESPONSE_MIN_VERSION`, KAFKA-18659) because librdkafka before 2.11.1
//!   turns compression off when the minimum is above 0; a request at 0–2 is then refused by the
//!   request parser like any unsupported version, which closes the connection. Jet does the same:
//!   [`VERSIONS`] is what is accepted, [`ADVERTISED_MIN_VERSION`] what is listed.
//! - **Topics.** v13 names topics by id (UNKNOWN_TOPIC_ID when unknown), earlier versions by name
//!   (UNKNOWN_TOPIC_OR_PARTITION). Produce never creates topics, as in Kafka.
//! - **Validation.** Every batch is checked (`jet_protocol::batch::validate_all`: magic, sizes,
//!   CRC-32C) here; `Node::append_start` measures it against the topic's `max.message.bytes`.
//!   Errors are per partition: the rest of the request is still appended. A partition's records
//!   must be one batch (Kafka's LogValidator, magic 2): more is INVALID_RECORD, and none of them
//!   is appended. A topic with `cleanup.policy` compact refuses records without a key:
//!   INVALID_RECORD with KIP-467's per-record errors (v8+), and nothing of the batch is appended.
//!   Only for such topics are records decoded (and decompressed) here.
//! - **Records stay bytes.** The `records` of a partition is a slice of the request frame and goes
//!   to `Node::append` as it is; nothing here decodes a record.
//! - **acks.** 0 sends no response (after the append, so the connection's in-flight limit still
//!   bounds it). 1 and -1 both answer after the append is committed by a majority of the shard's
//!   voters and applied: offsets are assigned at apply, so there is no offset to answer with
//!   before (acks=1 is as strong as acks=all in Jet). Other values answer INVALID_REQUIRED_ACKS,
//!   as Kafka does.
//! - **min.insync.replicas.** With acks=-1, a partition whose shard has fewer in-sync replicas
//!   than the topic's `min.insync.replicas` answers NOT_ENOUGH_REPLICAS and appends nothing, as
//!   Kafka does.
//! - **Leader hints (KIP-951).** From v10 a partition answered NOT_LEADER_OR_FOLLOWER carries
//!   `current_leader`, the leader and epoch this node knows for the partition's shard (-1/-1 when
//!   it knows none), and the response's `node_endpoints` says where each named leader is
//!   reached, so the producer moves without a Metadata round trip.
//! - **Order.** Two phases: [`start`] validates and hands every append to its shard
//!   (`Node::append_start`), and the connection runs it to completion before it reads the next
//!   request, so pipelined Produce requests on one connection append in the order they were
//!   sent; [`Pending::finish`] then waits for the commits concurrently with other requests.

use futures::future::join_all;
use jet_protocol::batch;
use jet_replication::topic_config;
use jet_replication::AppendTicket;
use jet_replication::{AppendOutcome, Error, TopicPartition};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::fetch::current_leader;
use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::Produce;
/// Versions accepted: 3–13.
pub const VERSIONS: VersionRange = VersionRange { min: 3, max: 13 };
/// The minimum version listed in ApiVersions (see the module docs: librdkafka needs 0).
pub const ADVERTISED_MIN_VERSION: i16 = 0;

/// Where one partition of the request stands before its append.
enum Slot {
    /// Refused before appending.
    Failed(ResponseError, String),
    /// Refused for some of its records (KIP-467): INVALID_RECORD with their batch indexes.
    Rejected(Vec<(i32, String)>),
    /// Appending; its result is at this index of the append results.
    Appending(usize),
}

/// One partition of the request: its index, the partition when the topic is known (for leader
/// hints), and its slot.
type PartitionSlot = (i32, Option<TopicPartition>, Slot);

/// One topic of the request: name, id, and each partition's slot.
type TopicSlots = (TopicName, Uuid, Vec<PartitionSlot>);

/// A Produce request whose appends were all handed to their shards (or refused).
pub struct Pending {
    version: i16,
    acks: i16,
    topics: Vec<TopicSlots>,
    tickets: Vec<AppendTicket>,
    /// Topic name and batch bytes of each ticket, counted in the metrics once committed.
    sizes: Vec<(String, usize)>,
    /// The connection's context, kept from v10 on to name the leader of partitions this node
    /// turns away (KIP-951); older versions have nowhere to put it.
    hints: Option<Ctx>,
}

/// Answers a Produce request; `None` for acks=0.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: ProduceRequest,
) -> Option<ProduceResponse> {
    start(ctx, header, req).await.finish().await
}

/// Phase one, in request order: resolve, validate, and hand every append to its shard.
pub async fn start(ctx: &Ctx, header: &RequestHeader, req: ProduceRequest) -> Pending {
    let version = header.request_api_version;
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let meta = ctx.node.metadata();

    let mut tickets = Vec::new();
    let mut sizes = Vec::new();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let (resolved, unknown) = if version >= 13 {
            (
                meta.topic_by_id(&topic.topic_id),
                ResponseError::UnknownTopicId,
            )
        } else {
            (
                meta.topic(&topic.name),
                ResponseError::UnknownTopicOrPartition,
            )
        };
        let mut slots = Vec::with_capacity(topic.partition_data.len());
        for partition in topic.partition_data {
            let tp = resolved.map(|t| TopicPartition::new(t.id, partition.index));
            let slot = match resolved {
                _ if !valid_acks => Slot::Failed(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ),
                None => Slot::Failed(unknown, "unknown topic".into()),
                Some(t)
                    if partition.index < 0 || partition.index as usize >= t.partitions.len() =>
                {
                    Slot::Failed(
                        ResponseError::UnknownTopicOrPartition,
                        "unknown partition".into(),
                    )
                }
                Some(t) => {
                    let tp = TopicPartition::new(t.id, partition.index);
                    let records = partition.records.unwrap_or_default();
                    let bytes = records.len();
                    let compacted = topic_config::cleanup_policy_has(&t.configs, "compact");
                    let min_isr = topic_config::effective_i64(&t.configs, "min.insync.replicas");
                    let shard = t.partitions[partition.index as usize].shard;
                    let in_sync = ctx.node.shard_isr(shard).len() as i64;
                    match check_batches(&records).and_then(|()| {
                        if acks == -1 && in_sync < min_isr {
                            return Err((
                                ResponseError::NotEnoughReplicas,
                                format!(
                                    "{in_sync} in-sync replicas, fewer than min.insync.replicas {min_isr}"
                                ),
                            ));
                        }
                        if compacted {
                            check_keys(&records, &t.name, partition.index)
                        } else {
                            Ok(Vec::new())
                        }
                    }) {
                        Err((code, message)) => Slot::Failed(code, message),
                        Ok(rejected) if !rejected.is_empty() => Slot::Rejected(rejected),
                        Ok(_) => match ctx.node.append_start(tp, records).await {
                            Ok(ticket) => {
                                tickets.push(ticket);
                                sizes.push((t.name.clone(), bytes));
                                Slot::Appending(tickets.len() - 1)
                            }
                            Err(e) => Slot::Failed(error_map::response_error(&e), e.to_string()),
                        },
                    }
                }
            };
            slots.push((partition.index, tp, slot));
        }
        topics.push((topic.name, topic.topic_id, slots));
    }
    Pending {
        version,
        acks,
        topics,
        tickets,
        sizes,
        hints: (version >= 10).then(|| ctx.clone()),
    }
}

impl Pending {
    /// The request's acks.
    pub fn acks(&self) -> i16 {
        self.acks
    }

    /// Phase two: waits for every append to commit (concurrently) and builds the response;
    /// `None` for acks=0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let Pending {
            version,
            acks,
            topics,
            tickets,
            sizes,
            hints,
        } = self;
        let results = join_all(tickets.into_iter().map(AppendTicket::wait)).await;
        for (result, (topic, bytes)) in results.iter().zip(&sizes) {
            if result.is_ok() {
                crate::metrics::record_produced(topic, *bytes);
            }
        }
        if acks == 0 {
            return None;
        }
        Some(response(version, topics, &results, hints.as_ref()))
    }
}

fn response(
    version: i16,
    topics: Vec<TopicSlots>,
    results: &[Result<AppendOutcome, Error>],
    hints: Option<&Ctx>,
) -> ProduceResponse {
    let mut endpoints = Vec::new();
    let responses = topics
        .into_iter()
        .map(|(name, topic_id, slots)| {
            let partitions = slots
                .into_iter()
                .map(|(index, tp, slot)| {
                    let partition = partition_response(version, index, slot, results);
                    match (hints, tp) {
                        (Some(ctx), Some(tp)) => {
                            with_leader_hint(ctx, tp, partition, &mut endpoints)
                        }
                        _ => partition,
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(if version >= 13 {
                    Default::default()
                } else {
                    name
                })
                .with_topic_id(if version >= 13 { topic_id } else { Uuid::nil() })
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(endpoints)
}

/// KIP-951: names the leader of a partition answered NOT_LEADER_OR_FOLLOWER and adds its
/// address to `endpoints` (once per leader). Only called from v10 on: kafka-protocol refuses to
/// encode either field before.
fn with_leader_hint(
    ctx: &Ctx,
    tp: TopicPartition,
    partition: PartitionProduceResponse,
    endpoints: &mut Vec<NodeEndpoint>,
) -> PartitionProduceResponse {
    if partition.error_code != ResponseError::NotLeaderOrFollower.code() {
        return partition;
    }
    // The partition may be gone (deleted meanwhile), or its shard between leaders: the default
    // -1/-1, which clients read as "ask Metadata".
    let Some((leader, epoch)) = ctx
        .node
        .partition(&tp)
        .and_then(|h| current_leader(ctx, &h))
    else {
        return partition;
    };
    let leader_id = BrokerId(leader as i32);
    if !endpoints.iter().any(|e| e.node_id == leader_id) {
        if let Some(b) = ctx.broker_endpoint(leader) {
            endpoints.push(
                NodeEndpoint::default()
                    .with_node_id(leader_id)
                    .with_host(StrBytes::from_string(b.host))
                    .with_port(b.port)
                    .with_rack(b.rack.map(StrBytes::from_string)),
            );
        }
    }
    partition.with_current_leader(
        LeaderIdAndEpoch::default()
            .with_leader_id(leader_id)
            .with_leader_epoch(epoch),
    )
}

/// One partition's answer from its slot and, when it was appended, its append result.
fn partition_response(
    version: i16,
    index: i32,
    slot: Slot,
    results: &[Result<AppendOutcome, Error>],
) -> PartitionProduceResponse {
    match slot {
        Slot::Failed(code, message) => failed(version, index, code, message, -1),
        Slot::Rejected(records) => rejected(version, index, records),
        Slot::Appending(i) => match &results[i] {
            Ok(outcome) => appended(index, outcome),
            Err(e) => {
                let log_start = match e {
                    Error::OffsetOutOfRange {
                        log_start_offset, ..
                    } => *log_start_offset,
                    _ => -1,
                };
                failed(
                    version,
                    index,
                    error_map::response_error(e),
                    e.to_string(),
                    log_start,
                )
            }
        },
    }
}

/// Validates the batches of one partition (magic, sizes, CRC-32C). The size limit
/// (`max.message.bytes`) is the node's to enforce: `Node::append_start` refuses oversize batches.
fn check_batches(records: &[u8]) -> Result<(), (ResponseError, String)> {
    let headers =
        batch::validate_all(records).map_err(|e| (error_map::response_error(&e), e.to_string()))?;
    if headers.len() > 1 {
        // Kafka's LogValidator: from magic 2 on, a partition's records are one batch; more is
        // INVALID_RECORD and nothing of the partition is appended.
        return Err((
            ResponseError::InvalidRecord,
            format!(
                "Compressed outer record has more than one batch ({} batches)",
                headers.len()
            ),
        ));
    }
    Ok(())
}

/// A compacted topic refuses records without a key, as Kafka's LogValidator does: the records'
/// positions and why (KIP-467's record errors); nothing of the batch is appended.
fn check_keys(
    records: &[u8],
    topic: &str,
    partition: i32,
) -> Result<Vec<(i32, String)>, (ResponseError, String)> {
    let keyless = jet_protocol::compact::records_without_key(records)
        .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
    Ok(keyless
        .into_iter()
        .map(|i| {
            (
                i,
                format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                ),
            )
        })
        .collect())
}

fn rejected(version: i16, index: i32, records: Vec<(i32, String)>) -> PartitionProduceResponse {
    let message = format!(
        "One or more records have been rejected due to {} record errors in total",
        records.len()
    );
    let response = failed(version, index, ResponseError::InvalidRecord, message, -1);
    if version < 8 {
        // Record errors arrived with v8 (KIP-467); earlier versions get the code and message.
        return response;
    }
    response.with_record_errors(
        records
            .into_iter()
            .map(|(i, m)| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(i)
                    .with_batch_index_error_message(Some(StrBytes::from_string(m)))
            })
            .collect(),
    )
}

fn appended(index: i32, outcome: &AppendOutcome) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(outcome.base_offset)
        .with_log_append_time_ms(outcome.log_append_time_ms)
        .with_log_start_offset(outcome.log_start_offset)
}

fn failed(
    version: i16,
    index: i32,
    error: ResponseError,
    message: String,
    log_start_offset: i64,
) -> PartitionProduceResponse {
    // Produce v3 predates KAFKA_STORAGE_ERROR ("version 4 ... the requester must be prepared to
    // handle KAFKA_STORAGE_ERROR"); older clients get the retriable NOT_LEADER_OR_FOLLOWER.
    let error = if version < 4 && error == ResponseError::KafkaStorageError {
        ResponseError::NotLeaderOrFollower
    } else {
        error
    };
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(log_start_offset)
        .with_error_message(Some(StrBytes::from_string(message)))
}
