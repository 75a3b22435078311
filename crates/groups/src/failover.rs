//! Following shard leadership: the coordinator holds the groups of the shards this node leads,
//! and only those.
//!
//! Why: in a cluster, a shard's leadership moves between nodes. Followers apply the shard's
//! group records into their own store, so a node that becomes leader finds every committed
//! offset and stored assignment there — but its memory may hold nothing for those groups, or
//! state from an earlier term that another leader has moved past since. So:
//! - gaining shard S (in term T): the groups of S are loaded from the store, replacing whatever
//!   memory held for them, and S is served for term T;
//! - losing S: its groups are dropped; members waiting in JoinGroup or SyncGroup and writes not
//!   yet sent answer NOT_COORDINATOR, so that clients go and find the new coordinator.
//!
//! A request is served only while the shard's leadership term is the one its groups were loaded
//! for (`Coordinator::check_group`), so the time between a change and the watcher acting on it
//! answers NOT_COORDINATOR rather than from missing or stale memory. The term, not just a leader
//! flag, because leadership can be lost and regained between two polls (or while the watcher is
//! busy loading).
//!
//! Writes: every load gets a fresh epoch. The writer notes each shard's epoch when it takes a
//! batch; it does not send a batch whose shard has been dropped or reloaded since, and does not
//! apply the result of one to the groups (they are gone, or came back from the store). What this
//! cannot close: a batch whose check passed just before leadership moved is proposed in the new
//! term; fencing that needs a write conditional on the term in the replication layer.
//!
//! One task polls leadership every [`POLL_INTERVAL`]: a poll is two atomic loads per shard, and
//! the replication layer has no leadership-change notification to wait on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::backend::Records;
use crate::codec::{self, Key};
use crate::coordinator::State;
use crate::group::{Group, GroupState, Member};
use crate::{now_ms, Coordinator, Error, JoinResponse, SyncResponse};

/// How often the watcher compares leadership with the shards served.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Epochs are unique for the life of the process, so a batch taken under one load can never
/// match a later load of the same shard.
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// A shard whose groups this coordinator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Served {
    /// The leadership term the groups were loaded for.
    pub term: u64,
    /// This load's epoch (see the module doc).
    pub epoch: u64,
}

impl Coordinator {
    /// One pass: drops the groups of shards this node no longer leads (or leads in another term
    /// than they were loaded for) and loads those of shards it leads but does not serve, with
    /// one read of the store for all of them. A failed read leaves those shards unserved, for
    /// the next pass to try again.
    pub(crate) async fn follow_leadership(&self) -> Result<(), jet_replication::Error> {
        // Read leadership before taking the lock: the backend's reads are atomic loads, and
        // nothing here depends on them being taken together.
        let terms: Vec<(u64, Option<u64>)> = (1..=self.backend.shard_count())
            .map(|shard| (shard, self.backend.leader_term(shard)))
            .collect();
        let mut gained = BTreeMap::new();
        {
            let mut st = self.lock();
            for (shard, term) in terms {
                let served = st.served.get(&shard).map(|s| s.term);
                if served == term {
                    continue;
                }
                if served.is_some() {
                    let why = if term.is_some() {
                        "leadership of the shard moved and came back"
                    } else {
                        "this node no longer leads the shard"
                    };
                    self.drop_shard(&mut st, shard, why);
                }
                if let Some(term) = term {
                    gained.insert(shard, term);
                }
            }
        }
        if gained.is_empty() {
            return Ok(());
        }
        let records = {
            let backend = self.backend.clone();
            tokio::task::spawn_blocking(move || backend.load())
                .await
                .map_err(|e| jet_replication::Error::Storage(e.to_string()))??
        };
        let mut st = self.lock();
        // Leadership may have moved again during the read; a shard led in another term now is
        // left unserved, and the next pass deals with it.
        gained.retain(|shard, term| self.backend.leader_term(*shard) == Some(*term));
        self.load_shards(&mut st, records, &gained);
        Ok(())
    }

    /// Takes out the groups of `shard`: whoever waits on them hears NOT_COORDINATOR.
    fn drop_shard(&self, st: &mut State, shard: u64, why: &str) {
        st.served.remove(&shard);
        let mut groups = 0usize;
        let mut waiting = 0usize;
        st.groups.retain(|_, g| {
            if g.shard != shard {
                return true;
            }
            groups += 1;
            for m in g.members.values_mut() {
                waiting += usize::from(m.join_waiter.is_some() || m.sync_waiter.is_some());
                let id = m.id.clone();
                m.answer_join(JoinResponse::error(id, Error::NotCoordinator));
                m.answer_sync(SyncResponse::error(Error::NotCoordinator));
            }
            // Dropping the group drops its timers, which cancels them.
            false
        });
        let writes = st.writes.fail_shard(shard, &Error::NotCoordinator);
        tracing::info!(
            shard,
            groups,
            waiting,
            writes,
            reason = why,
            "stopped coordinating the groups of a shard"
        );
    }

    /// Builds the groups of the `gained` shards from `records` (the node's whole store of group
    /// records; those of other shards are skipped) and serves those shards.
    fn load_shards(&self, st: &mut State, records: Records, gained: &BTreeMap<u64, u64>) {
        let now = now_ms();
        let mut groups = BTreeSet::new();
        let mut members = 0usize;
        let mut offsets = 0usize;
        for (key, value) in records {
            let Some(parsed) = codec::parse_key(&key) else {
                tracing::warn!(key = ?key, "skipping a group record with an unknown key");
                continue;
            };
            let group_id = match &parsed {
                Key::Group(g) | Key::Offset(g, _, _) => g.clone(),
            };
            let shard = self.backend.shard_of(&group_id);
            if !gained.contains_key(&shard) {
                continue;
            }
            groups.insert(group_id.clone());
            let g = st
                .groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(group_id.clone(), shard, now));
            match parsed {
                Key::Offset(_, topic, partition) => match codec::decode_offset(&value) {
                    Some(v) => {
                        g.offsets.insert((topic, partition), v);
                        offsets += 1;
                    }
                    None => {
                        tracing::warn!(group = %group_id, %topic, partition, "skipping an unreadable offset record")
                    }
                },
                Key::Group(_) => match codec::decode_group(&value) {
                    Some(v) => {
                        members += v.members.len();
                        self.restore_group(g, v);
                    }
                    None => {
                        tracing::warn!(group = %group_id, "skipping an unreadable group record")
                    }
                },
            }
        }
        for (&shard, &term) in gained {
            let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
            st.served.insert(shard, Served { term, epoch });
        }
        tracing::info!(
            shards = ?gained.keys().collect::<Vec<_>>(),
            groups = groups.len(),
            members,
            offsets,
            "coordinating the groups of shards this node leads"
        );
    }

    /// A group with members comes back Stable with the stored assignment; every member's
    /// session starts now, so members that are still alive keep heartbeating as if nothing
    /// happened (once they have found this coordinator) and the others expire.
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
}

/// Starts the leadership watcher; it ends when the coordinator is dropped.
pub(crate) fn spawn(coordinator: Weak<Coordinator>) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(POLL_INTERVAL);
        // After a long load, carry on from now rather than catching up with missed polls.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(c) = coordinator.upgrade() else {
                return;
            };
            if let Err(e) = c.follow_leadership().await {
                tracing::warn!(error = %e, "loading group records failed; retrying at the next poll");
            }
        }
    })
    .abort_handle()
}
