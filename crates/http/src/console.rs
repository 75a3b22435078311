//! The web console: one HTML page, a stylesheet and a script compiled into the binary
//! (`assets/`), no build step and nothing fetched from elsewhere. The script renders four views
//! from JSON — overview (nodes, shards, live rates), topics, one topic (partitions, offsets,
//! configs, browse and publish), and consumer groups (members, lag) — using the REST routes
//! where they exist and the `/console/api/*` routes below for what the REST Proxy has no route
//! for. Everything it shows comes through the same in-process Kafka dispatch as the REST API,
//! so it works on whichever node serves it.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{json_with, HttpError};
use crate::{groups, health, params, AppState};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const CONSOLE_CSS: &str = include_str!("../assets/console.css");
const CONSOLE_JS: &str = include_str!("../assets/console.js");

const JSON: &str = "application/json";

/// Most partitions a topic created from the console may have.
const MAX_CONSOLE_PARTITIONS: i64 = 10_000;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console/console.css", get(css))
        .route("/console/console.js", get(js))
        .route("/console/api/overview", get(overview))
        .route("/console/api/groups", get(group_list))
        .route("/console/api/topics", get(topic_list).post(create_topic))
        .route("/console/api/topics/{topic}/shards", get(topic_shards))
}

async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

async fn css() -> Response {
    asset(CONSOLE_CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(CONSOLE_JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Nodes, shards and the counters the live rates are computed from.
async fn overview(State(app): State<AppState>) -> Result<Response, HttpError> {
    let cluster = app.kafka.cluster().await?;
    let nodes: Vec<Value> = cluster
        .brokers
        .iter()
        .map(|b| {
            json!({
                "node_id": b.broker_id.0,
                "host": b.host.as_str(),
                "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.as_str()),
                "state": if b.is_fenced { "fenced" } else { "alive" },
                "this_node": b.broker_id.0 == app.node.node_id(),
            })
        })
        .collect();
    let totals = match &app.metrics {
        Some(m) => {
            let text = m.render();
            json!({
                "produced_bytes": crate::metrics::sum_series(&text, jet_kafka::metrics::PRODUCED_BYTES_TOTAL),
                "fetched_bytes": crate::metrics::sum_series(&text, jet_kafka::metrics::FETCHED_BYTES_TOTAL),
                "requests": crate::metrics::sum_series(&text, jet_kafka::metrics::REQUESTS_TOTAL),
            })
        }
        None => Value::Null,
    };
    Ok(json_with(
        StatusCode::OK,
        &json!({
            "cluster_id": cluster.cluster_id.as_str(),
            "controller_id": cluster.controller_id.0,
            "node_id": app.node.node_id(),
            "stopping": app.stopping.load(Ordering::Acquire),
            "nodes": nodes,
            "shards": health::shard_states(&app),
            "totals": totals,
        }),
        JSON,
    ))
}

/// Every group with members and lag.
async fn group_list(State(app): State<AppState>) -> Result<Response, HttpError> {
    let views = groups::all(&app.kafka).await?;
    Ok(json_with(StatusCode::OK, &json!(views), JSON))
}

/// Every topic with its partition count and total records.
async fn topic_list(State(app): State<AppState>) -> Result<Response, HttpError> {
    let meta = app.kafka.metadata(None).await?;
    let mut out = Vec::new();
    for t in meta.topics.iter().filter(|t| t.error_code == 0) {
        let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
            continue;
        };
        let marks = app.kafka.watermarks(&name, t.partitions.len()).await?;
        let records: i64 = marks.iter().map(|(b, e)| (e - b).max(0)).sum();
        out.push(json!({"name": name, "partitions": t.partitions.len(), "records": records}));
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json_with(StatusCode::OK, &json!(out), JSON))
}

/// The shard and the size in bytes of each partition of a topic.
async fn topic_shards(
    State(app): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Response, HttpError> {
    let topic = params::topic(&topic)?;
    let meta = app.node.metadata();
    let t = meta
        .topic(&topic)
        .ok_or_else(|| HttpError::TopicNotFound(topic.clone()))?;
    let shards: Vec<u64> = t.partitions.iter().map(|p| p.shard).collect();
    // Bytes kept per partition, as this node holds them (null where it holds no replica).
    let sizes: Vec<Option<u64>> = (0..t.partitions.len() as i32)
        .map(|p| {
            app.node
                .partition(&jet_replication::TopicPartition::new(t.id, p))
                .map(|h| h.size_bytes())
        })
        .collect();
    Ok(json_with(
        StatusCode::OK,
        &json!({ "topic": topic, "shards": shards, "sizes": sizes }),
        JSON,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    #[serde(default)]
    partitions: Option<i64>,
    #[serde(default)]
    replication_factor: Option<i64>,
    #[serde(default)]
    configs: std::collections::BTreeMap<String, String>,
}

/// Creates a topic: `{"name", "partitions"?, "replication_factor"?, "configs"?}`.
async fn create_topic(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    match params::content_type(&headers).as_deref() {
        Some("application/json") | Some("application/vnd.kafka.v2+json") => {}
        other => {
            return Err(HttpError::UnsupportedMediaType {
                got: other.unwrap_or("(none)").to_string(),
                supported: "application/json",
            })
        }
    }
    let req: CreateTopic = serde_json::from_slice(&body)
        .map_err(|e| HttpError::BadRequest(format!("bad JSON body: {e}")))?;
    let name = params::topic(&req.name)?;
    let partitions = match req.partitions {
        None => -1,
        Some(n) => params::int_in("partitions", &n.to_string(), 1, MAX_CONSOLE_PARTITIONS)? as i32,
    };
    let rf = match req.replication_factor {
        None => -1,
        Some(n) => {
            params::int_in("replication_factor", &n.to_string(), 1, i64::from(i16::MAX))? as i16
        }
    };
    let configs: Vec<(String, String)> = req.configs.into_iter().collect();
    app.kafka
        .create_topic(&name, partitions, rf, &configs)
        .await?;
    Ok(json_with(
        StatusCode::CREATED,
        &json!({ "name": name }),
        JSON,
    ))
}
