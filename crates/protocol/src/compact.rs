//! Record-level primitives for key-based compaction (`cleanup.policy=compact`): read the keys of
//! a stored batch, find keyless records in a produced one, and rewrite a batch keeping only some
//! of its records. Pure and deterministic: no I/O, no clock, same input → same bytes, so every
//! replica that applies the same cleaning decision stores the same batch.
//!
//! # What Kafka does, and what we follow
//!
//! - **Produce to a compacted topic (KIP-467).** Kafka's `LogValidator` rejects a batch holding a
//!   record whose key is null ("Compacted topic cannot accept message without key") with
//!   `INVALID_RECORD`, and KIP-467 lists the offending records by `batch_index`, their 0-based
//!   position in the batch. [`records_without_key`] returns those indexes. An empty key is a key
//!   (Kafka tests `hasKey()`, i.e. non-null).
//! - **The log cleaner's rewrite** (`MemoryRecords.filterTo` and `buildRetainedRecordsInto`):
//!   a batch whose records all survive is written back as it was, byte for byte; otherwise the
//!   surviving records are re-encoded into a batch that keeps the original base offset,
//!   partition leader epoch, compression codec, timestamp type, transactional and control bits,
//!   producer id, producer epoch and base sequence, and — through
//!   `builder.overrideLastOffset(originalBatch.lastOffset())` — its **lastOffsetDelta**, "to
//!   ensure that the last sequence number from the batch remains even after compaction.
//!   Otherwise, the producer could incorrectly see an out of sequence error." Records keep their
//!   own offsets, so a cleaned batch has gaps and `recordCount < lastOffsetDelta + 1`
//!   ([`crate::batch::validate`] accepts that; the produce path's
//!   [`crate::batch::validate_produced`] does not). The record count is the kept count and the
//!   CRC-32C is recomputed. [`rewrite_batch`] does all of this.
//! - **Max timestamp.** Kafka's `MemoryRecordsBuilder` recomputes it from the kept records under
//!   CreateTime (starting from `NO_TIMESTAMP`, -1) and keeps the batch's own under LogAppendTime.
//!   We do the same, so a timestamp lookup never lands on a batch for a record that is gone.
//!
//! # Where we depart from Kafka, and why
//!
//! - **Records are copied, not re-encoded.** Kafka re-appends each kept record, so its builder
//!   takes the first *kept* record's timestamp as the base timestamp and recomputes every
//!   timestamp delta. We copy each kept record's bytes as they were (attributes, deltas, key,
//!   value and headers untouched) and keep the original base timestamp, which the copied deltas
//!   are relative to: every record decodes to the same offset and timestamp either way, and
//!   copying cannot alter a record Kafka would have written differently.
//! - **Nothing kept → `None`.** Kafka may keep an empty batch (`BatchRetention.RETAIN_EMPTY`)
//!   when it is the last one of an idempotent producer, so the producer's last sequence stays in
//!   the log. Jet's producer state lives in the replicated state machine, not in a log scan, so
//!   the caller drops the batch; a caller that needs the empty batch must keep the original.
//! - **Not here:** choosing what to keep (the offset map, `delete.retention.ms` for tombstones,
//!   aborted-transaction removal, KIP-534's delete horizon, bit 6 of the attributes). Those are
//!   the caller's; this module only applies a decision. Control batches (transaction markers)
//!   carry no user keys, so every function here refuses them ([`CompactError::ControlBatch`]):
//!   check [`crate::batch::BatchHeader::is_control`] first and keep them whole.
//!
//! # Limits
//!
//! Input is one whole batch; its CRC is checked before anything is decompressed. Decompressed
//! records may not exceed [`DECOMPRESSED_BYTES_MAX`], and a record count that cannot fit in the
//! records' bytes is refused before anything is allocated for it, so no garbage can make this
//! module allocate without bound or panic.
//!
//! # Determinism of re-compression
//!
//! Codecs run with fixed settings chosen here, not the libraries' defaults: gzip level
//! [`GZIP_LEVEL`], LZ4 frames with level [`LZ4_LEVEL`], independent 64 KiB blocks and no
//! checksums (as Kafka's Java client writes them), zstd level
//! [`ZSTD_LEVEL`] in one frame, and snappy in the xerial framing with 32 KiB blocks that Kafka's
//! Java client writes. The bytes still depend on the codec libraries' versions, so replicas
//! produce identical batches only when they run the same build.

