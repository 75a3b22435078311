//! State-machine tests of membership, on the in-memory backend with tokio's paused clock, so
//! every timeout is exact and every run is the same.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::consumer_protocol::encode_subscription;
use crate::{
    Coordinator, Error, GroupConfig, GroupState, JoinRequest, JoinResponse, LeavingMember,
    MemBackend, SyncRequest,
};

pub(crate) const SESSION_MS: i32 = 10_000;
pub(crate) const REBALANCE_MS: i32 = 30_000;

pub(crate) async fn start() -> (Arc<Coordinator>, Arc<MemBackend>) {
    let backend = Arc::new(MemBackend::default());
    let c = Coordinator::start_with(backend.clone(), GroupConfig::default())
        .await
        .expect("start");
    (c, backend)
}

pub(crate) fn join_req(group: &str, member: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(encode_subscription(&["t"]))))
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

pub(crate) fn spawn_join(c: &Arc<Coordinator>, req: JoinRequest) -> JoinHandle<JoinResponse> {
    let c = c.clone();
    tokio::spawn(async move { c.join_group(req).await })
}

/// KIP-394 round trip: the first join gets MEMBER_ID_REQUIRED and the id to rejoin with.
pub(crate) async fn member_id(c: &Arc<Coordinator>, group: &str) -> String {
    let r = c.join_group(join_req(group, "", &["range"])).await;
    assert_eq!(r.error, Some(Error::MemberIdRequired));
    assert!(r.member_id.starts_with("client-"), "{}", r.member_id);
    r.member_id
}

pub(crate) fn sync_req(group: &str, generation: i32, member: &str) -> SyncRequest {
    SyncRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: Vec::new(),
    }
}

/// One member, joined and synced: returns (member id, generation).
#[allow(dead_code)]
pub(crate) async fn stable_single(c: &Arc<Coordinator>, group: &str) -> (String, i32) {
    let id = member_id(c, group).await;
    let r = c.join_group(join_req(group, &id, &["range"])).await;
    assert_eq!(r.error, None);
    let mut s = sync_req(group, r.generation_id, &id);
    s.assignments = vec![(id.clone(), Bytes::from_static(b"a1"))];
    let sr = c.sync_group(s).await;
    assert_eq!(sr.error, None);
    assert_eq!(&sr.assignment[..], b"a1");
    (id, r.generation_id)
}

fn state(c: &Coordinator, group: &str) -> GroupState {
    c.describe_group(group)
        .unwrap()
        .map_or(GroupState::Dead, |d| d.state)
}

#[tokio::test(start_paused = true)]
async fn first_join_waits_the_initial_delay_then_the_member_leads() {
    let (c, _) = start().await;
    let id = member_id(&c, "g").await;
    let started = Instant::now();
    let r = c.join_group(join_req("g", &id, &["range"])).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(r.error, None);
    assert_eq!((r.generation_id, r.leader.as_str()), (1, id.as_str()));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(state(&c, "g"), GroupState::CompletingRebalance);
    // Heartbeats before SyncGroup are fine; the leader's sync makes the group stable.
    c.heartbeat("g", 1, &id, None).unwrap();
    let sr = c.sync_group(sync_req("g", 1, &id)).await;
    assert_eq!(sr.error, None);
    assert!(
        sr.assignment.is_empty(),
        "no assignment is zero-length, not null"
    );
    assert_eq!(state(&c, "g"), GroupState::Stable);
    c.heartbeat("g", 1, &id, None).unwrap();
}

