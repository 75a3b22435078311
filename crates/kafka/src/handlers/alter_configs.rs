//! AlterConfigs (key 33), versions 0–2: the legacy API that replaces a resource's whole config
//! set.
//!
//! - TOPIC (2): the configs named with a value become the topic's whole explicit set; every
//!   other config returns to its default (`Node::alter_topic_configs(name, changes, replace =
//!   true, validate_only)`). A null value leaves that config out, as Kafka's legacy path does.
//!   Unknown topic: UNKNOWN_TOPIC_OR_PARTITION ("The topic 'T' does not exist."); an unknown
//!   config name or an invalid value: INVALID_CONFIG with a message, and nothing changes.
//! - BROKER (4), named with this node's id or `""`: Jet has no dynamic broker configs, so an
//!   empty set succeeds (there is nothing to replace) and any named config answers
//!   INVALID_REQUEST, as Kafka answers configs it cannot update dynamically. Another id, or one
//!   that is not a number: INVALID_REQUEST.
//! - BROKER_LOGGER (8) and every other type: INVALID_REQUEST (the legacy API never supported
//!   loggers).
//! - The same resource twice in one request: INVALID_REQUEST for each of them, nothing changed.
//!
//! Resources are handled one after another, each with its own error.

use std::collections::HashMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::create_topics::refusal;
use super::describe_configs::{check_broker_id, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::Ctx;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::AlterConfigs;
/// Versions 0–2, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// A refused resource: its Kafka error code and message.
pub(crate) type Refusal = (i16, String);

/// Kafka's message for a resource named twice in one request.
pub(crate) const DUPLICATE_RESOURCE: &str = "Each resource must appear at most once.";

/// Counts how often each (type, name) resource appears, to refuse repeated ones.
pub(crate) fn resource_counts<'a>(
    resources: impl Iterator<Item = (i8, &'a str)>,
) -> HashMap<(i8, &'a str), usize> {
    let mut counts = HashMap::new();
    for r in resources {
        *counts.entry(r).or_default() += 1;
    }
    counts
}

/// The refusal for an existing topic check: Kafka's message for a missing topic.
pub(crate) fn unknown_topic(name: &str) -> Refusal {
    (
        ResponseError::UnknownTopicOrPartition.code(),
        format!("The topic '{name}' does not exist."),
    )
}

/// Checks a change to a BROKER resource: this node (or the cluster default), and no config
/// named, since none of Jet's broker configs can change while it runs.
pub(crate) fn check_broker_change<'a>(
    ctx: &Ctx,
    name: &str,
    config_names: impl Iterator<Item = &'a str>,
) -> Result<(), Refusal> {
    let invalid = |m: String| (ResponseError::InvalidRequest.code(), m);
    if !name.is_empty() {
        check_broker_id(ctx, name).map_err(invalid)?;
    }
    let names: Vec<&str> = config_names.collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "Cannot update these configs dynamically: {}",
        names.join(", ")
    )))
}

/// Answers an AlterConfigs request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let counts = resource_counts(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let name = r.resource_name.as_str();
        let outcome = if counts.get(&(r.resource_type, name)).copied().unwrap_or(0) > 1 {
            Err((
                ResponseError::InvalidRequest.code(),
                DUPLICATE_RESOURCE.to_string(),
            ))
        } else {
            match r.resource_type {
                RESOURCE_TOPIC => {
                    let changes = r
                        .configs
                        .iter()
                        .filter_map(|c| {
                            c.value
                                .as_ref()
                                .map(|v| (c.name.to_string(), Some(v.to_string())))
                        })
                        .collect();
                    alter_topic(ctx, name, changes, true, req.validate_only).await
                }
                RESOURCE_BROKER => {
                    check_broker_change(ctx, name, r.configs.iter().map(|c| c.name.as_str()))
                }
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unsupported resource type: {other}"),
                )),
            }
        };
        let (code, message) = match outcome {
            Ok(()) => (0, None),
            Err((code, message)) => (code, Some(StrBytes::from_string(message))),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone()),
        );
    }
    AlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

/// Changes a topic's configs through the metadata shard (`replace`: the legacy whole-set form).
pub(crate) async fn alter_topic(
    ctx: &Ctx,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
    validate_only: bool,
) -> Result<(), Refusal> {
    if ctx.node.metadata().topic(name).is_none() {
        return Err(unknown_topic(name));
    }
    match ctx
        .node
        .alter_topic_configs(name, changes, replace, validate_only)
        .await
    {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = name, replace, "topic configs altered");
            }
            Ok(())
        }
        Err(jet_replication::Error::UnknownTopicOrPartition) => Err(unknown_topic(name)),
        Err(e) => Err(refusal(&e)),
    }
}
