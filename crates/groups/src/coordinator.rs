//! [`Coordinator`]: every group of this node, restored at start, and the timers that drive them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use jet_replication::Node;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{Backend, NodeBackend};
use crate::codec::{self, Key, MAX_NAME_BYTES};
use crate::group::{Group, GroupState, Member};
use crate::timer::{Timer, TimerKind};
use crate::writer::Writes;
use crate::{now_ms, Error, GroupConfig};

/// Everything behind the coordinator's one lock.
pub(crate) struct State {
    pub groups: HashMap<String, Group>,
    pub writes: Writes,
}

/// The group coordinator of one node. Cheap to share: hand out `Arc<Coordinator>`.
pub struct Coordinator {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: GroupConfig,
    /// A std mutex, not a tokio one: nothing awaits while it is held, and every critical
    /// section is a few map operations.
    pub(crate) state: Mutex<State>,
    pub(crate) me: Weak<Coordinator>,
    pub(crate) write_wakeup: Arc<Notify>,
    /// The writer and the retention task, stopped when the coordinator is dropped.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

impl Coordinator {
    /// Starts the coordinator of `node` with Kafka's default settings: restores every group
    /// from the node's store and starts the record writer and the offset-retention task.
    pub async fn start(node: Arc<Node>) -> Result<Arc<Coordinator>, jet_replication::Error> {
        Self::start_with(Arc::new(NodeBackend(node)), GroupConfig::default()).await
    }

    /// Starts the coordinator of `node` with the given settings (the broker's flags).
    pub async fn start_with_config(
        node: Arc<Node>,
        config: GroupConfig,
    ) -> Result<Arc<Coordinator>, jet_replication::Error> {
        Self::start_with(Arc::new(NodeBackend(node)), config).await
    }

    /// Starts a coordinator on any backend with the given settings.
    pub async fn start_with(
        backend: Arc<dyn Backend>,
        config: GroupConfig,
    ) -> Result<Arc<Coordinator>, jet_replication::Error> {
        let records = {
            let backend = backend.clone();
            tokio::task::spawn_blocking(move || backend.load())
                .await
                .map_err(|e| jet_replication::Error::Storage(e.to_string()))??
        };
        let coordinator = Arc::new_cyclic(|me| Coordinator {
            backend,
            config,
            state: Mutex::new(State {
                groups: HashMap::new(),
                writes: Writes::default(),
            }),
            me: me.clone(),
            write_wakeup: Arc::new(Notify::new()),
            tasks: Mutex::new(Vec::new()),
        });
        coordinator.restore(records);
        let writer = crate::writer::spawn(
            Arc::downgrade(&coordinator),
            coordinator.write_wakeup.clone(),
        );
        let retention = coordinator.spawn_retention();
        if let Ok(mut tasks) = coordinator.tasks.lock() {
            tasks.extend([writer, retention]);
        }
        Ok(coordinator)
    }

    /// The settings this coordinator runs with.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The shard coordinating `group`, if this node leads it.
    pub fn is_coordinator_for(&self, group: &str) -> bool {
        self.backend.is_leader(self.backend.shard_of(group))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves state that may be half-updated; the groups'
        // invariants are simple enough (every transition is a few assignments) that carrying on
        // beats refusing every later request.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks a group id and this node's leadership of its shard; returns the shard.
    pub(crate) fn check_group(&self, group: &str, allow_empty: bool) -> Result<u64, Error> {
        if (!allow_empty && group.is_empty()) || group.len() > MAX_NAME_BYTES {
            return Err(Error::InvalidGroupId);
        }
        let shard = self.backend.shard_of(group);
        if !self.backend.is_leader(shard) {
            return Err(Error::NotCoordinator);
        }
        Ok(shard)
    }

    fn restore(&self, records: Vec<(Vec<u8>, Vec<u8>)>) {
        let mut st = self.lock();
        let now = now_ms();
        let mut restored_members = 0usize;
        let mut restored_offsets = 0usize;
        for (key, value) in records {
            let Some(parsed) = codec::parse_key(&key) else {
                tracing::warn!(key = ?key, "skipping a group record with an unknown key");
                continue;
            };
            let group_id = match &parsed {
                Key::Group(g) | Key::Offset(g, _, _) => g.clone(),
            };
            let shard = self.backend.shard_of(&group_id);
            let g = st
                .groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(group_id.clone(), shard, now));
            match parsed {
                Key::Offset(_, topic, partition) => match codec::decode_offset(&value) {
                    Some(v) => {
                        g.offsets.insert((topic, partition), v);
                        restored_offsets += 1;
                    }
                    None => {
                        tracing::warn!(group = %group_id, %topic, partition, "skipping an unreadable offset record")
                    }
                },
                Key::Group(_) => match codec::decode_group(&value) {
                    Some(v) => {
                        restored_members += v.members.len();
                        self.restore_group(g, v);
                    }
                    None => {
                        tracing::warn!(group = %group_id, "skipping an unreadable group record")
                    }
                },
            }
        }
        tracing::info!(
            groups = st.groups.len(),
            members = restored_members,
            offsets = restored_offsets,
            "group coordinator restored"
        );
    }

