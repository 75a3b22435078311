//! What the driver publishes about each shard, and the leader moves it makes on its own.
//!
//! - **Serving leader.** A node serves a shard (`ShardStatus::is_leader`) once it leads it *and*
//!   has applied an entry of its own term: raft-rs appends an empty entry on election, so by
//!   then every earlier entry is applied and partitions, producer states and group records are
//!   complete.
//! - **ISR** (Kafka's rule, `replica.lag.time.max.ms`): a voter is in sync while it held, within
//!   the lag time, every entry the leader had one tick earlier. Only the leader computes it.
//! - **Leader balance.** Placement names a preferred leader per shard (its first replica,
//!   rotating over the nodes). A leader that has led for a while hands the shard to its preferred
//!   replica once that replica is fully caught up, so leadership returns after a restart.
//! - **Hand-off.** Before a clean stop, every led shard is transferred to its most caught-up
//!   voter, so a rolling restart costs clients only retriable NOT_LEADER errors.

use std::sync::atomic::Ordering;
use std::time::Duration;

use raft::StateRole;

use super::{telemetry, Driver, Shard, METADATA_SHARD};

/// How long a leader leads before it hands a shard to its preferred replica.
const BALANCE_AFTER: Duration = Duration::from_secs(5);
/// Least time between two hand-offs of one shard to its preferred replica.
const BALANCE_EVERY: Duration = Duration::from_secs(30);

impl Driver {
    pub(super) fn publish_leadership(&mut self, alive: bool) {
        let first = !self.leadership_reported;
        self.leadership_reported = true;
        let now = self.clock.now();
        let mut gained = false;
        for s in &mut self.shards {
            let Some(status) = self.shared.shard(s.id) else {
                continue;
            };
            let leads = s.raw.raft.state == StateRole::Leader;
            if leads && s.leader_since.is_none() {
                s.leader_since = Some(now);
                s.caught_up.clear();
                s.prev_last = (s.raw.raft.raft_log.last_index(), now);
            } else if !leads {
                s.leader_since = None;
            }
            let serving = alive && leads && s.applied_term == s.raw.raft.term;
            status.term.store(s.raw.raft.term, Ordering::Release);
            status.leader.store(
                if alive { s.raw.raft.leader_id } else { 0 },
                Ordering::Release,
            );
            let was = status.is_leader.swap(serving, Ordering::AcqRel);
            if serving && !was {
                // A new leader checks that its shard holds exactly the metadata's partitions.
                gained = true;
            }
            if !leads {
                let mut m = status.members.lock().unwrap_or_else(|p| p.into_inner());
                m.isr.clear();
            }
            if first || serving != was {
                telemetry::leadership(s.id, serving, serving != was);
            }
        }
        if gained {
            self.reconcile_due = true;
        }
        if self.members_due || first {
            self.members_due = false;
            let me = self.config.node_id;
            for status in self.shared.all_shards() {
                let replicas = self.machine.metadata.shard_replicas(status.id, me);
                let mut m = status.members.lock().unwrap_or_else(|p| p.into_inner());
                m.replicas = replicas;
            }
        }
    }

    /// Each tick, on every shard this node leads: which followers held everything the leader
    /// had a tick ago, and so which voters are in sync.
    pub(super) fn track_followers(&mut self) {
        let me = self.config.node_id;
        let lag = self.config.replica_lag_time_max;
        let now = self.clock.now();
        for s in &mut self.shards {
            if s.raw.raft.state != StateRole::Leader {
                continue;
            }
            let (prev_last, prev_at) = s.prev_last;
            let since = s.leader_since.unwrap_or(now);
            for (id, pr) in s.raw.raft.prs().iter() {
                if *id != me && pr.matched >= prev_last {
                    s.caught_up.insert(*id, prev_at);
                }
            }
            s.prev_last = (s.raw.raft.raft_log.last_index(), now);
            let voters: Vec<u64> = voters(s);
            let isr: Vec<u64> = voters
                .into_iter()
                .filter(|id| {
                    // A new leader gives every voter the lag time to show it is caught up.
                    *id == me || now.duration_since(*s.caught_up.get(id).unwrap_or(&since)) <= lag
                })
                .collect();
            if let Some(status) = self.shared.shard(s.id) {
                let mut m = status.members.lock().unwrap_or_else(|p| p.into_inner());
                m.isr = isr;
            }
        }
    }

