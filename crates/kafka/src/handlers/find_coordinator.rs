//! FindCoordinator (key 10), versions 0–6: where a group's (or transaction's) coordinator is.
//!
//! A consumer group's coordinator is the leader of shard `1 + hash(group) mod n`, with `n` the
//! data shards the cluster formed with (`Node::coordinator_shard`; shards added later hold no
//! groups): this node, at [`Ctx::advertised`], when it leads that shard and serves its groups;
//! another node, at the client address it publishes in gossip
//! ([`Ctx::broker_endpoint`]), when that node leads it. While the shard has no known leader (an
//! election), or its leader's address is not known yet, the answer is COORDINATOR_NOT_AVAILABLE,
//! which clients retry. Jet has no transaction (or share-group) coordinator: those key types answer
//! COORDINATOR_NOT_AVAILABLE, and an unknown key type INVALID_REQUEST, as Kafka does.
//!
//! v0–3 carry one key; v4+ a batch (`coordinator_keys`), answered one entry per key.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::Ctx;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::FindCoordinator;
/// Versions 0–6, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

/// Kafka's `CoordinatorType` ids.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
const KEY_TYPE_SHARE: i8 = 2;

/// Where a coordinator is: node id, host, port.
type Location = (i32, String, i32);

/// Answers a FindCoordinator request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let version = header.request_api_version;
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let entry = Coordinator::default().with_key(key.clone());
                match locate(ctx, req.key_type, key) {
                    Ok((node_id, host, port)) => entry
                        .with_node_id(BrokerId(node_id))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port),
                    Err((error, message)) => entry
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match locate(ctx, req.key_type, &req.key) {
        Ok((node_id, host, port)) => response
            .with_node_id(BrokerId(node_id))
            .with_host(StrBytes::from_string(host))
            .with_port(port)
            .with_error_message((version >= 1).then(|| StrBytes::from_static_str("NONE"))),
        Err((error, message)) => response
            .with_error_code(error.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_message((version >= 1).then(|| StrBytes::from_string(message))),
    }
}

fn locate(ctx: &Ctx, key_type: i8, key: &str) -> Result<Location, (ResponseError, String)> {
    match key_type {
        KEY_TYPE_GROUP => {
            if ctx.groups.is_coordinator_for(key) {
                let (host, port) = ctx.advertised();
                return Ok((ctx.node.node_id(), host, port));
            }
            let me = ctx.node.config().node_id;
            // This node is never named while it does not serve the groups yet (it may lead the
            // shard but still be applying earlier terms): clients would only be told to wait.
            let elsewhere = ctx
                .node
                .shard_leader(ctx.node.coordinator_shard(key))
                .filter(|(leader, _)| *leader != me)
                .and_then(|(leader, _)| ctx.broker_endpoint(leader));
            match elsewhere {
                Some(b) => Ok((b.node_id, b.host, b.port)),
                None => Err((
                    ResponseError::CoordinatorNotAvailable,
                    "the coordinator shard of this group has no leader yet".into(),
                )),
            }
        }
        KEY_TYPE_TRANSACTION | KEY_TYPE_SHARE => Err((
            ResponseError::CoordinatorNotAvailable,
            "jet has no coordinator of this type".into(),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    }
}
