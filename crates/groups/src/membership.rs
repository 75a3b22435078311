//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: Kafka's classic rebalance protocol, decision
//! for decision as Kafka's `GroupCoordinator` takes them (the comments name the Kafka rule where
//! the reason is not obvious).
//!
//! A rebalance: a join or leave moves the group to PreparingRebalance; JoinGroup responses wait
//! until every known member has rejoined (or the rebalance timeout, or — for a group that was
//! empty — the initial delay, extended while members keep arriving); then the generation is
//! bumped, the protocol chosen, and the leader gets the member list. Its SyncGroup carries the
//! assignment, which is stored through Raft before anyone receives theirs (Stable).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use crate::coordinator::{session_timeout, State};
use crate::group::{Group, GroupState, JoinPhase, Member};
use crate::timer::TimerKind;
use crate::writer::Writes;
use crate::{
    now_ms, Coordinator, Error, JoinRequest, JoinResponse, LeavingMember, SyncRequest, SyncResponse,
};

type Stored = oneshot::Receiver<Result<(), Error>>;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl Coordinator {
    /// JoinGroup: answers when the member's join phase ends (or at once with an error).
    pub async fn join_group(&self, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let (tx, rx) = oneshot::channel();
        let stored = {
            let mut guard = self.lock();
            self.do_join(&mut guard, req, tx)
        };
        if let Some(stored) = stored {
            match stored.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return JoinResponse::error(member_id, e),
                Err(_) => return JoinResponse::error(member_id, Error::CoordinatorNotAvailable),
            }
        }
        rx.await
            .unwrap_or_else(|_| JoinResponse::error(member_id, Error::CoordinatorNotAvailable))
    }

    /// Returns a write to wait for before the answer already sent on `tx` may be read.
    fn do_join(
        &self,
        st: &mut State,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) -> Option<Stored> {
        let fail = |tx: oneshot::Sender<JoinResponse>, id: &str, e: Error| {
            let _ = tx.send(JoinResponse::error(id, e));
            None
        };
        let shard = match self.check_group(st, &req.group_id, false) {
            Ok(shard) => shard,
            Err(e) => return fail(tx, &req.member_id, e),
        };
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        if req.session_timeout_ms < 0
            || session < self.config.min_session_timeout
            || session > self.config.max_session_timeout
        {
            return fail(tx, &req.member_id, Error::InvalidSessionTimeout);
        }
        let State { groups, writes, .. } = st;
        let g = if req.member_id.is_empty() {
            let id = req.group_id.clone();
            groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(id, shard, now_ms()))
        } else {
            match groups.get_mut(&req.group_id) {
                Some(g) => g,
                None => return fail(tx, &req.member_id, Error::UnknownMemberId),
            }
        };
        let stored = if req.member_id.is_empty() {
            self.join_new_member(g, writes, req, tx)
        } else {
            self.join_known_member(g, writes, req, tx);
            None
        };
        self.try_complete_join(g, writes);
        stored
    }

    fn join_new_member(
        &self,
        g: &mut Group,
        w: &mut Writes,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) -> Option<Stored> {
        let fail = |tx: oneshot::Sender<JoinResponse>, e: Error| {
            let _ = tx.send(JoinResponse::error("", e));
            None
        };
        if g.state == GroupState::Dead {
            return fail(tx, Error::CoordinatorNotAvailable);
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(tx, Error::InconsistentGroupProtocol);
        }
        let known_static = req
            .group_instance_id
            .as_ref()
            .and_then(|i| g.static_members.get(i))
            .cloned();
        if known_static.is_none()
            && g.members.len() + g.pending_members.len() >= self.config.max_group_size
        {
            return fail(tx, Error::GroupMaxSizeReached);
        }
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", Uuid::new_v4());
        if let Some(old_id) = known_static {
            return self.replace_static_member(g, w, req, old_id, new_id, tx);
        }
        if req.group_instance_id.is_none() && req.require_known_member_id {
            // KIP-394: the member id travels back to the client, which rejoins with it; until
            // then it holds a place that expires with the session timeout.
            let timer = self.timer(
                session_timeout(req.session_timeout_ms),
                TimerKind::Pending {
                    group: g.id.clone(),
                    member: new_id.clone(),
                },
            );
            g.pending_members.insert(new_id.clone(), timer);
            let _ = tx.send(JoinResponse::error(new_id, Error::MemberIdRequired));
            return None;
        }
        self.add_member_and_rebalance(g, w, req, new_id, tx);
        None
    }

    fn join_known_member(
        &self,
        g: &mut Group,
        w: &mut Writes,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        let id = req.member_id.clone();
        let fail = |tx: oneshot::Sender<JoinResponse>, e: Error| {
            let _ = tx.send(JoinResponse::error(id.as_str(), e));
        };
        if g.state == GroupState::Dead {
            return fail(tx, Error::CoordinatorNotAvailable);
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(tx, Error::InconsistentGroupProtocol);
        }
        if g.pending_members.remove(&id).is_some() {
            return self.add_member_and_rebalance(g, w, req, id.clone(), tx);
        }
        let instance = req.group_instance_id.as_deref();
        if g.is_fenced(&id, instance) {
            return fail(tx, Error::FencedInstanceId);
        }
        let unknown_instance = instance.is_some_and(|i| !g.static_members.contains_key(i));
        let Some(member) = g.members.get(&id) else {
            return fail(tx, Error::UnknownMemberId);
        };
        if unknown_instance {
            return fail(tx, Error::UnknownMemberId);
        }
        let matches = member.matches(&req.protocols);
        let is_leader = g.leader.as_deref() == Some(id.as_str());
        match g.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(g, w, req, tx),
            // Same metadata: the member probably lost the JoinGroup response; give it again.
            GroupState::CompletingRebalance if matches => {
                let _ = tx.send(g.join_response(&id, is_leader));
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(g, w, req, tx),
            // A stable leader rejoining asks for a rebalance (its consumer saw metadata change);
            // a follower with unchanged metadata just gets the current generation back.
            GroupState::Stable if is_leader || !matches => {
                self.update_member_and_rebalance(g, w, req, tx)
            }
            GroupState::Stable => {
                let _ = tx.send(g.join_response(&id, false));
            }
            GroupState::Empty | GroupState::Dead => fail(tx, Error::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        &self,
        g: &mut Group,
        w: &mut Writes,
        req: JoinRequest,
        member_id: String,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        let mut m = Member {
            id: member_id.clone(),
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            is_new: true,
            session_deadline: Instant::now(),
            session_timer: None,
        };
        // A new member cannot heartbeat until its join completes; it is forgotten if that takes
        // longer than the new-member timeout (it will retry if it is still there).
        self.arm_session(&g.id, &mut m, self.config.new_member_join_timeout);
        if g.state == GroupState::PreparingRebalance && g.generation == 0 {
            g.new_member_added = true;
        }
        if g.members.is_empty() {
            g.protocol_type = Some(m.protocol_type.clone());
        }
        if g.leader.is_none() {
            g.leader = Some(member_id.clone());
        }
        if let Some(instance) = &m.instance_id {
            g.static_members.insert(instance.clone(), member_id.clone());
        }
        g.members.insert(member_id, m);
        self.maybe_prepare_rebalance(g, w, "a member joined");
    }

    /// KIP-345: a known `group.instance.id` joining without a member id is the same instance
    /// restarted. It takes over the old member's place (the old id is fenced); in a stable group
    /// whose protocol it does not change, that is all — no rebalance, and SyncGroup gives it its
    /// old assignment.
    fn replace_static_member(
        &self,
        g: &mut Group,
        w: &mut Writes,
        req: JoinRequest,
        old_id: String,
        new_id: String,
        tx: oneshot::Sender<JoinResponse>,
    ) -> Option<Stored> {
        let instance = req.group_instance_id.clone().unwrap_or_default();
        let Some(mut m) = g.members.shift_remove(&old_id) else {
            // The instance map named a member that is gone; treat the instance as new.
            g.static_members.remove(&instance);
            self.add_member_and_rebalance(g, w, req, new_id, tx);
            return None;
        };
        let leader_before = g.leader.clone();
        m.answer_join(JoinResponse::error(
            old_id.as_str(),
            Error::FencedInstanceId,
        ));
        m.answer_sync(SyncResponse::error(Error::FencedInstanceId));
        m.id = new_id.clone();
        m.session_timer = None;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.join_waiter = Some(tx);
        self.arm_member_session(&g.id, &mut m);
        if g.leader.as_deref() == Some(old_id.as_str()) {
            g.leader = Some(new_id.clone());
        }
        if g.pending_sync.remove(&old_id) {
            g.pending_sync.insert(new_id.clone());
        }
        g.static_members.insert(instance.clone(), new_id.clone());
        g.members.insert(new_id.clone(), m);
        tracing::info!(group = %g.id, instance = %instance, old = %old_id, new = %new_id, state = g.state.as_str(), "static member rejoined");
        match g.state {
            GroupState::Stable
                if g.select_protocol()
                    .is_some_and(|p| g.protocol_name.as_deref() == Some(p.as_str())) =>
            {
                let is_leader = g.leader.as_deref() == Some(new_id.as_str());
                let mut response = g.join_response(&new_id, false);
                if req.supports_skip_assignment {
                    // KIP-814: the leader learns it leads, but must keep the current assignment.
                    if is_leader {
                        response.members = g.member_list();
                        response.skip_assignment = true;
                    }
                } else {
                    // Older clients are told the leader before the replacement: a rejoining
                    // leader then acts as a follower and SyncGroup returns its assignment.
                    response.leader = leader_before.unwrap_or_default();
                }
                if let Some(tx) = g
                    .members
                    .get_mut(&new_id)
                    .and_then(|m| m.join_waiter.take())
                {
                    let _ = tx.send(response);
                }
                let (stored_tx, stored_rx) = oneshot::channel();
                self.persist_group(g, w, None, Some(stored_tx));
                Some(stored_rx)
            }
            GroupState::Stable => {
                self.maybe_prepare_rebalance(g, w, "a static member rejoined with other protocols");
                None
            }
            // The leader may already be assigning with the old id; start over so the new id
            // gets an assignment.
            GroupState::CompletingRebalance => {
                self.prepare_rebalance(g, w, "a static member rejoined during CompletingRebalance");
                None
            }
            _ => None,
        }
    }

    fn update_member_and_rebalance(
        &self,
        g: &mut Group,
        w: &mut Writes,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        if let Some(m) = g.members.get_mut(&req.member_id) {
            m.protocols = req.protocols;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResponse::error(
                    m.id.as_str(),
                    Error::RebalanceInProgress,
                ));
            }
        }
        self.maybe_prepare_rebalance(g, w, "a member rejoined");
    }

    pub(crate) fn maybe_prepare_rebalance(&self, g: &mut Group, w: &mut Writes, reason: &str) {
        if matches!(
            g.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(g, w, reason);
        }
    }

    pub(crate) fn prepare_rebalance(&self, g: &mut Group, w: &mut Writes, reason: &str) {
        if g.state == GroupState::CompletingRebalance {
            reset_and_propagate_assignment_error(g, Error::RebalanceInProgress);
        }
        g.sync_timer = None;
        g.pending_sync.clear();
        let group = g.id.clone();
        if g.state == GroupState::Empty {
            let delay_ms = self.config.initial_rebalance_delay.as_millis() as u64;
            g.join_phase = JoinPhase::Initial {
                remaining_ms: g.rebalance_timeout_ms().saturating_sub(delay_ms),
            };
            g.join_timer = Some(self.timer(ms(delay_ms), TimerKind::Join { group }));
        } else {
            g.join_phase = JoinPhase::Normal;
            let timeout = ms(g.rebalance_timeout_ms());
            g.join_timer = Some(self.timer(timeout, TimerKind::Join { group }));
        }
        g.transition(GroupState::PreparingRebalance, now_ms());
        tracing::info!(group = %g.id, generation = g.generation, members = g.members.len(), reason, "preparing to rebalance");
        self.try_complete_join(g, w);
    }

    /// Ends the join phase early when every member has rejoined (not during an initial delay,
    /// which always runs its course so that more members can arrive).
    pub(crate) fn try_complete_join(&self, g: &mut Group, w: &mut Writes) {
        if g.state == GroupState::PreparingRebalance
            && g.join_phase == JoinPhase::Normal
            && g.all_members_joined()
        {
            self.complete_join(g, w);
        }
    }

    pub(crate) fn on_join_deadline(&self, g: &mut Group, w: &mut Writes) {
        if g.state != GroupState::PreparingRebalance {
            g.join_timer = None;
            return;
        }
        match g.join_phase {
            JoinPhase::Initial { remaining_ms } if g.new_member_added && remaining_ms > 0 => {
                g.new_member_added = false;
                let delay_ms =
                    (self.config.initial_rebalance_delay.as_millis() as u64).min(remaining_ms);
                g.join_phase = JoinPhase::Initial {
                    remaining_ms: remaining_ms - delay_ms,
                };
                let group = g.id.clone();
                g.join_timer = Some(self.timer(ms(delay_ms), TimerKind::Join { group }));
            }
            _ => self.complete_join(g, w),
        }
    }

    fn complete_join(&self, g: &mut Group, w: &mut Writes) {
        g.join_timer = None;
        // Dynamic members that did not rejoin are out. Static members keep their place (they
        // may be restarting) until their session expires.
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| !m.awaiting_join() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            drop_member(g, id);
        }
        if !g.members.is_empty() {
            let leader_joined = g
                .leader
                .as_ref()
                .and_then(|l| g.members.get(l))
                .is_some_and(Member::awaiting_join);
            if !leader_joined {
                match g.members.values().find(|m| m.awaiting_join()) {
                    Some(m) => g.leader = Some(m.id.clone()),
                    None => {
                        // Only static members that have not rejoined are left: wait another
                        // rebalance timeout (their sessions run out meanwhile).
                        tracing::warn!(group = %g.id, "no member rejoined; waiting another rebalance timeout");
                        g.join_phase = JoinPhase::Normal;
                        let group = g.id.clone();
                        let timeout = ms(g.rebalance_timeout_ms());
                        g.join_timer = Some(self.timer(timeout, TimerKind::Join { group }));
                        return;
                    }
                }
            }
        }
        g.generation += 1;
        g.new_member_added = false;
        let now = now_ms();
        if g.members.is_empty() {
            g.protocol_name = None;
            g.leader = None;
            g.subscribed_topics = None;
            g.transition(GroupState::Empty, now);
            tracing::info!(group = %g.id, generation = g.generation, "group is empty");
            self.persist_group(g, w, None, None);
            return;
        }
        g.protocol_name = g.select_protocol();
        g.subscribed_topics = g.compute_subscribed_topics();
        g.transition(GroupState::CompletingRebalance, now);
        g.pending_sync = g.members.keys().cloned().collect();
        let group = g.id.clone();
        g.sync_timer = Some(self.timer(ms(g.rebalance_timeout_ms()), TimerKind::Sync { group }));
        tracing::info!(
            group = %g.id,
            generation = g.generation,
            members = g.members.len(),
            protocol = g.protocol_name.as_deref().unwrap_or(""),
            leader = g.leader.as_deref().unwrap_or(""),
            "join phase complete"
        );
        let leader = g.leader.clone();
        let members = g.member_list();
        let base = g.join_response("", false);
        for m in g.members.values_mut() {
            let mut response = base.clone();
            response.member_id = m.id.clone();
            if leader.as_deref() == Some(m.id.as_str()) {
                response.members = members.clone();
            }
            m.answer_join(response);
            m.is_new = false;
            self.arm_member_session(&g.id, m);
        }
    }

    /// Kafka's sync expiration: members of the generation that never sent SyncGroup are
    /// removed, and the group rebalances without them.
    pub(crate) fn on_sync_deadline(&self, g: &mut Group, w: &mut Writes) {
        if matches!(
            g.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && !g.pending_sync.is_empty()
        {
            let late: Vec<String> = g.pending_sync.drain().collect();
            tracing::warn!(group = %g.id, members = ?late, "members did not send SyncGroup in time; removing them");
            for id in &late {
                drop_member(g, id);
            }
            self.prepare_rebalance(g, w, "members did not sync in time");
        }
    }

    /// Removes a member and lets the group react (Kafka's `removeMemberAndUpdateGroup`).
    pub(crate) fn remove_member(&self, g: &mut Group, member_id: &str, w: &mut Writes) {
        drop_member(g, member_id);
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(g, w, "a member left")
            }
            GroupState::PreparingRebalance => self.try_complete_join(g, w),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// SyncGroup: followers wait for the leader's assignment; the leader's is stored first.
    pub async fn sync_group(&self, req: SyncRequest) -> SyncResponse {
        let group_id = req.group_id.clone();
        let (tx, rx) = oneshot::channel();
        let stored = {
            let mut guard = self.lock();
            self.do_sync(&mut guard, req, tx)
        };
        if let Some((stored, generation, assignments)) = stored {
            let result = stored.await.unwrap_or(Err(Error::CoordinatorNotAvailable));
            self.on_assignment_stored(&group_id, generation, assignments, result);
        }
        rx.await
            .unwrap_or_else(|_| SyncResponse::error(Error::CoordinatorNotAvailable))
    }

    #[allow(clippy::type_complexity)]
    fn do_sync(
        &self,
        st: &mut State,
        req: SyncRequest,
        tx: oneshot::Sender<SyncResponse>,
    ) -> Option<(Stored, i32, HashMap<String, Bytes>)> {
        let fail = |tx: oneshot::Sender<SyncResponse>, e: Error| {
            let _ = tx.send(SyncResponse::error(e));
            None
        };
        if let Err(e) = self.check_group(st, &req.group_id, false) {
            return fail(tx, e);
        }
        let State { groups, writes, .. } = st;
        let Some(g) = groups.get_mut(&req.group_id) else {
            return fail(tx, Error::UnknownMemberId);
        };
        if g.state == GroupState::Dead {
            return fail(tx, Error::CoordinatorNotAvailable);
        }
        if let Err(e) = g.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return fail(tx, e);
        }
        if req.generation_id != g.generation {
            return fail(tx, Error::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|p| g.protocol_type.as_ref() != Some(p))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| g.protocol_name.as_ref() != Some(p))
        {
            return fail(tx, Error::InconsistentGroupProtocol);
        }
        match g.state {
            GroupState::Empty | GroupState::Dead => fail(tx, Error::UnknownMemberId),
            GroupState::PreparingRebalance => fail(tx, Error::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let m = g.members.get_mut(&req.member_id)?;
                if let Some(old) = m.sync_waiter.replace(tx) {
                    let _ = old.send(SyncResponse::error(Error::RebalanceInProgress));
                }
                g.pending_sync.remove(&req.member_id);
                if g.leader.as_deref() != Some(req.member_id.as_str()) {
                    return None;
                }
                // Members the leader left out get an empty assignment, as in Kafka.
                let mut assignments: HashMap<String, Bytes> = g
                    .members
                    .keys()
                    .map(|k| (k.clone(), Bytes::new()))
                    .collect();
                for (member, assignment) in req.assignments {
                    if let Some(slot) = assignments.get_mut(&member) {
                        *slot = assignment;
                    }
                }
                tracing::info!(group = %g.id, generation = g.generation, members = g.members.len(), "assignment received from the leader");
                let (stored_tx, stored_rx) = oneshot::channel();
                self.persist_group(g, writes, Some(&assignments), Some(stored_tx));
                Some((stored_rx, g.generation, assignments))
            }
            GroupState::Stable => {
                g.pending_sync.remove(&req.member_id);
                let (protocol_type, protocol_name) =
                    (g.protocol_type.clone(), g.protocol_name.clone());
                let group = g.id.clone();
                let m = g.members.get_mut(&req.member_id)?;
                let _ = tx.send(SyncResponse {
                    error: None,
                    protocol_type,
                    protocol_name,
                    assignment: m.assignment.clone(),
                });
                self.arm_member_session(&group, m);
                None
            }
        }
    }

    fn on_assignment_stored(
        &self,
        group: &str,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        result: Result<(), Error>,
    ) {
        let mut guard = self.lock();
        let State { groups, writes, .. } = &mut *guard;
        let Some(g) = groups.get_mut(group) else {
            return;
        };
        // Another member may have joined while the write was in flight: then this generation is
        // over and its assignment must not be handed out.
        if g.state != GroupState::CompletingRebalance || g.generation != generation {
            return;
        }
        match result {
            Ok(()) => {
                let (protocol_type, protocol_name) =
                    (g.protocol_type.clone(), g.protocol_name.clone());
                for m in g.members.values_mut() {
                    m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                    if m.sync_waiter.is_some() {
                        m.answer_sync(SyncResponse {
                            error: None,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol_name.clone(),
                            assignment: m.assignment.clone(),
                        });
                        self.arm_member_session(&g.id, m);
                    }
                }
                g.transition(GroupState::Stable, now_ms());
                tracing::info!(group = %g.id, generation, "group is stable");
            }
            Err(e) => {
                tracing::warn!(group = %g.id, generation, error = %e, "storing the assignment failed; rebalancing");
                reset_and_propagate_assignment_error(g, e);
                self.maybe_prepare_rebalance(g, writes, "storing the assignment failed");
            }
        }
    }

    /// Heartbeat: keeps the member's session; REBALANCE_IN_PROGRESS tells it to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), Error> {
        let mut guard = self.lock();
        self.check_group(&guard, group_id, false)?;
        let g = guard
            .groups
            .get_mut(group_id)
            .ok_or(Error::UnknownMemberId)?;
        if g.state == GroupState::Dead {
            return Err(Error::CoordinatorNotAvailable);
        }
        if g.is_fenced(member_id, group_instance_id) {
            return Err(Error::FencedInstanceId);
        }
        if !g.members.contains_key(member_id) {
            return Err(Error::UnknownMemberId);
        }
        if generation_id != g.generation {
            return Err(Error::IllegalGeneration);
        }
        if g.state == GroupState::Empty {
            return Err(Error::UnknownMemberId);
        }
        let state = g.state;
        let group = g.id.clone();
        if let Some(m) = g.members.get_mut(member_id) {
            self.arm_member_session(&group, m);
        }
        match state {
            GroupState::PreparingRebalance => Err(Error::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup: each named member leaves (by member id, or by instance id alone for an
    /// administrative removal). The outer error is for the whole request.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let mut guard = self.lock();
        self.check_group(&guard, group_id, false)?;
        let State { groups, writes, .. } = &mut *guard;
        let Some(g) = groups.get_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Err(Error::UnknownMemberId))
                .collect());
        };
        if g.state == GroupState::Dead {
            return Err(Error::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(members.len());
        for leaving in members {
            let id = leaving.member_id.as_str();
            let instance = leaving.group_instance_id.as_deref();
            let result = if id.is_empty() {
                match instance.and_then(|i| g.static_members.get(i)).cloned() {
                    Some(current) => {
                        self.remove_member(g, &current, writes);
                        Ok(())
                    }
                    None => Err(Error::UnknownMemberId),
                }
            } else if g.pending_members.remove(id).is_some() {
                self.try_complete_join(g, writes);
                Ok(())
            } else if g.is_fenced(id, instance) {
                Err(Error::FencedInstanceId)
            } else if g.members.contains_key(id) {
                tracing::info!(group = %g.id, member = id, "member left");
                self.remove_member(g, id, writes);
                Ok(())
            } else {
                Err(Error::UnknownMemberId)
            };
            results.push(result);
        }
        Ok(results)
    }
}

/// Takes a member out without any rebalance decision; whatever it waits for is answered.
pub(crate) fn drop_member(g: &mut Group, member_id: &str) {
    let Some(mut m) = g.members.shift_remove(member_id) else {
        return;
    };
    m.answer_join(JoinResponse::error("", Error::UnknownMemberId));
    m.answer_sync(SyncResponse::error(Error::UnknownMemberId));
    if let Some(instance) = &m.instance_id {
        if g.static_members.get(instance).map(String::as_str) == Some(member_id) {
            g.static_members.remove(instance);
        }
    }
    g.pending_sync.remove(member_id);
    if g.leader.as_deref() == Some(member_id) {
        g.leader = g.members.keys().next().cloned();
    }
}

/// Every member loses its assignment; those waiting in SyncGroup get `error`.
fn reset_and_propagate_assignment_error(g: &mut Group, error: Error) {
    for m in g.members.values_mut() {
        m.assignment = Bytes::new();
        m.answer_sync(SyncResponse::error(error.clone()));
    }
}
