//! Leadership moving: groups of a shard lost are dropped with NOT_COORDINATOR for whoever waits
//! on them, and come back from the store when the shard is led again. "Another node" leading in
//! between is the test writing records into the in-memory backend, as a follower applying that
//! leader's entries would. Paused clock: the watcher polls at exact instants.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::codec::{self, GroupValue, OffsetValue, StoredMember};
use crate::failover::POLL_INTERVAL;
use crate::tests::{join_req, member_id, spawn_join, start, sync_req};
use crate::tests_offsets::{commit, fetch_one};
use crate::{Coordinator, Error, GroupConfig, GroupState, LeavingMember, MemBackend};

// MemBackend places a group on shard `1 + len % 4`.
/// On shard 2.
const G: &str = "g";
/// On shard 2 as well.
const H: &str = "h";
/// On shard 3.
const OTHER: &str = "gg";
const SHARD: u64 = 2;

/// Long enough for the watcher to have polled (and loaded) at least once: its ticks are
/// `POLL_INTERVAL` apart, so one falls strictly inside two intervals from any instant.
async fn settle() {
    tokio::time::sleep(POLL_INTERVAL * 2).await;
}

/// Stands for an entry of another node's leadership applied to this node's store.
fn put_offset(backend: &MemBackend, group: &str, topic: &str, partition: i32, offset: i64) {
    let value = OffsetValue {
        offset,
        leader_epoch: 7,
        metadata: format!("elsewhere-{offset}"),
        commit_timestamp_ms: crate::now_ms(),
        expire_timestamp_ms: -1,
    };
    backend.records.lock().unwrap().insert(
        codec::offset_key(group, topic, partition),
        codec::encode_offset(&value),
    );
}

fn fetch(c: &Coordinator, group: &str) -> Result<Vec<i64>, Error> {
    let partitions = [("t".to_string(), 0), ("t".to_string(), 1)];
    c.fetch_offsets(group, Some(&partitions), true)
        .map(|f| f.iter().map(|o| o.offset).collect())
}

#[tokio::test(start_paused = true)]
async fn offsets_come_back_from_the_store_when_leadership_returns() {
    let (c, backend) = start().await;
    assert_eq!(
        c.commit_offsets(commit(G, -1, "", &[("t", 0, 5)])).await,
        vec![Ok(())]
    );
    assert_eq!(
        c.commit_offsets(commit(OTHER, -1, "", &[("t", 0, 9)]))
            .await,
        vec![Ok(())]
    );
    assert_eq!(fetch(&c, G), Ok(vec![5, -1]));

    backend.set_leader(SHARD, false);
    settle().await;
    assert_eq!(fetch(&c, G), Err(Error::NotCoordinator));
    assert_eq!(
        c.commit_offsets(commit(G, -1, "", &[("t", 0, 6)])).await,
        vec![Err(Error::NotCoordinator)]
    );
    assert_eq!(c.describe_group(G), Err(Error::NotCoordinator));
    assert_eq!(
        c.delete_groups(&[G.to_string()]).await,
        vec![Err(Error::NotCoordinator)]
    );
    // Other shards are not touched.
    assert_eq!(fetch_one(&c, OTHER, "t", 0), (9, "meta-9".into()));
    let listed: Vec<String> = c.list_groups().into_iter().map(|l| l.group_id).collect();
    assert_eq!(listed, vec![OTHER.to_string()]);

    // Meanwhile another node leads shard 2: a consumer commits there, and a group forms whose
    // stored assignment this node applies as a follower.
    put_offset(&backend, G, "t", 0, 42);
    put_offset(&backend, G, "t", 1, 43);
    let stored = GroupValue {
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        generation: 3,
        leader: Some("m-elsewhere".into()),
        state_timestamp_ms: crate::now_ms(),
        members: vec![StoredMember {
            member_id: "m-elsewhere".into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/10.0.0.2".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            subscription: Bytes::new(),
            assignment: Bytes::from_static(b"assigned-elsewhere"),
        }],
    };
    backend
        .records
        .lock()
        .unwrap()
        .insert(codec::group_key(G), codec::encode_group(&stored));

    backend.set_leader(SHARD, true);
    settle().await;
    assert_eq!(fetch(&c, G), Ok(vec![42, 43]));
    assert_eq!(fetch_one(&c, G, "t", 1), (43, "elsewhere-43".into()));
    let d = c.describe_group(G).unwrap().expect("the group was loaded");
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, "m-elsewhere");
    assert_eq!(&d.members[0].assignment[..], b"assigned-elsewhere");
    // The member carries on with this coordinator in its generation.
    assert_eq!(c.heartbeat(G, 3, "m-elsewhere", None), Ok(()));
    // And this node writes again.
    assert_eq!(
        c.commit_offsets(commit(G, 3, "m-elsewhere", &[("t", 0, 50)]))
            .await,
        vec![Ok(())]
    );
    assert_eq!(fetch(&c, G), Ok(vec![50, 43]));
}

