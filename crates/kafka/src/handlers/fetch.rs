//! Fetch (key 1): read stored batches, versions 4–18.
//!
//! - **Topics.** v13+ name topics by id (UNKNOWN_TOPIC_ID), earlier versions by name
//!   (UNKNOWN_TOPIC_OR_PARTITION).
//! - **Long poll.** When less than `min_bytes` is available the handler waits up to
//!   `max_wait_ms`, woken by the partitions' high-watermark watch channels
//!   (`PartitionHandle::subscribe`), never by a timer loop. The receivers are taken before the
//!   first read so an append between the read and the wait is not missed.
//! - **Size limits.** `partition_max_bytes` per partition and `max_bytes` for the response, in
//!   request order; only the first batch of the first partition that has data may go over
//!   either (KIP-74), so a consumer always makes progress.
//! - **Offsets.** An offset outside `[log start, high watermark]` answers OFFSET_OUT_OF_RANGE
//!   with the partition's log start and high watermark. The last stable offset is the high
//!   watermark: Jet has no open transactions.
//! - **Sessions (KIP-227).** Jet keeps no fetch sessions. A request with session epoch 0 (asking
//!   for a new session) or -1 (sessionless) gets a full response with session id 0 — Kafka's
//!   own answer when its session cache is full, which the Java client takes as "no session" and
//!   librdkafka (which never asks for sessions) ignores. Any other epoch refers to a session
//!   that cannot exist here: FETCH_SESSION_ID_NOT_FOUND, as Kafka answers for an unknown id,
//!   after which clients start over with epoch 0.
//! - **Leader epochs (KIP-320).** A partition's `current_leader_epoch` (v9+) other than -1 is
//!   checked after leadership: older than the partition's epoch is FENCED_LEADER_EPOCH, newer is
//!   UNKNOWN_LEADER_EPOCH, both answered at once (no long poll).
//! - **Leader hints (KIP-951).** A partition answered NOT_LEADER_OR_FOLLOWER or
//!   FENCED_LEADER_EPOCH carries `current_leader` (v12+, tagged): the leader and epoch this node
//!   knows for the partition's shard, -1/-1 when it knows none; from v16 the response's
//!   `node_endpoints` says where each named leader is reached, so the client moves without a
//!   Metadata round trip.
//! - **Reads from followers (KIP-392).** From v11 a consumer may fetch from any replica. The
//!   leader of a partition, asked by a client whose `rack_id` is not its own, names an in-sync
//!   replica in that rack as `preferred_read_replica` and answers no records for that partition
//!   (the client moves there). A follower serves up to the high watermark it has applied; an
//!   offset past it (the leader has more) waits like a caught-up consumer instead of answering
//!   OFFSET_OUT_OF_RANGE. Before v11, and for non-consumers, only the leader serves.
//! - **Records stay bytes.** The node reads a partition's batches into one buffer (the response
//!   carries one records field), patching base offsets and leader epochs as it copies them.

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use jet_replication::{Error, PartitionHandle, TopicPartition};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::Fetch;
/// Versions 4–18, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 18 };

/// Session epoch of a client asking for a new fetch session.
const INITIAL_EPOCH: i32 = 0;
/// Session epoch of a sessionless fetch.
const FINAL_EPOCH: i32 = -1;

/// `isolation_level` of read_committed consumers.
const READ_COMMITTED: i8 = 1;

/// The request, resolved: what to read and within which limits.
struct Plan {
    version: i16,
    /// The client's rack (v11+), for KIP-392's preferred read replica.
    rack: Option<String>,
    max_bytes: usize,
    read_committed: bool,
    wanted: Vec<Wanted>,
}

/// One partition of the request, resolved.
struct Wanted {
    /// Index of its topic in the response.
    topic: usize,
    partition: i32,
    target: Result<(TopicPartition, PartitionHandle), ResponseError>,
    fetch_offset: i64,
    current_leader_epoch: i32,
    partition_max_bytes: usize,
}

