//! Consumer instances of the REST Proxy v2: `POST /consumers/{g}` creates one; under
//! `/consumers/{g}/instances/{i}` it subscribes or is assigned partitions, reads `records`,
//! commits and reads `offsets`, seeks (`positions`, `positions/beginning`, `positions/end`), and
//! is deleted.
//!
//! - **Membership.** A subscribed instance is a real member of its group ([`crate::member`]):
//!   Kafka consumers and REST instances in one group share its partitions. An assigned instance
//!   is not a member; it commits as a simple consumer (generation -1), as Kafka's `assign()` does.
//! - **Positions.** Each instance keeps the next offset to read per partition. A partition it
//!   starts reading begins at the group's committed offset, else at `auto.offset.reset`
//!   (`latest` by default, as in Kafka). When a rebalance takes a partition away its position is
//!   dropped; a seek on a subscribed topic's partition that is not (yet) assigned waits for it.
//! - **Commits.** As in the Confluent proxy, an offset in a commit body is the last record
//!   consumed and `offset + 1` is committed; a commit with no body commits every position (the
//!   next offset to read). `GET .../offsets` reports what the group has committed.
//! - **Idle instances** — no request for `consumer_idle_timeout` — are deleted by [`reap_idle`],
//!   leaving their group; requests for them then get 404 (40403).
//! - Requests of one instance run one at a time (a per-instance lock), in arrival order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{v2_json, HttpError};
use crate::kafka::Kafka;
use crate::member::{Assigned, Membership};
use crate::params::{self, Query};
use crate::records::Format;
use crate::{App, AppState};

/// Where a partition with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reset {
    Earliest,
    Latest,
    None,
}

/// How an instance gets partitions.
pub(crate) enum Mode {
    Idle,
    Subscribed {
        topics: Vec<String>,
        membership: Membership,
        /// The generation whose assignment the positions belong to.
        generation: i32,
    },
    Assigned(Vec<(String, i32)>),
}

/// What one instance's requests change; behind its lock.
pub(crate) struct State_ {
    pub(crate) mode: Mode,
    pub(crate) positions: BTreeMap<(String, i32), i64>,
    /// Seeks on subscribed partitions not assigned yet, applied when they are.
    pub(crate) pending_seeks: BTreeMap<(String, i32), i64>,
}

/// One consumer instance.
pub struct Instance {
    pub(crate) group: String,
    pub(crate) name: String,
    pub(crate) format: Format,
    pub(crate) reset: Reset,
    pub(crate) auto_commit: bool,
    pub(crate) state: tokio::sync::Mutex<State_>,
    last_used: Mutex<Instant>,
}

/// The instances of this node, by (group, name).
pub struct Consumers {
    instances: Mutex<HashMap<(String, String), Arc<Instance>>>,
    idle_timeout: Duration,
    max: usize,
}

