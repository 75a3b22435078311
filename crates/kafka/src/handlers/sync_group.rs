//! SyncGroup (key 14), versions 0–5: the leader sends the assignment; every member gets its own.
//!
//! Followers' responses wait until the leader's assignment is stored through the group's Raft
//! log. A member without an assignment gets zero-length bytes, never null (clients decode the
//! assignment unconditionally). From v5 the protocol type and name must be sent and must match
//! the group's, else INCONSISTENT_GROUP_PROTOCOL, as Kafka checks.

use bytes::Bytes;
use jet_groups::{Error, SyncRequest, SyncResponse};
use kafka_protocol::messages::{ApiKey, RequestHeader, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::SyncGroup;
/// Versions 0–5, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers a SyncGroup request.
pub async fn handle(ctx: &Ctx, header: &RequestHeader, req: SyncGroupRequest) -> SyncGroupResponse {
    let version = header.request_api_version;
    let r = if version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
        SyncResponse::error(Error::InconsistentGroupProtocol)
    } else {
        ctx.groups
            .sync_group(SyncRequest {
                group_id: req.group_id.0.to_string(),
                generation_id: req.generation_id,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
                protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
                assignments: req
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect(),
            })
            .await
    };
    SyncGroupResponse::default()
        .with_error_code(
            r.error
                .as_ref()
                .map_or(0, |e| error_map::group_error(e).code()),
        )
        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
        .with_assignment(if r.assignment.is_empty() {
            Bytes::new()
        } else {
            r.assignment
        })
}
