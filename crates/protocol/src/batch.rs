//! The record batch (magic 2) header, as the broker sees it: 61 bytes in front of the records.
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset
//!      8     4  batchLength        (bytes after this field)
//!     12     4  partitionLeaderEpoch
//!     16     1  magic              (2)
//!     17     4  crc                (CRC-32C of bytes 21..end)
//!     21     2  attributes
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordCount
//! ```
//! The CRC does not cover base offset, length or leader epoch, so the broker rewrites those at
//! append without recomputing it. Records themselves are never decoded on the produce or fetch
//! path.

/// Size of the fixed header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the CRC-covered part.
const CRC_START: usize = 21;
/// `batchLength` counts bytes after offset 12.
const LENGTH_BASE: usize = 12;

/// Attribute bit: timestamps are LogAppendTime.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: a control batch.
pub const ATTR_CONTROL: i16 = 0x20;
/// Attribute bits: compression codec.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or fewer than `batchLength` says.
    #[error("truncated record batch")]
    Truncated,
    /// Magic byte other than 2.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// CRC-32C mismatch.
    #[error("record batch crc mismatch")]
    CrcMismatch,
    /// Header fields that cannot be true (negative counts, count and delta disagree).
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
    /// No batch at all.
    #[error("empty records")]
    Empty,
}

/// A read-only view of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Format version.
    pub magic: i8,
    /// CRC-32C as stored.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Reads the header at the start of `b` (no validation beyond length).
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < HEADER_LEN {
            // A header cut short may still show its magic: report a wrong magic first, as
            // Kafka does for old-format messages.
            if b.len() > 16 && b[16] as i8 != 2 {
                return Err(BatchError::UnsupportedMagic(b[16] as i8));
            }
            return Err(BatchError::Truncated);
        }
        Ok(BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic: b[16] as i8,
            crc: be_i32(b, 17) as u32,
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        })
    }

    /// Total bytes of the batch, header included.
    pub fn total_len(&self) -> usize {
        LENGTH_BASE + self.batch_length.max(0) as usize
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    /// True for transactional batches.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// True when the producer set an id (idempotent or transactional producer).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence of the last record.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        // Sequences wrap at i32::MAX, as Kafka's do.
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Validates one stored batch at the start of `b` and returns its header. Checks magic, length,
/// CRC-32C, and that the record count fits the offset range: a batch the log cleaner rewrote
/// keeps its `lastOffsetDelta` with fewer records (see [`crate::compact`]), so
/// `recordCount <= lastOffsetDelta + 1` here. Produced batches must be dense: see
/// [`validate_produced`].
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    check(b, false)
}

/// Validates one batch a producer sent: [`validate`], plus Kafka's `LogValidator` rule that its
/// offsets are consecutive (`recordCount == lastOffsetDelta + 1`, "Inconsistent batch offset
/// range and record count").
pub fn validate_produced(b: &[u8]) -> Result<BatchHeader, BatchError> {
    check(b, true)
}

/// The checks of [`validate`]; `dense` adds [`validate_produced`]'s consecutive offsets.
fn check(b: &[u8], dense: bool) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(b)?;
    if h.magic != 2 {
        return Err(BatchError::UnsupportedMagic(h.magic));
    }
    if h.batch_length < (HEADER_LEN - LENGTH_BASE) as i32 {
        return Err(BatchError::Invalid("batch length shorter than its header"));
    }
    if b.len() < h.total_len() {
        return Err(BatchError::Truncated);
    }
    if h.record_count < 0 || h.last_offset_delta < 0 {
        return Err(BatchError::Invalid("negative record count or offset delta"));
    }
    if h.record_count == 0 {
        return Err(BatchError::Invalid("batch without records"));
    }
    let count_fits = if dense {
        h.last_offset_delta == h.record_count - 1
    } else {
        h.last_offset_delta >= h.record_count - 1
    };
    if !count_fits {
        return Err(BatchError::Invalid(
            "record count does not match last offset delta",
        ));
    }
    let crc = crc32c::crc32c(&b[CRC_START..h.total_len()]);
    if crc != h.crc {
        return Err(BatchError::CrcMismatch);
    }
    Ok(h)
}

