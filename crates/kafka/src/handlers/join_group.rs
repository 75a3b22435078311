//! JoinGroup (key 11), versions 0–9: a member joins (or rejoins) a classic group.
//!
//! The request becomes a [`jet_groups::JoinRequest`]; the response waits for the coordinator's
//! join phase (see `jet_groups`). Version differences: v0 has no rebalance timeout (the session
//! timeout serves, as in Kafka); from v4 a first join without a member id gets
//! MEMBER_ID_REQUIRED with an id to rejoin with (KIP-394); v5 adds `group.instance.id`
//! (static membership); before v7 the protocol name is never null ("" with an error); v9 may
//! tell a rejoining static leader to skip the assignment (KIP-814).

use jet_groups::JoinRequest;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::JoinGroup;
/// Versions 0–9, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 9 };

/// Answers a JoinGroup request.
pub async fn handle(ctx: &Ctx, header: &RequestHeader, req: JoinGroupRequest) -> JoinGroupResponse {
    let version = header.request_api_version;
    if let Some(reason) = &req.reason {
        tracing::debug!(group = %req.group_id.0, member = %req.member_id, reason = %reason, "join group");
    }
    let join = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer_addr.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let r = ctx.groups.join_group(join).await;
    let protocol_name = match r.protocol_name {
        Some(name) => Some(StrBytes::from_string(name)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(
            r.error
                .as_ref()
                .map_or(0, |e| error_map::group_error(e).code()),
        )
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
