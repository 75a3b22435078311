//! CreateTopics (key 19), versions 2–7.
//!
//! Topics are created one after another, in request order, each through the metadata shard
//! (`Node::create_topic`); each gets its own error code and message, and a failure of one does
//! not stop the others. Checks, in the order Kafka's controller makes them:
//! 1. A name given more than once: INVALID_REQUEST ("Duplicate topic name.") once for that name,
//!    and none of its entries is created.
//! 2. The name: INVALID_TOPIC_EXCEPTION for an illegal one; TOPIC_ALREADY_EXISTS; and
//!    INVALID_TOPIC_EXCEPTION when it differs from an existing topic only by `.` versus `_`
//!    (Kafka refuses those because their metric names collide).
//! 3. Configs: a null value or an unknown name or value answers INVALID_CONFIG with a message.
//! 4. Manual replica assignments. Jet places partitions itself, so an assignment is accepted
//!    only when it is trivially what Jet would do anyway: partitions numbered 0..n in order, each
//!    with exactly this node as its one replica. Then the topic gets n partitions and replication
//!    factor 1. Kafka's errors otherwise: INVALID_REQUEST when num_partitions or
//!    replication_factor is not -1 next to an assignment, INVALID_REPLICA_ASSIGNMENT for a gap in
//!    the partition numbers, an empty replica list or a broker that is not this node.
//! 5. Counts: -1 takes the server's `default_partitions` / `default_replication_factor` (in
//!    every version; clients only send -1 from v4 on). Zero or below -1 answers
//!    INVALID_PARTITIONS / INVALID_REPLICATION_FACTOR with Kafka's message; a replication factor
//!    larger than the brokers available answers INVALID_REPLICATION_FACTOR.
//! 6. Size: more than [`MAX_PARTITIONS_PER_REQUEST`] new partitions in one request answer
//!    POLICY_VIOLATION, as Kafka's controller refuses excessively large batches. Creating a
//!    partition costs a Raft apply and memory, so the bound protects the node.
//!
//! `validate_only` runs every check, creates nothing, and answers as if it had created.
//! `timeout_ms` is not used: the node's proposal timeout bounds the wait, and a topic not
//! created in that time answers REQUEST_TIMED_OUT.
//!
//! v5+ answers carry the partition count, replication factor and the full effective config list
//! (as DescribeConfigs reports it); v7 the topic id. Failed topics carry -1, -1, an empty list and
//! the nil id.

use std::collections::{BTreeMap, HashMap, HashSet};

use jet_replication::metadata::validate_topic_name;
use jet_replication::topic_config;
use jet_replication::{CreateTopic, Error, TopicMeta};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::describe_configs;
use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::CreateTopics;
/// Versions 2–7, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

/// Most partitions one CreateTopics or CreatePartitions request may add, over all its topics
/// (Kafka's controller refuses batches of more than 10,000 records the same way).
pub(crate) const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

/// Kafka's message when a request would add more than [`MAX_PARTITIONS_PER_REQUEST`].
pub(crate) const EXCESSIVE_BATCH_MESSAGE: &str =
    "Unable to perform excessively large batch operation.";

/// A refused topic: its Kafka error code and message.
type Refusal = (i16, String);

/// The text a client sees for a replication-layer error: the detail without the variant's
/// prefix, and Kafka's wording where a client might match on it.
pub(crate) fn error_message(e: &Error) -> String {
    match e {
        Error::TopicAlreadyExists(name) => format!("Topic '{name}' already exists."),
        Error::InvalidTopic(m)
        | Error::InvalidPartitions(m)
        | Error::InvalidReplicationFactor(m)
        | Error::InvalidConfig(m)
        | Error::InvalidRequest(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A refusal for a replication-layer error.
pub(crate) fn refusal(e: &Error) -> Refusal {
    (error_map::error_code(e), error_message(e))
}

/// Answers a CreateTopics request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = header.request_api_version;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.as_str()).or_default() += 1;
    }
    let mut answered: HashSet<&str> = HashSet::new();
    let mut partitions_added: i64 = 0;
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.name.as_str();
        if !answered.insert(name) {
            continue;
        }
        let outcome = if seen.get(name).copied().unwrap_or(0) > 1 {
            Err((
                ResponseError::InvalidRequest.code(),
                "Duplicate topic name.".to_string(),
            ))
        } else {
            create_one(ctx, topic, req.validate_only, &mut partitions_added).await
        };
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_topic_config_error_code(0);
        results.push(match outcome {
            Ok(meta) => {
                let configs = describe_configs::topic_entries(ctx, &meta.configs)
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(e.name))
                            .with_value(e.value.map(StrBytes::from_string))
                            .with_read_only(e.read_only)
                            .with_config_source(e.source)
                            .with_is_sensitive(false)
                    })
                    .collect();
                result
                    .with_error_code(0)
                    .with_error_message(None)
                    .with_topic_id(if version >= 7 { meta.id } else { Uuid::nil() })
                    .with_num_partitions(meta.partitions.len() as i32)
                    .with_replication_factor(meta.replication_factor)
                    .with_configs(Some(configs))
            }
            Err((code, message)) => {
                tracing::debug!(topic = name, code, message = %message, "create topic refused");
                result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_topic_id(Uuid::nil())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(Some(Vec::new()))
            }
        });
    }
    CreateTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(results)
}

