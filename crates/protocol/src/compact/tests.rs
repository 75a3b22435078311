//! Tests of `compact`: batches are built by kafka-protocol's encoder and read back by its
//! decoder, an implementation independent of the record parser under test, so a rewrite that
//! shifted an offset, a timestamp, a key, a value or a header would show as a record that no
//! longer equals its original.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

use super::*;
use crate::batch::{build_uncompressed, patch_log_append_time, patch_offset_and_epoch};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

const PRODUCER_ID: i64 = 7;
const PRODUCER_EPOCH: i16 = 2;
const BASE_SEQUENCE: i32 = 100;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

fn record(
    offset: i64,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 3,
        producer_id: PRODUCER_ID,
        producer_epoch: PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        // The encoder derives the base sequence from the first record's offset and sequence.
        sequence: BASE_SEQUENCE + offset as i32,
        timestamp: BASE_TIMESTAMP + timestamp_delta,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    StrBytes::from_string(k.to_string()),
                    v.map(Bytes::copy_from_slice),
                )
            })
            .collect::<IndexMap<_, _>>(),
    }
}

/// One batch of `records` (offsets from 0) compressed with `codec`, base offset set to 500.
fn encode(records: &[Record], codec: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("encode");
    let mut batch = buf.to_vec();
    patch_offset_and_epoch(&mut batch, 500, 9);
    batch
}

/// The records of `batch` as kafka-protocol decodes them, offsets relative to the base offset.
fn decode(batch: &[u8]) -> Vec<Record> {
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut bytes).expect("decode");
    assert!(bytes.is_empty(), "one batch");
    set.records
        .into_iter()
        .map(|mut r| {
            r.offset -= 500;
            // The decoder stamps batch-level fields on records; compare record fields only.
            r.partition_leader_epoch = 3;
            r
        })
        .collect()
}

/// Five records: a plain one, a keyless one, a tombstone, one with headers and the batch's
/// largest timestamp, and an empty (non-null) key.
fn sample_records() -> Vec<Record> {
    vec![
        record(0, 0, Some(b"k0"), Some(b"v0"), &[]),
        record(1, 5, None, Some(b"v1"), &[]),
        record(2, 3, Some(b"k2"), None, &[("h", Some(b"x"))]),
        record(
            3,
            90,
            Some(b"k3"),
            Some(b"v3"),
            &[("a", Some(b"1")), ("b", None)],
        ),
        record(4, 7, Some(b""), Some(b"v4"), &[]),
    ]
}

#[test]
fn record_keys_every_codec() {
    for codec in CODECS {
        let keys = record_keys(&encode(&sample_records(), codec)).expect("keys");
        let want = vec![
            (0, 0, Some(&b"k0"[..]), false),
            (1, 5, None, false),
            (2, 3, Some(&b"k2"[..]), true),
            (3, 90, Some(&b"k3"[..]), false),
            (4, 7, Some(&b""[..]), false),
        ];
        let got: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    k.offset_delta,
                    k.timestamp_delta,
                    k.key.as_deref(),
                    k.is_tombstone,
                )
            })
            .collect();
        assert_eq!(got, want, "{codec:?}");
    }
}

#[test]
fn records_without_key_lists_null_keys_only() {
    for codec in CODECS {
        let batch = encode(&sample_records(), codec);
        // Index 1 has a null key; index 4's empty key is a key, as Kafka's `hasKey()` says.
        assert_eq!(records_without_key(&batch).unwrap(), vec![1], "{codec:?}");
    }
    let keyed = encode(&sample_records()[2..], Compression::None);
    assert_eq!(records_without_key(&keyed).unwrap(), Vec::<i32>::new());
}

