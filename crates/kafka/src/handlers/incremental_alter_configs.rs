//! IncrementalAlterConfigs (key 44), versions 0–1: change named configs, leave the rest.
//!
//! Operations: SET (0) sets a value, DELETE (1) returns the config to its default, APPEND (2) and
//! SUBTRACT (3) add items to / remove items from a list config, starting from its effective value
//! (Kafka's semantics: appending an item already there, or subtracting one that is not, changes
//! nothing). Checks, in the order Kafka makes them, each refusing the whole resource:
//! - the same resource twice in one request: INVALID_REQUEST, for each of them;
//! - a config named twice in one resource: INVALID_REQUEST ("Error due to duplicate config
//!   keys");
//! - an unknown operation, or a null value for SET/APPEND/SUBTRACT: INVALID_REQUEST;
//! - APPEND/SUBTRACT on a config that is not a list: INVALID_CONFIG ("Can't APPEND to key K
//!   because its type is not LIST.") — Kafka's code for this, in both its ZooKeeper and KRaft
//!   controllers;
//! - unknown topic: UNKNOWN_TOPIC_OR_PARTITION; unknown config name or invalid value:
//!   INVALID_CONFIG with a message.
//!
//! TOPIC resources change through `Node::alter_topic_configs(replace = false)`. BROKER resources
//! (this node's id, or `""`) have no dynamic configs in Jet: an empty change list succeeds, any
//! named config answers INVALID_REQUEST. BROKER_LOGGER answers INVALID_REQUEST (Jet's log levels
//! come from `RUST_LOG`); other types INVALID_REQUEST.

use std::collections::HashSet;

use jet_replication::topic_config;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::alter_configs::{
    alter_topic, check_broker_change, resource_counts, unknown_topic, Refusal, DUPLICATE_RESOURCE,
};
use super::describe_configs::{
    is_list_config, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC,
};
use super::Ctx;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::IncrementalAlterConfigs;
/// Versions 0–1, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// Kafka's `AlterConfigOp.OpType` ids.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Answers an IncrementalAlterConfigs request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
            alter(ctx, r, req.validate_only).await
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
    IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

async fn alter(ctx: &Ctx, r: &AlterConfigsResource, validate_only: bool) -> Result<(), Refusal> {
    let invalid = |m: String| (ResponseError::InvalidRequest.code(), m);
    let mut names = HashSet::new();
    for c in &r.configs {
        if !names.insert(c.name.as_str()) {
            return Err(invalid("Error due to duplicate config keys".to_string()));
        }
        match c.config_operation {
            OP_DELETE => {}
            OP_SET | OP_APPEND | OP_SUBTRACT if c.value.is_none() => {
                return Err(invalid(format!(
                    "Null value not supported for : {}",
                    c.name.as_str()
                )))
            }
            OP_SET | OP_APPEND | OP_SUBTRACT => {}
            other => return Err(invalid(format!("Unknown operation type {other}"))),
        }
    }
    match r.resource_type {
        RESOURCE_TOPIC => {
            let name = r.resource_name.as_str();
            let changes = topic_changes(ctx, name, r)?;
            alter_topic(ctx, name, changes, false, validate_only).await
        }
        RESOURCE_BROKER => check_broker_change(
            ctx,
            r.resource_name.as_str(),
            r.configs.iter().map(|c| c.name.as_str()),
        ),
        RESOURCE_BROKER_LOGGER => Err(invalid(
            "jet does not change log levels at runtime; set RUST_LOG".to_string(),
        )),
        other => Err(invalid(format!("Unsupported resource type: {other}"))),
    }
}

/// The topic's changes as `Node::alter_topic_configs` takes them: `Some` sets, `None` removes.
/// APPEND and SUBTRACT start from the effective value (the topic's own, else the default).
fn topic_changes(
    ctx: &Ctx,
    name: &str,
    r: &AlterConfigsResource,
) -> Result<Vec<(String, Option<String>)>, Refusal> {
    let mut changes = Vec::with_capacity(r.configs.len());
    for c in &r.configs {
        let key = c.name.as_str();
        let value = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            OP_SET => changes.push((key.to_string(), value)),
            OP_DELETE => changes.push((key.to_string(), None)),
            op => {
                let verb = if op == OP_APPEND {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                let def = topic_config::config_def(key).ok_or_else(|| {
                    (
                        ResponseError::InvalidConfig.code(),
                        format!("unknown topic config {key}"),
                    )
                })?;
                if !is_list_config(def) {
                    return Err((
                        ResponseError::InvalidConfig.code(),
                        format!("Can't {verb} to key {key} because its type is not LIST."),
                    ));
                }
                let meta = ctx.node.metadata();
                let topic = meta.topic(name).ok_or_else(|| unknown_topic(name))?;
                let current = topic_config::effective(&topic.configs, key).unwrap_or("");
                let items = value.unwrap_or_default();
                let new = if op == OP_APPEND {
                    append_items(current, &items)
                } else {
                    subtract_items(current, &items)
                };
                changes.push((key.to_string(), Some(new)));
            }
        }
    }
    Ok(changes)
}

fn split_list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `current` with the items of `items` that it lacks added at the end.
fn append_items(current: &str, items: &str) -> String {
    let mut list = split_list(current);
    for item in split_list(items) {
        if !list.contains(&item) {
            list.push(item);
        }
    }
    list.join(",")
}

/// `current` without the items of `items`.
fn subtract_items(current: &str, items: &str) -> String {
    let remove = split_list(items);
    split_list(current)
        .into_iter()
        .filter(|i| !remove.contains(i))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_operations() {
        assert_eq!(append_items("delete", "compact"), "delete,compact");
        assert_eq!(append_items("delete", "delete"), "delete");
        assert_eq!(append_items("", "a, b"), "a,b");
        assert_eq!(subtract_items("delete,compact", "delete"), "compact");
        assert_eq!(subtract_items("delete", "compact"), "delete");
        assert_eq!(subtract_items("delete", "delete"), "");
    }
}
