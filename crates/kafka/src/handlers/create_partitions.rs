//! CreatePartitions (key 37), versions 0–3: grow topics to a new partition count.
//!
//! Topic by topic, in request order, with Kafka's controller's errors and messages:
//! - A name given more than once: INVALID_REQUEST ("Duplicate topic name."), once, nothing grown.
//! - Unknown topic: UNKNOWN_TOPIC_OR_PARTITION (no message, as Kafka).
//! - A count equal to the current one ("Topic already has N partition(s).") or smaller ("The
//!   topic T currently has N partition(s); M would not be an increase."): INVALID_PARTITIONS.
//! - More than `MAX_PARTITIONS_PER_REQUEST` new partitions in the request: POLICY_VIOLATION.
//! - Assignments: Jet places partitions itself, so a non-null assignment list is accepted only
//!   when it is trivially satisfiable — one entry per new partition, each naming this node alone
//!   (the replica count Jet's topics have). Otherwise Kafka's INVALID_REPLICA_ASSIGNMENT with its
//!   message (wrong number of entries, an empty list, an unknown broker, a replica count unlike
//!   the topic's). An empty list counts as null.
//!
//! `validate_only` checks without changing anything. `timeout_ms` is not used (the node's
//! proposal timeout bounds the wait).

use std::collections::{HashMap, HashSet};

use jet_replication::TopicMeta;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::create_topics::{refusal, EXCESSIVE_BATCH_MESSAGE, MAX_PARTITIONS_PER_REQUEST};
use super::Ctx;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::CreatePartitions;
/// Versions 0–3, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

/// A refused topic: its Kafka error code and message (`None`: Kafka sends none).
type Refusal = (i16, Option<String>);

/// Answers a CreatePartitions request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.as_str()).or_default() += 1;
    }
    let mut answered = HashSet::new();
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
                Some("Duplicate topic name.".to_string()),
            ))
        } else {
            grow(ctx, topic, req.validate_only, &mut partitions_added).await
        };
        let (code, message) = outcome.err().unwrap_or((0, None));
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

async fn grow(
    ctx: &Ctx,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
    partitions_added: &mut i64,
) -> Result<(), Refusal> {
    let name = topic.name.as_str();
    let meta = ctx.node.metadata();
    let current = meta
        .topic(name)
        .ok_or((ResponseError::UnknownTopicOrPartition.code(), None))?;
    let have = current.partitions.len() as i64;
    let want = i64::from(topic.count);
    let invalid = |m: String| (ResponseError::InvalidPartitions.code(), Some(m));
    if want == have {
        return Err(invalid(format!("Topic already has {have} partition(s).")));
    }
    if want < have {
        return Err(invalid(format!(
            "The topic {name} currently has {have} partition(s); {want} would not be an increase."
        )));
    }
    let additional = want - have;
    let total = *partitions_added + additional;
    if total > MAX_PARTITIONS_PER_REQUEST {
        return Err((
            ResponseError::PolicyViolation.code(),
            Some(EXCESSIVE_BATCH_MESSAGE.to_string()),
        ));
    }
    // An empty list is read as null: it asks for nothing (kafka-protocol's default is an empty
    // list, so clients built on it send one without meaning an assignment).
    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
        check_assignments(ctx, current, additional, assignments)?;
    }
    ctx.node
        .create_partitions(name, topic.count, validate_only)
        .await
        .map_err(|e| {
            let (code, message) = refusal(&e);
            (code, Some(message))
        })?;
    *partitions_added = total;
    if !validate_only {
        tracing::info!(topic = name, from = have, to = want, "partitions created");
    }
    Ok(())
}

/// Accepts an assignment of the new partitions only when it is what Jet does anyway.
fn check_assignments(
    ctx: &Ctx,
    topic: &TopicMeta,
    additional: i64,
    assignments: &[CreatePartitionsAssignment],
) -> Result<(), Refusal> {
    let refuse = |m: String| (ResponseError::InvalidReplicaAssignment.code(), Some(m));
    if assignments.len() as i64 != additional {
        return Err(refuse(format!(
            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
            assignments.len()
        )));
    }
    let own = ctx.node.node_id();
    // New partitions must have as many replicas as the topic's existing ones.
    let replicas = usize::try_from(topic.replication_factor.max(1)).unwrap_or(1);
    for a in assignments {
        if a.broker_ids.is_empty() {
            return Err(refuse(
                "The manual partition assignment includes an empty replica list.".to_string(),
            ));
        }
        if let Some(other) = a.broker_ids.iter().find(|b| b.0 != own) {
            // In a cluster the other node exists, but a partition's replicas are its shard's
            // voters, which placement fixed: an assignment naming them cannot be honoured.
            let member = ctx.node.metadata().members.contains(&(other.0 as u64));
            return Err(refuse(if member {
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
        if a.broker_ids.len() != replicas {
            return Err(refuse(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {replicas} replica(s).",
                a.broker_ids.len()
            )));
        }
    }
    Ok(())
}
