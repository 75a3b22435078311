//! Offset commit, fetch, delete, retention and group deletion, on the in-memory backend.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::tests::{join_req, member_id, stable_group, start};
use crate::{CommitRequest, Coordinator, Error, GroupConfig, GroupState, OffsetCommit};

pub(crate) fn commit(
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64)],
) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        retention_time_ms: -1,
        offsets: offsets
            .iter()
            .map(|(t, p, o)| OffsetCommit {
                topic: t.to_string(),
                partition: *p,
                offset: *o,
                leader_epoch: 4,
                metadata: Some(format!("meta-{o}")),
            })
            .collect(),
    }
}

pub(crate) fn fetch_one(
    c: &Coordinator,
    group: &str,
    topic: &str,
    partition: i32,
) -> (i64, String) {
    let f = c
        .fetch_offsets(group, Some(&[(topic.to_string(), partition)]), false)
        .unwrap();
    (f[0].offset, f[0].metadata.clone())
}

#[tokio::test(start_paused = true)]
async fn a_consumer_without_membership_commits_and_fetches() {
    let (c, _) = start().await;
    let r = c
        .commit_offsets(commit("solo", -1, "", &[("t", 0, 10), ("t", 1, 20)]))
        .await;
    assert_eq!(r, vec![Ok(()), Ok(())]);
    assert_eq!(fetch_one(&c, "solo", "t", 0), (10, "meta-10".into()));
    assert_eq!(fetch_one(&c, "solo", "t", 1), (20, "meta-20".into()));
    assert_eq!(fetch_one(&c, "solo", "t", 2), (-1, String::new()));
    let all = c.fetch_offsets("solo", None, true).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].leader_epoch, 4);
    // Unknown groups answer -1 without an error.
    assert_eq!(fetch_one(&c, "nobody", "t", 0), (-1, String::new()));
    // The legacy empty group id is allowed for offsets.
    assert_eq!(
        c.commit_offsets(commit("", -1, "", &[("t", 0, 1)])).await,
        vec![Ok(())]
    );
    // A member of a generation that is gone cannot create the group.
    assert_eq!(
        c.commit_offsets(commit("other", 3, "m", &[("t", 0, 1)]))
            .await,
        vec![Err(Error::IllegalGeneration)]
    );
}

#[tokio::test(start_paused = true)]
async fn members_commit_with_their_generation_only() {
    let (c, _) = start().await;
    let (ids, generation) = stable_group(&c, "g", 2).await;
    let ok = c
        .commit_offsets(commit("g", generation, &ids[0], &[("t", 0, 5)]))
        .await;
    assert_eq!(ok, vec![Ok(())]);
    assert_eq!(
        c.commit_offsets(commit("g", generation + 1, &ids[0], &[("t", 0, 6)]))
            .await,
        vec![Err(Error::IllegalGeneration)]
    );
    assert_eq!(
        c.commit_offsets(commit("g", generation, "stranger", &[("t", 0, 6)]))
            .await,
        vec![Err(Error::UnknownMemberId)]
    );
    // Without membership, a non-empty group refuses the commit.
    assert_eq!(
        c.commit_offsets(commit("g", -1, "", &[("t", 0, 6)])).await,
        vec![Err(Error::UnknownMemberId)]
    );
    let mut fenced = commit("g", generation, &ids[0], &[("t", 0, 6)]);
    fenced.group_instance_id = Some("nobody".into());
    assert_eq!(
        c.commit_offsets(fenced).await,
        vec![Err(Error::UnknownMemberId)]
    );
    assert_eq!(fetch_one(&c, "g", "t", 0), (5, "meta-5".into()));
    // During a rebalance commits of the current generation still count.
    let _rejoin = crate::tests::spawn_join(&c, join_req("g", &ids[0], &["range"]));
    tokio::task::yield_now().await;
    assert_eq!(
        c.commit_offsets(commit("g", generation, &ids[1], &[("t", 1, 7)]))
            .await,
        vec![Ok(())]
    );
}

#[tokio::test(start_paused = true)]
async fn commits_in_completing_rebalance_are_refused() {
    let (c, _) = start().await;
    let id = member_id(&c, "g").await;
    let r = c.join_group(join_req("g", &id, &["range"])).await;
    assert_eq!(
        c.commit_offsets(commit("g", r.generation_id, &id, &[("t", 0, 1)]))
            .await,
        vec![Err(Error::RebalanceInProgress)]
    );
}

