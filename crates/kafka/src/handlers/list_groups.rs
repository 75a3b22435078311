//! ListGroups (key 16), versions 0–5: the groups this node coordinates.
//!
//! v4+ may filter by state and v5+ by group type, both case-insensitively (Kafka's admin client
//! sends "Stable", the CLI may send "stable"). Every group here is a classic group (type
//! "classic"), including groups that only hold offsets (protocol type "").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::Ctx;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::ListGroups;
/// Versions 0–5, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// The type of every group Jet coordinates.
const CLASSIC: &str = "classic";

/// Answers a ListGroups request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let version = header.request_api_version;
    let wants = |filter: &[StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let states: &[StrBytes] = if version >= 4 {
        &req.states_filter
    } else {
        &[]
    };
    let types: &[StrBytes] = if version >= 5 { &req.types_filter } else { &[] };
    if !wants(types, CLASSIC) {
        return ListGroupsResponse::default();
    }
    let groups = ctx
        .groups
        .list_groups()
        .into_iter()
        .filter(|g| wants(states, g.state.as_str()))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(StrBytes::from_static_str(g.state.as_str()))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(StrBytes::from_static_str(CLASSIC))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
