//! Heartbeat (key 12), versions 0–4: keeps a member's session alive. REBALANCE_IN_PROGRESS
//! tells the member to rejoin; ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID that
//! it is no longer part of the group as it thinks.

use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::Heartbeat;
/// Versions 0–4, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// Answers a Heartbeat request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let r = ctx.groups.heartbeat(
        &req.group_id.0,
        req.generation_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(error_map::group_error_code(&r))
}
