//! Steps 3–5 of a driver turn: persist every shard's `Ready` in one write, send its messages,
//! apply what committed, answer the waiters, and delete Raft entries every replica agreed to
//! delete.
//!
//! Messages go out in raft-rs's documented order: a leader's messages before its own persist
//! (followers write in parallel with it), `persisted_messages` (votes, append responses) only
//! after the write that makes them true, and the light ready's messages after `advance`.

use std::time::Instant;

use raft::StateRole;

use super::apply::{self, Applied, Turn};
use super::network::Outbox;
use super::telemetry;
use super::{Driver, Waiters};
use crate::metadata::MetaEffect;
use crate::Error;

impl Driver {
    pub(super) fn handle_ready(&mut self) -> Result<(), Error> {
        // 3. Persist every shard's new entries and hard state in one write.
        let mut persist = self.store.batch();
        let mut readies = Vec::new();
        let mut outbox = Outbox::default();
        let mut installed = Vec::new();
        let mut installed_slots = Vec::new();
        for i in 0..self.shards.len() {
            if !self.shards[i].raw.has_ready() {
                continue;
            }
            let mut rd = self.shards[i].raw.ready();
            outbox.push(self.shards[i].id, rd.take_messages());
            if !rd.snapshot().is_empty() {
                // A new replica's first state (see snapshot.rs), before any entry after it.
                let image = self.install_snapshot(i, rd.snapshot(), &mut persist)?;
                installed.push((self.shards[i].id, image));
                installed_slots.push(i);
            }
            let s = &mut self.shards[i];
            let committed = rd.take_committed_entries();
            if !rd.entries().is_empty() {
                if s.raw.store().conflicts(rd.entries()) {
                    persist.delete_raft_entries_from(s.id, rd.entries()[0].index);
                }
                for e in rd.entries() {
                    persist.put_raft_entry(s.id, e)?;
                }
                s.raw.mut_store().append(rd.entries());
            }
            if let Some(hs) = rd.hs() {
                persist.put_hard_state(s.id, hs)?;
                s.raw.mut_store().set_hard_state(hs.clone());
            }
            readies.push((i, rd, committed));
        }
        if readies.is_empty() {
            return Ok(());
        }
        self.send(&mut outbox);
        if !persist.is_empty() {
            let entries = readies.iter().map(|(_, rd, _)| rd.entries().len()).sum();
            let started = Instant::now();
            self.store.write(persist, self.config.fsync)?;
            telemetry::persisted(entries, started.elapsed());
        }
        for (id, image) in installed {
            self.adopt_snapshot(id, &image)?;
        }
        for (i, rd, _) in &mut readies {
            outbox.push(self.shards[*i].id, rd.take_persisted_messages());
        }
        self.send(&mut outbox);

        // 4. Advance and apply.
        let mut turn = Turn::new(&self.store);
        let mut answers = Vec::new();
        for (i, rd, committed) in readies {
            let mut light = self.shards[i].raw.advance(rd);
            if installed_slots.contains(&i) {
                let at = self.shards[i].applied;
                self.shards[i].raw.advance_apply_to(at);
            }
            outbox.push(self.shards[i].id, light.take_messages());
            if let Some(commit) = light.commit_index() {
                self.shards[i].raw.mut_store().set_commit(commit);
            }
            let mut entries = committed;
            entries.extend(light.take_committed_entries());
            if entries.is_empty() {
                continue;
            }
            let id = self.shards[i].id;
            let hs = self.shards[i].raw.store().hard_state().clone();
            turn.applied.insert(id, (self.shards[i].applied, hs));
            for e in &entries {
                if matches!(
                    e.get_entry_type(),
                    raft::eraftpb::EntryType::EntryConfChange
                        | raft::eraftpb::EntryType::EntryConfChangeV2
                ) {
                    self.apply_conf_change(i, e, &mut turn.wb)?;
                }
                let applied = self.machine.apply_entry(id, e, &mut turn);
                if let Applied::Meta(Ok(MetaEffect::ShardsAdded(added)))
                | Applied::ForwardedMeta {
                    result: Ok(MetaEffect::ShardsAdded(added)),
                    ..
                } = &applied
                {
                    self.shards_added(added, &mut turn.wb)?;
                }
                let applied = match applied {
                    Applied::ForwardedMeta {
                        origin,
                        seq,
                        result,
                    } if origin == self.config.node_id => {
                        // A proposal this node forwarded to the leader, back in the log.
                        if let Some((w, _)) = self.forwarded.remove(&seq) {
                            answers.push((w, Applied::Meta(result)));
                        }
                        continue;
                    }
                    Applied::ForwardedMeta { result, .. } => Applied::Meta(result),
                    other => other,
                };
                self.take_waiters(i, e.index, e.term, applied, &mut answers);
            }
            let s = &mut self.shards[i];
            if let Some(e) = entries.last() {
                s.applied = e.index;
                s.applied_term = e.term;
            }
            let last = s.applied;
            s.raw.advance_apply_to(last);
            s.raw.mut_store().release_applied(last);
        }
        self.machine.finish_writes(&mut turn)?;
        let truncate = std::mem::take(&mut turn.publish.truncate);
        self.store.write_unlogged(turn.wb)?;
        self.start_added_shards()?;
        self.send(&mut outbox);
        self.publish(turn.publish, answers);
        self.truncate_agreed(truncate)?;
        Ok(())
    }

