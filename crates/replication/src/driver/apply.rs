//! Apply: committed entries become partition indexes, partition and producer state, cluster
//! metadata and group records.
//!
//! Apply is a pure function of the Raft log: everything it reads is in the entry or in the
//! shard's own replicated state (its partitions, their producers), never a flag, a clock or
//! another shard. LogAppendTime is stamped by the proposer, partitions are created and deleted
//! by commands of their own shard, producer expiry is a command with the proposer's time. Where
//! apply must read what earlier entries wrote (DeleteRecords finds the batch holding the new log
//! start in the index), the turn's writes so far are written first ([`Machine::checkpoint`]),
//! so the answer is the same however entries are grouped into turns, and after any replay.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use jet_protocol::batch::{self, BatchHeader};
use jet_storage::{Batch, IndexEntry, PartitionState, Store, TopicPartition};
use raft::eraftpb::{Entry, EntryType, HardState};

use crate::command::{AppendItem, Command, Compaction};
use crate::metadata::{ClusterMetadata, MetaCommand, MetaEffect};
use crate::node::{AppendOutcome, Shared};
use crate::partition::PartitionHandle;
use crate::producer::{self, BatchMeta, Check, ProducerEntry};
use crate::Error;

/// One partition as the apply sees it.
pub(crate) struct Part {
    pub state: PartitionState,
    pub handle: PartitionHandle,
    /// Idempotent producers that wrote here, by producer id.
    pub producers: HashMap<i64, ProducerEntry>,
}

impl Part {
    /// A partition with `state` and no producers yet; `None` when its shard id is beyond any
    /// cluster's.
    pub fn new(tp: TopicPartition, state: PartitionState, shared: &Shared) -> Option<Part> {
        // A snapshot of a shard the cluster added can be stored ahead of the metadata that
        // added it (after a crash, the metadata's apply runs again).
        if state.shard <= crate::metadata::MAX_DATA_SHARDS {
            shared.grow_shards(state.shard);
        }
        let status = shared.shard(state.shard)?;
        let handle = PartitionHandle::new(tp, status.clone(), &state, shared.tail_budget.clone());
        Some(Part {
            state,
            handle,
            producers: HashMap::new(),
        })
    }
}

/// What applying one entry produced, for its waiters.
pub(crate) enum Applied {
    Append(Vec<Result<AppendOutcome, Error>>),
    DeleteRecords(Result<i64, Error>),
    Meta(Result<MetaEffect, Error>),
    /// A forwarded metadata change: answered on its origin node, by proposal number.
    ForwardedMeta {
        origin: u64,
        seq: u64,
        result: Result<MetaEffect, Error>,
    },
    GroupWrite(Result<(), Error>),
    Nothing,
}

/// Things to make visible to readers once the apply writes are done.
#[derive(Default)]
pub(crate) struct Publish {
    pub partitions: HashSet<TopicPartition>,
    pub created: Vec<TopicPartition>,
    pub deleted: Vec<TopicPartition>,
    pub metadata: bool,
    /// Producer states changed (written) or expired (deleted) by this turn.
    pub producers: HashSet<(TopicPartition, i64)>,
    /// Batches appended by this turn (patched copies), for the partitions' tail caches.
    pub stored: HashMap<TopicPartition, Vec<(i64, i64, Bytes)>>,
    /// Partitions compacted below an offset: cached batches there are stale.
    pub compacted: Vec<(TopicPartition, i64)>,
    /// Shards whose Raft entries up to an index may be deleted ([`Command::TruncateLog`]).
    pub truncate: BTreeMap<u64, u64>,
}

/// The writes of one turn of applies, and what to publish after them.
pub(crate) struct Turn {
    pub wb: Batch,
    pub publish: Publish,
    /// Per shard applied in this turn: the last applied index and the hard state to persist
    /// with it (raft-rs refuses to start with applied > commit).
    pub applied: BTreeMap<u64, (u64, HardState)>,
}

