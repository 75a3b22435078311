//! The embedded formats of the REST Proxy v2 and the conversions between their JSON and Kafka
//! record batches.
//!
//! - **binary** (`application/vnd.kafka.binary.v2+json`): keys and values are base64 strings.
//! - **json** (`application/vnd.kafka.json.v2+json`): keys and values are any JSON value, stored
//!   as their compact JSON text; read back, a record that is not JSON is refused (42203) rather
//!   than passed off as a string.
//!
//! A JSON `null` key or value is a null key or value in Kafka, in both formats. Produced batches
//! are magic 2, uncompressed, CreateTime now, with no producer id: the same bytes a plain Kafka
//! producer sends.

use base64::Engine;
use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::HttpError;

/// The binary format's content type.
pub const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";
/// The json format's content type.
pub const JSON_V2: &str = "application/vnd.kafka.json.v2+json";

/// An embedded format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// base64 keys and values.
    Binary,
    /// JSON keys and values.
    Json,
}

impl Format {
    /// The format a produce request's Content-Type names.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, HttpError> {
        match content_type {
            Some(BINARY_V2) => Ok(Format::Binary),
            Some(JSON_V2) => Ok(Format::Json),
            other => Err(HttpError::UnsupportedMediaType {
                got: other.unwrap_or("(none)").to_string(),
                supported:
                    "application/vnd.kafka.binary.v2+json, application/vnd.kafka.json.v2+json",
            }),
        }
    }

    /// The format named in a consumer's `format` setting.
    pub fn from_name(name: &str) -> Result<Format, HttpError> {
        match name {
            "binary" => Ok(Format::Binary),
            "json" => Ok(Format::Json),
            other => Err(HttpError::InvalidConsumerConfig(format!(
                "format must be 'binary' or 'json', not '{other}'"
            ))),
        }
    }

    /// Its name in a consumer's settings.
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Binary => BINARY_V2,
            Format::Json => JSON_V2,
        }
    }

    /// The format a read should answer in, from the Accept header: the first of the client's
    /// types this side can give; `default` when it accepts anything (or sent no Accept).
    pub fn negotiate(accept: &[String], default: Format) -> Result<Format, HttpError> {
        if accept.is_empty() {
            return Ok(default);
        }
        for a in accept {
            match a.as_str() {
                BINARY_V2 => return Ok(Format::Binary),
                JSON_V2 => return Ok(Format::Json),
                "*/*" | "application/*" | "application/json" | "application/vnd.kafka.v2+json" => {
                    return Ok(default)
                }
                _ => {}
            }
        }
        Err(HttpError::NotAcceptable(format!(
            "cannot answer in any of: {}; use {BINARY_V2} or {JSON_V2}",
            accept.join(", ")
        )))
    }
}

/// One record of a produce request, decoded from its format.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// The partition it names, if any.
    pub partition: Option<i32>,
    /// The key bytes.
    pub key: Option<Bytes>,
    /// The value bytes.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceBody {
    records: Vec<RecordIn>,
    // Schema ids and schemas belong to the Avro/Protobuf formats, which need a schema registry;
    // accepted only when null so a client that always sends them still works.
    #[serde(default)]
    key_schema: Option<Value>,
    #[serde(default)]
    value_schema: Option<Value>,
    #[serde(default)]
    key_schema_id: Option<Value>,
    #[serde(default)]
    value_schema_id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    partition: Option<Value>,
    #[serde(default)]
    headers: Option<Vec<HeaderIn>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

/// Parses a produce body in `format`: at least one record and at most `max_records`.
pub fn parse_produce(
    body: &[u8],
    format: Format,
    max_records: usize,
) -> Result<Vec<NewRecord>, HttpError> {
    let parsed: ProduceBody = serde_json::from_slice(body)
        .map_err(|e| HttpError::BadRequest(format!("bad produce body: {e}")))?;
    let schemas = [
        &parsed.key_schema,
        &parsed.value_schema,
        &parsed.key_schema_id,
        &parsed.value_schema_id,
    ];
    if schemas
        .iter()
        .any(|s| s.as_ref().is_some_and(|v| !v.is_null()))
    {
        return Err(HttpError::Unprocessable(
            "schemas are for the avro and protobuf formats, which this proxy does not serve".into(),
        ));
    }
    if parsed.records.is_empty() {
        return Err(HttpError::Unprocessable("'records' is empty".into()));
    }
    if parsed.records.len() > max_records {
        return Err(HttpError::Unprocessable(format!(
            "{} records in one request; the limit is {max_records}",
            parsed.records.len()
        )));
    }
    parsed
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let partition = match r.partition {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_i64()
                        .filter(|p| (0..=i64::from(i32::MAX)).contains(p))
                        .ok_or_else(|| {
                            HttpError::Unprocessable(format!(
                                "records[{i}].partition must be a partition number, got {v}"
                            ))
                        })? as i32,
                ),
            };
            let headers = r
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|h| {
                    let value = match h.value {
                        None => None,
                        Some(v) => Some(decode_base64(&v).map_err(|_| {
                            HttpError::Unprocessable(format!(
                                "records[{i}] header '{}': value is not base64",
                                h.name
                            ))
                        })?),
                    };
                    Ok((h.name, value))
                })
                .collect::<Result<Vec<_>, HttpError>>()?;
            Ok(NewRecord {
                partition,
                key: embedded(r.key, format, i, "key")?,
                value: embedded(r.value, format, i, "value")?,
                headers,
            })
        })
        .collect()
}

