//! The null broker's request handlers, one function per Kafka API, and [`APIS`]: the one table
//! of what it answers, from which the ApiVersions response is built.
//!
//! Every handler decodes its body with `kafka-protocol`, touches [`State`] under the lock without
//! awaiting, and encodes its response into the connection's output buffer. Fetch is the only one
//! that may wait: it returns [`Reply::Wait`] and the connection finishes it with
//! [`finish_fetch`] once data arrives or the wait expires.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use uuid::Uuid;

use super::state::{AppendError, State};
use super::Shared;

/// The APIs the null broker answers, with the versions it accepts: the only source of the
/// ApiVersions response. Consumer-group APIs are absent on purpose: the ceiling uses assign.
pub(crate) const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
];

/// The only node id there is.
const NODE_ID: i32 = 0;
/// Partitions of a topic created by Metadata auto-creation (Kafka's `num.partitions` default).
const AUTO_CREATE_PARTITIONS: usize = 1;
/// Upper bound on partitions per topic (CreateTopics asking for more gets INVALID_PARTITIONS).
const PARTITIONS_MAX: i32 = 100_000;

/// What the connection does after a handler.
pub(crate) enum Reply {
    /// The response (or none, for acks=0) is in the output buffer.
    Done,
    /// A fetch that found less than `min_bytes`: finish it with [`finish_fetch`].
    Wait(Box<PendingFetch>),
}

/// A fetch waiting for data.
pub(crate) struct PendingFetch {
    correlation_id: i32,
    version: i16,
    request: FetchRequest,
    started: Instant,
}

fn supported(api: ApiKey, version: i16) -> bool {
    APIS.iter()
        .any(|&(key, min, max)| key == api && (min..=max).contains(&version))
}

/// Decodes one request frame, handles it, and appends its response to `out`.
pub(crate) fn handle(
    mut frame: Bytes,
    shared: &Shared,
    out: &mut BytesMut,
) -> anyhow::Result<Reply> {
    if frame.len() < 8 {
        bail!("request of {} bytes is shorter than a header", frame.len());
    }
    let api_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api =
        ApiKey::try_from(api_raw).map_err(|_| anyhow::anyhow!("unknown api key {api_raw}"))?;
    if api == ApiKey::ApiVersions && !supported(api, version) {
        // KIP-511: a client newer than the broker gets a v0 response with UNSUPPORTED_VERSION and
        // the versions it may retry with. The correlation id sits at the same place in every
        // request header version, so the header need not be decodable at this version.
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let body = api_versions_body(ResponseError::UnsupportedVersion.code());
        write_response(out, api, 0, correlation_id, &body)?;
        return Ok(Reply::Done);
    }
    if !supported(api, version) {
        // The client was told what we accept; a request outside it is a client bug. Kafka closes
        // the connection in that case, and so do we.
        bail!("{api:?} v{version} is not supported");
    }
    let header = decode_request_header_from_buffer(&mut frame).context("request header")?;
    match api {
        ApiKey::ApiVersions => api_versions(&header, out),
        ApiKey::Metadata => metadata(&header, frame, shared, out),
        ApiKey::CreateTopics => create_topics(&header, frame, shared, out),
        ApiKey::Produce => produce(&header, frame, shared, out),
        ApiKey::ListOffsets => list_offsets(&header, frame, shared, out),
        ApiKey::Fetch => fetch(&header, frame, shared, out),
        other => bail!("{other:?} is in the registry but has no handler"),
    }
}