/// Answers a Fetch request.
pub async fn handle(ctx: &Ctx, header: &RequestHeader, req: FetchRequest) -> FetchResponse {
    let version = header.request_api_version;
    if req.session_epoch != INITIAL_EPOCH && req.session_epoch != FINAL_EPOCH {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }

    let meta = ctx.node.metadata();
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    for topic in &req.topics {
        let (resolved, unknown) = if version >= 13 {
            (
                meta.topic_by_id(&topic.topic_id),
                ResponseError::UnknownTopicId,
            )
        } else {
            (
                meta.topic(&topic.topic),
                ResponseError::UnknownTopicOrPartition,
            )
        };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id),
        );
        for p in &topic.partitions {
            let target = match resolved {
                None => Err(unknown),
                Some(t) => {
                    let tp = TopicPartition::new(t.id, p.partition);
                    ctx.node
                        .partition_here(&tp)
                        .map(|h| (tp, h))
                        .map_err(|e| error_map::response_error(&e))
                }
            };
            wanted.push(Wanted {
                topic: topics.len() - 1,
                partition: p.partition,
                target,
                fetch_offset: p.fetch_offset,
                current_leader_epoch: p.current_leader_epoch,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
            });
        }
    }

    // Subscribe before the first read: an append that lands between a read that found nothing
    // and the wait below marks the receiver changed, so the wait returns at once.
    let mut receivers: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .filter_map(|w| w.target.as_ref().ok().map(|(_, h)| h.subscribe()))
        .collect();
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let plan = Plan {
        version,
        rack: (version >= 11 && !req.rack_id.is_empty()).then(|| req.rack_id.to_string()),
        max_bytes: req.max_bytes.max(0) as usize,
        read_committed: req.isolation_level == READ_COMMITTED,
        wanted,
    };

    let partitions = loop {
        if enough_available(ctx, &plan, min_bytes) || Instant::now() >= deadline {
            let (partitions, bytes, any_error) = read_all(ctx, &plan).await;
            if bytes >= min_bytes || any_error || Instant::now() >= deadline {
                break partitions;
            }
        }
        if receivers.is_empty() || !wait_for_append(&mut receivers, deadline).await {
            // Nothing can wake us, or the wait timed out: answer with what there is.
            break read_all(ctx, &plan).await.0;
        }
    };

    let mut endpoints = Vec::new();
    for (w, data) in plan.wanted.iter().zip(partitions) {
        let data = with_leader_hint(ctx, version, w, data, &mut endpoints);
        topics[w.topic].partitions.push(data);
    }
    for topic in &topics {
        let bytes: usize = topic
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let name = if version >= 13 {
            meta.topic_by_id(&topic.topic_id).map(|t| t.name.as_str())
        } else {
            Some(topic.topic.as_str())
        };
        crate::metrics::record_fetched(name.unwrap_or("unknown"), bytes);
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
        .with_node_endpoints(endpoints)
}

/// KIP-951: names the current leader on a partition answered NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH (v12+), and from v16 adds its address to `endpoints` (once per leader).
/// kafka-protocol refuses to encode either field in older versions.
fn with_leader_hint(
    ctx: &Ctx,
    version: i16,
    w: &Wanted,
    data: PartitionData,
    endpoints: &mut Vec<NodeEndpoint>,
) -> PartitionData {
    let moved = data.error_code == ResponseError::NotLeaderOrFollower.code()
        || data.error_code == ResponseError::FencedLeaderEpoch.code();
    if version < 12 || !moved {
        return data;
    }
    let Ok((_, handle)) = &w.target else {
        return data;
    };
    // No known leader (an election): the default -1/-1, which clients read as "ask Metadata".
    let Some((leader, epoch)) = current_leader(ctx, handle) else {
        return data;
    };
    let leader_id = BrokerId(leader as i32);
    if version >= 16 && !endpoints.iter().any(|e| e.node_id == leader_id) {
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
    data.with_current_leader(
        LeaderIdAndEpoch::default()
            .with_leader_id(leader_id)
            .with_leader_epoch(epoch),
    )
}

/// Who answers a partition's fetch here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// This node leads it: the reader.
    Leader,
    /// This node follows it and serves the consumer up to its own high watermark (KIP-392).
    Follower,
    /// This node leads it but names another replica, in the client's rack, to read from.
    Preferred(u64),
    /// This node may not serve it.
    NotLeader,
}

