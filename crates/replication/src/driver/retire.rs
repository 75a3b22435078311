//! Retiring replicas: a node drops its replica of a shard once the shard has moved off it.
//!
//! A replica removed from a shard's configuration usually never learns it: raft-rs's leader
//! stops writing to a peer as soon as it applies the peer's removal, so the removed replica
//! stays behind, idle, holding the shard's data. Two things tell a node its replica is gone:
//!
//! - **its own configuration** no longer names it (it applied its removal itself);
//! - **the metadata says so.** Each data shard's leader reports the shard's configuration to the
//!   metadata whenever it differs from the recorded one ([`MetaCommand::ShardConfigured`]), with
//!   its applied index. A report that leaves this node out, made at an index past everything
//!   this replica applied, is newer than any configuration the replica knows, so the removal is
//!   committed in the shard's log.
//!
//! Either way, and only while the metadata's replicas for the shard leave the node out too (a
//! shard placed back on it keeps its replica, which then catches up), the node deletes the
//! replica — its Raft entries and state, its partitions and their index, its group records — in
//! one logged write, and stops running it. The data lives on in the shard's replicas.

use raft::StateRole;

use super::{Driver, Waiters, METADATA_SHARD};
use crate::command::Command;
use crate::metadata::MetaCommand;
use crate::Error;

impl Driver {
    /// Each led data shard whose configuration differs from the one the metadata records is
    /// reported, at most once per [`super::membership::CHANGE_EVERY`].
    pub(super) fn report_configurations(&mut self) {
        let now = self.clock.now();
        let mut reports = Vec::new();
        for s in &mut self.shards {
            let raft = &s.raw.raft;
            if s.id == METADATA_SHARD
                || raft.state != StateRole::Leader
                || s.applied_term != raft.term
                || raft.has_pending_conf()
                || raft.pending_conf_index > s.applied
                || s.last_config_report
                    .is_some_and(|t| now.duration_since(t) < super::membership::CHANGE_EVERY)
            {
                continue;
            }
            let cs = s.raw.store().conf_state();
            if !cs.voters_outgoing.is_empty() {
                continue;
            }
            let mut members: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
            members.sort_unstable();
            members.dedup();
            let recorded = self.machine.metadata.shard_configs.get(&s.id);
            if recorded.is_some_and(|(_, m)| *m == members)
                || !self.machine.metadata.shard_replicas.contains_key(&s.id)
            {
                continue;
            }
            s.last_config_report = Some(now);
            reports.push(MetaCommand::ShardConfigured {
                shard: s.id,
                index: s.applied,
                members,
            });
        }
        for cmd in reports {
            self.propose_meta(cmd);
        }
    }

    /// Proposes a metadata command that nobody waits for: on the metadata leader as any
    /// proposal, elsewhere forwarded to it by raft-rs. A lost proposal is made again by
    /// whatever found it missing.
    fn propose_meta(&mut self, cmd: MetaCommand) {
        let data = Command::Meta(cmd).encode();
        let Some(i) = self.slots.first().copied().flatten() else {
            return;
        };
        let raft = &self.shards[i].raw.raft;
        if raft.state == StateRole::Leader {
            self.propose(METADATA_SHARD, data, Waiters::Nobody);
        } else if raft.leader_id != 0 {
            let _ = self.shards[i].raw.propose(Vec::new(), data);
        }
    }

    /// Drops the replicas the shards moved off (see the module docs).
    pub(super) fn retire_replicas(&mut self) -> Result<(), Error> {
        let me = self.config.node_id;
        let md = &self.machine.metadata;
        if md.members.is_empty() {
            return Ok(());
        }
        let retired: Vec<u64> =
            self.shards
                .iter()
                .filter(|s| {
                    if s.id == METADATA_SHARD
                        || s.raw.raft.state == StateRole::Leader
                        || md.shard_replicas.get(&s.id).is_none_or(|r| r.contains(&me))
                    {
                        return false;
                    }
                    let cs = s.raw.store().conf_state();
                    let knows = !cs.voters.contains(&me)
                        && !cs.learners.contains(&me)
                        && !cs.voters_outgoing.contains(&me)
                        && !cs.voters.is_empty();
                    let told = md.shard_configs.get(&s.id).is_some_and(|(index, members)| {
                        !members.contains(&me) && *index > s.applied
                    });
                    knows || told
                })
                .map(|s| s.id)
                .collect();
        for id in retired {
            self.retire(id)?;
        }
        Ok(())
    }

    /// Deletes this node's replica of shard `id` and stops running it.
    fn retire(&mut self, id: u64) -> Result<(), Error> {
        let Some(i) = self.slots.get(id as usize).copied().flatten() else {
            return Ok(());
        };
        tracing::info!(
            shard = id,
            "dropping this node's replica: the shard's replicas are on other nodes now"
        );
        let mut wb = self.store.batch();
        let gone = self.machine.forget_shard(id, &mut wb)?;
        wb.delete_shard(id);
        self.store.write(wb, true)?;
        if !gone.is_empty() {
            let mut map = self.shared.partitions.write().expect("partitions lock");
            for tp in &gone {
                map.remove(tp);
            }
        }
        if let Some(status) = self.shared.shard(id) {
            use std::sync::atomic::Ordering;
            status.local.store(false, Ordering::Release);
            status.is_leader.store(false, Ordering::Release);
            status.leader.store(0, Ordering::Release);
            let mut m = status.members.lock().unwrap_or_else(|p| p.into_inner());
            m.isr.clear();
        }
        let mut s = self.shards.swap_remove(i);
        self.slots[id as usize] = None;
        if let Some(moved) = self.shards.get(i) {
            self.slots[moved.id as usize] = Some(i);
        }
        for (_, (_, w, _)) in std::mem::take(&mut s.pending) {
            self.reject(w, Error::NotLeader);
        }
        for (_, tx) in s.queued.drain(..) {
            let _ = tx.send(Err(Error::NotLeader));
        }
        if !gone.is_empty() {
            self.shared.partitions_changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}
