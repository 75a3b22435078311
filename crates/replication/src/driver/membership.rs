//! Replica changes: how a shard's Raft configuration follows the replicas the metadata names.
//!
//! - **Deciding.** The metadata leader learns from gossip which nodes are alive and which have
//!   been gone for `--node-dead-after` ([`DriverMsg::Liveness`](super::DriverMsg)). It admits
//!   nodes that joined ([`MetaCommand::AddMember`]), computes where replicas should be
//!   ([`crate::placement::target_placement`]: dead nodes' replicas re-placed, shards grown to
//!   the replication factor, load spread to new nodes) and proposes the new replica sets
//!   ([`MetaCommand::SetShardReplicas`]): decisions are entries, so every replica of the
//!   metadata applies the same ones, and no clock takes part in consensus.
//! - **Moving.** Each shard's leader compares its configuration with the metadata's replicas
//!   and makes one single-step change at a time: add a missing replica as a learner (it gets a
//!   snapshot, see [`super::snapshot`]); promote a learner once it holds every committed entry;
//!   then remove a voter the metadata no longer names (handing leadership away first if that
//!   voter is itself). Single steps keep every intermediate configuration's majority
//!   overlapping the previous one's, with no joint consensus to leave.
//! - **A new replica** is created on a node when the shard's leader first writes to it and the
//!   metadata names the node ([`Driver::create_replica`]).

use std::collections::BTreeSet;
use std::time::Duration;

use jet_storage::ShardLog;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, MessageType};
use raft::{ProgressState, StateRole};

use super::restore::{new_raw_node, new_shard};
use super::{Driver, Waiters, METADATA_SHARD};
use crate::command::Command;
use crate::metadata::MetaCommand;
use crate::Error;

/// Least time between two configuration changes a leader proposes for one shard, and between
/// two re-placements the metadata leader proposes.
pub(super) const CHANGE_EVERY: Duration = Duration::from_secs(1);
/// A snapshot not acknowledged within this long is taken as lost (a connection that broke after
/// the frame was queued says nothing), and raft-rs is told so: it probes and sends another.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(20);

impl Driver {
    /// The metadata leader admits nodes that joined through gossip and proposes where
    /// replicas should be ([`crate::placement::target_placement`]): dead nodes' replicas
    /// re-placed, shards grown to the replication factor, load spread over the live nodes.
    pub(super) fn place_replicas(&mut self) {
        let now = self.clock.now();
        if self
            .last_replacement
            .is_some_and(|t| now.duration_since(t) < CHANGE_EVERY * 3)
        {
            return;
        }
        let Some(meta) = self.shard_ref(METADATA_SHARD) else {
            return;
        };
        if meta.raw.raft.state != StateRole::Leader || meta.applied_term != meta.raw.raft.term {
            return;
        }
        let md = &self.machine.metadata;
        if md.members.is_empty() || md.data_shards == 0 || !self.liveness_known {
            return;
        }
        let joining: Vec<u64> = self
            .alive
            .iter()
            .copied()
            .filter(|n| !md.members.contains(n) && !self.dead.contains(n))
            .collect();
        let dead: Vec<u64> = self.dead.iter().copied().collect();
        let moves = crate::placement::target_placement(
            &md.shard_replicas,
            &md.members,
            &dead,
            md.replication_factor,
        );
        // Shards are added once the nodes that joined are members, and before replicas move:
        // new shards go to the least loaded nodes (the new ones), so fewer replicas move.
        let wanted = md.wanted_data_shards();
        let grow = (joining.is_empty() && wanted > md.data_shards)
            .then(|| {
                let replicas = crate::placement::new_shard_replicas(
                    &md.shard_replicas,
                    &md.members,
                    &dead,
                    md.replication_factor,
                    wanted - md.data_shards,
                );
                let first = md.data_shards + 1;
                (!replicas.is_empty()).then_some(MetaCommand::AddShards { first, replicas })
            })
            .flatten();
        if joining.is_empty() && moves.is_empty() && grow.is_none() {
            return;
        }
        self.last_replacement = Some(now);
        for node in joining {
            tracing::info!(node, "admitting a node that joined the cluster");
            let data = Command::Meta(MetaCommand::AddMember { node }).encode();
            self.propose(METADATA_SHARD, data, Waiters::Nobody);
        }
        if let Some(cmd) = grow {
            tracing::info!(?cmd, "adding data shards: the cluster grew");
            self.propose(METADATA_SHARD, Command::Meta(cmd).encode(), Waiters::Nobody);
            return;
        }
        for (shard, replicas) in moves {
            tracing::info!(shard, ?replicas, dead = ?dead, "placing the shard's replicas");
            let data = Command::Meta(MetaCommand::SetShardReplicas { shard, replicas }).encode();
            self.propose(METADATA_SHARD, data, Waiters::Nobody);
        }
    }