#[tokio::test(start_paused = true)]
async fn leadership_lost_and_regained_between_polls_is_not_served_from_memory() {
    let (c, backend) = start().await;
    assert_eq!(
        c.commit_offsets(commit(G, -1, "", &[("t", 0, 5)])).await,
        vec![Ok(())]
    );
    // Both changes before the watcher polls: the node leads again, in a later term, and
    // memory still holds the state of the earlier one.
    backend.set_leader(SHARD, false);
    put_offset(&backend, G, "t", 0, 42);
    backend.set_leader(SHARD, true);
    assert_eq!(
        fetch(&c, G),
        Err(Error::NotCoordinator),
        "memory from an earlier term must not answer"
    );
    settle().await;
    assert_eq!(fetch(&c, G), Ok(vec![42, -1]));
}

#[tokio::test(start_paused = true)]
async fn parked_joins_and_syncs_answer_not_coordinator_when_leadership_is_lost() {
    let (c, backend) = start().await;
    // G: two members joined; the follower waits in SyncGroup for the leader's assignment.
    let a = member_id(&c, G).await;
    let b = member_id(&c, G).await;
    let (ja, jb) = (
        spawn_join(&c, join_req(G, &a, &["range"])),
        spawn_join(&c, join_req(G, &b, &["range"])),
    );
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    assert_eq!((ra.error, rb.error), (None, None));
    let leader = ra.leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let parked_sync = {
        let c = c.clone();
        let req = sync_req(G, ra.generation_id, &follower);
        tokio::spawn(async move { c.sync_group(req).await })
    };
    // H: a first member waits out the initial rebalance delay (3 s) in JoinGroup.
    let x = member_id(&c, H).await;
    let parked_join = spawn_join(&c, join_req(H, &x, &["range"]));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!parked_sync.is_finished() && !parked_join.is_finished());

    let lost_at = Instant::now();
    backend.set_leader(SHARD, false);
    let join = parked_join.await.unwrap();
    assert_eq!(join.error, Some(Error::NotCoordinator));
    assert!(
        lost_at.elapsed() <= POLL_INTERVAL,
        "answered at the next poll, not at the end of the delay: {:?}",
        lost_at.elapsed()
    );
    assert_eq!(
        parked_sync.await.unwrap().error,
        Some(Error::NotCoordinator)
    );

    // Every later request for these groups is refused.
    let mut leader_sync = sync_req(G, ra.generation_id, &leader);
    leader_sync.assignments = vec![(leader.clone(), Bytes::from_static(b"x"))];
    assert_eq!(
        c.sync_group(leader_sync).await.error,
        Some(Error::NotCoordinator)
    );
    assert_eq!(
        c.heartbeat(G, ra.generation_id, &leader, None),
        Err(Error::NotCoordinator)
    );
    assert_eq!(
        c.join_group(join_req(H, &x, &["range"])).await.error,
        Some(Error::NotCoordinator)
    );
    let leaving = [LeavingMember {
        member_id: leader.clone(),
        group_instance_id: None,
    }];
    assert_eq!(c.leave_group(G, &leaving), Err(Error::NotCoordinator));
    assert_eq!(
        c.delete_offsets(G, &[("t".to_string(), 0)]).await,
        Err(Error::NotCoordinator)
    );

    // Back as leader: nothing of G was ever stored (the assignment never was), so the
    // in-memory members are gone and the old ids are unknown.
    backend.set_leader(SHARD, true);
    settle().await;
    assert_eq!(c.describe_group(G), Ok(None));
    assert_eq!(
        c.heartbeat(G, ra.generation_id, &leader, None),
        Err(Error::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn writes_of_a_lost_shard_fail_with_not_coordinator() {
    let (c, backend) = start().await;
    let gate = Arc::new(Semaphore::new(0));
    *backend.write_gate.lock().unwrap() = Some(gate.clone());
    // The first commit is sent and waits in the log; the second queues behind it.
    let spawn_commit = |offset: i64| {
        let c = c.clone();
        tokio::spawn(async move {
            c.commit_offsets(commit(G, -1, "", &[("t", 0, offset)]))
                .await
        })
    };
    let sent = spawn_commit(1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let queued = spawn_commit(2);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!sent.is_finished() && !queued.is_finished());

    backend.set_leader(SHARD, false);
    settle().await;
    assert!(
        queued.is_finished(),
        "a queued write is failed when the shard is dropped"
    );
    assert_eq!(queued.await.unwrap(), vec![Err(Error::NotCoordinator)]);
    // The sent one fails in the log, which this node no longer leads.
    gate.add_permits(2);
    assert_eq!(sent.await.unwrap(), vec![Err(Error::NotCoordinator)]);
    assert!(backend.records.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_node_starting_as_follower_loads_a_shard_once_it_leads_it() {
    let backend = Arc::new(MemBackend::default());
    put_offset(&backend, G, "t", 0, 11);
    put_offset(&backend, OTHER, "t", 0, 12);
    backend.set_leader(SHARD, false);
    let c = Coordinator::start_with(backend.clone(), GroupConfig::default())
        .await
        .expect("start");
    assert_eq!(fetch(&c, OTHER), Ok(vec![12, -1]));
    assert_eq!(fetch(&c, G), Err(Error::NotCoordinator));
    assert!(
        c.is_coordinator_for(OTHER) && !c.is_coordinator_for(G),
        "FindCoordinator follows leadership"
    );
    backend.set_leader(SHARD, true);
    settle().await;
    assert_eq!(fetch(&c, G), Ok(vec![11, -1]));
}