/// Appends one response frame: size, response header (at the version the API requires), body.
fn write_response<R: Encodable>(
    out: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> anyhow::Result<()> {
    let start = out.len();
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(out, api.response_header_version(version))?;
    body.encode(out, version)?;
    let size = i32::try_from(out.len() - start - 4).context("response too large")?;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    let keys = APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(keys)
}

fn api_versions(header: &RequestHeader, out: &mut BytesMut) -> anyhow::Result<Reply> {
    // The body (client software name and version) is informational; it is not decoded.
    let body = api_versions_body(0);
    write_response(
        out,
        ApiKey::ApiVersions,
        header.request_api_version,
        header.correlation_id,
        &body,
    )?;
    Ok(Reply::Done)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn metadata(
    header: &RequestHeader,
    mut body: Bytes,
    shared: &Shared,
    out: &mut BytesMut,
) -> anyhow::Result<Reply> {
    let version = header.request_api_version;
    let req = MetadataRequest::decode(&mut body, version)?;
    let mut state = lock(shared);
    // Which topics: v0 sends an empty list for "all", v1+ sends null.
    let wanted: Vec<(Option<String>, Uuid)> = match &req.topics {
        None => state
            .names()
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect(),
        Some(list) if list.is_empty() && version == 0 => state
            .names()
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect(),
        Some(list) => list
            .iter()
            .map(|t| match &t.name {
                Some(name) => (Some(name.0.to_string()), t.topic_id),
                None => (state.name_of(&t.topic_id).map(str::to_string), t.topic_id),
            })
            .collect(),
    };
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let Some(name) = name else {
            topics.push(
                MetadataResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_name(None)
                    .with_topic_id(id),
            );
            continue;
        };
        if state.topic(&name).is_none() && req.allow_auto_topic_creation && !name.is_empty() {
            state.create(&name, AUTO_CREATE_PARTITIONS);
        }
        let entry = match state.topic(&name) {
            None => MetadataResponseTopic::default()
                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                .with_name(Some(topic_name(&name))),
            Some(topic) => {
                let partitions = (0..topic.partitions.len() as i32)
                    .map(|i| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i)
                            .with_leader_id(BrokerId(NODE_ID))
                            .with_leader_epoch(0)
                            .with_replica_nodes(vec![BrokerId(NODE_ID)])
                            .with_isr_nodes(vec![BrokerId(NODE_ID)])
                    })
                    .collect();
                MetadataResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_topic_id(topic.id)
                    .with_partitions(partitions)
            }
        };
        topics.push(entry);
    }
    drop(state);
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(shared.addr.ip().to_string()))
        .with_port(i32::from(shared.addr.port()));
    let resp = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_static_str("jet-bench-null-broker")))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics);
    write_response(out, ApiKey::Metadata, version, header.correlation_id, &resp)?;
    Ok(Reply::Done)
}

fn create_topics(
    header: &RequestHeader,
    mut body: Bytes,
    shared: &Shared,
    out: &mut BytesMut,
) -> anyhow::Result<Reply> {
    let version = header.request_api_version;
    let req = CreateTopicsRequest::decode(&mut body, version)?;
    let mut state = lock(shared);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            AUTO_CREATE_PARTITIONS as i32
        } else {
            t.num_partitions
        };
        let error = if name.is_empty() {
            ResponseError::InvalidTopicException.code()
        } else if !(1..=PARTITIONS_MAX).contains(&partitions) {
            ResponseError::InvalidPartitions.code()
        } else if state.topic(&name).is_some() {
            ResponseError::TopicAlreadyExists.code()
        } else {
            if !req.validate_only {
                state.create(&name, partitions as usize);
            }
            0
        };
        let id = state.topic(&name).map(|t| t.id).unwrap_or_default();
        results.push(
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_topic_id(id)
                .with_error_code(error)
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        );
    }
    drop(state);
    let resp = CreateTopicsResponse::default().with_topics(results);
    write_response(
        out,
        ApiKey::CreateTopics,
        version,
        header.correlation_id,
        &resp,
    )?;
    Ok(Reply::Done)
}