use std::borrow::Cow;
use std::io::{Read, Write};

use bytes::Bytes;

use crate::batch::{self, BatchError, BatchHeader, ATTR_LOG_APPEND_TIME, HEADER_LEN};

/// Most bytes the records of one batch may decompress to. Kafka's own bound is the segment and
/// `max.message.bytes` (1 MiB by default, before compression); 64 MiB leaves room for highly
/// compressible batches while keeping a decompression bomb from exhausting memory.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// gzip level for re-compression: the zlib default, fixed here so output never follows a
/// library's choice of default.
pub const GZIP_LEVEL: u32 = 6;
/// LZ4 level for re-compression (the level kafka-protocol's producer uses).
pub const LZ4_LEVEL: u32 = 4;
/// zstd level for re-compression: Kafka's default `compression.zstd.level`.
pub const ZSTD_LEVEL: i32 = 3;

/// Smallest encoded record: a 1-byte length, then attributes, timestamp delta, offset delta,
/// key length, value length and header count of one byte each. Bounds the record count a
/// number of bytes can hold.
const RECORD_BYTES_MIN: usize = 7;
/// Block size of the xerial snappy framing, as Kafka's Java client writes it.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// xerial framing header: magic, then version 1 and minimum compatible version 1.
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The magic part of [`SNAPPY_XERIAL_HEADER`]; a stream without it is raw snappy.
const SNAPPY_XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

// Header fields rewritten here; the full layout is in `batch.rs`.
const BATCH_LENGTH_AT: usize = 8;
const BATCH_LENGTH_BASE: usize = 12;
const CRC_AT: usize = 17;
const CRC_START: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;
/// Kafka's `RecordBatch.NO_TIMESTAMP`, where its builder starts the max timestamp.
const NO_TIMESTAMP: i64 = -1;

/// Why a batch could not be read or rewritten. All come from the input, never from a bug here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The batch header or CRC is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The input is longer than the one batch it starts with.
    #[error("input holds {input_len} bytes but its batch only {batch_len}")]
    TrailingBytes {
        /// Bytes the batch header declares.
        batch_len: usize,
        /// Bytes given.
        input_len: usize,
    },
    /// A control batch (transaction markers): its keys are marker types, not user keys.
    #[error("control batches are not compacted by key")]
    ControlBatch,
    /// Compression codec bits 5..=7, which Kafka does not define.
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    /// The records decompress to more than the limit.
    #[error("records decompress to more than {limit_bytes} bytes")]
    TooLarge {
        /// The limit that was passed.
        limit_bytes: usize,
    },
    /// The codec library could not decompress the records.
    #[error("cannot decompress {codec} records: {reason}")]
    Decompress {
        /// Codec name.
        codec: &'static str,
        /// The library's message.
        reason: String,
    },
    /// The codec library could not compress the kept records.
    #[error("cannot compress {codec} records: {reason}")]
    Compress {
        /// Codec name.
        codec: &'static str,
        /// The library's message.
        reason: String,
    },
    /// The header's record count cannot fit in the records' bytes.
    #[error("record count {count} cannot fit in {bytes} bytes of records")]
    RecordCount {
        /// Declared count.
        count: i32,
        /// Bytes of (decompressed) records.
        bytes: usize,
    },
    /// One record is malformed.
    #[error("record {index}: {reason}")]
    Record {
        /// 0-based position in the batch.
        index: i32,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes remain after the last record the header counts.
    #[error("{0} bytes after the last record")]
    TrailingRecordBytes(usize),
}

/// One record's compaction-relevant fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    /// Offset of the record minus the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp of the record minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// The key; `None` when null (an empty key is `Some` and empty).
    pub key: Option<Bytes>,
    /// True when the value is null: a delete marker for its key.
    pub is_tombstone: bool,
}

/// The keys of every record of `batch`, in batch order. `batch` is exactly one magic-2 batch
/// with a valid CRC, not a control batch.
pub fn record_keys(batch: &[u8]) -> Result<Vec<RecordKey>, CompactError> {
    let (h, records) = open(batch, DECOMPRESSED_BYTES_MAX)?;
    Ok(parse_records(&records, &h)?
        .iter()
        .map(|r| RecordKey {
            offset_delta: r.offset_delta,
            timestamp_delta: r.timestamp_delta,
            key: r.key.map(Bytes::copy_from_slice),
            is_tombstone: r.value_is_null,
        })
        .collect())
}

