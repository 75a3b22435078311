//! LeaveGroup (key 13), versions 0–5: members leave at once, so their partitions move without
//! waiting for a session timeout.
//!
//! v0–2 name one member and answer with one error code (the member's, when the request as a
//! whole is fine); v3+ name a batch, by member id or — for an administrative removal — by
//! `group.instance.id` alone, and answer per member.

use jet_groups::LeavingMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::LeaveGroup;
/// Versions 0–5, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers a LeaveGroup request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let version = header.request_api_version;
    let leaving: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let response = LeaveGroupResponse::default();
    let results = match ctx.groups.leave_group(&req.group_id.0, &leaving) {
        Ok(results) => results,
        Err(e) => return response.with_error_code(error_map::group_error(&e).code()),
    };
    if version < 3 {
        let code = results.first().map_or(0, error_map::group_error_code);
        return response.with_error_code(code);
    }
    response.with_members(
        req.members
            .into_iter()
            .zip(results)
            .map(|(m, r)| {
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(error_map::group_error_code(&r))
            })
            .collect(),
    )
}