impl Turn {
    pub fn new(store: &Store) -> Self {
        Self {
            wb: store.batch(),
            publish: Publish::default(),
            applied: BTreeMap::new(),
        }
    }
}

/// The replicated state machine of every local shard.
pub(crate) struct Machine {
    pub store: Store,
    pub shared: Arc<Shared>,
    pub metadata: ClusterMetadata,
    pub parts: HashMap<TopicPartition, Part>,
}

impl Machine {
    /// Applies one committed entry of `shard`.
    pub fn apply_entry(&mut self, shard: u64, e: &Entry, turn: &mut Turn) -> Applied {
        let applied = match e.get_entry_type() {
            EntryType::EntryNormal if e.data.is_empty() => Applied::Nothing,
            EntryType::EntryNormal => match Command::decode(e.data.clone()) {
                Ok(cmd) => self.apply_command(shard, e.index, e.term, cmd, turn),
                Err(err) => {
                    // Only Jet's own code writes entries; an undecodable one is a bug or
                    // corruption, and every replica skips it alike.
                    tracing::error!(shard, index = e.index, error = %err, "skipping undecodable entry");
                    Applied::Nothing
                }
            },
            // The driver applies configuration changes to raft-rs and stores the new
            // configuration (membership.rs); the machine's state does not change.
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => Applied::Nothing,
        };
        if let Some((idx, _)) = turn.applied.get_mut(&shard) {
            *idx = e.index;
        }
        applied
    }

    fn apply_command(
        &mut self,
        shard: u64,
        index: u64,
        term: u64,
        cmd: Command,
        turn: &mut Turn,
    ) -> Applied {
        let metadata_shard = shard == super::METADATA_SHARD;
        match cmd {
            Command::Append {
                timestamp_ms,
                items,
            } => Applied::Append(
                items
                    .into_iter()
                    .map(|item| self.apply_append(shard, index, term, timestamp_ms, item, turn))
                    .collect(),
            ),
            Command::DeleteRecords { tp, offset } => {
                Applied::DeleteRecords(self.apply_delete_records(shard, tp, offset, turn))
            }
            Command::Meta(cmd) if metadata_shard => Applied::Meta(self.apply_meta(cmd, turn)),
            Command::ForwardedMeta { origin, seq, cmd } if metadata_shard => {
                Applied::ForwardedMeta {
                    origin,
                    seq,
                    result: self.apply_meta(cmd, turn),
                }
            }
            Command::ForwardedMeta { .. } => Applied::Nothing,
            Command::Meta(_) => Applied::Meta(Err(Error::InvalidRequest(
                "metadata command on a data shard".into(),
            ))),
            Command::CreatePartitions { tps } if !metadata_shard => {
                for tp in tps {
                    self.create_partition(shard, tp, turn);
                }
                Applied::Nothing
            }
            Command::DeletePartitions { tps } if !metadata_shard => {
                for tp in tps {
                    if self.parts.get(&tp).is_some_and(|p| p.state.shard == shard) {
                        self.parts.remove(&tp);
                        turn.publish.partitions.remove(&tp);
                        turn.publish.stored.remove(&tp);
                        turn.publish.producers.retain(|(t, _)| *t != tp);
                        turn.wb.delete_partition(&tp);
                        turn.publish.deleted.push(tp);
                    }
                }
                Applied::Nothing
            }
            Command::TruncateLog { up_to } => {
                let t = turn.publish.truncate.entry(shard).or_default();
                *t = (*t).max(up_to);
                Applied::Nothing
            }
            Command::ExpireProducers {
                now_ms,
                expiration_ms,
            } => {
                for (tp, part) in self.parts.iter_mut() {
                    if part.state.shard != shard {
                        continue;
                    }
                    part.producers.retain(|pid, e| {
                        let keep = now_ms - e.last_timestamp_ms < expiration_ms;
                        if !keep {
                            turn.publish.producers.insert((*tp, *pid));
                        }
                        keep
                    });
                }
                Applied::Nothing
            }
            Command::Compact(c) if !metadata_shard => {
                self.apply_compact(shard, index, term, c, turn);
                Applied::Nothing
            }
            Command::Compact(_) => {
                tracing::error!(shard, index, "compaction on the metadata shard");
                Applied::Nothing
            }
            Command::CreatePartitions { .. } | Command::DeletePartitions { .. } => {
                tracing::error!(shard, index, "partition command on the metadata shard");
                Applied::Nothing
            }
            Command::GroupWrite { ops } => {
                for (k, _) in &ops {
                    // Group records live under their own prefix so they can never overwrite
                    // partition state or cluster metadata.
                    if k.first() != Some(&jet_storage::keys::META_GROUP_PREFIX) {
                        return Applied::GroupWrite(Err(Error::InvalidRequest(
                            "group record key without the group prefix".into(),
                        )));
                    }
                }
                for (k, v) in &ops {
                    match v {
                        Some(v) => turn.wb.put_meta(k, v),
                        None => turn.wb.delete_meta(k),
                    }
                }
                Applied::GroupWrite(Ok(()))
            }
        }
    }