/// Positions (0-based, KIP-467's `batch_index`) of the records of `batch` whose key is null:
/// the records a compacted topic must refuse.
pub fn records_without_key(batch: &[u8]) -> Result<Vec<i32>, CompactError> {
    let (h, records) = open(batch, DECOMPRESSED_BYTES_MAX)?;
    Ok(parse_records(&records, &h)?
        .iter()
        .zip(0i32..)
        .filter(|(r, _)| r.key.is_none())
        .map(|(_, index)| index)
        .collect())
}

/// `batch` with only the records for whose offset delta `keep` returns true, as Kafka's log
/// cleaner writes it (see the module doc): `None` when none are kept, the input unchanged when
/// all are. `keep` is called once per record, in batch order.
pub fn rewrite_batch(
    batch: &[u8],
    mut keep: impl FnMut(i32) -> bool,
) -> Result<Option<Vec<u8>>, CompactError> {
    let (h, records) = open(batch, DECOMPRESSED_BYTES_MAX)?;
    let parsed = parse_records(&records, &h)?;
    let kept: Vec<&RawRecord<'_>> = parsed.iter().filter(|r| keep(r.offset_delta)).collect();
    if kept.is_empty() {
        return Ok(None);
    }
    if kept.len() == parsed.len() {
        // Untouched batches stay byte-identical, as Kafka writes the original batch back.
        return Ok(Some(batch.to_vec()));
    }
    let plain_len = kept.iter().map(|r| r.bytes.len()).sum();
    let mut plain = Vec::with_capacity(plain_len);
    for r in &kept {
        plain.extend_from_slice(r.bytes);
    }
    let body = compress(h.compression(), plain)?;

    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&body);
    // Kept records are fewer than the original count, and re-compressed kept records are
    // smaller than the 64 MiB bound, but both still go through checked conversions.
    let batch_length = i32::try_from(out.len() - BATCH_LENGTH_BASE)
        .map_err(|_| BatchError::Invalid("rewritten batch longer than i32"))?;
    let record_count = i32::try_from(kept.len())
        .map_err(|_| BatchError::Invalid("kept record count exceeds i32"))?;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&record_count.to_be_bytes());
    if h.attributes & ATTR_LOG_APPEND_TIME == 0 {
        // CreateTime: the max of the kept records, as Kafka's builder computes it. Java's long
        // addition wraps, so ours does too.
        let max_timestamp = kept
            .iter()
            .map(|r| h.base_timestamp.wrapping_add(r.timestamp_delta))
            .fold(NO_TIMESTAMP, i64::max);
        out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

/// Validates one whole, non-control batch and returns its header and its records, decompressed
/// into at most `limit_bytes`.
fn open(batch: &[u8], limit_bytes: usize) -> Result<(BatchHeader, Cow<'_, [u8]>), CompactError> {
    let h = batch::validate(batch)?;
    if batch.len() != h.total_len() {
        return Err(CompactError::TrailingBytes {
            batch_len: h.total_len(),
            input_len: batch.len(),
        });
    }
    if h.is_control() {
        return Err(CompactError::ControlBatch);
    }
    let body = &batch[HEADER_LEN..];
    let records = match h.compression() {
        0 => Cow::Borrowed(body),
        codec => Cow::Owned(decompress(codec, body, limit_bytes)?),
    };
    Ok((h, records))
}

/// One record as stored, with the fields compaction reads.
struct RawRecord<'a> {
    /// The whole record, its length prefix included: what a rewrite copies.
    bytes: &'a [u8],
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value_is_null: bool,
}

/// Splits uncompressed `records` into the `h.record_count` records the header declares. Offset
/// deltas must increase strictly and stay within `lastOffsetDelta`: a rewrite keys its decision
/// on them and keeps `lastOffsetDelta`, so both must be unambiguous.
fn parse_records<'a>(
    records: &'a [u8],
    h: &BatchHeader,
) -> Result<Vec<RawRecord<'a>>, CompactError> {
    let count = usize::try_from(h.record_count).unwrap_or(usize::MAX);
    if count > records.len() / RECORD_BYTES_MIN {
        return Err(CompactError::RecordCount {
            count: h.record_count,
            bytes: records.len(),
        });
    }
    let mut out = Vec::with_capacity(count);
    let mut cursor = Cursor::new(records);
    let mut previous_delta: Option<i32> = None;
    for index in 0..h.record_count {
        let record =
            parse_record(&mut cursor).map_err(|reason| CompactError::Record { index, reason })?;
        let bad_delta = if record.offset_delta < 0 || record.offset_delta > h.last_offset_delta {
            Some("offset delta outside the batch's offset range")
        } else if previous_delta.is_some_and(|p| record.offset_delta <= p) {
            Some("offset delta not greater than the previous record's")
        } else {
            None
        };
        if let Some(reason) = bad_delta {
            return Err(CompactError::Record { index, reason });
        }
        previous_delta = Some(record.offset_delta);
        out.push(record);
    }
    if cursor.remaining() != 0 {
        // Kafka refuses these too ("records still remaining"): the header and the bytes disagree.
        return Err(CompactError::TrailingRecordBytes(cursor.remaining()));
    }
    Ok(out)
}

