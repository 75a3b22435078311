//! The stateless read: `GET /topics/{t}/partitions/{p}/records?offset=&count=&timeout_ms=`.
//!
//! No group, no consumer instance: it fetches from `offset` (default: the partition's beginning)
//! until it has `count` records (default 100, at most `max_records`) or the partition has no
//! more, waiting up to `timeout_ms` (default 0, at most `max_wait`) for the first record when
//! there is none yet. The format follows the Accept header (binary by default).

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::error::{json_with, HttpError};
use crate::kafka::{kafka_error, EARLIEST};
use crate::params::{self, Query};
use crate::records::{self, Format};
use crate::{App, AppState};

/// Records returned when `count` is not given.
const DEFAULT_COUNT: i64 = 100;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// `GET /topics/{t}/partitions/{p}/records`.
pub async fn records(
    State(app): State<AppState>,
    Path((topic, partition)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let q = Query::parse(q.as_deref())?;
    q.only(&["offset", "count", "timeout_ms"])?;
    let topic = params::topic(&topic)?;
    let partition = params::partition(&partition)?;
    let count = q.int("count", DEFAULT_COUNT, 1, app.config.max_records as i64)? as usize;
    let max_wait_ms = app.config.max_wait.as_millis() as i64;
    let timeout = Duration::from_millis(q.int("timeout_ms", 0, 0, max_wait_ms)? as u64);
    let offset = q.int("offset", -1, 0, i64::MAX)?;
    let format = Format::negotiate(&params::accept(&headers), Format::Binary)?;
    app.kafka.partitions(&topic, Some(partition)).await?;
    let offset = if offset >= 0 {
        offset
    } else {
        let wanted = [(topic.clone(), partition)];
        match app.kafka.list_offsets(&wanted, EARLIEST).await?.pop() {
            Some((_, _, Ok(o))) => o,
            Some((_, _, Err(code))) => return Err(kafka_error(code, "earliest offset")),
            None => return Err(HttpError::Internal("empty ListOffsets response".into())),
        }
    };
    let out = read_partition(&app, &topic, partition, offset, count, timeout, format).await?;
    Ok(json_with(
        StatusCode::OK,
        &Value::Array(out),
        format.content_type(),
    ))
}

/// Up to `count` records of one partition from `offset`, as JSON in `format`; waits up to
/// `timeout` only while nothing has been read. An offset past the end is refused (422) with the
/// partition's range.
pub async fn read_partition(
    app: &App,
    topic: &str,
    partition: i32,
    mut offset: i64,
    count: usize,
    timeout: Duration,
    format: Format,
) -> Result<Vec<Value>, HttpError> {
    let mut out = Vec::new();
    let max_bytes = app.config.max_response_bytes.min(i32::MAX as usize) as i32;
    // Each round reads at least one batch or stops, so this bounds the rounds by the records.
    for round in 0..count {
        let wait_ms = if round == 0 {
            timeout.as_millis() as i32
        } else {
            0
        };
        let wanted = [(topic.to_string(), partition, offset)];
        let fetched = app.kafka.fetch(&wanted, wait_ms, max_bytes).await?;
        let Some(f) = fetched.into_iter().next() else {
            break;
        };
        match f.error_code {
            0 => {}
            OFFSET_OUT_OF_RANGE => {
                let marks = app.kafka.watermarks(topic, partition as usize + 1).await?;
                let (start, end) = marks.get(partition as usize).copied().unwrap_or((-1, -1));
                return Err(HttpError::Unprocessable(format!(
                    "offset {offset} is out of range: {topic}/{partition} holds offsets {start} to {end} (exclusive)"
                )));
            }
            code => return Err(kafka_error(code, format!("fetch of {topic}/{partition}"))),
        }
        let decoded = records::decode_records(f.records, offset, count - out.len())?;
        let Some(last) = decoded.last() else { break };
        offset = last.offset + 1;
        for r in &decoded {
            out.push(records::record_json(topic, partition, r, format)?);
        }
        if out.len() >= count || offset >= f.high_watermark {
            break;
        }
    }
    Ok(out)
}