    /// Hands a data shard to its preferred replica when that replica is fully caught up.
    pub(super) fn balance_leaders(&mut self) {
        if self.hand_off.is_some() {
            return;
        }
        let me = self.config.node_id;
        let now = self.clock.now();
        for s in &mut self.shards {
            if s.id == METADATA_SHARD || s.raw.raft.state != StateRole::Leader {
                continue;
            }
            let Some(preferred) = self
                .machine
                .metadata
                .shard_replicas
                .get(&s.id)
                .and_then(|r| r.first().copied())
            else {
                continue;
            };
            let settled = s
                .leader_since
                .is_some_and(|t| now.duration_since(t) >= BALANCE_AFTER);
            let rested = s
                .last_transfer
                .is_none_or(|t| now.duration_since(t) >= BALANCE_EVERY);
            if preferred == me || !settled || !rested || s.raw.raft.lead_transferee.is_some() {
                continue;
            }
            let last = s.raw.raft.raft_log.last_index();
            let ready = s
                .raw
                .raft
                .prs()
                .get(preferred)
                .is_some_and(|pr| pr.matched >= last && pr.recent_active);
            if ready && voters(s).contains(&preferred) {
                tracing::info!(
                    shard = s.id,
                    to = preferred,
                    "handing the shard to its preferred leader"
                );
                s.last_transfer = Some(now);
                s.raw.transfer_leader(preferred);
            }
        }
    }

    /// Moves on a hand-off: transfers every led shard to its most caught-up voter, and answers
    /// once this node leads nothing (or at the deadline).
    pub(super) fn continue_hand_off(&mut self) {
        let Some((deadline, _)) = &self.hand_off else {
            return;
        };
        let deadline = *deadline;
        let me = self.config.node_id;
        let mut leading = 0;
        for s in &mut self.shards {
            if s.raw.raft.state != StateRole::Leader {
                continue;
            }
            leading += 1;
            if s.raw.raft.lead_transferee.is_some() {
                continue;
            }
            let target = voters(s)
                .into_iter()
                .filter(|id| *id != me)
                .filter_map(|id| s.raw.raft.prs().get(id).map(|pr| (pr.matched, id)))
                .max();
            if let Some((_, to)) = target {
                s.raw.transfer_leader(to);
            }
        }
        if leading == 0 || self.clock.now() >= deadline {
            if leading > 0 {
                tracing::warn!(leading, "stopping while still leading shards");
            }
            if let Some((_, tx)) = self.hand_off.take() {
                let _ = tx.send(());
            }
        }
    }

    /// Storage counters and followers' lag, every few seconds.
    pub(super) fn report_metrics(&mut self) {
        let now = self.clock.now();
        if now < self.next_metrics {
            return;
        }
        self.next_metrics = now + Duration::from_secs(5);
        telemetry::storage(&self.store, &self.config.data_dir);
        for s in &self.shards {
            if s.raw.raft.state != StateRole::Leader {
                continue;
            }
            let last = s.raw.raft.raft_log.last_index();
            for (id, pr) in s.raw.raft.prs().iter() {
                if *id != self.config.node_id {
                    telemetry::follower_lag(s.id, *id, last.saturating_sub(pr.matched));
                }
            }
        }
    }
}

/// The shard's voters, sorted.
fn voters(s: &Shard) -> Vec<u64> {
    let mut v: Vec<u64> = s.raw.store().conf_state().voters.clone();
    v.sort_unstable();
    v
}