#[tokio::test(start_paused = true)]
async fn members_arriving_during_the_initial_delay_extend_it() {
    let (c, _) = start().await;
    let a = member_id(&c, "g").await;
    let started = Instant::now();
    let ja = spawn_join(&c, join_req("g", &a, &["range"]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = member_id(&c, "g").await;
    let jb = spawn_join(&c, join_req("g", &b, &["range"]));
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    // 3 s initial delay, then one more delay because b arrived during it.
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(
        rb.members.is_empty(),
        "only the leader gets the member list"
    );
}

/// Forms a stable group of `n` dynamic members; returns their ids (leader first) and the
/// generation.
pub(crate) async fn stable_group(
    c: &Arc<Coordinator>,
    group: &str,
    n: usize,
) -> (Vec<String>, i32) {
    let mut ids = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..n {
        let id = member_id(c, group).await;
        joins.push(spawn_join(c, join_req(group, &id, &["range"])));
        ids.push(id);
    }
    let mut generation = 0;
    let mut leader = String::new();
    for j in joins {
        let r = j.await.unwrap();
        assert_eq!(r.error, None);
        generation = r.generation_id;
        leader = r.leader.clone();
    }
    let mut syncs = Vec::new();
    for id in &ids {
        let mut s = sync_req(group, generation, id);
        if *id == leader {
            s.assignments = ids
                .iter()
                .map(|m| (m.clone(), Bytes::from(format!("assign-{m}"))))
                .collect();
        }
        let c = c.clone();
        syncs.push(tokio::spawn(async move { c.sync_group(s).await }));
    }
    for (id, s) in ids.iter().zip(syncs) {
        let r = s.await.unwrap();
        assert_eq!(r.error, None);
        assert_eq!(r.assignment, Bytes::from(format!("assign-{id}")));
    }
    ids.sort_by_key(|id| *id != leader);
    (ids, generation)
}

#[tokio::test(start_paused = true)]
async fn a_later_rebalance_completes_when_every_member_has_rejoined() {
    let (c, _) = start().await;
    let (ids, generation) = stable_group(&c, "g", 2).await;
    // A third member joins: the others learn it from their heartbeat and rejoin.
    let new = member_id(&c, "g").await;
    let started = Instant::now();
    let jn = spawn_join(&c, join_req("g", &new, &["range"]));
    tokio::task::yield_now().await;
    for id in &ids {
        assert_eq!(
            c.heartbeat("g", generation, id, None),
            Err(Error::RebalanceInProgress)
        );
    }
    let rejoins: Vec<_> = ids
        .iter()
        .map(|id| spawn_join(&c, join_req("g", id, &["range"])))
        .collect();
    let rn = jn.await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no waiting once everyone rejoined"
    );
    assert_eq!(rn.generation_id, generation + 1);
    for r in rejoins {
        assert_eq!(r.await.unwrap().generation_id, generation + 1);
    }
    // The old generation is fenced.
    assert_eq!(
        c.heartbeat("g", generation, &new, None),
        Err(Error::IllegalGeneration)
    );
    let s = c.sync_group(sync_req("g", generation, &new)).await;
    assert_eq!(s.error, Some(Error::IllegalGeneration));
}

#[tokio::test(start_paused = true)]
async fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let (c, _) = start().await;
    let (ids, generation) = stable_group(&c, "g", 2).await;
    let started = Instant::now();
    // ids[1] keeps heartbeating but never rejoins (a consumer stuck in processing).
    let beating = {
        let (c, id) = (c.clone(), ids[1].clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let _ = c.heartbeat("g", generation, &id, None);
            }
        })
    };
    // ids[0] rejoins (the leader asking for a rebalance).
    let r = c.join_group(join_req("g", &ids[0], &["range"])).await;
    beating.abort();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(REBALANCE_MS as u64)
    );
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        c.heartbeat("g", generation + 1, &ids[1], None),
        Err(Error::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_removes_the_member_and_rebalances() {
    let (c, _) = start().await;
    let (ids, generation) = stable_group(&c, "g", 2).await;
    // ids[0] heartbeats every 3 s; ids[1] is gone.
    let started = Instant::now();
    let mut rebalancing = false;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if c.heartbeat("g", generation, &ids[0], None) == Err(Error::RebalanceInProgress) {
            rebalancing = true;
            break;
        }
    }
    assert!(rebalancing, "the dead member's session must expire");
    assert!(started.elapsed() >= Duration::from_millis(SESSION_MS as u64));
    let r = c.join_group(join_req("g", &ids[0], &["range"])).await;
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.leader, ids[0]);
}