    /// Each led shard takes one step toward the replicas the metadata names.
    pub(super) fn change_membership(&mut self) {
        let me = self.config.node_id;
        let now = self.clock.now();
        self.expire_snapshots(now);
        for s in &mut self.shards {
            let raft = &s.raw.raft;
            if raft.state != StateRole::Leader
                || s.applied_term != raft.term
                || raft.has_pending_conf()
                || raft.pending_conf_index > s.applied
                || raft.lead_transferee.is_some()
                || s.last_conf_change
                    .is_some_and(|t| now.duration_since(t) < CHANGE_EVERY)
            {
                continue;
            }
            let Some(desired) = self.machine.metadata.shard_replicas.get(&s.id) else {
                continue;
            };
            let cs: ConfState = s.raw.store().conf_state().clone();
            if !cs.voters_outgoing.is_empty() {
                continue;
            }
            let voters: BTreeSet<u64> = cs.voters.iter().copied().collect();
            let learners: BTreeSet<u64> = cs.learners.iter().copied().collect();
            // The metadata shard also has every other live member as a learner.
            let members = &self.machine.metadata.members;
            let learner_wanted = (s.id == METADATA_SHARD)
                .then(|| {
                    members.iter().copied().find(|m| {
                        !voters.contains(m) && !learners.contains(m) && !self.dead.contains(m)
                    })
                })
                .flatten();
            let missing = desired
                .iter()
                .copied()
                .find(|n| !voters.contains(n) && !learners.contains(n))
                .or(learner_wanted);
            let step = if let Some(new) = missing {
                // A new replica must start from a snapshot: it has no configuration, and the
                // shard's first configuration is not in the log. Entry 1 (the first leader's
                // empty entry) being gone makes raft-rs send one.
                if s.raw.store().truncated().0 == 0 {
                    s.truncate_now = true;
                    continue;
                }
                Some((ConfChangeType::AddLearnerNode, new))
            } else if let Some(&ready) = desired.iter().find(|n| {
                learners.contains(n)
                    && raft.prs().get(**n).is_some_and(|pr| {
                        // Not Replicate: an idle shard leaves a learner that installed its
                        // snapshot in Probe until the next entry.
                        pr.state != ProgressState::Snapshot
                            && pr.recent_active
                            && pr.matched >= raft.raft_log.committed
                    })
            }) {
                Some((ConfChangeType::AddNode, ready))
            } else if desired.iter().all(|n| voters.contains(n)) {
                match voters.iter().find(|v| !desired.contains(v)) {
                    Some(&old) if old == me => {
                        // A leader does not remove itself: it hands the shard to the most
                        // caught-up voter that stays, which then removes this node.
                        let to = desired
                            .iter()
                            .filter_map(|n| raft.prs().get(*n).map(|pr| (pr.matched, *n)))
                            .max()
                            .map(|(_, n)| n);
                        if let Some(to) = to {
                            tracing::info!(shard = s.id, to, "leaving the shard: handing it over");
                            s.last_conf_change = Some(now);
                            s.raw.transfer_leader(to);
                        }
                        None
                    }
                    Some(&old) => Some((ConfChangeType::RemoveNode, old)),
                    None => learners
                        .iter()
                        .find(|l| {
                            !desired.contains(l) && !self.machine.metadata.members.contains(l)
                        })
                        .map(|&l| (ConfChangeType::RemoveNode, l))
                        .or_else(|| {
                            // Data shards have no learners beyond the replicas being added.
                            (s.id != METADATA_SHARD)
                                .then(|| learners.iter().find(|l| !desired.contains(l)).copied())
                                .flatten()
                                .map(|l| (ConfChangeType::RemoveNode, l))
                        }),
                }
            } else {
                None
            };
            let Some((kind, node)) = step else {
                continue;
            };
            let cc = ConfChange {
                change_type: kind,
                node_id: node,
                ..Default::default()
            };
            tracing::info!(shard = s.id, node, change = ?kind, "changing the shard's replicas");
            s.last_conf_change = Some(now);
            if let Err(e) = s.raw.propose_conf_change(Vec::new(), cc) {
                tracing::warn!(shard = s.id, error = %e, "configuration change refused");
            }
        }
    }