/// A key or value in `format` as bytes.
fn embedded(
    v: Option<Value>,
    format: Format,
    i: usize,
    what: &str,
) -> Result<Option<Bytes>, HttpError> {
    match (v, format) {
        (None | Some(Value::Null), _) => Ok(None),
        (Some(Value::String(s)), Format::Binary) => decode_base64(&s).map(Some).map_err(|_| {
            HttpError::Unprocessable(format!(
                "records[{i}].{what} is not base64, as the binary format needs"
            ))
        }),
        (Some(other), Format::Binary) => Err(HttpError::Unprocessable(format!(
            "records[{i}].{what} must be a base64 string in the binary format, got {other}"
        ))),
        (Some(v), Format::Json) => Ok(Some(Bytes::from(v.to_string()))),
    }
}

fn decode_base64(s: &str) -> Result<Bytes, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(Bytes::from)
}

fn encode_base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// One record batch of `records` (magic 2, uncompressed, CreateTime `now_ms`).
pub fn encode_batch(records: &[&NewRecord], now_ms: i64) -> Result<Bytes, HttpError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever `offset - sequence` changes; counting the
            // sequence up from -1 keeps one batch whose base sequence is -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|e| HttpError::Internal(format!("encoding a record batch: {e:#}")))?;
    Ok(buf.freeze())
}

/// Length of a batch's header up to and including its length field.
const BATCH_LENGTH_END: usize = 12;

/// The records of stored batches from `from_offset` on, at most `max` of them. Control records
/// (transaction markers) are skipped; a trailing partial batch is ignored.
pub fn decode_records(
    mut stored: Bytes,
    from_offset: i64,
    max: usize,
) -> Result<Vec<Record>, HttpError> {
    let mut out = Vec::new();
    while stored.len() >= BATCH_LENGTH_END && out.len() < max {
        let len = i32::from_be_bytes([stored[8], stored[9], stored[10], stored[11]]);
        let total = BATCH_LENGTH_END + usize::try_from(len).unwrap_or(0);
        if len <= 0 || stored.len() < total {
            break;
        }
        let mut batch = stored.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| HttpError::Internal(format!("decoding a stored batch: {e:#}")))?;
        for r in set.records {
            if r.control || r.offset < from_offset {
                continue;
            }
            if out.len() == max {
                break;
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// A fetched record as the proxy shows it.
pub fn record_json(
    topic: &str,
    partition: i32,
    r: &Record,
    format: Format,
) -> Result<Value, HttpError> {
    let show = |b: &Option<Bytes>, what: &str| -> Result<Value, HttpError> {
        match (b, format) {
            (None, _) => Ok(Value::Null),
            (Some(b), Format::Binary) => Ok(Value::String(encode_base64(b))),
            (Some(b), Format::Json) => serde_json::from_slice(b).map_err(|_| {
                HttpError::RecordFormat(format!(
                    "the {what} of the record at offset {} of {topic}/{partition} is not JSON; read it with the binary format",
                    r.offset
                ))
            }),
        }
    };
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, v)| json!({"key": k.as_str(), "value": v.as_ref().map(|v| encode_base64(v))}))
        .collect();
    Ok(json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": show(&r.key, "key")?,
        "value": show(&r.value, "value")?,
        "headers": headers,
    }))
}