#[tokio::test(start_paused = true)]
async fn leaving_rebalances_at_once() {
    let (c, _) = start().await;
    let (ids, generation) = stable_group(&c, "g", 2).await;
    let left = c
        .leave_group(
            "g",
            &[LeavingMember {
                member_id: ids[1].clone(),
                group_instance_id: None,
            }],
        )
        .unwrap();
    assert_eq!(left, vec![Ok(())]);
    assert_eq!(
        c.heartbeat("g", generation, &ids[0], None),
        Err(Error::RebalanceInProgress)
    );
    let started = Instant::now();
    let r = c.join_group(join_req("g", &ids[0], &["range"])).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(r.generation_id, generation + 1);
    // The last member leaving empties the group (and that is stored).
    let left = c
        .leave_group(
            "g",
            &[LeavingMember {
                member_id: ids[0].clone(),
                group_instance_id: None,
            }],
        )
        .unwrap();
    assert_eq!(left, vec![Ok(())]);
    assert_eq!(state(&c, "g"), GroupState::Empty);
    let unknown = c.leave_group(
        "g",
        &[LeavingMember {
            member_id: "nobody".into(),
            group_instance_id: None,
        }],
    );
    assert_eq!(unknown, Ok(vec![Err(Error::UnknownMemberId)]));
}

fn static_req(group: &str, member: &str, instance: &str) -> JoinRequest {
    let mut r = join_req(group, member, &["range"]);
    r.group_instance_id = Some(instance.into());
    r
}

#[tokio::test(start_paused = true)]
async fn a_static_member_restarting_gets_its_assignment_back_without_a_rebalance() {
    let (c, backend) = start().await;
    // Two static members form the group (no MEMBER_ID_REQUIRED for them).
    let ja = spawn_join(&c, static_req("g", "", "ia"));
    let jb = spawn_join(&c, static_req("g", "", "ib"));
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    assert_eq!(ra.error, None);
    assert!(ra.member_id.starts_with("ia-"));
    let generation = ra.generation_id;
    let (leader, follower) = if ra.leader == ra.member_id {
        (&ra, &rb)
    } else {
        (&rb, &ra)
    };
    let mut s = sync_req("g", generation, &leader.member_id);
    s.group_instance_id = Some(
        if leader.member_id.starts_with("ia-") {
            "ia"
        } else {
            "ib"
        }
        .into(),
    );
    s.assignments = vec![
        (ra.member_id.clone(), Bytes::from_static(b"A")),
        (rb.member_id.clone(), Bytes::from_static(b"B")),
    ];
    let follower_sync = {
        let c = c.clone();
        let f = sync_req("g", generation, &follower.member_id);
        tokio::spawn(async move { c.sync_group(f).await })
    };
    assert_eq!(c.sync_group(s).await.error, None);
    assert_eq!(follower_sync.await.unwrap().error, None);

    // Instance "ib" restarts: same instance id, no member id.
    let writes_before = backend.writes.load(std::sync::atomic::Ordering::Relaxed);
    let r = c.join_group(static_req("g", "", "ib")).await;
    assert_eq!(r.error, None);
    assert_ne!(r.member_id, rb.member_id);
    assert_eq!(r.generation_id, generation, "no new generation");
    assert!(r.members.is_empty());
    assert!(
        backend.writes.load(std::sync::atomic::Ordering::Relaxed) > writes_before,
        "the new member id is stored"
    );
    assert_eq!(state(&c, "g"), GroupState::Stable);
    let mut s = sync_req("g", generation, &r.member_id);
    s.group_instance_id = Some("ib".into());
    let sr = c.sync_group(s).await;
    assert_eq!(&sr.assignment[..], b"B");
    // The other member sees nothing; the old incarnation is fenced.
    assert_eq!(
        c.heartbeat("g", generation, &ra.member_id, Some("ia")),
        Ok(())
    );
    assert_eq!(
        c.heartbeat("g", generation, &rb.member_id, Some("ib")),
        Err(Error::FencedInstanceId)
    );
    let fenced = c.join_group(static_req("g", &rb.member_id, "ib")).await;
    assert_eq!(fenced.error, Some(Error::FencedInstanceId));
}

