//! DeleteGroups (key 42), versions 0–2: removes empty groups and their committed offsets.
//!
//! Per group: GROUP_ID_NOT_FOUND when it does not exist, NON_EMPTY_GROUP while it has members;
//! otherwise its records are deleted through its shard's Raft log before the answer.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DeleteGroups;
/// Versions 0–2, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Answers a DeleteGroups request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let results = ctx.groups.delete_groups(&ids).await;
    DeleteGroupsResponse::default().with_results(
        req.groups_names
            .into_iter()
            .zip(results)
            .map(|(group_id, r)| {
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(error_map::group_error_code(&r))
            })
            .collect(),
    )
}
