//! Produce routes of the REST Proxy v2: `POST /topics/{t}` and `POST /topics/{t}/partitions/{p}`
//! in the binary and json embedded formats.
//!
//! The records of one request become one record batch per partition and one Produce request
//! (acks=all) through the in-process Kafka dispatch, so they are validated, size-checked and
//! counted exactly like a Kafka client's. A record's partition is, in order: the route's, the
//! record's `partition` field, the murmur2 hash of its key (Kafka's default partitioner), or the
//! next partition in turn. As in the proxy, the answer is 200 with one entry per record, in
//! order, each with its offset or its error (`error_code` 1: not retriable, 2: retriable).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::error::{v2_json, HttpError};
use crate::params::{self, Query};
use crate::records::{self, Format, NewRecord};
use crate::AppState;

/// Round robin for records with neither partition nor key.
static NEXT_PARTITION: AtomicUsize = AtomicUsize::new(0);

/// `POST /topics/{t}`.
pub async fn to_topic(
    State(app): State<AppState>,
    Path(topic): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    produce(app, topic, None, q, headers, body).await
}

/// `POST /topics/{t}/partitions/{p}`.
pub async fn to_partition(
    State(app): State<AppState>,
    Path((topic, partition)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let partition = params::partition(&partition)?;
    produce(app, topic, Some(partition), q, headers, body).await
}

async fn produce(
    app: AppState,
    topic: String,
    route_partition: Option<i32>,
    q: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    Query::parse(q.as_deref())?.only(&[])?;
    let topic = params::topic(&topic)?;
    let format = Format::from_content_type(params::content_type(&headers).as_deref())?;
    let records = records::parse_produce(&body, format, app.config.max_records)?;
    let count = app.kafka.partitions(&topic, route_partition).await?;
    let targets = choose_partitions(&topic, &records, route_partition, count)?;

    // One batch per partition, records in request order within it.
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, p) in targets.iter().enumerate() {
        by_partition.entry(*p).or_default().push(i);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut batches = Vec::with_capacity(by_partition.len());
    for (p, idx) in &by_partition {
        let rs: Vec<&NewRecord> = idx.iter().map(|&i| &records[i]).collect();
        batches.push((*p, records::encode_batch(&rs, now_ms)?));
    }
    let timeout_ms = app.config.max_wait.as_millis().min(i32::MAX as u128) as i32;
    let results = app.kafka.produce(&topic, batches, timeout_ms).await?;

    let mut offsets = vec![Value::Null; records.len()];
    for (p, result) in results {
        let Some(idx) = by_partition.get(&p) else {
            continue;
        };
        for (n, &i) in idx.iter().enumerate() {
            offsets[i] = match &result {
                Ok(base) => {
                    json!({"partition": p, "offset": base + n as i64, "error_code": null, "error": null})
                }
                Err((code, message)) => {
                    let retriable = kafka_protocol::ResponseError::try_from_code(*code)
                        .is_some_and(|e| e.is_retriable());
                    let name = kafka_protocol::ResponseError::try_from_code(*code)
                        .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
                    json!({
                        "partition": p,
                        "offset": null,
                        "error_code": if retriable { 2 } else { 1 },
                        "error": format!("{name}: {message}"),
                    })
                }
            };
        }
    }
    Ok(v2_json(
        StatusCode::OK,
        &json!({"key_schema_id": null, "value_schema_id": null, "offsets": offsets}),
    ))
}

/// The partition of each record (see the module docs).
fn choose_partitions(
    topic: &str,
    records: &[NewRecord],
    route_partition: Option<i32>,
    count: usize,
) -> Result<Vec<i32>, HttpError> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| match (route_partition, r.partition, &r.key) {
            (Some(route), Some(own), _) if own != route => Err(HttpError::Unprocessable(format!(
                "records[{i}].partition is {own} but the request is for partition {route}"
            ))),
            (Some(route), _, _) => Ok(route),
            (None, Some(own), _) if own as usize >= count => Err(HttpError::PartitionNotFound {
                topic: topic.to_string(),
                partition: own,
            }),
            (None, Some(own), _) => Ok(own),
            (None, None, Some(key)) => Ok(records::partition_for_key(key, count)),
            (None, None, None) => {
                Ok((NEXT_PARTITION.fetch_add(1, Ordering::Relaxed) % count.max(1)) as i32)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: Option<i32>, key: Option<&'static [u8]>) -> NewRecord {
        NewRecord {
            partition,
            key: key.map(bytes::Bytes::from_static),
            value: None,
            headers: vec![],
        }
    }

    #[test]
    fn partitions_are_chosen_like_kafka() {
        let rs = [rec(Some(2), None), rec(None, Some(b"21")), rec(None, None)];
        let got = choose_partitions("t", &rs, None, 3).unwrap();
        assert_eq!(got[0], 2);
        assert_eq!(got[1], records::partition_for_key(b"21", 3));
        assert!((0..3).contains(&got[2]));
        assert_eq!(
            choose_partitions("t", &rs[1..], Some(1), 3).unwrap(),
            vec![1, 1]
        );
        assert!(choose_partitions("t", &rs, Some(1), 3).is_err());
        assert!(choose_partitions("t", &[rec(Some(3), None)], None, 3).is_err());
    }
}