#[tokio::test(start_paused = true)]
async fn protocol_type_and_common_protocol_are_enforced_and_chosen() {
    let (c, _) = start().await;
    let mut bad = join_req("g", "", &["range"]);
    bad.protocol_type = String::new();
    assert_eq!(
        c.join_group(bad).await.error,
        Some(Error::InconsistentGroupProtocol)
    );
    let a = member_id(&c, "g").await;
    let ja = spawn_join(&c, join_req("g", &a, &["range", "roundrobin"]));
    tokio::task::yield_now().await;
    let mut other_type = join_req("g", "", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        c.join_group(other_type).await.error,
        Some(Error::InconsistentGroupProtocol)
    );
    let no_common = join_req("g", "", &["cooperative-sticky"]);
    assert_eq!(
        c.join_group(no_common).await.error,
        Some(Error::InconsistentGroupProtocol)
    );
    let b = member_id(&c, "g").await;
    let jb = spawn_join(&c, join_req("g", &b, &["roundrobin"]));
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    // Only roundrobin is common to both.
    assert_eq!(ra.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(rb.protocol_name.as_deref(), Some("roundrobin"));
}

#[tokio::test(start_paused = true)]
async fn votes_choose_the_protocol_and_ties_go_to_the_leader() {
    let (c, _) = start().await;
    let a = member_id(&c, "g").await;
    let ja = spawn_join(&c, join_req("g", &a, &["range", "roundrobin"]));
    let b = member_id(&c, "g").await;
    let jb = spawn_join(&c, join_req("g", &b, &["roundrobin", "range"]));
    assert_eq!(ja.await.unwrap().protocol_name.as_deref(), Some("range"));
    assert_eq!(jb.await.unwrap().protocol_name.as_deref(), Some("range"));
}

#[tokio::test(start_paused = true)]
async fn requests_are_checked_before_anything_else() {
    let (c, backend) = start().await;
    assert_eq!(
        c.join_group(join_req("", "", &["range"])).await.error,
        Some(Error::InvalidGroupId)
    );
    let mut short = join_req("g", "", &["range"]);
    short.session_timeout_ms = 1000;
    assert_eq!(
        c.join_group(short).await.error,
        Some(Error::InvalidSessionTimeout)
    );
    assert_eq!(
        c.join_group(join_req("nope", "m-1", &["range"]))
            .await
            .error,
        Some(Error::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("nope", 1, "m", None),
        Err(Error::UnknownMemberId)
    );
    assert_eq!(
        c.sync_group(sync_req("nope", 1, "m")).await.error,
        Some(Error::UnknownMemberId)
    );
    // v0–v3 clients get no member id round trip.
    let mut old = join_req("g", "", &["range"]);
    old.require_known_member_id = false;
    let r = c.join_group(old).await;
    assert_eq!((r.error, r.generation_id), (None, 1));
    backend
        .not_leader
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        c.join_group(join_req("g", "", &["range"])).await.error,
        Some(Error::NotCoordinator)
    );
    assert_eq!(
        c.heartbeat("g", 1, &r.member_id, None),
        Err(Error::NotCoordinator)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_assignment_write_sends_everyone_back_to_rejoin() {
    let (c, backend) = start().await;
    let id = member_id(&c, "g").await;
    let r = c.join_group(join_req("g", &id, &["range"])).await;
    *backend.fail_writes.lock().unwrap() = Some(jet_replication::Error::Timeout);
    let sr = c.sync_group(sync_req("g", r.generation_id, &id)).await;
    assert_eq!(sr.error, Some(Error::CoordinatorNotAvailable));
    assert_eq!(
        c.heartbeat("g", r.generation_id, &id, None),
        Err(Error::RebalanceInProgress)
    );
    *backend.fail_writes.lock().unwrap() = None;
    let again = c.join_group(join_req("g", &id, &["range"])).await;
    assert_eq!(again.generation_id, r.generation_id + 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_coordinator_restores_the_stable_group() {
    let (c, backend) = start().await;
    let (ids, generation) = stable_group(&c, "g", 2).await;
    // Let the writer finish, then start over on the same records.
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(c);
    let c = Coordinator::start_with(backend.clone(), GroupConfig::default())
        .await
        .unwrap();
    let d = c.describe_group("g").unwrap().unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.members.len(), 2);
    for id in &ids {
        assert_eq!(c.heartbeat("g", generation, id, None), Ok(()));
        let sr = c.sync_group(sync_req("g", generation, id)).await;
        assert_eq!(sr.assignment, Bytes::from(format!("assign-{id}")));
    }
    // A member that never comes back expires as usual.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = c.heartbeat("g", generation, &ids[0], None);
    }
    let r = c.join_group(join_req("g", &ids[0], &["range"])).await;
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_second_join_of_the_same_member_answers_the_first() {
    let (c, _) = start().await;
    let (ids, _) = stable_group(&c, "g", 2).await;
    let first = spawn_join(&c, join_req("g", &ids[1], &["roundrobin", "range"]));
    tokio::task::yield_now().await;
    let second = spawn_join(&c, join_req("g", &ids[1], &["range"]));
    assert_eq!(first.await.unwrap().error, Some(Error::RebalanceInProgress));
    let _ = c.join_group(join_req("g", &ids[0], &["range"])).await;
    assert_eq!(second.await.unwrap().error, None);
}

#[tokio::test(start_paused = true)]
async fn a_pending_member_holds_the_rebalance_until_it_expires() {
    let (c, _) = start().await;
    let (ids, generation) = stable_group(&c, "g", 1).await;
    // Someone gets a member id and never comes back; the leader asks for a rebalance.
    let _ghost = member_id(&c, "g").await;
    let started = Instant::now();
    let r = c.join_group(join_req("g", &ids[0], &["range"])).await;
    // The pending member's place lapses with its session timeout, then the join completes.
    assert_eq!(started.elapsed(), Duration::from_millis(SESSION_MS as u64));
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
}

#[tokio::test(start_paused = true)]
async fn members_that_never_sync_are_removed_at_the_rebalance_timeout() {
    let (c, _) = start().await;
    let a = member_id(&c, "g").await;
    let ja = spawn_join(&c, join_req("g", &a, &["range"]));
    let b = member_id(&c, "g").await;
    let jb = spawn_join(&c, join_req("g", &b, &["range"]));
    let (ra, _rb) = (ja.await.unwrap(), jb.await.unwrap());
    let leader = ra.leader.clone();
    let follower = if leader == a { b } else { a };
    // Only the leader syncs; the follower heartbeats but never sends SyncGroup.
    let mut s = sync_req("g", ra.generation_id, &leader);
    s.assignments = vec![(leader.clone(), Bytes::from_static(b"L"))];
    assert_eq!(c.sync_group(s).await.error, None);
    let beating = {
        let (c, id, generation) = (c.clone(), follower.clone(), ra.generation_id);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let _ = c.heartbeat("g", generation, &id, None);
            }
        })
    };
    let started = Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = c.heartbeat("g", ra.generation_id, &leader, None) {
            seen = Some(e);
            break;
        }
    }
    beating.abort();
    // The sync deadline (the rebalance timeout after the join) removed the follower.
    assert_eq!(seen, Some(Error::RebalanceInProgress));
    assert!(started.elapsed() >= Duration::from_millis(REBALANCE_MS as u64 - 1000));
    let r = c.join_group(join_req("g", &leader, &["range"])).await;
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        c.heartbeat("g", r.generation_id, &follower, None),
        Err(Error::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn an_administrator_removes_a_static_member_by_instance_id() {
    let (c, _) = start().await;
    let r = c.join_group(static_req("g", "", "i1")).await;
    assert_eq!(r.error, None);
    let left = c.leave_group(
        "g",
        &[LeavingMember {
            member_id: String::new(),
            group_instance_id: Some("i1".into()),
        }],
    );
    assert_eq!(left, Ok(vec![Ok(())]));
    assert_eq!(state(&c, "g"), GroupState::Empty);
    assert_eq!(
        c.heartbeat("g", r.generation_id, &r.member_id, Some("i1")),
        Err(Error::UnknownMemberId)
    );
}
