//! DescribeGroups (key 15), versions 0–6: state, protocol and members of classic groups.
//!
//! Members' metadata and assignments are reported only while the group is Stable (Kafka's
//! `summary`); otherwise they are empty, as is the protocol. A group that does not exist is
//! described as Dead with no error before v6, and answers GROUP_ID_NOT_FOUND with a message from
//! v6 (KIP-1043). Authorized operations (v3+), when asked for, are what Kafka reports without an
//! authorizer: READ, DELETE, DESCRIBE.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DescribeGroups;
/// Versions 0–6, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

/// Group operations without an authorizer: READ (3), DELETE (6), DESCRIBE (8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// The schema's default: operations were not asked for.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// Answers a DescribeGroups request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = header.request_api_version;
    let operations = if version >= 3 && req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        OPERATIONS_NOT_ASKED
    };
    let groups = req
        .groups
        .into_iter()
        .map(|group_id| {
            let described = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(operations);
            match ctx.groups.describe_group(&group_id.0) {
                Ok(Some(d)) => described
                    .with_group_state(StrBytes::from_static_str(d.state.as_str()))
                    .with_protocol_type(StrBytes::from_string(d.protocol_type))
                    .with_protocol_data(StrBytes::from_string(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_group_instance_id(
                                        m.group_instance_id.map(StrBytes::from_string),
                                    )
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                Ok(None) if version >= 6 => described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Group {} not found.",
                        &*group_id.0
                    )))),
                Ok(None) => described.with_group_state(StrBytes::from_static_str("Dead")),
                Err(e) => {
                    let described = described.with_error_code(error_map::group_error(&e).code());
                    if version >= 6 {
                        described.with_error_message(Some(StrBytes::from_string(e.to_string())))
                    } else {
                        described
                    }
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