#[test]
fn rewrite_keeps_offsets_and_header_every_codec() {
    for codec in CODECS {
        let original = sample_records();
        let batch = encode(&original, codec);
        let before = batch::validate(&batch).unwrap();
        // Drop the record with the largest timestamp (3) and the last one (4).
        let out = rewrite_batch(&batch, |d| d < 3)
            .unwrap()
            .expect("some kept");
        let after = batch::validate(&out).expect("valid crc and sizes");

        assert_eq!(after.compression(), codec as i16, "{codec:?}");
        assert_eq!(after.base_offset, 500);
        assert_eq!(after.partition_leader_epoch, 9);
        assert_eq!(after.attributes, before.attributes);
        assert_eq!(after.last_offset_delta, 4, "lastOffsetDelta kept");
        assert_eq!(after.record_count, 3);
        assert_eq!(after.base_timestamp, BASE_TIMESTAMP);
        assert_eq!(
            after.max_timestamp,
            BASE_TIMESTAMP + 5,
            "max of kept records"
        );
        assert_eq!(
            (after.producer_id, after.producer_epoch, after.base_sequence),
            (PRODUCER_ID, PRODUCER_EPOCH, BASE_SEQUENCE)
        );
        assert_eq!(after.last_sequence(), before.last_sequence());
        assert_eq!(decode(&out), original[..3].to_vec(), "{codec:?}");

        // A gap in the middle, then a second pass over the already cleaned batch.
        let out = rewrite_batch(&batch, |d| d != 1).unwrap().unwrap();
        let want: Vec<Record> = [0, 2, 3, 4].iter().map(|&i| original[i].clone()).collect();
        assert_eq!(decode(&out), want);
        let again = rewrite_batch(&out, |d| d == 4).unwrap().unwrap();
        assert_eq!(decode(&again), vec![original[4].clone()]);
        assert_eq!(batch::validate(&again).unwrap().last_offset_delta, 4);
    }
}

#[test]
fn rewrite_is_deterministic() {
    for codec in CODECS {
        let batch = encode(&sample_records(), codec);
        let a = rewrite_batch(&batch, |d| d % 2 == 0).unwrap().unwrap();
        let b = rewrite_batch(&batch, |d| d % 2 == 0).unwrap().unwrap();
        assert_eq!(a, b, "{codec:?}");
    }
}

#[test]
fn keep_all_is_byte_identical_and_keep_none_is_none() {
    for codec in CODECS {
        let batch = encode(&sample_records(), codec);
        assert_eq!(
            rewrite_batch(&batch, |_| true).unwrap(),
            Some(batch.clone())
        );
        assert_eq!(rewrite_batch(&batch, |_| false).unwrap(), None);
    }
}