    /// A group with members comes back Stable with the stored assignment; every member's
    /// session starts now, so members that are still alive keep heartbeating as if nothing
    /// happened and the others expire.
    fn restore_group(&self, g: &mut Group, v: codec::GroupValue) {
        g.protocol_type = v.protocol_type;
        g.protocol_name = v.protocol_name;
        g.generation = v.generation;
        g.leader = v.leader;
        g.state_timestamp_ms = v.state_timestamp_ms;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let protocol_type = g.protocol_type.clone().unwrap_or_default();
        for m in v.members {
            if let Some(instance) = &m.group_instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let mut member = Member {
                id: m.member_id.clone(),
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: protocol_type.clone(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                join_waiter: None,
                sync_waiter: None,
                is_new: false,
                session_deadline: Instant::now(),
                session_timer: None,
            };
            self.arm_member_session(&g.id, &mut member);
            g.members.insert(m.member_id, member);
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if g.leader
            .as_ref()
            .is_some_and(|l| !g.members.contains_key(l))
        {
            g.leader = g.members.keys().next().cloned();
        }
        g.subscribed_topics = g.compute_subscribed_topics();
    }

    /// Pushes a member's session deadline to `timeout` from now, starting its timer if it has
    /// none or if the deadline moved earlier than the one the timer sleeps towards.
    pub(crate) fn arm_session(&self, group: &str, m: &mut Member, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let earlier = deadline < m.session_deadline;
        m.session_deadline = deadline;
        if m.session_timer.is_none() || earlier {
            m.session_timer = Some(Timer::start(
                self.me.clone(),
                deadline,
                TimerKind::Session {
                    group: group.to_string(),
                    member: m.id.clone(),
                },
            ));
        }
    }

    /// Restarts a member's session with its own session timeout.
    pub(crate) fn arm_member_session(&self, group: &str, m: &mut Member) {
        let timeout = session_timeout(m.session_timeout_ms);
        self.arm_session(group, m, timeout);
    }

    /// Starts a timer calling back into this coordinator.
    pub(crate) fn timer(&self, after: Duration, kind: TimerKind) -> Timer {
        Timer::start(self.me.clone(), Instant::now() + after, kind)
    }

    /// A timer fired: act if it is still the current one. Returns when to fire again, if ever.
    pub(crate) fn fire(&self, kind: &TimerKind, token: u64) -> Option<Instant> {
        let mut guard = self.lock();
        let st = &mut *guard;
        match kind {
            TimerKind::Join { group } => {
                let g = st.groups.get_mut(group)?;
                if g.join_timer.as_ref().map(|t| t.token) == Some(token) {
                    self.on_join_deadline(g, &mut st.writes);
                }
                None
            }
            TimerKind::Sync { group } => {
                let g = st.groups.get_mut(group)?;
                if g.sync_timer.as_ref().map(|t| t.token) == Some(token) {
                    g.sync_timer = None;
                    self.on_sync_deadline(g, &mut st.writes);
                }
                None
            }
            TimerKind::Session { group, member } => {
                let g = st.groups.get_mut(group)?;
                let m = g.members.get_mut(member)?;
                if m.session_timer.as_ref().map(|t| t.token) != Some(token) {
                    return None;
                }
                let now = Instant::now();
                if m.session_deadline > now {
                    return Some(m.session_deadline);
                }
                // A member parked in JoinGroup or SyncGroup cannot heartbeat; its request is
                // its sign of life (bounded by the rebalance timeout), except for a member that
                // never completed a join, which has only the new-member timeout.
                if !m.is_new && (m.join_waiter.is_some() || m.sync_waiter.is_some()) {
                    m.session_deadline = now + session_timeout(m.session_timeout_ms);
                    return Some(m.session_deadline);
                }
                tracing::info!(group = %group, member = %member, "member session expired; removing it");
                let member = member.clone();
                self.remove_member(g, &member, &mut st.writes);
                None
            }
            TimerKind::Pending { group, member } => {
                let g = st.groups.get_mut(group)?;
                if g.pending_members.get(member).map(|t| t.token) == Some(token) {
                    g.pending_members.remove(member);
                    tracing::debug!(group = %group, member = %member, "pending member expired");
                    self.try_complete_join(g, &mut st.writes);
                }
                None
            }
        }
    }

    /// Writes the group's metadata record (through the coalescing writer).
    pub(crate) fn persist_group(
        &self,
        g: &Group,
        writes: &mut Writes,
        assignments: Option<&HashMap<String, Bytes>>,
        waiter: Option<tokio::sync::oneshot::Sender<Result<(), Error>>>,
    ) {
        let value = codec::encode_group(&g.stored(assignments));
        self.enqueue(
            writes,
            &g.id,
            g.shard,
            vec![(codec::group_key(&g.id), Some(value))],
            Vec::new(),
            waiter,
        );
    }
}

/// A member's session timeout as a duration (negative values were refused at join).
pub(crate) fn session_timeout(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}