    /// Hands a phase's messages to the transport; peers whose frame was dropped are reported
    /// unreachable so raft-rs probes them rather than streaming into a full queue.
    fn send(&mut self, outbox: &mut Outbox) {
        if outbox.is_empty() {
            return;
        }
        let Some(net) = &self.net else {
            // A cluster of one has nobody to send to; raft-rs addresses no one.
            *outbox = Outbox::default();
            return;
        };
        let dropped = outbox.flush(net.as_ref());
        for (peer, shard) in dropped {
            if let Some(s) = self.shard_mut(shard) {
                s.raw.report_unreachable(peer);
                // A lost snapshot leaves the peer's progress waiting for it; failing it makes
                // raft-rs probe, and ask for a snapshot again.
                let snapshotting = s
                    .raw
                    .raft
                    .prs()
                    .get(peer)
                    .is_some_and(|pr| pr.state == raft::ProgressState::Snapshot);
                if snapshotting {
                    tracing::warn!(shard, peer, "a snapshot could not be sent; retrying");
                    s.raw.report_snapshot(peer, raft::SnapshotStatus::Failure);
                }
            }
        }
    }

    /// Pairs an applied entry with the proposal waiting for it, if it is still that proposal's.
    fn take_waiters(
        &mut self,
        shard: usize,
        index: u64,
        term: u64,
        applied: Applied,
        answers: &mut Vec<(Waiters, Applied)>,
    ) {
        let s = &mut self.shards[shard];
        // Waiters of earlier indexes whose entries were replaced by another leader's.
        let mut lost = Vec::new();
        while let Some((&idx, _)) = s.pending.first_key_value() {
            if idx >= index {
                break;
            }
            if let Some((_, (_, w, _))) = s.pending.pop_first() {
                lost.push(w);
            }
        }
        let id = s.id;
        let mine = match s.pending.remove(&index) {
            Some((t, w, proposed)) if t == term => {
                telemetry::committed(id, proposed.elapsed());
                Some(w)
            }
            Some((_, w, _)) => {
                lost.push(w);
                None
            }
            None => None,
        };
        for w in lost {
            self.reject(w, Error::NotLeader);
        }
        if let Some(w) = mine {
            answers.push((w, applied));
        }
    }

    /// Makes applied state visible and answers waiters, after the apply batch is written.
    fn publish(&mut self, p: apply::Publish, answers: Vec<(Waiters, Applied)>) {
        if p.metadata {
            *self.shared.metadata.write().expect("metadata lock") =
                std::sync::Arc::new(self.machine.metadata.clone());
            self.reconcile_due = true;
            self.members_due = true;
        }
        if !p.created.is_empty() || !p.deleted.is_empty() {
            let mut map = self.shared.partitions.write().expect("partitions lock");
            for tp in &p.deleted {
                map.remove(tp);
            }
            for tp in &p.created {
                if let Some(part) = self.machine.parts.get(tp) {
                    map.insert(*tp, part.handle.clone());
                }
            }
            drop(map);
            self.shared.partitions_changed.send_modify(|v| *v += 1);
        }
        for (tp, up_to) in &p.compacted {
            if let Some(part) = self.machine.parts.get(tp) {
                part.handle.forget_cached_below(*up_to);
            }
        }
        let mut stored = p.stored;
        for tp in &p.partitions {
            if let Some(part) = self.machine.parts.get(tp) {
                // Cache first, then advance the high watermark: a reader that sees the new
                // watermark finds the batches in the cache or the store.
                let batches = stored.remove(tp).unwrap_or_default();
                part.handle.cache(batches, part.state.log_start_offset);
                part.handle.publish(&part.state);
            }
        }
        for (w, applied) in answers {
            match (w, applied) {
                (Waiters::Append(txs), Applied::Append(results)) => {
                    for (tx, r) in txs.into_iter().zip(results) {
                        let _ = tx.send(r);
                    }
                }
                (Waiters::DeleteRecords(tx), Applied::DeleteRecords(r)) => {
                    let _ = tx.send(r);
                }
                (Waiters::Meta(tx), Applied::Meta(r)) => {
                    let _ = tx.send(r);
                }
                (Waiters::GroupWrite(tx), Applied::GroupWrite(r)) => {
                    let _ = tx.send(r);
                }
                (Waiters::Applied(tx), _) => {
                    let _ = tx.send(Ok(()));
                }
                (Waiters::Reconcile(tps), _) => {
                    for tp in tps {
                        self.reconciling.remove(&tp);
                    }
                }
                (Waiters::Nobody, _) => {}
                (w, _) => w.fail(Error::NotLeader),
            }
        }
    }

