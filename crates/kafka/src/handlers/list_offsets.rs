//! ListOffsets (key 2): offsets by timestamp, versions 1–10.
//!
//! Special timestamps, answered as Kafka 4 answers them:
//! - `-1` latest: the high watermark (also for read_committed: the last stable offset is the high
//!   watermark, Jet has no open transactions), timestamp -1, the current leader epoch.
//! - `-2` earliest and `-4` earliest-local (v8+): the log start offset, timestamp -1, the leader
//!   epoch stamped on the batch there (the current one for an empty log).
//! - `-3` max timestamp (v7+): the first record carrying the partition's largest timestamp, read
//!   from the batch `PartitionHandle::max_timestamp` points at; -1/-1 for an empty log.
//! - `-5` latest-tiered (v9+): offset -1 and timestamp -1 — no tiered storage.
//!
//! Any other timestamp finds the first record whose timestamp is at or after it: the node finds
//! the batch, this handler finds the record. When no record is that recent the answer is offset
//! -1 and timestamp -1, as Kafka answers (clients read it as "no such offset").
//!
//! Finding a record is the one place the broker looks inside a batch. It walks the records'
//! varint headers itself instead of using `RecordBatchDecoder`, which pre-allocates from the
//! batch's claimed record count; compressed batches are inflated with kafka-protocol's codecs.
//! The work runs on a blocking thread.

use bytes::{Buf, Bytes};
use futures::future::join_all;
use jet_protocol::batch::{self, BatchHeader, ATTR_LOG_APPEND_TIME, HEADER_LEN};
use jet_replication::{PartitionHandle, TopicPartition};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::fetch::check_leader_epoch;
use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::ListOffsets;
/// Versions 1–10, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 10 };

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// A record found by timestamp: its offset, its timestamp, and its batch's leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    offset: i64,
    timestamp: i64,
    leader_epoch: i32,
}

/// Answers a ListOffsets request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let version = header.request_api_version;
    let meta = ctx.node.metadata();
    let mut lookups = Vec::new();
    let mut shapes = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let resolved = meta.topic(&topic.name);
        for p in &topic.partitions {
            let target = match resolved {
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(t) => {
                    let tp = TopicPartition::new(t.id, p.partition_index);
                    // A partition this node holds no replica of: NOT_LEADER_OR_FOLLOWER.
                    ctx.node
                        .partition_here(&tp)
                        .map(|h| (tp, h))
                        .map_err(|e| error_map::response_error(&e))
                }
            };
            lookups.push(lookup(ctx, version, target, p));
        }
        shapes.push((topic.name.clone(), topic.partitions.len()));
    }
    let mut answers = join_all(lookups).await.into_iter();
    let topics = shapes
        .into_iter()
        .map(|(name, count)| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(answers.by_ref().take(count).collect())
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup(
    ctx: &Ctx,
    version: i16,
    target: Result<(TopicPartition, PartitionHandle), ResponseError>,
    p: &ListOffsetsPartition,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
    match find(ctx, target, p).await {
        Ok(Some(found)) => response
            .with_offset(found.offset)
            .with_timestamp(found.timestamp)
            // Versions before 4 have no leader epoch (kafka-protocol refuses to encode one).
            .with_leader_epoch(if version >= 4 { found.leader_epoch } else { -1 }),
        Ok(None) => response.with_offset(-1).with_timestamp(-1),
        Err(code) => response.with_error_code(code.code()),
    }
}

async fn find(
    ctx: &Ctx,
    target: Result<(TopicPartition, PartitionHandle), ResponseError>,
    p: &ListOffsetsPartition,
) -> Result<Option<Found>, ResponseError> {
    let (tp, handle) = target?;
    if !handle.is_leader() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let epoch = handle.leader_epoch();
    check_leader_epoch(p.current_leader_epoch, epoch)?;
    let at = |offset| Found {
        offset,
        timestamp: -1,
        leader_epoch: epoch,
    };
    match p.timestamp {
        LATEST => Ok(Some(at(handle.high_watermark()))),
        EARLIEST | EARLIEST_LOCAL => {
            let start = handle.log_start_offset();
            let read = ctx.node.read(tp, start, 1, true).await;
            let stamped = read
                .ok()
                .and_then(|r| BatchHeader::parse(&r.records).ok())
                .map_or(epoch, |h| h.partition_leader_epoch);
            Ok(Some(Found {
                leader_epoch: stamped,
                ..at(start)
            }))
        }
        LATEST_TIERED => Ok(None),
        MAX_TIMESTAMP => {
            let (max_timestamp, batch_offset) = handle.max_timestamp();
            if max_timestamp < 0 || batch_offset < handle.log_start_offset() {
                return Ok(None);
            }
            match ctx.node.read(tp, batch_offset, 1, true).await {
                Ok(read) if read.batch_count > 0 => {
                    search_off_runtime(read.records, max_timestamp).await
                }
                Ok(_) => Ok(None),
                // Retention removed that batch since the watermark was published.
                Err(jet_replication::Error::OffsetOutOfRange { .. }) => Ok(None),
                Err(e) => Err(error_map::response_error(&e)),
            }
        }
        timestamp => match ctx.node.find_batch_by_timestamp(tp, timestamp).await {
            Ok(Some(batch)) => search_off_runtime(batch, timestamp).await,
            Ok(None) => Ok(None),
            Err(e) => Err(error_map::response_error(&e)),
        },
    }
}

async fn search_off_runtime(batch: Bytes, target: i64) -> Result<Option<Found>, ResponseError> {
    let searched = tokio::task::spawn_blocking(move || search_batch(&batch, target)).await;
    match searched {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read a stored record batch");
            Err(ResponseError::KafkaStorageError)
        }
        Err(e) => {
            tracing::warn!(error = %e, "record batch search failed");
            Err(ResponseError::UnknownServerError)
        }
    }
}