#[tokio::test(start_paused = true)]
async fn oversized_metadata_fails_only_its_partition() {
    let (c, _) = start().await;
    let mut req = commit("solo", -1, "", &[("t", 0, 1), ("t", 1, 2)]);
    req.offsets[1].metadata = Some("x".repeat(5000));
    let r = c.commit_offsets(req).await;
    assert_eq!(r, vec![Ok(()), Err(Error::OffsetMetadataTooLarge)]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_fails_the_commit_and_leaves_the_old_offset() {
    let (c, backend) = start().await;
    c.commit_offsets(commit("solo", -1, "", &[("t", 0, 1)]))
        .await;
    *backend.fail_writes.lock().unwrap() = Some(jet_replication::Error::NotLeader);
    let r = c
        .commit_offsets(commit("solo", -1, "", &[("t", 0, 2)]))
        .await;
    assert_eq!(r, vec![Err(Error::NotCoordinator)]);
    assert_eq!(fetch_one(&c, "solo", "t", 0).0, 1);
    // Nothing is left pending: require_stable answers at once.
    let f = c
        .fetch_offsets("solo", Some(&[("t".into(), 0)]), true)
        .unwrap();
    assert_eq!(f[0].error, None);
}

#[tokio::test(start_paused = true)]
async fn offsets_survive_a_restart() {
    let (c, backend) = start().await;
    c.commit_offsets(commit("solo", -1, "", &[("t", 0, 42)]))
        .await;
    drop(c);
    let c = Coordinator::start_with(backend, GroupConfig::default())
        .await
        .unwrap();
    assert_eq!(fetch_one(&c, "solo", "t", 0), (42, "meta-42".into()));
}

#[tokio::test(start_paused = true)]
async fn offset_delete_refuses_consumed_topics_and_unknown_groups() {
    let (c, _) = start().await;
    assert_eq!(
        c.delete_offsets("nobody", &[("t".into(), 0)]).await,
        Err(Error::GroupIdNotFound)
    );
    let (ids, generation) = stable_group(&c, "g", 1).await;
    c.commit_offsets(commit(
        "g",
        generation,
        &ids[0],
        &[("t", 0, 5), ("u", 0, 6)],
    ))
    .await;
    // The members subscribe to "t" (see `join_req`).
    let r = c
        .delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)])
        .await
        .unwrap();
    assert_eq!(r, vec![Err(Error::GroupSubscribedToTopic), Ok(())]);
    assert_eq!(fetch_one(&c, "g", "u", 0).0, -1);
    assert_eq!(fetch_one(&c, "g", "t", 0).0, 5);
}

#[tokio::test(start_paused = true)]
async fn delete_groups_removes_empty_groups_only() {
    let (c, backend) = start().await;
    c.commit_offsets(commit("solo", -1, "", &[("t", 0, 1)]))
        .await;
    let (_, _) = stable_group(&c, "busy", 1).await;
    let r = c
        .delete_groups(&["solo".into(), "busy".into(), "nobody".into()])
        .await;
    assert_eq!(
        r,
        vec![
            Ok(()),
            Err(Error::NonEmptyGroup),
            Err(Error::GroupIdNotFound)
        ]
    );
    assert_eq!(fetch_one(&c, "solo", "t", 0).0, -1);
    assert!(c.describe_group("solo").unwrap().is_none());
    let left: Vec<_> = backend
        .records
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(&crate::codec::group_prefix("solo")))
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "records of a deleted group remain: {left:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retention_expires_offsets_of_empty_groups_and_then_the_group() {
    let (c, backend) = start().await;
    c.commit_offsets(commit("solo", -1, "", &[("t", 0, 1)]))
        .await;
    let (ids, generation) = stable_group(&c, "g", 1).await;
    c.commit_offsets(commit("g", generation, &ids[0], &[("t", 0, 9)]))
        .await;
    let now = crate::now_ms();
    let week_ms = 7 * 24 * 3600 * 1000;
    assert_eq!(c.expire_offsets(now + week_ms / 2), 0);
    // The member's group keeps its offsets while it consumes them.
    assert_eq!(c.expire_offsets(now + week_ms + 1000), 1);
    assert!(
        c.describe_group("solo").unwrap().is_none(),
        "an empty group without offsets goes"
    );
    assert_eq!(fetch_one(&c, "g", "t", 0).0, 9);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(backend.writes.load(Ordering::Relaxed) > 0);
    assert!(!backend
        .records
        .lock()
        .unwrap()
        .keys()
        .any(|k| k.starts_with(&crate::codec::group_prefix("solo"))));
}

#[tokio::test(start_paused = true)]
async fn describe_and_list_report_states() {
    let (c, _) = start().await;
    let (ids, _) = stable_group(&c, "g", 2).await;
    c.commit_offsets(commit("solo", -1, "", &[("t", 0, 1)]))
        .await;
    let d = c.describe_group("g").unwrap().unwrap();
    assert_eq!(
        (d.state, d.protocol_type.as_str(), d.protocol.as_str()),
        (GroupState::Stable, "consumer", "range")
    );
    assert_eq!(d.members.len(), 2);
    assert!(d
        .members
        .iter()
        .all(|m| !m.assignment.is_empty() && !m.metadata.is_empty()));
    assert!(d.members.iter().any(|m| m.member_id == ids[0]));
    let listed = c.list_groups();
    let states: Vec<_> = listed
        .iter()
        .map(|l| (l.group_id.as_str(), l.state, l.protocol_type.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("g", GroupState::Stable, "consumer"),
            ("solo", GroupState::Empty, "")
        ]
    );
}