    fn create_partition(&mut self, shard: u64, tp: TopicPartition, turn: &mut Turn) {
        if self.parts.contains_key(&tp) {
            return;
        }
        let state = PartitionState {
            shard,
            ..PartitionState::empty()
        };
        let Some(part) = Part::new(tp, state, &self.shared) else {
            return;
        };
        self.parts.insert(tp, part);
        turn.publish.partitions.insert(tp);
        turn.publish.created.push(tp);
    }

    fn apply_append(
        &mut self,
        shard: u64,
        raft_index: u64,
        term: u64,
        timestamp_ms: i64,
        item: AppendItem,
        turn: &mut Turn,
    ) -> Result<AppendOutcome, Error> {
        let tp = item.tp;
        let part = self
            .parts
            .get_mut(&tp)
            .filter(|p| p.state.shard == shard)
            .ok_or(Error::UnknownTopicOrPartition)?;
        let headers: Vec<(usize, BatchHeader)> = batch::iter(&item.batches).collect();

        // Idempotence first, so that a partition's append is all or nothing: check every batch
        // against the producer state as the batches before it would leave it.
        let mut changed: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut next = part.state.next_offset;
        for (_, h) in &headers {
            let last = next + h.last_offset_delta as i64;
            if h.has_producer_id() {
                if h.is_transactional() {
                    return Err(Error::InvalidTxnState);
                }
                let pid = h.producer_id;
                let known = changed.get(&pid).or_else(|| part.producers.get(&pid));
                match producer::check(known, h.producer_epoch, h.base_sequence, h.last_sequence())?
                {
                    Check::Duplicate { base_offset } => {
                        return Ok(AppendOutcome {
                            base_offset,
                            log_append_time_ms: -1,
                            log_start_offset: part.state.log_start_offset,
                        });
                    }
                    Check::Append => {}
                }
                let mut entry = known
                    .cloned()
                    .unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
                entry.record(
                    h.producer_epoch,
                    BatchMeta {
                        first_seq: h.base_sequence,
                        last_seq: h.last_sequence(),
                        base_offset: next,
                        last_offset: last,
                    },
                    timestamp_ms,
                );
                changed.insert(pid, entry);
            }
            next = last + 1;
        }

        let st = &mut part.state;
        let base_offset = st.next_offset;
        let epoch = term.min(i32::MAX as u64) as i32;
        // The proposer stamped LogAppendTime into the batches (see `Command::encode_append`).
        let log_append_time = headers
            .first()
            .is_some_and(|(_, h)| h.attributes & batch::ATTR_LOG_APPEND_TIME != 0);
        let stored = turn.publish.stored.entry(tp).or_default();
        for (start, h) in &headers {
            let len = h.total_len();
            let Some(bytes) = item.batches.get(*start..start + len) else {
                break;
            };
            let last = st.next_offset + h.last_offset_delta as i64;
            if h.max_timestamp > st.max_timestamp {
                st.max_timestamp = h.max_timestamp;
                st.max_timestamp_batch = st.next_offset;
            }
            turn.wb.put_index(
                &tp,
                &IndexEntry {
                    base_offset: st.next_offset,
                    shard,
                    raft_index,
                    raft_term: term,
                    position: item.position + *start as u32,
                    length: len as u32,
                    leader_epoch: epoch,
                    last_offset: last,
                    max_timestamp: h.max_timestamp,
                    cum_max_timestamp: st.max_timestamp,
                    cum_bytes: st.appended_bytes,
                },
            );
            if st.first_raft_index == 0 {
                st.first_raft_index = raft_index;
            }
            // The tail cache holds patched copies, so a consumer at the end reads from memory.
            let mut copy = bytes.to_vec();
            batch::patch_offset_and_epoch(&mut copy, st.next_offset, epoch);
            stored.push((st.next_offset, last, Bytes::from(copy)));
            let next = last + 1;
            assert!(next > st.next_offset, "offsets must strictly increase");
            st.next_offset = next;
            st.appended_bytes += len as u64;
            st.size_bytes += len as u64;
        }
        let log_start_offset = st.log_start_offset;
        for (pid, entry) in changed {
            part.producers.insert(pid, entry);
            turn.publish.producers.insert((tp, pid));
        }
        turn.publish.partitions.insert(tp);
        Ok(AppendOutcome {
            base_offset,
            log_append_time_ms: if log_append_time {
                headers.first().map_or(-1, |(_, h)| h.max_timestamp)
            } else {
                -1
            },
            log_start_offset,
        })
    }