    /// Leaders propose, at most once a second per shard, that every replica may delete the
    /// entries that all replicas hold and that no partition's kept batches lie in. A shard
    /// about to get a new replica (`truncate_now`, see membership.rs) proposes at once and
    /// whatever the batching threshold, so that its entry 1 goes and the replica gets a
    /// snapshot.
    pub(super) fn propose_truncations(&mut self) {
        let now = self.clock.now();
        let mut floor: Vec<(usize, u64)> = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            let rested =
                now.duration_since(s.last_truncate_proposal) >= std::time::Duration::from_secs(1);
            if s.raw.raft.state != StateRole::Leader || !(rested || s.truncate_now) {
                continue;
            }
            let mut to = s.applied;
            for (id, pr) in s.raw.raft.prs().iter() {
                // Nodes gone for --node-dead-after do not hold the log back: a returning one
                // gets a snapshot.
                if !self.dead.contains(id) {
                    to = to.min(pr.matched);
                }
            }
            floor.push((i, to));
        }
        if floor.is_empty() {
            return;
        }
        for part in self.machine.parts.values() {
            let st = &part.state;
            if st.first_raft_index == 0 {
                continue;
            }
            for (i, to) in &mut floor {
                if self.shards[*i].id == st.shard {
                    *to = (*to).min(st.first_raft_index - 1);
                }
            }
        }
        for (i, to) in floor {
            let s = &mut self.shards[i];
            let (from, _) = s.raw.store().truncated();
            let batch = if std::mem::take(&mut s.truncate_now) {
                1
            } else {
                // Range deletes are cheap but not free, and each proposal is an entry: batch
                // them.
                self.config.raft_log_gc_entries
            };
            if to < from + batch || to <= s.truncate_proposed {
                continue;
            }
            s.truncate_proposed = to;
            s.last_truncate_proposal = now;
            let id = s.id;
            let data = crate::command::Command::TruncateLog { up_to: to }.encode();
            self.propose(id, data, Waiters::Nobody);
        }
    }

    /// Deletes what [`crate::command::Command::TruncateLog`] entries allowed, never past what
    /// this replica applied or what its partitions still refer to.
    fn truncate_agreed(
        &mut self,
        agreed: std::collections::BTreeMap<u64, u64>,
    ) -> Result<(), Error> {
        if agreed.is_empty() {
            return Ok(());
        }
        let mut wb = self.store.batch();
        let mut truncated = Vec::new();
        for (shard, up_to) in agreed {
            let Some(s) = self.shard_ref(shard) else {
                continue;
            };
            let mut to = up_to.min(s.applied);
            for part in self.machine.parts.values() {
                let st = &part.state;
                if st.shard == shard && st.first_raft_index > 0 {
                    to = to.min(st.first_raft_index - 1);
                }
            }
            let (from, _) = s.raw.store().truncated();
            if to <= from {
                continue;
            }
            let Ok(term) = raft::Storage::term(s.raw.store(), to) else {
                continue;
            };
            wb.truncate_raft_log(shard, to, term);
            truncated.push((shard, to, term));
        }
        if truncated.is_empty() {
            return Ok(());
        }
        // Unlogged like the apply writes: a lost truncation only leaves entries to delete again.
        self.store.write_unlogged(wb)?;
        for (id, to, term) in truncated {
            if let Some(s) = self.shard_mut(id) {
                s.raw.mut_store().compact(to, term);
            }
        }
        Ok(())
    }
}