/// The first record of `batch` whose timestamp is at or after `target`.
fn search_batch(batch: &Bytes, target: i64) -> Result<Option<Found>, String> {
    let h = batch::validate(batch).map_err(|e| e.to_string())?;
    let epoch = h.partition_leader_epoch;
    if h.attributes & ATTR_LOG_APPEND_TIME != 0 {
        // Every record of a LogAppendTime batch has the batch's max timestamp.
        return Ok((h.max_timestamp >= target).then_some(Found {
            offset: h.base_offset,
            timestamp: h.max_timestamp,
            leader_epoch: epoch,
        }));
    }
    let mut records = batch.slice(HEADER_LEN..h.total_len());
    let scan = |buf: &mut Bytes| scan_records(buf, &h, target);
    let found = match h.compression() {
        0 => scan(&mut records),
        1 => Gzip::decompress(&mut records, |b: &mut Bytes| Ok(scan(b)))
            .map_err(|e| format!("gzip: {e:#}"))?,
        2 => Snappy::decompress(&mut records, |b: &mut Bytes| Ok(scan(b)))
            .map_err(|e| format!("snappy: {e:#}"))?,
        3 => Lz4::decompress(&mut records, |b: &mut Bytes| Ok(scan(b)))
            .map_err(|e| format!("lz4: {e:#}"))?,
        4 => Zstd::decompress(&mut records, |b: &mut Bytes| Ok(scan(b)))
            .map_err(|e| format!("zstd: {e:#}"))?,
        codec => return Err(format!("unknown compression codec {codec}")),
    }?;
    Ok(found.map(|(offset, timestamp)| Found {
        offset,
        timestamp,
        leader_epoch: epoch,
    }))
}

/// Walks uncompressed records: `length, attributes, timestampDelta, offsetDelta, ...`, reading
/// only those header fields of each.
fn scan_records(
    buf: &mut Bytes,
    h: &BatchHeader,
    target: i64,
) -> Result<Option<(i64, i64)>, String> {
    for _ in 0..h.record_count {
        let len = read_varint(buf)?;
        let len = usize::try_from(len).map_err(|_| format!("negative record length {len}"))?;
        if buf.remaining() < len {
            return Err("record longer than its batch".into());
        }
        let mut record = buf.split_to(len);
        if !record.has_remaining() {
            return Err("empty record".into());
        }
        let _attributes = record.get_i8();
        let timestamp_delta = read_varint(&mut record)?;
        let offset_delta = read_varint(&mut record)?;
        let timestamp = h.base_timestamp.saturating_add(timestamp_delta);
        if timestamp >= target {
            return Ok(Some((
                h.base_offset.saturating_add(offset_delta),
                timestamp,
            )));
        }
    }
    Ok(None)
}

/// A zigzag-encoded variable-length integer (Kafka's varint and varlong), up to 64 bits.
fn read_varint(buf: &mut Bytes) -> Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err("truncated varint".into());
        }
        let byte = buf.get_u8();
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint longer than 64 bits".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // The encoder starts a new batch when offset - sequence changes.
            sequence: offset as i32,
            timestamp,
            key: None,
            value: Some(Bytes::from_static(b"value")),
            headers: Default::default(),
        }
    }

    fn encoded(compression: Compression, timestamps: &[i64]) -> Bytes {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| record(100 + i as i64, *ts))
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn finds_the_first_record_at_or_after_the_target() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encoded(compression, &[1000, 3000, 2000, 4000]);
            let found = |t| search_batch(&batch, t).unwrap();
            let at = |offset, timestamp| {
                Some(Found {
                    offset,
                    timestamp,
                    leader_epoch: 7,
                })
            };
            assert_eq!(found(0), at(100, 1000), "{compression:?}");
            assert_eq!(found(1500), at(101, 3000), "{compression:?}");
            assert_eq!(found(4000), at(103, 4000), "{compression:?}");
            assert_eq!(found(4001), None, "{compression:?}");
        }
    }

    #[test]
    fn log_append_time_batches_answer_with_their_max_timestamp() {
        let mut batch = encoded(Compression::None, &[1000, 2000]).to_vec();
        batch::patch_log_append_time(&mut batch, 9000);
        let batch = Bytes::from(batch);
        let found = search_batch(&batch, 5000).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (100, 9000));
        assert_eq!(search_batch(&batch, 9001).unwrap(), None);
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let mut batch = encoded(Compression::None, &[1000]).to_vec();
        let n = batch.len();
        batch[n - 3] ^= 0xff;
        assert!(search_batch(&Bytes::from(batch), 0).is_err());
        assert!(search_batch(&Bytes::from_static(&[0; 10]), 0).is_err());
    }

    #[test]
    fn varints_decode_zigzag() {
        for (bytes, want) in [
            (&[0x00][..], 0),
            (&[0x01][..], -1),
            (&[0x02][..], 1),
            (&[0xac, 0x02][..], 150),
            (&[0xff, 0xff, 0xff, 0xff, 0x0f][..], i32::MIN as i64),
        ] {
            let mut b = Bytes::copy_from_slice(bytes);
            assert_eq!(read_varint(&mut b).unwrap(), want, "{bytes:?}");
        }
        assert!(read_varint(&mut Bytes::from_static(&[0x80])).is_err());
        assert!(read_varint(&mut Bytes::from_static(&[0xff; 11])).is_err());
    }
}
