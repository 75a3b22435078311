//! The consumer group coordinator: Kafka's classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, static membership) with membership in memory and committed offsets and
//! stable assignments written through the coordinator shard's Raft log.
//!
//! Map of the crate:
//! - [`coordinator`] — [`Coordinator`]: the shared state, start-up, timers firing.
//! - `failover` — following shard leadership: loading a shard's groups when this node gains it,
//!   dropping them (waiters answered NOT_COORDINATOR) when it loses it.
//! - `membership` — JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the rebalance state machine.
//! - `offsets` — OffsetCommit, OffsetFetch, OffsetDelete and offset retention.
//! - `admin` — DescribeGroups, ListGroups, DeleteGroups.
//! - `writer` — the one task that writes group records, coalescing writes per group.
//! - [`group`] — one group's state and the decisions that need only that state.
//! - [`codec`] — the stored keys and values.
//! - [`consumer_protocol`] — reading the topics out of a consumer subscription.
//! - [`backend`] — [`Backend`], the replication layer as the coordinator sees it, and its
//!   in-memory twin for tests.
//! - [`config`] — [`GroupConfig`]: delays, timeouts and limits, Kafka's defaults.
//! - [`error`] — [`Error`].
//!
//! Placement: group G is coordinated by the leader of shard `1 + hash(G) mod data_shards`
//! (`Node::coordinator_shard`). Every operation checks that this node leads that shard, in the
//! term its groups were loaded for, and answers NOT_COORDINATOR otherwise.
//!
//! Concurrency: all groups live behind one `std::sync::Mutex`, never held across an `await`.
//! Requests that must wait (JoinGroup until the join phase ends, SyncGroup until the leader's
//! assignment is stored) park a `oneshot` sender in the member and await the receiver outside
//! the lock; timers are tokio tasks owned by the state they time out (see `timer`).

pub mod backend;
pub mod codec;
pub mod config;
pub mod consumer_protocol;
pub mod coordinator;
pub mod error;
pub mod group;

mod admin;
mod failover;
mod membership;
mod offsets;
mod timer;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_failover;
#[cfg(test)]
mod tests_offsets;

use bytes::Bytes;

pub use backend::{Backend, MemBackend, NodeBackend};
pub use config::GroupConfig;
pub use coordinator::Coordinator;
pub use error::Error;
pub use group::GroupState;

/// A JoinGroup request, protocol-independent.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id; empty on a first join.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client id from the request header.
    pub client_id: String,
    /// The client's host as Kafka reports it (`/1.2.3.4`).
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (the session timeout for JoinGroup v0).
    pub rebalance_timeout_ms: i32,
    /// Protocol type (`consumer`).
    pub protocol_type: String,
    /// Protocols (assignors) in the member's order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without a member id gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a stable group is told to skip the assignment
    /// (KIP-814).
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone)]
pub struct JoinResponse {
    /// The error, if any.
    pub error: Option<Error>,
    /// Generation, or -1 with an error.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// KIP-814: the leader must not compute a new assignment.
    pub skip_assignment: bool,
    /// The member's id (the one to rejoin with after MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error answer.
    pub fn error(member_id: impl Into<String>, error: Error) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Generation the member joined.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// v5+: must match the group's protocol type when given.
    pub protocol_type: Option<String>,
    /// v5+: must match the chosen protocol when given.
    pub protocol_name: Option<String>,
    /// The leader's assignment (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// The error, if any.
    pub error: Option<Error>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment; zero-length (never null) when it has none.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An error answer.
    pub fn error(error: Error) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A member named in a LeaveGroup request.
#[derive(Debug, Clone)]
pub struct LeavingMember {
    /// Member id; may be empty when the instance id names the member (admin removal).
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
}

/// One partition's offset in an OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// Group id.
    pub group_id: String,
    /// Generation, or -1 for a consumer that commits without being a member.
    pub generation_id: i32,
    /// Member id, or empty without membership.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// OffsetCommit v2–v4 retention time, or -1.
    pub retention_time_ms: i64,
    /// The offsets.
    pub offsets: Vec<OffsetCommit>,
}

/// One partition's committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset, or -1.
    pub offset: i64,
    /// Leader epoch, or -1.
    pub leader_epoch: i32,
    /// Metadata ("" when none).
    pub metadata: String,
    /// Per-partition error.
    pub error: Option<Error>,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Its metadata for the chosen protocol (empty unless the group is stable).
    pub metadata: Bytes,
    /// Its assignment (empty unless the group is stable).
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type, or "".
    pub protocol_type: String,
    /// The chosen protocol when stable, else "".
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, or "".
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// Milliseconds since the Unix epoch (commit timestamps and offset retention use wall time).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