    fn apply_delete_records(
        &mut self,
        shard: u64,
        tp: TopicPartition,
        offset: i64,
        turn: &mut Turn,
    ) -> Result<i64, Error> {
        let st = self
            .parts
            .get(&tp)
            .filter(|p| p.state.shard == shard)
            .ok_or(Error::UnknownTopicOrPartition)?
            .state;
        if offset > st.next_offset {
            return Err(Error::OffsetOutOfRange {
                log_start_offset: st.log_start_offset,
                high_watermark: st.next_offset,
            });
        }
        if offset <= st.log_start_offset {
            return Ok(st.log_start_offset);
        }
        // The index must hold every batch appended before this entry, in this turn too.
        self.checkpoint(turn)?;
        // Keep the batch that holds `offset` (or the first after it); drop every batch before.
        let kept = self.store.index_holding(&tp, offset, st.next_offset)?;
        // Compacted batches lie in a newer entry than the batches after them: the oldest entry
        // still needed is then the one holding the first uncompacted batch.
        let tail = match kept {
            Some(k) if k.base_offset < st.cleaned_offset => self
                .store
                .index_holding(&tp, st.cleaned_offset, st.next_offset)?
                .map(|t| t.raft_index),
            _ => None,
        };
        let part = self.parts.get_mut(&tp).expect("checked above");
        let st = &mut part.state;
        match kept {
            Some(k) => {
                turn.wb.delete_index_range(&tp, 0, k.base_offset);
                // Compaction shrank what is kept below the cleaned offset; the cumulative
                // counts are of the original batches, so this is an upper bound there.
                st.size_bytes = st.size_bytes.min(st.appended_bytes - k.cum_bytes);
                st.first_raft_index = tail.map_or(k.raft_index, |t| t.min(k.raft_index));
            }
            None => {
                turn.wb.delete_index_range(&tp, 0, st.next_offset);
                st.size_bytes = 0;
                st.first_raft_index = 0;
            }
        }
        st.log_start_offset = offset;
        turn.publish.partitions.insert(tp);
        Ok(offset)
    }

