//! OffsetCommit, OffsetFetch, OffsetDelete, and offset retention.
//!
//! A commit is validated against the group (members commit with their generation; consumers
//! without membership commit with generation -1 and an empty member id while the group is
//! empty), written through the group's shard, and visible to OffsetFetch once durable. While a
//! commit is being written, OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT
//! for that partition, as Kafka does, so a consumer starting up never reads an offset that is
//! about to change.
//!
//! Retention (Kafka's KIP-211 rules): offsets of an empty group expire `offsets_retention` after
//! the group became empty; offsets of a group that never had members (a consumer that only
//! commits) expire that long after their commit; in a stable consumer group, offsets of topics
//! no member subscribes to expire that long after their commit. An empty group left without
//! offsets is removed.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::codec::{self, OffsetValue};
use crate::consumer_protocol::CONSUMER_PROTOCOL_TYPE;
use crate::coordinator::State;
use crate::group::{Group, GroupState};
use crate::{now_ms, CommitRequest, Coordinator, Error, FetchedOffset};

impl Coordinator {
    /// OffsetCommit: one result per offset of the request, in its order.
    pub async fn commit_offsets(&self, req: CommitRequest) -> Vec<Result<(), Error>> {
        let prepared = {
            let mut guard = self.lock();
            self.prepare_commit(&mut guard, &req)
        };
        match prepared {
            Err(e) => vec![Err(e); req.offsets.len()],
            Ok((None, results)) => results,
            Ok((Some(stored), mut results)) => {
                let written = stored.await.unwrap_or(Err(Error::CoordinatorNotAvailable));
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = written.clone();
                }
                results
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn prepare_commit(
        &self,
        st: &mut State,
        req: &CommitRequest,
    ) -> Result<
        (
            Option<oneshot::Receiver<Result<(), Error>>>,
            Vec<Result<(), Error>>,
        ),
        Error,
    > {
        let shard = self.check_group(st, &req.group_id, true)?;
        let State { groups, writes, .. } = st;
        let now = now_ms();
        let g = match groups.get_mut(&req.group_id) {
            Some(g) => g,
            // No group: fine for a consumer that only stores offsets here; from a member, the
            // generation it names is gone.
            None if req.generation_id < 0 => {
                let id = req.group_id.clone();
                groups
                    .entry(id.clone())
                    .or_insert_with(|| Group::new(id, shard, now))
            }
            None => return Err(Error::IllegalGeneration),
        };
        if g.state == GroupState::Dead {
            return Err(Error::CoordinatorNotAvailable);
        }
        let instance = req.group_instance_id.as_deref();
        if req.generation_id >= 0 || !req.member_id.is_empty() || instance.is_some() {
            g.validate_member(&req.member_id, instance)?;
            if req.generation_id != g.generation {
                return Err(Error::IllegalGeneration);
            }
        } else if g.state != GroupState::Empty {
            // Once the group has members, only members may commit.
            return Err(Error::UnknownMemberId);
        }
        match g.state {
            // The member has its new generation from JoinGroup but no assignment yet.
            GroupState::CompletingRebalance => return Err(Error::RebalanceInProgress),
            GroupState::Stable | GroupState::PreparingRebalance => {
                let group = g.id.clone();
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    self.arm_member_session(&group, m);
                }
            }
            GroupState::Empty | GroupState::Dead => {}
        }
        let expire_timestamp_ms = if req.retention_time_ms > 0 {
            now.saturating_add(req.retention_time_ms)
        } else {
            -1
        };
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut ops = Vec::new();
        let mut commits = Vec::new();
        for o in &req.offsets {
            let metadata = o.metadata.clone().unwrap_or_default();
            if metadata.len() > self.config.max_offset_metadata_bytes {
                results.push(Err(Error::OffsetMetadataTooLarge));
                continue;
            }
            let value = OffsetValue {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata,
                commit_timestamp_ms: now,
                expire_timestamp_ms,
            };
            ops.push((
                codec::offset_key(&g.id, &o.topic, o.partition),
                Some(codec::encode_offset(&value)),
            ));
            let tp = (o.topic.clone(), o.partition);
            *g.pending_commits.entry(tp.clone()).or_default() += 1;
            commits.push(tp);
            results.push(Ok(()));
        }
        if ops.is_empty() {
            return Ok((None, results));
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(writes, &g.id, g.shard, ops, commits, Some(tx));
        Ok((Some(rx), results))
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every partition the group has
    /// offsets for when `None`. Partitions without an offset report -1.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
        require_stable: bool,
    ) -> Result<Vec<FetchedOffset>, Error> {
        let guard = self.lock();
        self.check_group(&guard, group_id, true)?;
        let none = |topic: &str, partition: i32, error: Option<Error>| FetchedOffset {
            topic: topic.to_string(),
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            error,
        };
        let g = match guard.groups.get(group_id) {
            Some(g) if g.state != GroupState::Dead => g,
            _ => {
                return Ok(partitions
                    .unwrap_or(&[])
                    .iter()
                    .map(|(t, p)| none(t, *p, None))
                    .collect())
            }
        };
        let found = |topic: &str, partition: i32| {
            let tp = (topic.to_string(), partition);
            if require_stable && g.pending_commits.contains_key(&tp) {
                return none(topic, partition, Some(Error::UnstableOffsetCommit));
            }
            match g.offsets.get(&tp) {
                Some(v) => FetchedOffset {
                    topic: topic.to_string(),
                    partition,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    error: None,
                },
                None => none(topic, partition, None),
            }
        };
        Ok(match partitions {
            Some(list) => list.iter().map(|(t, p)| found(t, *p)).collect(),
            None => g.offsets.keys().map(|(t, p)| found(t, *p)).collect(),
        })
    }

    /// OffsetDelete: removes the group's offsets of `partitions`. Refused for topics a
    /// non-empty consumer group still consumes.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let (stored, mut results) = {
            let mut guard = self.lock();
            self.check_group(&guard, group_id, false)?;
            let State { groups, writes, .. } = &mut *guard;
            let g = groups
                .get_mut(group_id)
                .filter(|g| g.state != GroupState::Dead)
                .ok_or(Error::GroupIdNotFound)?;
            let consumer = g.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
            if g.state != GroupState::Empty && !consumer {
                return Err(Error::NonEmptyGroup);
            }
            let mut results = Vec::with_capacity(partitions.len());
            let mut ops = Vec::new();
            for (topic, partition) in partitions {
                let subscribed = g.state != GroupState::Empty
                    && g.subscribed_topics
                        .as_ref()
                        .is_none_or(|t| t.contains(topic));
                if subscribed {
                    results.push(Err(Error::GroupSubscribedToTopic));
                    continue;
                }
                g.offsets.remove(&(topic.clone(), *partition));
                ops.push((codec::offset_key(&g.id, topic, *partition), None));
                results.push(Ok(()));
            }
            let stored = (!ops.is_empty()).then(|| {
                let (tx, rx) = oneshot::channel();
                self.enqueue(writes, &g.id, g.shard, ops, Vec::new(), Some(tx));
                rx
            });
            (stored, results)
        };
        if let Some(stored) = stored {
            let written = stored.await.unwrap_or(Err(Error::CoordinatorNotAvailable));
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = written.clone();
            }
        }
        Ok(results)
    }

    /// Starts the periodic retention pass; it ends when the coordinator is dropped.
    pub(crate) fn spawn_retention(self: &Arc<Self>) -> tokio::task::AbortHandle {
        let weak = Arc::downgrade(self);
        let every = self.config.offsets_retention_check_interval;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(c) = weak.upgrade() else {
                    return;
                };
                let expired = c.expire_offsets(now_ms());
                if expired > 0 {
                    tracing::info!(offsets = expired, "expired committed offsets");
                }
            }
        })
        .abort_handle()
    }

    /// One retention pass at wall time `now_ms`; returns how many offsets expired.
    pub fn expire_offsets(&self, now_ms: i64) -> usize {
        let retention_ms = self.config.offsets_retention.as_millis() as i64;
        let mut guard = self.lock();
        let State {
            groups,
            writes,
            served,
        } = &mut *guard;
        let mut expired_total = 0;
        let mut removed = Vec::new();
        for g in groups.values_mut() {
            if !self.serving(served, g.shard) {
                continue;
            }
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(tp, v)| {
                    !g.pending_commits.contains_key(*tp)
                        && is_expired(g, tp, v, now_ms, retention_ms)
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            if !expired.is_empty() {
                let ops = expired
                    .iter()
                    .map(|(t, p)| (codec::offset_key(&g.id, t, *p), None))
                    .collect();
                for tp in &expired {
                    g.offsets.remove(tp);
                }
                expired_total += expired.len();
                tracing::debug!(group = %g.id, offsets = expired.len(), "offsets expired");
                self.enqueue(writes, &g.id, g.shard, ops, Vec::new(), None);
            }
            if g.state == GroupState::Empty
                && g.members.is_empty()
                && g.offsets.is_empty()
                && g.pending_commits.is_empty()
                && g.pending_members.is_empty()
            {
                removed.push((g.id.clone(), g.shard));
            }
        }
        for (id, shard) in removed {
            groups.remove(&id);
            tracing::debug!(group = %id, "empty group without offsets removed");
            self.enqueue(
                writes,
                &id,
                shard,
                vec![(codec::group_key(&id), None)],
                Vec::new(),
                None,
            );
        }
        expired_total
    }
}

fn is_expired(
    g: &Group,
    tp: &(String, i32),
    v: &OffsetValue,
    now_ms: i64,
    retention_ms: i64,
) -> bool {
    let base_ms = match (&g.protocol_type, g.state) {
        (Some(_), GroupState::Empty) => g.state_timestamp_ms,
        (Some(pt), GroupState::Stable) if pt == CONSUMER_PROTOCOL_TYPE => {
            match &g.subscribed_topics {
                Some(topics) if !topics.contains(&tp.0) => v.commit_timestamp_ms,
                _ => return false,
            }
        }
        (None, _) => v.commit_timestamp_ms,
        _ => return false,
    };
    if v.expire_timestamp_ms >= 0 {
        // OffsetCommit v1–v4 with an explicit retention time keeps its own expiry.
        return now_ms >= v.expire_timestamp_ms;
    }
    now_ms.saturating_sub(base_ms) >= retention_ms
}
