//! A view of every consumer group — state, members with their assignments, and committed offset
//! and lag per partition — built from ListGroups, DescribeGroups, OffsetFetch and ListOffsets
//! through the in-process Kafka dispatch. The console shows it and `/metrics` exports it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::HttpError;
use crate::kafka::{decode_assignment, Kafka, LATEST};

/// One member of a group.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Member id.
    pub member_id: String,
    /// Its client id.
    pub client_id: String,
    /// Its host as the coordinator saw it.
    pub client_host: String,
    /// Its partitions, as `topic` → partitions (consumer protocol only).
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// One partition a group has committed.
#[derive(Debug, Clone, Serialize)]
pub struct OffsetView {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset.
    pub committed: i64,
    /// The partition's end offset (-1 when unknown).
    pub end: i64,
    /// `end - committed`, never negative (0 when unknown).
    pub lag: i64,
}

/// One group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// Group id.
    pub group: String,
    /// Kafka's state name (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).
    pub state: String,
    /// Protocol type (`consumer` for Kafka consumers and REST instances).
    pub protocol_type: String,
    /// Its members.
    pub members: Vec<MemberView>,
    /// Its committed partitions.
    pub offsets: Vec<OffsetView>,
}

/// Most groups described in one view, so a node with very many groups stays cheap to scrape.
pub const MAX_GROUPS: usize = 1000;

/// Every group (up to [`MAX_GROUPS`]), sorted by id.
pub async fn all(kafka: &Kafka) -> Result<Vec<GroupView>, HttpError> {
    let mut listed = kafka.list_groups().await?;
    listed.sort();
    listed.truncate(MAX_GROUPS);
    let ids: Vec<String> = listed.iter().map(|(id, _, _)| id.clone()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let described = kafka.describe_groups(&ids).await?;
    let mut out = Vec::with_capacity(described.len());
    for g in described.into_iter().filter(|g| g.error_code == 0) {
        let group = g.group_id.to_string();
        let members = g
            .members
            .iter()
            .map(|m| MemberView {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: decode_assignment(&m.member_assignment).unwrap_or_default(),
            })
            .collect();
        let committed = kafka.committed(&group, None).await?;
        let wanted: Vec<(String, i32)> = committed
            .iter()
            .map(|c| (c.topic.clone(), c.partition))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let ends = if wanted.is_empty() {
            Vec::new()
        } else {
            kafka.list_offsets(&wanted, LATEST).await?
        };
        let offsets = committed
            .into_iter()
            .filter(|c| c.offset >= 0)
            .map(|c| {
                let end = ends
                    .iter()
                    .find(|(t, p, _)| *t == c.topic && *p == c.partition)
                    .and_then(|(_, _, r)| r.ok())
                    .unwrap_or(-1);
                OffsetView {
                    lag: if end >= 0 { (end - c.offset).max(0) } else { 0 },
                    topic: c.topic,
                    partition: c.partition,
                    committed: c.offset,
                    end,
                }
            })
            .collect();
        out.push(GroupView {
            group,
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            members,
            offsets,
        });
    }
    Ok(out)
}