    /// Fails snapshots a peer has not acknowledged within [`SNAPSHOT_TIMEOUT`].
    fn expire_snapshots(&mut self, now: std::time::Instant) {
        for s in &mut self.shards {
            if s.raw.raft.state != StateRole::Leader {
                s.snapshotting.clear();
                continue;
            }
            let sending: Vec<u64> = s
                .raw
                .raft
                .prs()
                .iter()
                .filter(|(_, pr)| pr.state == ProgressState::Snapshot)
                .map(|(id, _)| *id)
                .collect();
            s.snapshotting.retain(|id, _| sending.contains(id));
            for id in sending {
                let since = *s.snapshotting.entry(id).or_insert(now);
                if now.duration_since(since) >= SNAPSHOT_TIMEOUT {
                    tracing::warn!(
                        shard = s.id,
                        peer = id,
                        "snapshot not acknowledged; sending another"
                    );
                    s.snapshotting.remove(&id);
                    s.raw.report_snapshot(id, raft::SnapshotStatus::Failure);
                }
            }
        }
    }

    /// A leader wrote to a shard this node holds no replica of: when the metadata names this
    /// node as one of its replicas, an empty replica is made to receive the snapshot.
    pub(super) fn create_replica(&mut self, shard: u64, kind: MessageType) -> bool {
        let me = self.config.node_id;
        let wanted = matches!(
            kind,
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        let md = &self.machine.metadata;
        // A node that joins knows nothing yet: the metadata shard's leader is the first to
        // write to it (the peer transport already checked the cluster id).
        let named = md
            .shard_replicas
            .get(&shard)
            .is_some_and(|r| r.contains(&me))
            || (shard == METADATA_SHARD && (md.members.contains(&me) || md.data_shards == 0));
        if !wanted || !named || shard > self.machine.metadata.data_shards {
            return false;
        }
        // A replica stored here already (with its votes) is started as it is.
        match self.store.has_shard(shard) {
            Ok(false) => {}
            Ok(true) => {
                let started = self
                    .store
                    .load_shard(shard)
                    .map_err(Error::from)
                    .and_then(|log| {
                        let log = log.ok_or_else(|| Error::Storage("gone".into()))?;
                        self.add_local_shard(shard, log, false)
                    });
                return match started {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(shard, error = %e, "cannot start the stored replica");
                        false
                    }
                };
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "cannot create a replica");
                return false;
            }
        }
        // A shard the cluster added starts from its first voters (the configuration at index
        // 0, which this replica missed when a metadata snapshot skipped the command): the
        // leader's entries from index 1 on, or its snapshot, then apply as on any replica.
        // Any other shard's first configuration comes with the snapshot it gets.
        let voters = md.initial_voters.get(&shard).cloned().unwrap_or_default();
        let cs = ConfState {
            voters,
            ..Default::default()
        };
        if !cs.voters.is_empty() {
            // Stored before the replica can vote, so a restart finds it with its votes.
            let mut wb = self.store.batch();
            let stored = wb
                .put_conf_state(shard, &cs)
                .map_err(Error::from)
                .and_then(|()| Ok(self.store.write(wb, true)?));
            if let Err(e) = stored {
                tracing::warn!(shard, error = %e, "cannot create a replica");
                return false;
            }
        }
        let log = ShardLog::bootstrap(self.store.clone(), shard, cs);
        match self.add_local_shard(shard, log, false) {
            Ok(()) => {
                tracing::info!(shard, "creating a replica of the shard on this node");
                true
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "cannot create a replica");
                false
            }
        }
    }

    /// Applying [`MetaCommand::AddShards`]: the new shards this node is a voter of get their
    /// first configuration, in the apply's write (unless a replica of the shard is already
    /// stored: the command is being applied again after a crash). The replicas start after the
    /// write ([`Driver::start_added_shards`]).
    pub(super) fn shards_added(
        &mut self,
        added: &[(u64, Vec<u64>)],
        wb: &mut jet_storage::Batch,
    ) -> Result<(), Error> {
        let me = self.config.node_id;
        for (shard, voters) in added {
            if !voters.contains(&me) || self.shard_ref(*shard).is_some() {
                continue;
            }
            if !self.store.has_shard(*shard)? {
                let cs = ConfState {
                    voters: voters.clone(),
                    ..Default::default()
                };
                wb.put_conf_state(*shard, &cs)?;
            }
            self.added_shards
                .push((*shard, voters.first() == Some(&me)));
        }
        Ok(())
    }

    /// Starts the replicas [`Driver::shards_added`] stored; the preferred leader stands at
    /// once, so a new shard serves without waiting an election timeout.
    pub(super) fn start_added_shards(&mut self) -> Result<(), Error> {
        for (shard, preferred) in std::mem::take(&mut self.added_shards) {
            if self.shard_ref(shard).is_some() {
                continue;
            }
            let log = self.store.load_shard(shard)?.ok_or_else(|| {
                Error::Storage(format!("shard {shard} was added but is not stored"))
            })?;
            let fresh = log.hard_state().term == 0;
            tracing::info!(shard, "starting a replica of a shard the cluster added");
            self.add_local_shard(shard, log, preferred && fresh)?;
        }
        Ok(())
    }

    /// Runs a replica of `shard` over `log` on this node.
    fn add_local_shard(&mut self, shard: u64, log: ShardLog, campaign: bool) -> Result<(), Error> {
        self.shared.grow_shards(shard);
        let status = self
            .shared
            .shard(shard)
            .ok_or_else(|| Error::Storage(format!("no status for shard {shard}")))?;
        let mut raw = new_raw_node(&self.config, shard, log)?;
        if campaign {
            raw.campaign()
                .map_err(|e| Error::Storage(format!("shard {shard}: {e}")))?;
        }
        status
            .local
            .store(true, std::sync::atomic::Ordering::Release);
        if self.slots.len() <= shard as usize {
            self.slots.resize(shard as usize + 1, None);
        }
        self.slots[shard as usize] = Some(self.shards.len());
        let now = self.clock.now();
        self.shards.push(new_shard(shard, raw, now));
        self.members_due = true;
        Ok(())
    }

    /// Applies a committed configuration change of shard slot `i`; the new configuration is
    /// written with the turn's applies.
    pub(super) fn apply_conf_change(
        &mut self,
        i: usize,
        e: &raft::eraftpb::Entry,
        wb: &mut jet_storage::Batch,
    ) -> Result<(), Error> {
        use protobuf::Message as _;
        let s = &mut self.shards[i];
        let applied = match e.get_entry_type() {
            raft::eraftpb::EntryType::EntryConfChange => {
                let cc = ConfChange::parse_from_bytes(&e.data)
                    .map_err(|err| Error::Storage(format!("conf change: {err}")))?;
                s.raw.apply_conf_change(&cc)
            }
            _ => {
                let cc = raft::eraftpb::ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|err| Error::Storage(format!("conf change: {err}")))?;
                s.raw.apply_conf_change(&cc)
            }
        };
        let cs = applied.map_err(|err| Error::Storage(format!("shard {}: {err}", s.id)))?;
        tracing::info!(shard = s.id, voters = ?cs.voters, learners = ?cs.learners, "shard configuration changed");
        wb.put_conf_state(s.id, &cs)?;
        s.raw.mut_store().set_conf_state(cs);
        Ok(())
    }
}
