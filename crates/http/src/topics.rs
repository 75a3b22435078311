//! Topic routes of the REST Proxy v2: `GET /topics`, `GET /topics/{t}`,
//! `GET /topics/{t}/partitions` and `GET /topics/{t}/partitions/{p}`, answered from a Metadata
//! request (and DescribeConfigs for a topic's configs) through the in-process Kafka dispatch.
//! The partition routes also carry the beginning and end offsets (ListOffsets), which the v2
//! proxy only gives at `.../offsets`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use serde_json::{json, Map, Value};

use crate::error::{v2_json, HttpError};
use crate::params::{self, Query};
use crate::AppState;

/// `GET /topics`: the names of every topic.
pub async fn list(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    Query::parse(q.as_deref())?.only(&[])?;
    let meta = app.kafka.metadata(None).await?;
    let mut names: Vec<String> = meta
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    Ok(v2_json(StatusCode::OK, &json!(names)))
}

/// `GET /topics/{t}`: name, configs and partitions.
pub async fn describe(
    State(app): State<AppState>,
    Path(topic): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    Query::parse(q.as_deref())?.only(&[])?;
    let topic = params::topic(&topic)?;
    let meta = app.kafka.topic(&topic).await?;
    let configs: Map<String, Value> = app
        .kafka
        .topic_configs(&topic)
        .await?
        .into_iter()
        .map(|(k, v, _)| (k, v.map_or(Value::Null, Value::String)))
        .collect();
    let partitions: Vec<Value> = meta.partitions.iter().map(partition_json).collect();
    Ok(v2_json(
        StatusCode::OK,
        &json!({ "name": topic, "configs": configs, "partitions": partitions }),
    ))
}

/// `GET /topics/{t}/partitions`: every partition with its leader, replicas and offsets.
pub async fn partitions(
    State(app): State<AppState>,
    Path(topic): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    Query::parse(q.as_deref())?.only(&[])?;
    let topic = params::topic(&topic)?;
    let meta = app.kafka.topic(&topic).await?;
    let marks = app.kafka.watermarks(&topic, meta.partitions.len()).await?;
    let out: Vec<Value> = meta
        .partitions
        .iter()
        .map(|p| with_offsets(partition_json(p), marks.get(p.partition_index as usize)))
        .collect();
    Ok(v2_json(StatusCode::OK, &json!(out)))
}

/// `GET /topics/{t}/partitions/{p}`: one partition.
pub async fn partition(
    State(app): State<AppState>,
    Path((topic, partition)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    Query::parse(q.as_deref())?.only(&[])?;
    let topic = params::topic(&topic)?;
    let partition = params::partition(&partition)?;
    let meta = app.kafka.topic(&topic).await?;
    let p = meta
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| HttpError::PartitionNotFound {
            topic: topic.clone(),
            partition,
        })?;
    let marks = app.kafka.watermarks(&topic, meta.partitions.len()).await?;
    Ok(v2_json(
        StatusCode::OK,
        &with_offsets(partition_json(p), marks.get(partition as usize)),
    ))
}

/// A partition as the proxy shows it.
fn partition_json(p: &MetadataResponsePartition) -> Value {
    let leader = p.leader_id.0;
    let replicas: Vec<Value> = p
        .replica_nodes
        .iter()
        .map(|b| {
            json!({
                "broker": b.0,
                "leader": b.0 == leader,
                "in_sync": p.isr_nodes.contains(b),
            })
        })
        .collect();
    json!({ "partition": p.partition_index, "leader": leader, "replicas": replicas })
}

fn with_offsets(mut v: Value, marks: Option<&(i64, i64)>) -> Value {
    if let (Some(obj), Some((beginning, end))) = (v.as_object_mut(), marks) {
        obj.insert("beginning_offset".into(), json!(beginning));
        obj.insert("end_offset".into(), json!(end));
    }
    v
}