/// Kafka's default partitioner hash (murmur2, as `org.apache.kafka.common.utils.Utils.murmur2`),
/// so a keyed record sent through REST lands on the partition a Java or librdkafka
/// (`murmur2_random`) producer would choose.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `partitions` (Kafka's `toPositive(murmur2) % n`).
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (s, want) in cases {
            assert_eq!(murmur2(s.as_bytes()), want, "{s}");
        }
        assert!((0..7).contains(&partition_for_key(b"k", 7)));
    }

    #[test]
    fn produce_bodies_parse_per_format() {
        let body = br#"{"records":[{"key":"a2V5","value":"dmFsdWU=","partition":1,
            "headers":[{"name":"h","value":"dg=="}]},{"value":null}]}"#;
        let rs = parse_produce(body, Format::Binary, 10).unwrap();
        assert_eq!(rs[0].key.as_deref(), Some(&b"key"[..]));
        assert_eq!(rs[0].value.as_deref(), Some(&b"value"[..]));
        assert_eq!(rs[0].partition, Some(1));
        assert_eq!(
            rs[0].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
        );
        assert_eq!(rs[1].value, None);
        let rs = parse_produce(
            br#"{"records":[{"key":{"id":1},"value":[1,"x"]}]}"#,
            Format::Json,
            10,
        )
        .unwrap();
        assert_eq!(rs[0].key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(rs[0].value.as_deref(), Some(&br#"[1,"x"]"#[..]));
    }

    #[test]
    fn bad_produce_bodies_are_refused() {
        let cases: [(&[u8], Format); 9] = [
            (b"not json", Format::Binary),
            (b"{}", Format::Binary),
            (br#"{"records":[]}"#, Format::Binary),
            (br#"{"records":[{"value":"***"}]}"#, Format::Binary),
            (br#"{"records":[{"value":5}]}"#, Format::Binary),
            (
                br#"{"records":[{"value":"eA==","partition":-1}]}"#,
                Format::Binary,
            ),
            (
                br#"{"records":[{"value":"eA==","partition":"x"}]}"#,
                Format::Binary,
            ),
            (br#"{"records":[{"value":1,"bogus":1}]}"#, Format::Json),
            (
                br#"{"records":[{"value":1}],"value_schema":"{}"}"#,
                Format::Json,
            ),
        ];
        for (body, format) in cases {
            let err = parse_produce(body, format, 10).unwrap_err();
            assert!(
                err.status().is_client_error(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let many = format!("{{\"records\":[{}]}}", ["{\"value\":1}"; 3].join(","));
        assert!(parse_produce(many.as_bytes(), Format::Json, 2).is_err());
    }

    #[test]
    fn batches_round_trip() {
        let a = NewRecord {
            partition: None,
            key: Some(Bytes::from_static(b"\"k\"")),
            value: Some(Bytes::from_static(b"{\"a\":1}")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        };
        let b = NewRecord {
            key: None,
            value: Some(Bytes::from_static(b"plain")),
            ..a.clone()
        };
        let batch = encode_batch(&[&a, &b], 1_700_000_000_000).unwrap();
        // One batch: its length field covers everything after it.
        let len = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
        assert_eq!(len as usize + 12, batch.len());
        let records = decode_records(batch.clone(), 0, 10).unwrap();
        assert_eq!(records.len(), 2);
        let first = record_json("t", 0, &records[0], Format::Json).unwrap();
        assert_eq!(first["value"], json!({"a": 1}));
        assert_eq!(first["key"], "k");
        assert_eq!(first["headers"][0]["key"], "h");
        let second = record_json("t", 0, &records[1], Format::Binary).unwrap();
        assert_eq!(second["value"], "cGxhaW4=");
        assert_eq!(second["key"], Value::Null);
        assert_eq!(second["offset"], 1);
        assert!(matches!(
            record_json("t", 0, &records[1], Format::Json),
            Err(HttpError::RecordFormat(_))
        ));
        // From an offset inside the batch, with a cap, and with a truncated tail.
        assert_eq!(decode_records(batch.clone(), 1, 10).unwrap().len(), 1);
        assert_eq!(decode_records(batch.clone(), 0, 1).unwrap().len(), 1);
        assert!(decode_records(batch.slice(..batch.len() - 1), 0, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn formats_negotiate() {
        assert_eq!(Format::negotiate(&[], Format::Json).unwrap(), Format::Json);
        let accept = vec![BINARY_V2.to_string()];
        assert_eq!(
            Format::negotiate(&accept, Format::Json).unwrap(),
            Format::Binary
        );
        assert!(Format::negotiate(&["text/html".to_string()], Format::Json).is_err());
        assert!(Format::from_content_type(Some("application/json")).is_err());
        assert!(Format::from_name("avro").is_err());
    }
}