    /// Replaces the index below `c.up_to` with the compacted batches this entry carries.
    /// Skipped, alike on every replica, when the partition moved since the leader computed it.
    fn apply_compact(
        &mut self,
        shard: u64,
        raft_index: u64,
        term: u64,
        c: Compaction,
        turn: &mut Turn,
    ) {
        let Some(part) = self.parts.get_mut(&c.tp).filter(|p| p.state.shard == shard) else {
            return;
        };
        let st = &mut part.state;
        if st.log_start_offset != c.log_start
            || st.cleaned_offset != c.cleaned_offset
            || c.up_to > st.next_offset
            || c.up_to <= st.log_start_offset
        {
            tracing::debug!(tp = ?c.tp, "stale compaction skipped");
            return;
        }
        turn.wb.delete_index_range(&c.tp, 0, c.up_to);
        let mut kept_bytes = 0u64;
        for k in &c.batches {
            let Ok(h) = BatchHeader::parse(&k.batch) else {
                continue;
            };
            kept_bytes += k.batch.len() as u64;
            turn.wb.put_index(
                &c.tp,
                &IndexEntry {
                    base_offset: h.base_offset,
                    shard,
                    raft_index,
                    raft_term: term,
                    position: k.position,
                    length: k.batch.len() as u32,
                    leader_epoch: k.leader_epoch,
                    last_offset: h.base_offset + h.last_offset_delta as i64,
                    max_timestamp: h.max_timestamp,
                    cum_max_timestamp: k.cum_max_timestamp,
                    cum_bytes: k.cum_bytes,
                },
            );
        }
        st.size_bytes = st.size_bytes.saturating_sub(c.replaced_bytes) + kept_bytes;
        // 0 is "no entry": the lowest of the entries the partition still points into.
        let refs = [
            (c.tail_raft_index > 0).then_some(c.tail_raft_index),
            (!c.batches.is_empty()).then_some(raft_index),
        ];
        st.first_raft_index = refs.into_iter().flatten().min().unwrap_or(0);
        st.cleaned_offset = c.up_to;
        turn.publish.partitions.insert(c.tp);
        turn.publish.compacted.push((c.tp, c.up_to));
    }

    fn apply_meta(&mut self, cmd: MetaCommand, turn: &mut Turn) -> Result<MetaEffect, Error> {
        let effect = self.metadata.apply(&cmd)?;
        // Partitions of shards the cluster added find their shard's status from now on.
        self.shared.grow_shards(self.metadata.data_shards);
        turn.publish.metadata = true;
        Ok(effect)
    }

    /// Adds to the turn's write batch everything apply keeps in memory for what the turn
    /// touched: partition states, producer states, the metadata document and applied indexes.
    pub fn finish_writes(&mut self, turn: &mut Turn) -> Result<(), Error> {
        let Turn {
            wb,
            publish,
            applied,
        } = turn;
        for tp in &publish.partitions {
            if let Some(p) = self.parts.get(tp) {
                wb.put_partition_state(tp, &p.state);
            }
        }
        for (tp, pid) in &publish.producers {
            let key = jet_storage::keys::producer_state(tp, *pid);
            match self.parts.get(tp).and_then(|p| p.producers.get(pid)) {
                Some(entry) => wb.put_meta(&key, &entry.encode()),
                None => wb.delete_meta(&key),
            }
        }
        if publish.metadata {
            let doc = serde_json::to_vec(&self.metadata)
                .map_err(|e| Error::Storage(format!("metadata encode: {e}")))?;
            wb.put_cluster_metadata(&doc);
        }
        for (shard, (index, hs)) in applied.iter() {
            wb.put_applied(*shard, *index);
            wb.put_hard_state(*shard, hs)?;
        }
        Ok(())
    }

    /// Writes the turn so far, so that reads in the rest of the turn see it. The write skips
    /// the WAL: the Raft entries it derives from are durable already and are deleted only by a
    /// later write of this same kind, and flushes are atomic across column families, so after a
    /// crash disk holds the results of a prefix of the entries, and the rest is applied again.
    pub fn checkpoint(&mut self, turn: &mut Turn) -> Result<(), Error> {
        self.finish_writes(turn)?;
        let wb = std::mem::replace(&mut turn.wb, self.store.batch());
        self.store.write_unlogged(wb)?;
        Ok(())
    }
}