fn route(ctx: &Ctx, plan: &Plan, handle: &PartitionHandle) -> Route {
    if !handle.is_leader() {
        // A follower serves only while its Raft state knows another node leads the shard: a
        // node between leaders, or stopping, sends the client back to Metadata.
        let me = ctx.node.config().node_id;
        let follows = ctx.node.shard_status(handle.shard()).is_some_and(|st| {
            let leader = st.leader.load(std::sync::atomic::Ordering::Acquire);
            leader != 0 && leader != me
        });
        return if plan.version >= 11 && follows {
            Route::Follower
        } else {
            Route::NotLeader
        };
    }
    let Some(rack) = plan.rack.as_deref() else {
        return Route::Leader;
    };
    if ctx.config.rack.as_deref() == Some(rack) {
        return Route::Leader;
    }
    let me = ctx.node.config().node_id;
    ctx.node
        .shard_isr(handle.shard())
        .into_iter()
        .filter(|id| *id != me)
        .find(|id| {
            ctx.broker_endpoint(*id)
                .is_some_and(|b| b.rack.as_deref() == Some(rack))
        })
        .map_or(Route::Leader, Route::Preferred)
}

/// True when reading might satisfy `min_bytes`: some partition has records past its fetch
/// offset, or would answer with an error or a redirection (which Kafka returns at once).
fn enough_available(ctx: &Ctx, plan: &Plan, min_bytes: usize) -> bool {
    let mut has_data = false;
    for w in &plan.wanted {
        match &w.target {
            Err(_) => return true,
            Ok((_, h)) => {
                let hw = h.high_watermark();
                let r = route(ctx, plan, h);
                if matches!(r, Route::NotLeader | Route::Preferred(_))
                    || (w.fetch_offset > hw && r == Route::Leader)
                    || w.fetch_offset < h.log_start_offset()
                    || check_leader_epoch(w.current_leader_epoch, h.leader_epoch()).is_err()
                {
                    return true;
                }
                has_data |= hw > w.fetch_offset;
            }
        }
    }
    // Without byte counts from the watermarks alone, any new record is worth a read; the read
    // then says whether `min_bytes` is met.
    has_data || min_bytes == 0
}

/// Waits until any partition's high watermark moves (true) or the deadline passes (false).
async fn wait_for_append(receivers: &mut [watch::Receiver<i64>], deadline: Instant) -> bool {
    let changes = receivers.iter_mut().map(|rx| Box::pin(rx.changed()));
    tokio::select! {
        // A closed channel (partition deleted) also wakes us; the next read reports the error.
        _ = select_all(changes) => true,
        _ = tokio::time::sleep_until(deadline) => false,
    }
}