fn produce(
    header: &RequestHeader,
    mut body: Bytes,
    shared: &Shared,
    out: &mut BytesMut,
) -> anyhow::Result<Reply> {
    let version = header.request_api_version;
    let req = ProduceRequest::decode(&mut body, version)?;
    let mut state = lock(shared);
    let mut appended = false;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for t in &req.topic_data {
        // v13+ names the topic by id only.
        let name = if t.name.0.is_empty() {
            state.name_of(&t.topic_id).unwrap_or("").to_string()
        } else {
            t.name.0.to_string()
        };
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in &t.partition_data {
            let result = match &p.records {
                Some(records) => state.append(&name, p.index, records),
                None => Err(AppendError::Corrupt),
            };
            let log_start = state.partition(&name, p.index).map_or(-1, |p| p.log_start);
            let (error, base) = match result {
                Ok(base) => {
                    appended = true;
                    (0, base)
                }
                Err(AppendError::UnknownPartition) => {
                    (ResponseError::UnknownTopicOrPartition.code(), -1)
                }
                Err(AppendError::Corrupt) => (ResponseError::CorruptMessage.code(), -1),
                Err(AppendError::Full) => (ResponseError::KafkaStorageError.code(), -1),
            };
            parts.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(error)
                    .with_base_offset(base)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(log_start),
            );
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    drop(state);
    if appended {
        shared.appended.notify_waiters();
    }
    if req.acks == 0 {
        // acks=0: the client expects no response at all.
        return Ok(Reply::Done);
    }
    let resp = ProduceResponse::default().with_responses(responses);
    write_response(out, ApiKey::Produce, version, header.correlation_id, &resp)?;
    Ok(Reply::Done)
}

fn list_offsets(
    header: &RequestHeader,
    mut body: Bytes,
    shared: &Shared,
    out: &mut BytesMut,
) -> anyhow::Result<Reply> {
    /// Kafka's special timestamps.
    const EARLIEST: i64 = -2;
    let version = header.request_api_version;
    let req = ListOffsetsRequest::decode(&mut body, version)?;
    let state = lock(shared);
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1);
                    match state.partition(&t.name.0, p.partition_index) {
                        None => r
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_offset(-1),
                        // Timestamps are not indexed: anything but "earliest" gets the end.
                        Some(part) if p.timestamp == EARLIEST => {
                            r.with_offset(part.log_start).with_leader_epoch(0)
                        }
                        Some(part) => r.with_offset(part.next_offset).with_leader_epoch(0),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    drop(state);
    let resp = ListOffsetsResponse::default().with_topics(topics);
    write_response(
        out,
        ApiKey::ListOffsets,
        version,
        header.correlation_id,
        &resp,
    )?;
    Ok(Reply::Done)
}

fn fetch(
    header: &RequestHeader,
    mut body: Bytes,
    shared: &Shared,
    out: &mut BytesMut,
) -> anyhow::Result<Reply> {
    let version = header.request_api_version;
    let request = FetchRequest::decode(&mut body, version)?;
    let pending = PendingFetch {
        correlation_id: header.correlation_id,
        version,
        request,
        started: Instant::now(),
    };
    let (resp, bytes, has_error) = fetch_now(&pending.request, version, &lock(shared));
    if has_error
        || bytes >= i64::from(pending.request.min_bytes)
        || pending.request.max_wait_ms <= 0
    {
        write_response(out, ApiKey::Fetch, version, pending.correlation_id, &resp)?;
        return Ok(Reply::Done);
    }
    Ok(Reply::Wait(Box::new(pending)))
}

/// Long-polls a fetch: re-reads after every append until `min_bytes` are there or `max_wait_ms`
/// (capped at `wait_cap`) has passed, then writes the response.
pub(crate) async fn finish_fetch(
    pending: Box<PendingFetch>,
    shared: &Shared,
    out: &mut BytesMut,
    wait_cap: Duration,
) -> anyhow::Result<()> {
    let wait = Duration::from_millis(pending.request.max_wait_ms.max(0) as u64).min(wait_cap);
    let deadline = tokio::time::Instant::from_std(pending.started + wait);
    loop {
        // Register for the wake-up before reading, so an append in between is not missed.
        let notified = shared.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (resp, bytes, has_error) = fetch_now(&pending.request, pending.version, &lock(shared));
        let expired = tokio::time::Instant::now() >= deadline;
        if has_error || expired || bytes >= i64::from(pending.request.min_bytes) {
            write_response(
                out,
                ApiKey::Fetch,
                pending.version,
                pending.correlation_id,
                &resp,
            )?;
            return Ok(());
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Builds a fetch response from what is stored now: (response, record bytes, any error).
///
/// Limits as Kafka applies them: `partition_max_bytes` per partition and `max_bytes` for the
/// whole response, except that the first batch of the response is always sent whole (KIP-74) so
/// a consumer can never get stuck behind a batch larger than its limits.
fn fetch_now(req: &FetchRequest, version: i16, state: &State) -> (FetchResponse, i64, bool) {
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut has_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        // v13+ names topics by id only.
        let name = if version >= 13 {
            state.name_of(&t.topic_id)
        } else {
            Some(&*t.topic.0)
        };
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let pd = PartitionData::default().with_partition_index(p.partition);
            let Some(part) = name.and_then(|n| state.partition(n, p.partition)) else {
                has_error = true;
                let code = if version >= 13 {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                parts.push(pd.with_error_code(code).with_high_watermark(-1));
                continue;
            };
            let pd = pd
                .with_high_watermark(part.next_offset)
                .with_last_stable_offset(part.next_offset)
                .with_log_start_offset(part.log_start);
            if p.fetch_offset < part.log_start || p.fetch_offset > part.next_offset {
                has_error = true;
                parts.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            }
            let partition_max = usize::try_from(p.partition_max_bytes).unwrap_or(0);
            let mut records = BytesMut::new();
            for batch in &part.batches[part.first_batch_from(p.fetch_offset)..] {
                let len = batch.bytes.len();
                let fits = records.len() + len <= partition_max && total + len <= max_bytes;
                if !fits && total > 0 {
                    break;
                }
                let at = records.len();
                records.extend_from_slice(&batch.bytes);
                // The offsets were assigned at append; the client reads them from the batch.
                // The leader epoch (bytes 12..16) is set to the one epoch there is. Neither is
                // covered by the batch CRC.
                records[at..at + 8].copy_from_slice(&batch.base_offset.to_be_bytes());
                records[at + 12..at + 16].copy_from_slice(&0i32.to_be_bytes());
                total += len;
                if !fits {
                    break;
                }
            }
            parts.push(pd.with_records(Some(records.freeze())));
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    let resp = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics);
    (resp, total as i64, has_error)
}

#[cfg(test)]
#[path = "handlers_tests.rs"]
mod tests;