impl Consumers {
    /// No instances yet.
    pub fn new(idle_timeout: Duration, max: usize) -> Consumers {
        Consumers {
            instances: Mutex::new(HashMap::new()),
            idle_timeout,
            max,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Instance>>> {
        // A poisoned lock means a panic while the map was held; the map itself is still whole.
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, group: &str, name: &str) -> Result<Arc<Instance>, HttpError> {
        let inst = self
            .map()
            .get(&(group.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| HttpError::ConsumerNotFound {
                group: group.to_string(),
                instance: name.to_string(),
            })?;
        *inst.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(inst)
    }

    fn remove(&self, group: &str, name: &str) -> Option<Arc<Instance>> {
        self.map().remove(&(group.to_string(), name.to_string()))
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes every instance (shutdown): each leaves its group.
    pub async fn close_all(&self, _kafka: &Kafka) {
        let all: Vec<Arc<Instance>> = self.map().drain().map(|(_, i)| i).collect();
        for inst in all {
            inst.close().await;
        }
    }
}

impl Instance {
    async fn close(&self) {
        let mut st = self.state.lock().await;
        if let Mode::Subscribed { membership, .. } = std::mem::replace(&mut st.mode, Mode::Idle) {
            membership.stop().await;
        }
    }
}

/// Deletes instances idle past the timeout, checking a few times per timeout.
pub async fn reap_idle(app: AppState) {
    let idle = app.consumers.idle_timeout;
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::time::sleep(every).await;
        let expired: Vec<Arc<Instance>> = {
            let mut map = app.consumers.map();
            let keys: Vec<(String, String)> = map
                .iter()
                .filter(|(_, i)| {
                    i.last_used
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .elapsed()
                        > idle
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for inst in expired {
            tracing::info!(group = %inst.group, instance = %inst.name, "removing idle rest consumer");
            inst.close().await;
        }
    }
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "auto.offset.reset")]
    auto_offset_reset: Option<String>,
    #[serde(default, rename = "auto.commit.enable")]
    auto_commit_enable: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Settings the proxy takes that change nothing here; accepted so clients that send them work.
const IGNORED_SETTINGS: &[&str] = &["fetch.min.bytes", "consumer.request.timeout.ms"];

/// `POST /consumers/{g}`.
pub async fn create(
    State(app): State<AppState>,
    Path(group): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    Query::parse(q.as_deref())?.only(&[])?;
    let group = params::name("group", &group)?;
    let b: CreateBody = parse_body(&headers, &body, true)?;
    if let Some(k) = b
        .other
        .keys()
        .find(|k| !IGNORED_SETTINGS.contains(&k.as_str()))
    {
        return Err(HttpError::InvalidConsumerConfig(format!(
            "unknown setting '{k}'"
        )));
    }
    let name = match b.name {
        Some(n) => params::name("instance name", &n)?,
        None => format!("rest-consumer-{}", uuid::Uuid::new_v4()),
    };
    let format = Format::from_name(b.format.as_deref().unwrap_or("binary"))?;
    let reset = match b.auto_offset_reset.as_deref().unwrap_or("latest") {
        "earliest" | "smallest" => Reset::Earliest,
        "latest" | "largest" => Reset::Latest,
        "none" => Reset::None,
        other => {
            return Err(HttpError::InvalidConsumerConfig(format!(
                "auto.offset.reset must be earliest, latest or none, not '{other}'"
            )))
        }
    };
    let auto_commit = match b.auto_commit_enable.as_deref().unwrap_or("false") {
        "true" => true,
        "false" => false,
        other => {
            return Err(HttpError::InvalidConsumerConfig(format!(
                "auto.commit.enable must be 'true' or 'false', not '{other}'"
            )))
        }
    };
    {
        let mut map = app.consumers.map();
        let key = (group.clone(), name.clone());
        if map.contains_key(&key) {
            return Err(HttpError::ConsumerExists(name));
        }
        if map.len() >= app.consumers.max {
            return Err(HttpError::TooMany(format!(
                "{} consumer instances exist on this node, the limit",
                app.consumers.max
            )));
        }
        map.insert(
            key,
            Arc::new(Instance {
                group: group.clone(),
                name: name.clone(),
                format,
                reset,
                auto_commit,
                state: tokio::sync::Mutex::new(State_ {
                    mode: Mode::Idle,
                    positions: BTreeMap::new(),
                    pending_seeks: BTreeMap::new(),
                }),
                last_used: Mutex::new(Instant::now()),
            }),
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base_uri = format!("http://{host}/consumers/{group}/instances/{name}");
    Ok(v2_json(
        StatusCode::OK,
        &json!({"instance_id": name, "base_uri": base_uri}),
    ))
}

/// `DELETE /consumers/{g}/instances/{i}`.
pub async fn delete(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    app.consumers.get(&group, &name)?;
    if let Some(inst) = app.consumers.remove(&group, &name) {
        inst.close().await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeBody {
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    topic_pattern: Option<String>,
}

/// `POST .../subscription`.
pub async fn subscribe(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let b: SubscribeBody = parse_body(&headers, &body, false)?;
    if b.topic_pattern.is_some() {
        return Err(HttpError::Unprocessable(
            "topic_pattern is not supported; list the topics in 'topics'".into(),
        ));
    }
    let mut topics = b
        .topics
        .ok_or_else(|| HttpError::Unprocessable("'topics' is required".into()))?
        .iter()
        .map(|t| params::topic(t))
        .collect::<Result<Vec<_>, _>>()?;
    if topics.is_empty() {
        return Err(HttpError::Unprocessable("'topics' is empty".into()));
    }
    topics.sort();
    topics.dedup();
    let mut st = inst.state.lock().await;
    match std::mem::replace(&mut st.mode, Mode::Idle) {
        Mode::Assigned(parts) => {
            st.mode = Mode::Assigned(parts);
            return Err(HttpError::SubscriptionConflict(
                "this consumer has assigned partitions; subscribing and assigning are exclusive"
                    .into(),
            ));
        }
        Mode::Subscribed { membership, .. } => membership.stop().await,
        Mode::Idle => {}
    }
    st.positions.clear();
    st.pending_seeks.clear();
    let membership = Membership::start(app.kafka.clone(), inst.group.clone(), topics.clone());
    st.mode = Mode::Subscribed {
        topics,
        membership,
        generation: -1,
    };
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET .../subscription`.
pub async fn subscription(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let st = inst.state.lock().await;
    let topics = match &st.mode {
        Mode::Subscribed { topics, .. } => topics.clone(),
        _ => Vec::new(),
    };
    Ok(v2_json(StatusCode::OK, &json!({ "topics": topics })))
}

/// `DELETE .../subscription`.
pub async fn unsubscribe(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let mut st = inst.state.lock().await;
    if let Mode::Subscribed { membership, .. } = std::mem::replace(&mut st.mode, Mode::Idle) {
        membership.stop().await;
    }
    st.positions.clear();
    st.pending_seeks.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartitionsBody {
    pub(crate) partitions: Vec<PartitionRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartitionRef {
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OffsetsBody {
    pub(crate) offsets: Vec<OffsetRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OffsetRef {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    #[serde(default)]
    pub(crate) metadata: Option<String>,
}

/// Checks that each partition exists; the list, validated.
pub(crate) async fn existing(
    app: &App,
    parts: &[PartitionRef],
) -> Result<Vec<(String, i32)>, HttpError> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let topic = params::topic(&p.topic)?;
        app.kafka.partitions(&topic, Some(p.partition)).await?;
        out.push((topic, p.partition));
    }
    Ok(out)
}

/// `POST .../assignments`.
pub async fn assign(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let b: PartitionsBody = parse_body(&headers, &body, false)?;
    let mut parts = existing(&app, &b.partitions).await?;
    parts.sort();
    parts.dedup();
    let mut st = inst.state.lock().await;
    if matches!(st.mode, Mode::Subscribed { .. }) {
        return Err(HttpError::SubscriptionConflict(
            "this consumer is subscribed; subscribing and assigning are exclusive".into(),
        ));
    }
    st.positions.retain(|tp, _| parts.contains(tp));
    st.mode = Mode::Assigned(parts);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET .../assignments`: the partitions this instance reads now.
pub async fn assignments(
    State(app): State<AppState>,
    Path((group, name)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let inst = app.consumers.get(&group, &name)?;
    let st = inst.state.lock().await;
    let parts = current(&st.mode).map(|(_, p)| p).unwrap_or_default();
    let list: Vec<Value> = parts
        .iter()
        .map(|(t, p)| json!({"topic": t, "partition": p}))
        .collect();
    Ok(v2_json(StatusCode::OK, &json!({ "partitions": list })))
}

/// What an instance holds: the group's assignment when it is a member, and its partitions.
pub(crate) type Holding = (Option<Assigned>, Vec<(String, i32)>);

/// The generation (-1 when not a member) and partitions the instance holds now.
pub(crate) fn current(mode: &Mode) -> Option<Holding> {
    match mode {
        Mode::Idle => None,
        Mode::Assigned(parts) => Some((None, parts.clone())),
        Mode::Subscribed { membership, .. } => {
            let a = membership.assigned.borrow().clone()?;
            let parts = a.partitions.clone();
            Some((Some(a), parts))
        }
    }
}

/// The proxy's content type for requests without records; plain `application/json` is taken too.
const REQUEST_TYPES: &str = "application/vnd.kafka.v2+json, application/json";

/// Parses a JSON body of a consumer route. An empty body is `{}` when `empty_ok`.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, HttpError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        if !empty_ok {
            return Err(HttpError::BadRequest("a JSON body is required".into()));
        }
        b"{}"
    } else {
        match params::content_type(headers).as_deref() {
            Some("application/vnd.kafka.v2+json") | Some("application/json") => {}
            other => {
                return Err(HttpError::UnsupportedMediaType {
                    got: other.unwrap_or("(none)").to_string(),
                    supported: REQUEST_TYPES,
                })
            }
        }
        body
    };
    serde_json::from_slice(body).map_err(|e| HttpError::BadRequest(format!("bad JSON body: {e}")))
}
