//! What a consumer instance does once it has partitions: read `records`, commit and read
//! `offsets`, and seek (`positions`, `positions/beginning`, `positions/end`). The instances and
//! their subscriptions are in [`crate::consumers`], whose module docs give the rules for
//! positions and commits.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::consumers::{
    current, existing, parse_body, Instance, Mode, OffsetsBody, PartitionsBody, Reset, State_,
};
use crate::error::{json_with, v2_json, HttpError};
use crate::kafka::{kafka_error, EARLIEST, LATEST};
use crate::member::Assigned;
use crate::params::{self, Query};
use crate::records::{self, Format};
use crate::{App, AppState};

/// How long a records request waits when it names no `timeout` (the proxy's
/// `consumer.request.timeout.ms`).
const DEFAULT_RECORDS_TIMEOUT_MS: i64 = 1000;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// `GET .../records?timeout=&max_bytes=`.
pub async fn records(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let q = Query::parse(q.as_deref())?;
    q.only(&["timeout", "max_bytes"])?;
    let max_wait_ms = app.config.max_wait.as_millis() as i64;
    let timeout_ms = q.int(
        "timeout",
        DEFAULT_RECORDS_TIMEOUT_MS.min(max_wait_ms),
        0,
        max_wait_ms,
    )?;
    let max_response = app.config.max_response_bytes as i64;
    let max_bytes = q.int("max_bytes", max_response, 1, max_response)? as i32;
    let format = Format::negotiate(&params::accept(&headers), inst.format)?;
    if format != inst.format {
        return Err(HttpError::NotAcceptable(format!(
            "this consumer was created with the {} format; accept {}",
            inst.format.name(),
            inst.format.content_type()
        )));
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
    let mut st = inst.state.lock().await;
    let Some(parts) = wait_for_partitions(&mut st, deadline).await? else {
        return Ok(json_with(StatusCode::OK, &json!([]), format.content_type()));
    };
    sync_positions(&app, &inst, &mut st, &parts).await?;

    let wanted: Vec<(String, i32, i64)> = st
        .positions
        .iter()
        .map(|((t, p), o)| (t.clone(), *p, *o))
        .collect();
    let wait_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis() as i32;
    let fetched = app.kafka.fetch(&wanted, wait_ms, max_bytes).await?;
    let mut out = Vec::new();
    for f in fetched {
        let key = (f.topic.clone(), f.partition);
        let Some(&position) = st.positions.get(&key) else {
            continue;
        };
        match f.error_code {
            0 => {}
            OFFSET_OUT_OF_RANGE => {
                // As a Kafka consumer does: start over by auto.offset.reset.
                let reset = reset_offset(&app, inst.reset, &f.topic, f.partition).await?;
                st.positions.insert(key, reset);
                continue;
            }
            code => {
                tracing::debug!(topic = %f.topic, partition = f.partition, code, "rest consumer fetch error");
                continue;
            }
        }
        let room = app.config.max_records.saturating_sub(out.len());
        let decoded = records::decode_records(f.records, position, room)?;
        if let Some(last) = decoded.last() {
            st.positions.insert(key, last.offset + 1);
        }
        for r in &decoded {
            out.push(records::record_json(&f.topic, f.partition, r, format)?);
        }
    }
    if inst.auto_commit {
        commit_positions(&app, &inst.group, &st).await?;
    }
    Ok(json_with(
        StatusCode::OK,
        &Value::Array(out),
        format.content_type(),
    ))
}

/// The partitions to read: the assigned ones, or — subscribed and waiting for the group's first
/// assignment — those that arrive before `deadline` (`None` if none do).
async fn wait_for_partitions(
    st: &mut State_,
    deadline: Instant,
) -> Result<Option<Vec<(String, i32)>>, HttpError> {
    let mut rx = match &st.mode {
        Mode::Idle => {
            return Err(HttpError::SubscriptionConflict(
                "this consumer is neither subscribed nor assigned partitions".into(),
            ))
        }
        Mode::Assigned(parts) => return Ok(Some(parts.clone())),
        Mode::Subscribed { membership, .. } => membership.assigned.clone(),
    };
    loop {
        let assigned = rx.borrow_and_update().clone();
        if let Some(a) = assigned {
            if let Mode::Subscribed { generation, .. } = &mut st.mode {
                if *generation != a.generation {
                    *generation = a.generation;
                    st.positions.retain(|tp, _| a.partitions.contains(tp));
                }
            }
            return Ok(Some(a.partitions));
        }
        if tokio::time::timeout_at(deadline.into(), rx.changed())
            .await
            .is_err()
        {
            return Ok(None);
        }
    }
}

/// Gives every partition in `parts` a position: a pending seek, else the committed offset, else
/// `auto.offset.reset`.
async fn sync_positions(
    app: &App,
    inst: &Instance,
    st: &mut State_,
    parts: &[(String, i32)],
) -> Result<(), HttpError> {
    let missing: Vec<(String, i32)> = parts
        .iter()
        .filter(|tp| !st.positions.contains_key(*tp))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let committed = app.kafka.committed(&inst.group, Some(&missing)).await?;
    for tp in missing {
        let position = if let Some(o) = st.pending_seeks.remove(&tp) {
            o
        } else if let Some(c) = committed
            .iter()
            .find(|c| c.topic == tp.0 && c.partition == tp.1 && c.offset >= 0)
        {
            c.offset
        } else {
            reset_offset(app, inst.reset, &tp.0, tp.1).await?
        };
        st.positions.insert(tp, position);
    }
    Ok(())
}

async fn reset_offset(
    app: &App,
    reset: Reset,
    topic: &str,
    partition: i32,
) -> Result<i64, HttpError> {
    let timestamp = match reset {
        Reset::Earliest => EARLIEST,
        Reset::Latest => LATEST,
        Reset::None => {
            return Err(HttpError::Unprocessable(format!(
                "{topic}/{partition} has no committed offset and auto.offset.reset is none"
            )))
        }
    };
    offset_at(app, topic, partition, timestamp).await
}

async fn offset_at(
    app: &App,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64, HttpError> {
    match app
        .kafka
        .list_offsets(&[(topic.to_string(), partition)], timestamp)
        .await?
        .pop()
    {
        Some((_, _, Ok(o))) => Ok(o),
        Some((_, _, Err(code))) => Err(kafka_error(code, format!("offset of {topic}/{partition}"))),
        None => Err(HttpError::Internal("empty ListOffsets response".into())),
    }
}

/// The (generation, member id) commits are made under.
fn committer(mode: &Mode) -> (i32, String) {
    match current(mode) {
        Some((
            Some(Assigned {
                generation,
                member_id,
                ..
            }),
            _,
        )) => (generation, member_id),
        _ => (-1, String::new()),
    }
}

async fn commit_offsets(
    app: &App,
    group: &str,
    st: &State_,
    offsets: &[(String, i32, i64, Option<String>)],
) -> Result<(), HttpError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let (generation, member_id) = committer(&st.mode);
    let results = app
        .kafka
        .commit(group, generation, &member_id, offsets)
        .await?;
    match results.iter().find(|(_, _, code)| *code != 0) {
        Some((t, p, code)) => Err(kafka_error(
            *code,
            format!("commit of {t}/{p} for group '{group}'"),
        )),
        None => Ok(()),
    }
}

async fn commit_positions(app: &App, group: &str, st: &State_) -> Result<(), HttpError> {
    let offsets: Vec<(String, i32, i64, Option<String>)> = st
        .positions
        .iter()
        .map(|((t, p), o)| (t.clone(), *p, *o, None))
        .collect();
    commit_offsets(app, group, st, &offsets).await
}

/// `POST .../offsets`: commits the body's offsets (each the last record consumed, so `offset + 1`
/// is committed), or with no body every position.
pub async fn commit(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let st = inst.state.lock().await;
    if body.iter().all(u8::is_ascii_whitespace) {
        commit_positions(&app, &inst.group, &st).await?;
    } else {
        let b: OffsetsBody = parse_body(&headers, &body, false)?;
        let mut offsets = Vec::with_capacity(b.offsets.len());
        for o in &b.offsets {
            let topic = params::topic(&o.topic)?;
            if o.partition < 0 || o.offset < 0 || o.offset == i64::MAX {
                return Err(HttpError::Unprocessable(format!(
                    "bad offset {} for {topic}/{}",
                    o.offset, o.partition
                )));
            }
            offsets.push((topic, o.partition, o.offset + 1, o.metadata.clone()));
        }
        commit_offsets(&app, &inst.group, &st, &offsets).await?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET .../offsets` with a body naming partitions (no body: the assigned ones): what the group
/// has committed for them.
pub async fn committed(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let parts = if body.iter().all(u8::is_ascii_whitespace) {
        let st = inst.state.lock().await;
        current(&st.mode).map(|(_, p)| p).unwrap_or_default()
    } else {
        let b: PartitionsBody = parse_body(&headers, &body, false)?;
        existing(&app, &b.partitions).await?
    };
    let committed = if parts.is_empty() {
        Vec::new()
    } else {
        app.kafka.committed(&inst.group, Some(&parts)).await?
    };
    let offsets: Vec<Value> = committed
        .iter()
        .map(|c| json!({"topic": c.topic, "partition": c.partition, "offset": c.offset, "metadata": c.metadata}))
        .collect();
    Ok(v2_json(StatusCode::OK, &json!({ "offsets": offsets })))
}

/// Moves positions; partitions of a subscribed topic not assigned yet keep the seek for when
/// they are.
fn apply_seeks(st: &mut State_, seeks: Vec<(String, i32, i64)>) -> Result<(), HttpError> {
    let (topics, assigned): (Vec<String>, Vec<(String, i32)>) = match &st.mode {
        Mode::Idle => {
            return Err(HttpError::SubscriptionConflict(
                "this consumer is neither subscribed nor assigned partitions".into(),
            ))
        }
        Mode::Assigned(parts) => (Vec::new(), parts.clone()),
        Mode::Subscribed { topics, .. } => {
            let parts = current(&st.mode).map(|(_, p)| p).unwrap_or_default();
            (topics.clone(), parts)
        }
    };
    for (topic, partition, offset) in seeks {
        let tp = (topic, partition);
        if assigned.contains(&tp) {
            st.positions.insert(tp, offset);
        } else if topics.contains(&tp.0) {
            st.pending_seeks.insert(tp, offset);
        } else {
            return Err(HttpError::Unprocessable(format!(
                "{}/{} is not assigned to this consumer",
                tp.0, tp.1
            )));
        }
    }
    Ok(())
}

/// `POST .../positions`: the next offset to read, per partition.
pub async fn seek(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let b: OffsetsBody = parse_body(&headers, &body, false)?;
    let mut seeks = Vec::with_capacity(b.offsets.len());
    for o in &b.offsets {
        if o.offset < 0 {
            return Err(HttpError::Unprocessable(format!(
                "offset must be >= 0, got {}",
                o.offset
            )));
        }
        let topic = params::topic(&o.topic)?;
        app.kafka.partitions(&topic, Some(o.partition)).await?;
        seeks.push((topic, o.partition, o.offset));
    }
    let mut st = inst.state.lock().await;
    apply_seeks(&mut st, seeks)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../positions/beginning`.
pub async fn seek_to_beginning(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    seek_to(app, group, name, headers, body, EARLIEST).await
}

/// `POST .../positions/end`.
pub async fn seek_to_end(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    seek_to(app, group, name, headers, body, LATEST).await
}

async fn seek_to(
    app: AppState,
    group: String,
    name: String,
    headers: HeaderMap,
    body: Bytes,
    timestamp: i64,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let b: PartitionsBody = parse_body(&headers, &body, false)?;
    let parts = existing(&app, &b.partitions).await?;
    let mut seeks = Vec::with_capacity(parts.len());
    for (topic, partition) in parts {
        let offset = offset_at(&app, &topic, partition, timestamp).await?;
        seeks.push((topic, partition, offset));
    }
    let mut st = inst.state.lock().await;
    apply_seeks(&mut st, seeks)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