/// Checks and creates one topic whose name appears once in the request.
async fn create_one(
    ctx: &Ctx,
    topic: &CreatableTopic,
    validate_only: bool,
    partitions_added: &mut i64,
) -> Result<TopicMeta, Refusal> {
    let name = topic.name.as_str();
    validate_topic_name(name).map_err(|e| refusal(&e))?;
    let meta = ctx.node.metadata();
    if meta.topic(name).is_some() {
        return Err(refusal(&Error::TopicAlreadyExists(name.to_string())));
    }
    if let Some(existing) = colliding_topic(meta.topics.keys().map(String::as_str), name) {
        return Err((
            ResponseError::InvalidTopicException.code(),
            format!("Topic '{name}' collides with existing topic: {existing}"),
        ));
    }
    let configs = topic_configs(topic)?;
    let (partitions, replication_factor) = counts(ctx, topic)?;
    let total = *partitions_added + i64::from(partitions);
    if total > MAX_PARTITIONS_PER_REQUEST {
        return Err((
            ResponseError::PolicyViolation.code(),
            EXCESSIVE_BATCH_MESSAGE.to_string(),
        ));
    }
    let created = ctx
        .node
        .create_topic(CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
            validate_only,
        })
        .await
        .map_err(|e| refusal(&e))?;
    *partitions_added = total;
    if !validate_only {
        tracing::info!(
            topic = name,
            partitions,
            replication_factor,
            "topic created"
        );
    }
    Ok(created)
}

/// The existing topic `name` would collide with: one that differs only by `.` versus `_`.
fn colliding_topic<'a>(existing: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let normal = |s: &str| s.replace('.', "_");
    let wanted = normal(name);
    existing
        .filter(|t| *t != name)
        .find(|t| normal(t) == wanted)
}

/// The topic's explicit configs, each checked (a later duplicate of a name wins, as in Kafka).
fn topic_configs(topic: &CreatableTopic) -> Result<BTreeMap<String, String>, Refusal> {
    let invalid = |m: String| (ResponseError::InvalidConfig.code(), m);
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        let Some(value) = &c.value else {
            return Err(invalid(format!(
                "Null value not supported for topic configs: {}",
                c.name.as_str()
            )));
        };
        topic_config::validate(c.name.as_str(), value.as_str()).map_err(invalid)?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    Ok(configs)
}

/// The partition count and replication factor to create with, from the explicit counts, the
/// server's defaults, or a manual assignment.
fn counts(ctx: &Ctx, topic: &CreatableTopic) -> Result<(i32, i16), Refusal> {
    if !topic.assignments.is_empty() {
        return assignment_counts(ctx, topic);
    }
    let replication_factor = match topic.replication_factor {
        -1 => ctx.config.default_replication_factor,
        rf if rf <= 0 => {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0, or -1 to use the default value."
                    .to_string(),
            ))
        }
        rf => rf,
    };
    let partitions = match topic.num_partitions {
        -1 => ctx.config.default_partitions,
        n if n <= 0 => {
            return Err((
                ResponseError::InvalidPartitions.code(),
                "Number of partitions was set to an invalid non-positive value.".to_string(),
            ))
        }
        n => n,
    };
    Ok((partitions, replication_factor))
}

/// Counts from a manual assignment, accepted only when it places every partition on this node
/// alone (see the module docs).
fn assignment_counts(ctx: &Ctx, topic: &CreatableTopic) -> Result<(i32, i16), Refusal> {
    let request = |m: &str| (ResponseError::InvalidRequest.code(), m.to_string());
    let assignment = |m: String| (ResponseError::InvalidReplicaAssignment.code(), m);
    if topic.replication_factor != -1 {
        return Err(request(
            "A manual partition assignment was specified, but replication factor was not set to -1.",
        ));
    }
    if topic.num_partitions != -1 {
        return Err(request(
            "A manual partition assignment was specified, but numPartitions was not set to -1.",
        ));
    }
    let own = ctx.node.node_id();
    for (expected, a) in topic.assignments.iter().enumerate() {
        if i64::from(a.partition_index) != expected as i64 {
            return Err(assignment(
                "partitions should be a consecutive 0-based integer sequence".to_string(),
            ));
        }
        if a.broker_ids.is_empty() {
            return Err(assignment(
                "The manual partition assignment includes an empty replica list.".to_string(),
            ));
        }
        if let Some(other) = a.broker_ids.iter().find(|b| b.0 != own) {
            // In a cluster the other node exists, but a partition's replicas are its shard's
            // voters, which placement fixed: an assignment naming them cannot be honoured.
            let member = ctx.node.metadata().members.contains(&(other.0 as u64));
            return Err(assignment(if member {
                format!(
                    "The manual partition assignment includes broker {}: Jet places a partition's replicas with its shard, so manual assignments may name only the receiving broker.",
                    other.0
                )
            } else {
                format!(
                    "The manual partition assignment includes broker {}, but no such broker is registered.",
                    other.0
                )
            }));
        }
        if a.broker_ids.len() > 1 {
            return Err(assignment(format!(
                "The manual partition assignment includes the broker {own} more than once."
            )));
        }
    }
    let partitions = i32::try_from(topic.assignments.len()).map_err(|_| {
        (
            ResponseError::PolicyViolation.code(),
            EXCESSIVE_BATCH_MESSAGE.to_string(),
        )
    })?;
    Ok((partitions, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions_differ_only_by_dot_and_underscore() {
        let existing = ["a_b", "other", "x.y"];
        assert_eq!(colliding_topic(existing.into_iter(), "a.b"), Some("a_b"));
        assert_eq!(colliding_topic(existing.into_iter(), "x_y"), Some("x.y"));
        assert_eq!(colliding_topic(existing.into_iter(), "x.y"), None);
        assert_eq!(colliding_topic(existing.into_iter(), "ab"), None);
    }

    #[test]
    fn messages_drop_the_variant_prefix() {
        assert_eq!(
            error_message(&Error::InvalidConfig("unknown topic config x".into())),
            "unknown topic config x"
        );
        assert_eq!(
            error_message(&Error::TopicAlreadyExists("t".into())),
            "Topic 't' already exists."
        );
    }
}
