//! DeleteTopics (key 20), versions 1–6: by name, and (v6) by topic id.
//!
//! Shaped like Kafka's `ControllerApis.deleteTopics`, answering in request order:
//! - v6 entries name a topic by name or by id, not both: neither, or both, answers
//!   INVALID_REQUEST with Kafka's message.
//! - A name (or id) given more than once answers INVALID_REQUEST once ("Duplicate topic name." /
//!   "Duplicate topic id.") and is not deleted. A name that resolves to an id the request also
//!   names directly answers INVALID_REQUEST for the name; the id entry deletes the topic.
//! - An unknown name answers UNKNOWN_TOPIC_OR_PARTITION, an unknown id UNKNOWN_TOPIC_ID, both
//!   without a message as in Kafka. A topic deleted by a concurrent request while this one waits
//!   answers the same.
//! - Each result carries the name and (v6) the id, resolved from whichever was given.
//!
//! Deletion goes through the metadata shard (`Node::delete_topic`) and drops the topic's data;
//! `timeout_ms` is not used (the node's proposal timeout bounds the wait).

use std::collections::{HashMap, HashSet};

use jet_replication::Error;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::create_topics::error_message;
use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DeleteTopics;
/// Versions 1–6, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

/// How a request names one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Name(String),
    Id(Uuid),
}

/// Answers a DeleteTopics request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut results = Vec::new();
    // v1–5 send names only; v6 sends entries of a name or an id.
    let mut targets = Vec::new();
    for name in &req.topic_names {
        targets.push(Target::Name(name.to_string()));
    }
    for t in &req.topics {
        match (&t.name, t.topic_id.is_nil()) {
            (None, true) => results.push(result(
                None,
                Uuid::nil(),
                ResponseError::InvalidRequest.code(),
                Some("Neither topic name nor id were specified."),
            )),
            (Some(name), false) => results.push(result(
                Some(name.to_string()),
                t.topic_id,
                ResponseError::InvalidRequest.code(),
                Some("You may not specify both topic name and topic id."),
            )),
            (Some(name), true) => targets.push(Target::Name(name.to_string())),
            (None, false) => targets.push(Target::Id(t.topic_id)),
        }
    }

    let mut count: HashMap<&Target, usize> = HashMap::new();
    for t in &targets {
        *count.entry(t).or_default() += 1;
    }
    // Ids named directly, duplicated or not: a name resolving to one of them is refused.
    let direct_ids: HashSet<Uuid> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Id(id) => Some(*id),
            _ => None,
        })
        .collect();

    let mut answered = HashSet::new();
    for target in &targets {
        if !answered.insert(target) {
            continue;
        }
        let meta = ctx.node.metadata();
        if count.get(target).copied().unwrap_or(0) > 1 {
            let (name, id, message) = match target {
                Target::Name(n) => (Some(n.clone()), Uuid::nil(), "Duplicate topic name."),
                Target::Id(id) => (None, *id, "Duplicate topic id."),
            };
            results.push(result(
                name,
                id,
                ResponseError::InvalidRequest.code(),
                Some(message),
            ));
            continue;
        }
        let (name, id, unknown) = match target {
            Target::Name(n) => match meta.topic(n) {
                Some(t) => (n.clone(), t.id, ResponseError::UnknownTopicOrPartition),
                None => {
                    results.push(result(
                        Some(n.clone()),
                        Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition.code(),
                        None,
                    ));
                    continue;
                }
            },
            Target::Id(id) => match meta.topic_by_id(id) {
                Some(t) => (t.name.clone(), *id, ResponseError::UnknownTopicId),
                None => {
                    results.push(result(
                        None,
                        *id,
                        ResponseError::UnknownTopicId.code(),
                        None,
                    ));
                    continue;
                }
            },
        };
        if matches!(target, Target::Name(_)) && direct_ids.contains(&id) {
            results.push(result(
                Some(name),
                id,
                ResponseError::InvalidRequest.code(),
                Some("The provided topic name maps to an ID that was already supplied."),
            ));
            continue;
        }
        let outcome = match ctx.node.delete_topic(&name).await {
            Ok(()) => {
                tracing::info!(topic = %name, topic_id = %id, "topic deleted");
                result(Some(name), id, 0, None)
            }
            Err(Error::UnknownTopicOrPartition) => result(Some(name), id, unknown.code(), None),
            Err(e) => {
                let message = error_message(&e);
                result(Some(name), id, error_map::error_code(&e), Some(&message))
            }
        };
        results.push(outcome);
    }
    DeleteTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(results)
}

fn result(
    name: Option<String>,
    id: Uuid,
    error_code: i16,
    message: Option<&str>,
) -> DeletableTopicResult {
    DeletableTopicResult::default()
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_error_code(error_code)
        .with_error_message(message.map(|m| StrBytes::from_string(m.to_string())))
}