/// Validates every batch in `records` (back to back, as a produce request carries them) with
/// [`validate_produced`] and returns their headers. Any trailing partial batch is an error.
pub fn validate_all(records: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::with_capacity(1);
    let mut at = 0;
    while at < records.len() {
        let h = validate_produced(&records[at..])?;
        at += h.total_len();
        out.push(h);
    }
    Ok(out)
}

/// Iterates over back-to-back batches that were validated before: yields `(start, header)`.
pub fn iter(records: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = BatchHeader::parse(records.get(at..)?).ok()?;
        let start = at;
        at += h.total_len();
        Some((start, h))
    })
}

/// Sets base offset and partition leader epoch (not covered by the CRC).
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps LogAppendTime: sets the attribute bit and max timestamp, then recomputes the CRC
/// (both fields are covered by it). Kafka leaves the base timestamp as the producer sent it.
pub fn patch_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attrs = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    let len = LENGTH_BASE + be_i32(batch, 8).max(0) as usize;
    let crc = crc32c::crc32c(&batch[CRC_START..len]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Builds a valid batch around already-encoded records, for tests and tools. `records` must be
/// the encoded records of `count` records.
pub fn build_uncompressed(
    base_timestamp: i64,
    producer: (i64, i16, i32),
    count: i32,
    records: &[u8],
) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    let batch_length = (HEADER_LEN - LENGTH_BASE + records.len()) as i32;
    b[8..12].copy_from_slice(&batch_length.to_be_bytes());
    b[16] = 2;
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&base_timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&producer.0.to_be_bytes());
    b[51..53].copy_from_slice(&producer.1.to_be_bytes());
    b[53..57].copy_from_slice(&producer.2.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    b.extend_from_slice(records);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_uncompressed(1000, (-1, -1, -1), 3, &[1, 2, 3, 4, 5, 6, 7, 8, 9])
    }

    #[test]
    fn valid_batch_parses() {
        let b = sample();
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.max_timestamp, 1000);
    }

    #[test]
    fn rejects_table() {
        let good = sample();
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 0xff;
        let mut bad_magic = good.clone();
        bad_magic[16] = 1;
        let mut bad_count = good.clone();
        bad_count[57..61].copy_from_slice(&7i32.to_be_bytes());
        let mut long_len = good.clone();
        long_len[8..12].copy_from_slice(&1000i32.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, BatchError)> = vec![
            ("crc", bad_crc, BatchError::CrcMismatch),
            ("magic", bad_magic, BatchError::UnsupportedMagic(1)),
            (
                "count",
                bad_count,
                BatchError::Invalid("record count does not match last offset delta"),
            ),
            (
                "truncated",
                good[..good.len() - 1].to_vec(),
                BatchError::Truncated,
            ),
            ("short header", good[..30].to_vec(), BatchError::Truncated),
            ("length", long_len, BatchError::Truncated),
            ("empty", vec![], BatchError::Empty),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(validate_all(&bytes).unwrap_err(), want, "{name}");
        }
    }

    #[test]
    fn patches_keep_crc_valid() {
        let mut b = sample();
        patch_offset_and_epoch(&mut b, 42, 7);
        let h = validate(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        patch_log_append_time(&mut b, 5555);
        let h = validate(&b).unwrap();
        assert_eq!(h.max_timestamp, 5555);
        assert_ne!(h.attributes & ATTR_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn gaps_are_stored_but_not_produced() {
        // Three records at offset deltas 0..=4, as the cleaner leaves a batch of five.
        let mut b = build_uncompressed(1000, (-1, -1, -1), 3, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        b[23..27].copy_from_slice(&4i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate(&b).unwrap().last_offset_delta, 4);
        assert_eq!(
            validate_all(&b).unwrap_err(),
            BatchError::Invalid("record count does not match last offset delta")
        );
    }

    #[test]
    fn iterates_back_to_back_batches() {
        let mut two = sample();
        two.extend(sample());
        assert_eq!(validate_all(&two).unwrap().len(), 2);
        let starts: Vec<usize> = iter(&two).map(|(s, _)| s).collect();
        assert_eq!(starts, vec![0, sample().len()]);
    }
}