/// Reads one record: `length varint, attributes i8, timestampDelta varlong, offsetDelta
/// varint, key, value, headers`, where key and value are a varint length (-1 for null) and
/// bytes, and each header a key (length ≥ 0) and a nullable value.
fn parse_record<'a>(cursor: &mut Cursor<'a>) -> Result<RawRecord<'a>, &'static str> {
    const SHORT: &str = "record shorter than its fields";
    let start = cursor.at;
    let len = cursor.varint().ok_or("truncated record length")?;
    let len = usize::try_from(len).map_err(|_| "negative record length")?;
    let body = cursor.take(len).ok_or("record longer than its batch")?;
    let bytes = cursor.consumed_since(start);

    let mut r = Cursor::new(body);
    let _attributes = r.take(1).ok_or(SHORT)?;
    let timestamp_delta = r.varlong().ok_or(SHORT)?;
    let offset_delta = r.varint().ok_or(SHORT)?;
    let key = r.nullable_bytes().ok_or(SHORT)??;
    let value = r.nullable_bytes().ok_or(SHORT)??;
    let header_count = r.varint().ok_or(SHORT)?;
    if header_count < 0 {
        return Err("negative header count");
    }
    for _ in 0..header_count {
        // Each header consumes at least two bytes or fails, so this loop is bounded by `len`.
        match r.nullable_bytes().ok_or(SHORT)?? {
            Some(_) => {}
            None => return Err("null header key"),
        }
        r.nullable_bytes().ok_or(SHORT)??;
    }
    if r.remaining() != 0 {
        return Err("record longer than its fields");
    }
    Ok(RawRecord {
        bytes,
        offset_delta,
        timestamp_delta,
        key,
        value_is_null: value.is_none(),
    })
}

