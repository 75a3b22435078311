//! [`Coordinator`]: the groups of the shards this node leads, and the timers that drive them.
//! Which shards those are, and loading and dropping their groups, is `failover`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use jet_replication::Node;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{Backend, NodeBackend};
use crate::codec::{self, MAX_NAME_BYTES};
use crate::failover::Served;
use crate::group::{Group, Member};
use crate::timer::{Timer, TimerKind};
use crate::writer::Writes;
use crate::{Error, GroupConfig};

/// Everything behind the coordinator's one lock.
pub(crate) struct State {
    /// The groups of the shards in `served`, and only those.
    pub groups: HashMap<String, Group>,
    pub writes: Writes,
    /// The shards whose groups are loaded, with the leadership they were loaded for. Under the
    /// same lock as `groups` so that a request checks leadership and reads the groups in one
    /// step: a shard dropped in between would otherwise answer as if its groups had no state.
    pub served: HashMap<u64, Served>,
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
    /// The writer, the retention task and the leadership watcher, stopped when the coordinator
    /// is dropped.
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
    /// Starts the coordinator of `node` with Kafka's default settings: loads the groups of the
    /// shards the node leads from its store and starts the record writer, the offset-retention
    /// task and the leadership watcher.
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
        let coordinator = Arc::new_cyclic(|me| Coordinator {
            backend,
            config,
            state: Mutex::new(State {
                groups: HashMap::new(),
                writes: Writes::default(),
                served: HashMap::new(),
            }),
            me: me.clone(),
            write_wakeup: Arc::new(Notify::new()),
            tasks: Mutex::new(Vec::new()),
        });
        // The first pass loads what the node leads now (on a single node, every shard), so the
        // coordinator answers as soon as it is returned; a store that cannot be read fails the
        // start. Later changes are the watcher's.
        coordinator.follow_leadership().await?;
        let writer = crate::writer::spawn(
            Arc::downgrade(&coordinator),
            coordinator.write_wakeup.clone(),
        );
        let retention = coordinator.spawn_retention();
        let watcher = crate::failover::spawn(Arc::downgrade(&coordinator));
        if let Ok(mut tasks) = coordinator.tasks.lock() {
            tasks.extend([writer, retention, watcher]);
        }
        Ok(coordinator)
    }

    /// The settings this coordinator runs with.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Whether this node leads the shard coordinating `group` (FindCoordinator points clients
    /// here even while the shard's groups are still loading).
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

    /// Checks a group id and that this node serves its shard; returns the shard. Takes the
    /// locked state so that the answer holds until the caller lets go of the lock.
    pub(crate) fn check_group(
        &self,
        st: &State,
        group: &str,
        allow_empty: bool,
    ) -> Result<u64, Error> {
        if (!allow_empty && group.is_empty()) || group.len() > MAX_NAME_BYTES {
            return Err(Error::InvalidGroupId);
        }
        let shard = self.backend.shard_of(group);
        if !self.serving(&st.served, shard) {
            // Also while the shard's groups are loading after a leadership change: clients retry
            // NOT_COORDINATOR, and answering from memory that does not hold the shard's records
            // yet would hand out wrong offsets. (Kafka says COORDINATOR_LOAD_IN_PROGRESS there;
            // the Kafka error map has no such group error, and clients retry both alike.)
            return Err(Error::NotCoordinator);
        }
        Ok(shard)
    }

    /// True when `shard`'s groups are loaded for the leadership this node holds now: it leads
    /// the shard, in the term the groups were loaded for.
    pub(crate) fn serving(&self, served: &HashMap<u64, Served>, shard: u64) -> bool {
        served
            .get(&shard)
            .is_some_and(|s| self.backend.leader_term(shard) == Some(s.term))
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