#[test]
fn keep_sees_every_offset_delta_in_order() {
    let batch = encode(&sample_records(), Compression::Lz4);
    let mut seen = Vec::new();
    rewrite_batch(&batch, |d| {
        seen.push(d);
        true
    })
    .unwrap();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

#[test]
fn log_append_time_keeps_the_batch_max_timestamp() {
    let mut batch = encode(&sample_records(), Compression::Gzip);
    patch_log_append_time(&mut batch, 42_000);
    let out = rewrite_batch(&batch, |d| d == 0).unwrap().unwrap();
    let h = batch::validate(&out).unwrap();
    assert_eq!(h.max_timestamp, 42_000);
    assert_ne!(h.attributes & ATTR_LOG_APPEND_TIME, 0);
}

#[test]
fn transactional_bit_is_kept() {
    let records: Vec<Record> = sample_records()
        .into_iter()
        .map(|mut r| {
            r.transactional = true;
            r
        })
        .collect();
    let batch = encode(&records, Compression::Snappy);
    let out = rewrite_batch(&batch, |d| d == 3).unwrap().unwrap();
    assert!(batch::validate(&out).unwrap().is_transactional());
    assert_eq!(decode(&out), vec![records[3].clone()]);
}

#[test]
fn refuses_control_batches_and_trailing_bytes() {
    let mut control = sample_records();
    for r in &mut control {
        r.control = true;
    }
    let batch = encode(&control, Compression::None);
    assert_eq!(record_keys(&batch), Err(CompactError::ControlBatch));
    assert_eq!(
        rewrite_batch(&batch, |_| true),
        Err(CompactError::ControlBatch)
    );

    let mut two = encode(&sample_records(), Compression::None);
    let len = two.len();
    two.extend_from_slice(&two.clone());
    assert_eq!(
        records_without_key(&two),
        Err(CompactError::TrailingBytes {
            batch_len: len,
            input_len: 2 * len,
        })
    );
}

#[test]
fn decompression_is_bounded_every_codec() {
    let big = vec![record(0, 0, Some(b"k"), Some(&[0u8; 4096][..]), &[])];
    for codec in CODECS.into_iter().skip(1) {
        let batch = encode(&big, codec);
        assert!(matches!(
            open(&batch, 1024),
            Err(CompactError::TooLarge { limit_bytes: 1024 })
        ));
        assert!(open(&batch, 8192).is_ok(), "{codec:?}");
    }
}

/// A batch of hand-encoded records, with a valid header and CRC around them.
fn raw_batch(count: i32, last_offset_delta: i32, records: &[u8]) -> Vec<u8> {
    let mut b = build_uncompressed(BASE_TIMESTAMP, (-1, -1, -1), count, records);
    b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn malformed_records_table() {
    // Zigzag varints: 0 → 0x00, 1 → 0x02, 2 → 0x04, -1 → 0x01, -2 → 0x03, 7 → 0x0e.
    // A well-formed record: length 6, attributes, ts 0, offset 0, key null, value null, 0 headers.
    let good = [0x0c, 0, 0, 0, 0x01, 0x01, 0];
    let record_err = |index, reason| CompactError::Record { index, reason };
    let cases: Vec<(&str, Vec<u8>, i32, i32, CompactError)> = vec![
        (
            "negative length",
            vec![0x01, 0, 0, 0, 0, 0, 0],
            1,
            0,
            record_err(0, "negative record length"),
        ),
        (
            "length past batch",
            vec![0x0e, 0, 0, 0, 0x01, 0x01, 0],
            1,
            0,
            record_err(0, "record longer than its batch"),
        ),
        (
            "key length -2",
            vec![0x0c, 0, 0, 0, 0x03, 0x01, 0],
            1,
            0,
            record_err(0, "length below -1"),
        ),
        (
            "bytes after headers",
            vec![0x0e, 0, 0, 0, 0x01, 0x01, 0, 9],
            1,
            0,
            record_err(0, "record longer than its fields"),
        ),
        (
            "null header key",
            vec![0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01],
            1,
            0,
            record_err(0, "null header key"),
        ),
        (
            "offset varint over 5 bytes",
            vec![0x0e, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff],
            1,
            0,
            record_err(0, "record shorter than its fields"),
        ),
        (
            "offset delta repeats",
            [good, good].concat(),
            2,
            1,
            record_err(1, "offset delta not greater than the previous record's"),
        ),
        (
            "offset delta past last",
            vec![0x0c, 0, 0, 0x04, 0x01, 0x01, 0],
            1,
            1,
            record_err(0, "offset delta outside the batch's offset range"),
        ),
        (
            "bytes after last record",
            [&good[..], &[0u8; 7][..]].concat(),
            1,
            0,
            CompactError::TrailingRecordBytes(7),
        ),
        (
            "count beyond bytes",
            good.to_vec(),
            2,
            1,
            CompactError::RecordCount { count: 2, bytes: 7 },
        ),
    ];
    for (name, records, count, last, want) in cases {
        let batch = raw_batch(count, last, &records);
        assert_eq!(record_keys(&batch), Err(want.clone()), "{name}");
        assert_eq!(rewrite_batch(&batch, |_| true), Err(want), "{name}");
    }
    // The well-formed record itself parses: keyless, a tombstone.
    let keys = record_keys(&raw_batch(1, 0, &good)).unwrap();
    assert_eq!(keys[0].key, None);
    assert!(keys[0].is_tombstone);
}

#[test]
fn garbage_compressed_records_are_errors() {
    for codec in 1..=4i16 {
        let mut b = raw_batch(1, 0, &[0x0c, 0, 0, 0, 0x01, 0x01, 0]);
        b[21..23].copy_from_slice(&codec.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(record_keys(&b).is_err(), "codec {codec}");
    }
    let mut b = raw_batch(1, 0, &[0x0c, 0, 0, 0, 0x01, 0x01, 0]);
    b[21..23].copy_from_slice(&5i16.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(record_keys(&b), Err(CompactError::UnknownCodec(5)));
}

type Spec = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    i64,
);

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(
            (
                "[a-z]{0,4}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
            ),
            0..3,
        ),
        -1000i64..1000,
    )
}

fn build(specs: &[Spec]) -> Vec<Record> {
    specs
        .iter()
        .zip(0i64..)
        .map(|((key, value, headers, ts), offset)| {
            let headers: Vec<(&str, Option<&[u8]>)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            record(offset, *ts, key.as_deref(), value.as_deref(), &headers)
        })
        .collect()
}

proptest! {
    #[test]
    fn random_batches_round_trip(
        specs in proptest::collection::vec(spec(), 1..20),
        codec in 0usize..5,
        mask in any::<u64>(),
    ) {
        let codec = CODECS[codec];
        let records = build(&specs);
        let batch = encode(&records, codec);
        let keep = |d: i32| mask & (1 << d) != 0;
        let keys = record_keys(&batch).unwrap();
        prop_assert_eq!(keys.len(), records.len());
        for (k, r) in keys.iter().zip(&records) {
            prop_assert_eq!(i64::from(k.offset_delta), r.offset);
            prop_assert_eq!(&k.key, &r.key);
            prop_assert_eq!(k.is_tombstone, r.value.is_none());
        }
        let keyless: Vec<i32> = (0i32..).zip(&records)
            .filter(|(_, r)| r.key.is_none()).map(|(i, _)| i).collect();
        prop_assert_eq!(records_without_key(&batch).unwrap(), keyless);

        let want: Vec<Record> = records.iter()
            .filter(|r| keep(r.offset as i32)).cloned().collect();
        match rewrite_batch(&batch, keep).unwrap() {
            None => prop_assert!(want.is_empty()),
            Some(out) => {
                let h = batch::validate(&out).unwrap();
                prop_assert_eq!(h.last_offset_delta, records.len() as i32 - 1);
                prop_assert_eq!(h.record_count, want.len() as i32);
                prop_assert_eq!(decode(&out), want.clone());
                if want.len() == records.len() {
                    prop_assert_eq!(&out, &batch);
                } else {
                    let max = want.iter().map(|r| r.timestamp).fold(-1, i64::max);
                    prop_assert_eq!(h.max_timestamp, max);
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = record_keys(&bytes);
        let _ = records_without_key(&bytes);
        let _ = rewrite_batch(&bytes, |d| d % 2 == 0);
    }

    /// Random corruption of a valid batch, with the CRC and length fixed up so the bytes get
    /// past the header checks into the record parser and the decompressors.
    #[test]
    fn corrupted_batches_never_panic(
        specs in proptest::collection::vec(spec(), 1..6),
        codec in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        count in -2i32..40,
    ) {
        let mut batch = encode(&build(&specs), CODECS[codec]);
        for (at, byte) in flips {
            let at = HEADER_LEN + at.index(batch.len() - HEADER_LEN);
            batch[at] = byte;
        }
        let keep = HEADER_LEN + cut.index(batch.len() - HEADER_LEN + 1);
        batch.truncate(keep);
        let len = (batch.len() - BATCH_LENGTH_BASE) as i32;
        batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&len.to_be_bytes());
        batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        batch[23..27].copy_from_slice(&count.max(1).saturating_add(3).to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let _ = record_keys(&batch);
        let _ = records_without_key(&batch);
        if let Ok(Some(out)) = rewrite_batch(&batch, |d| d % 2 == 1) {
            // Whatever survives the parser rewrites to a batch that parses again.
            prop_assert!(batch::validate(&out).is_ok());
            prop_assert!(record_keys(&out).is_ok());
        }
    }
}