/// Reads every wanted partition in request order within the size limits. Returns the partition
/// responses, the record bytes they carry, and whether any partition has an error.
async fn read_all(ctx: &Ctx, plan: &Plan) -> (Vec<PartitionData>, usize, bool) {
    let mut out = Vec::with_capacity(plan.wanted.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in &plan.wanted {
        let budget = w
            .partition_max_bytes
            .min(plan.max_bytes.saturating_sub(total));
        // KIP-74: only the first partition with data may go over the limits, by one batch.
        let min_one = total == 0;
        let data = match read_partition(ctx, plan, w, budget, min_one).await {
            Ok((data, bytes)) => {
                total += bytes;
                data.with_aborted_transactions(aborted_transactions(plan.read_committed))
            }
            Err(e) => {
                any_error = true;
                error_partition(plan.version, w.partition, e)
                    .with_aborted_transactions(aborted_transactions(plan.read_committed))
            }
        };
        out.push(data);
    }
    (out, total, any_error)
}

/// What went wrong with one partition.
enum PartitionError {
    Code(ResponseError),
    Read(Error),
}

async fn read_partition(
    ctx: &Ctx,
    plan: &Plan,
    w: &Wanted,
    budget: usize,
    min_one: bool,
) -> Result<(PartitionData, usize), PartitionError> {
    let (tp, handle) = w.target.as_ref().map_err(|e| PartitionError::Code(*e))?;
    let r = route(ctx, plan, handle);
    if r == Route::NotLeader {
        return Err(PartitionError::Code(ResponseError::NotLeaderOrFollower));
    }
    check_leader_epoch(w.current_leader_epoch, handle.leader_epoch())
        .map_err(PartitionError::Code)?;
    let empty = |hw: i64, preferred: i32| {
        PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(handle.log_start_offset())
            .with_preferred_read_replica(BrokerId(preferred))
            .with_records(Some(Bytes::new()))
    };
    match r {
        Route::Preferred(id) => return Ok((empty(handle.high_watermark(), id as i32), 0)),
        Route::Follower if w.fetch_offset > handle.high_watermark() => {
            // The leader has more than this follower applied yet: nothing to read here now.
            return Ok((empty(handle.high_watermark(), -1), 0));
        }
        _ => {}
    }
    let read = ctx
        .node
        .read(*tp, w.fetch_offset, budget, min_one)
        .await
        .map_err(PartitionError::Read)?;
    let bytes = read.records.len();
    let data = PartitionData::default()
        .with_partition_index(w.partition)
        .with_high_watermark(read.high_watermark)
        .with_last_stable_offset(read.high_watermark)
        .with_log_start_offset(read.log_start_offset)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(read.records));
    Ok((data, bytes))
}

/// The partition's leader and epoch for a KIP-951 hint: this node when it leads the partition
/// (a fenced client is told the epoch to use here), else whom the shard's Raft state or gossip
/// names.
pub(crate) fn current_leader(ctx: &Ctx, handle: &PartitionHandle) -> Option<(u64, i32)> {
    if handle.is_leader() {
        return Some((ctx.node.config().node_id, handle.leader_epoch()));
    }
    ctx.node.shard_leader(handle.shard())
}

/// Kafka's leader-epoch fencing: a client that knows an older epoch has stale metadata
/// (FENCED_LEADER_EPOCH), one that knows a newer epoch is ahead of this node
/// (UNKNOWN_LEADER_EPOCH); -1 skips the check.
pub(crate) fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ResponseError> {
    if requested < 0 || requested == current {
        Ok(())
    } else if requested < current {
        Err(ResponseError::FencedLeaderEpoch)
    } else {
        Err(ResponseError::UnknownLeaderEpoch)
    }
}

fn error_partition(version: i16, partition: i32, error: PartitionError) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()));
    let code = match error {
        PartitionError::Code(code) => code,
        PartitionError::Read(Error::OffsetOutOfRange {
            log_start_offset,
            high_watermark,
        }) => {
            return data
                .with_error_code(ResponseError::OffsetOutOfRange.code())
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(log_start_offset);
        }
        PartitionError::Read(e) => error_map::response_error(&e),
    };
    // Fetch v4–v5 predate KAFKA_STORAGE_ERROR (added in v6); older clients get the retriable
    // NOT_LEADER_OR_FOLLOWER instead.
    let code = if version < 6 && code == ResponseError::KafkaStorageError {
        ResponseError::NotLeaderOrFollower
    } else {
        code
    };
    data.with_error_code(code.code())
}

/// The aborted-transactions field: an empty list for read_committed consumers, null for
/// read_uncommitted ones — what Kafka sends when there are no transactions to skip.
fn aborted_transactions(read_committed: bool) -> Option<Vec<AbortedTransaction>> {
    read_committed.then(Vec::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_fencing() {
        assert_eq!(check_leader_epoch(-1, 5), Ok(()));
        assert_eq!(check_leader_epoch(5, 5), Ok(()));
        assert_eq!(
            check_leader_epoch(4, 5),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader_epoch(6, 5),
            Err(ResponseError::UnknownLeaderEpoch)
        );
    }
}