/// A read position in a byte slice; every read is checked, none panics.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, at: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    /// Bytes read since position `start`.
    fn consumed_since(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.at]
    }

    /// An unsigned LEB128 value of at most `bytes_max` bytes. Bits past 64 are dropped, as
    /// Java's shifts drop them; what matters is that no input can make it read further.
    fn leb128(&mut self, bytes_max: usize) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..bytes_max {
            let b = *self.take(1)?.first()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None // longer than Kafka's varint allows ("Varint is too long")
    }

    /// A zigzag varint (Kafka's `ByteUtils.readVarint`, at most 5 bytes).
    fn varint(&mut self) -> Option<i32> {
        let raw = self.leb128(5)? as u32;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag varlong (Kafka's `ByteUtils.readVarlong`, at most 10 bytes).
    fn varlong(&mut self) -> Option<i64> {
        let raw = self.leb128(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A varint length then that many bytes; -1 is null. `None` when truncated, `Some(Err)` for
    /// a length below -1.
    fn nullable_bytes(&mut self) -> Option<Result<Option<&'a [u8]>, &'static str>> {
        let len = self.varint()?;
        if len == -1 {
            return Some(Ok(None));
        }
        let Ok(len) = usize::try_from(len) else {
            return Some(Err("length below -1"));
        };
        self.take(len).map(|b| Ok(Some(b)))
    }
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "none",
    }
}

/// Decompresses `data` with Kafka codec `codec` into at most `limit_bytes`.
fn decompress(codec: i16, data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CompactError> {
    let name = codec_name(codec);
    let failed = |e: std::io::Error| CompactError::Decompress {
        codec: name,
        reason: e.to_string(),
    };
    match codec {
        // Java's GZIPInputStream reads concatenated members; so does MultiGzDecoder.
        1 => read_bounded(flate2::read::MultiGzDecoder::new(data), limit_bytes, name),
        2 => decompress_snappy(data, limit_bytes),
        3 => read_bounded(lz4::Decoder::new(data).map_err(failed)?, limit_bytes, name),
        // The zstd decoder's window is capped by the library (2^27 bytes by default).
        4 => read_bounded(
            zstd::stream::read::Decoder::new(data).map_err(failed)?,
            limit_bytes,
            name,
        ),
        other => Err(CompactError::UnknownCodec(other)),
    }
}

/// Reads a decoder to its end, refusing output over `limit_bytes` (reading one byte past the
/// limit tells "exactly the limit" from "more").
fn read_bounded(
    reader: impl Read,
    limit_bytes: usize,
    codec: &'static str,
) -> Result<Vec<u8>, CompactError> {
    let mut out = Vec::new();
    let bound = u64::try_from(limit_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(bound)
        .read_to_end(&mut out)
        .map_err(|e| CompactError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit_bytes {
        return Err(CompactError::TooLarge { limit_bytes });
    }
    Ok(out)
}

/// Snappy as Kafka's Java client writes it: the xerial framing (header, then blocks of a
/// big-endian u32 length and a raw snappy block), or raw snappy when the magic is absent, as
/// xerial's `SnappyInputStream` falls back. Each block's declared length is checked against the
/// limit before its buffer is allocated.
fn decompress_snappy(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CompactError> {
    let failed = |reason: String| CompactError::Decompress {
        codec: "snappy",
        reason,
    };
    let mut out = Vec::new();
    let append_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CompactError> {
        let len = snap::raw::decompress_len(block).map_err(|e| failed(e.to_string()))?;
        let start = out.len();
        if len > limit_bytes.saturating_sub(start) {
            return Err(CompactError::TooLarge { limit_bytes });
        }
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| failed(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if !data.starts_with(SNAPPY_XERIAL_MAGIC) {
        append_block(data, &mut out)?;
        return Ok(out);
    }
    let mut cursor = Cursor::new(data);
    cursor
        .take(SNAPPY_XERIAL_HEADER.len())
        .ok_or_else(|| failed("truncated xerial header".into()))?;
    while cursor.remaining() > 0 {
        let len_bytes = cursor
            .take(4)
            .ok_or_else(|| failed("truncated block length".into()))?;
        let mut len = [0u8; 4];
        len.copy_from_slice(len_bytes);
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        let block = cursor
            .take(len)
            .ok_or_else(|| failed("block longer than the stream".into()))?;
        append_block(block, &mut out)?;
    }
    Ok(out)
}

/// Compresses `plain` with codec `codec` using the fixed settings of the module doc.
fn compress(codec: i16, plain: Vec<u8>) -> Result<Vec<u8>, CompactError> {
    let name = codec_name(codec);
    let failed = |e: std::io::Error| CompactError::Compress {
        codec: name,
        reason: e.to_string(),
    };
    match codec {
        0 => Ok(plain),
        1 => {
            // GzEncoder's default header has mtime 0 and no name, so it carries no clock.
            let mut e =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            e.write_all(&plain).map_err(failed)?;
            e.finish().map_err(failed)
        }
        2 => {
            let mut out = Vec::with_capacity(SNAPPY_XERIAL_HEADER.len() + plain.len());
            out.extend_from_slice(SNAPPY_XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for block in plain.chunks(SNAPPY_BLOCK_BYTES) {
                let compressed =
                    encoder
                        .compress_vec(block)
                        .map_err(|e| CompactError::Compress {
                            codec: name,
                            reason: e.to_string(),
                        })?;
                let len = u32::try_from(compressed.len()).map_err(|_| CompactError::Compress {
                    codec: name,
                    reason: "snappy block longer than u32".into(),
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        3 => {
            // Every frame option is set, not left to the crate's defaults: 64 KiB independent
            // blocks and no block or content checksums, as Kafka's `KafkaLZ4BlockOutputStream`
            // writes (the batch CRC already covers the bytes).
            let mut e = lz4::EncoderBuilder::new()
                .level(LZ4_LEVEL)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .content_size(0)
                .favor_dec_speed(false)
                .build(Vec::new())
                .map_err(failed)?;
            e.write_all(&plain).map_err(failed)?;
            let (out, result) = e.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        4 => zstd::bulk::compress(&plain, ZSTD_LEVEL).map_err(failed),
        other => Err(CompactError::UnknownCodec(other)),
    }
}

#[cfg(test)]
mod tests;
