//! One group's in-memory state ([`Group`], [`Member`]) and the decisions that need nothing but
//! that state: protocol support and selection, member validation, the stored form.
//!
//! The state names and transitions are Kafka's classic protocol:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                   ▲      │ (no member left)                     │ leader's SyncGroup
//!   └───────────────────┼──────┘                                      ▼ (stored)
//!                       └──────── join / leave / expiry ─────────── Stable
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::codec::{GroupValue, OffsetValue, StoredMember};
use crate::consumer_protocol::{subscribed_topics, CONSUMER_PROTOCOL_TYPE};
use crate::timer::Timer;
use crate::{Error, JoinResponse, JoinedMember, SyncResponse};

/// The classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (the group may still hold offsets).
    Empty,
    /// Members are (re)joining; JoinGroup responses wait for the join phase to end.
    PreparingRebalance,
    /// The generation is chosen; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Being removed.
    Dead,
}

impl GroupState {
    /// The name Kafka reports (DescribeGroups, ListGroups).
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// How the current join phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinPhase {
    /// A group that was empty: wait the initial delay (never less), extended while members keep
    /// arriving, for at most `remaining_ms` more.
    Initial { remaining_ms: u64 },
    /// Complete as soon as every member has rejoined, or at the rebalance timeout.
    Normal,
}

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// Protocols in the member's order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub join_waiter: Option<oneshot::Sender<JoinResponse>>,
    pub sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    /// Joined but never completed a join phase: its session is the new-member timeout.
    pub is_new: bool,
    pub session_deadline: Instant,
    pub session_timer: Option<Timer>,
}

impl Member {
    /// Same protocols with the same metadata, in the same order.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    /// Answers a JoinGroup still waiting (a replaced waiter, a removed member).
    pub fn answer_join(&mut self, response: JoinResponse) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(response);
        }
    }

    pub fn answer_sync(&mut self, response: SyncResponse) {
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(response);
        }
    }
}

pub(crate) struct Group {
    pub id: String,
    pub shard: u64,
    pub state: GroupState,
    /// When the group entered its state (ms since the epoch); offset retention of an empty
    /// group counts from here.
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// Members in join order (the first is the leader when one must be chosen).
    pub members: IndexMap<String, Member>,
    /// `group.instance.id` → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, each with its expiry.
    pub pending_members: HashMap<String, Timer>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub pending_sync: HashSet<String>,
    /// A member joined during the initial delay of a new group.
    pub new_member_added: bool,
    pub join_phase: JoinPhase,
    pub join_timer: Option<Timer>,
    pub sync_timer: Option<Timer>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Commits written but not yet durable, per partition.
    pub pending_commits: HashMap<(String, i32), u32>,
    /// Topics the members consume (consumer groups whose subscriptions parse), else `None`.
    pub subscribed_topics: Option<BTreeSet<String>>,
}

impl Group {
    pub fn new(id: String, shard: u64, now_ms: i64) -> Group {
        Group {
            id,
            shard,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            new_member_added: false,
            join_phase: JoinPhase::Normal,
            join_timer: None,
            sync_timer: None,
            offsets: BTreeMap::new(),
            pending_commits: HashMap::new(),
            subscribed_topics: None,
        }
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Whether a joining member with these protocols can be in the group: the first member
    /// needs a protocol type and at least one protocol; later ones the group's protocol type and
    /// one protocol every current member supports.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.supporters(name) == self.members.len())
    }

    fn supporters(&self, protocol: &str) -> usize {
        self.members
            .values()
            .filter(|m| m.protocols.iter().any(|(p, _)| p == protocol))
            .count()
    }

    /// The protocol for the next generation: among the protocols every member supports, each
    /// member votes for the first in its own order; the most votes win (Kafka's rule), and a
    /// tie goes to the leader's preference.
    pub fn select_protocol(&self) -> Option<String> {
        let n = self.members.len();
        let candidates: Vec<&str> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| self.supporters(p) == n)
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m
                .protocols
                .iter()
                .find(|(p, _)| candidates.contains(&p.as_str()))
            {
                *votes.entry(p.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        let leader_order = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        leader_order
            .protocols
            .iter()
            .map(|(p, _)| p.as_str())
            .find(|p| votes.get(p) == Some(&most))
            .map(str::to_string)
    }

    /// The largest rebalance timeout of the members (0 without members).
    pub fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(Member::awaiting_join)
    }

    /// Kafka's `validateCurrentMember`: a static member's instance id must map to this member id
    /// (else it was fenced by a newer instance), and the member must exist.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), Error> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(Error::FencedInstanceId),
                Some(_) => {}
                None => return Err(Error::UnknownMemberId),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(Error::UnknownMemberId);
        }
        Ok(())
    }

    /// True when `instance_id` belongs to another member id.
    pub fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// The members list the leader gets in its JoinGroup response.
    pub fn member_list(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// The JoinGroup answer for `member_id` in the current generation.
    pub fn join_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if with_members {
                self.member_list()
            } else {
                Vec::new()
            },
        }
    }

    /// The topics the members consume under the chosen protocol, when every subscription reads.
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut all = BTreeSet::new();
        for m in self.members.values() {
            all.extend(subscribed_topics(&m.metadata(protocol))?);
        }
        Some(all)
    }

    /// The stored form, with `assignments` in place of the members' current ones when given.
    pub fn stored(&self, assignments: Option<&HashMap<String, Bytes>>) -> GroupValue {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        GroupValue {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscription: m.metadata(protocol),
                    assignment: match assignments {
                        Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }
}
