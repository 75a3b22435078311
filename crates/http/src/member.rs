//! [`Membership`]: one REST consumer instance as a member of its consumer group, run in the
//! background through the in-process Kafka group APIs — JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup — exactly as a Kafka consumer does it, so REST consumers and Kafka clients share
//! groups and rebalance with each other.
//!
//! The instance's HTTP requests do not drive the protocol: a member that only heartbeats when a
//! client polls would be evicted between polls. The task joins, syncs (computing the range
//! assignment when it is the leader), then heartbeats every [`HEARTBEAT_INTERVAL`]; on
//! REBALANCE_IN_PROGRESS it joins again. Each completed sync publishes the generation, member id
//! and assignment on a `watch` channel that the records, commit and seek requests read. Stopping
//! the task (instance deleted, idle, or shutdown) sends LeaveGroup so the group rebalances at
//! once instead of waiting for the session timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::kafka::{decode_assignment, Kafka, MemberAssignments};

/// Session timeout of REST consumer members.
pub const SESSION_TIMEOUT_MS: i32 = 30_000;
/// How long the coordinator waits for members to rejoin in a rebalance.
pub const REBALANCE_TIMEOUT_MS: i32 = 10_000;
/// Time between heartbeats (well inside the session timeout, short so rebalances are noticed
/// quickly).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Pause after an error before trying again.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

// Kafka error codes the loop reacts to.
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

/// What the group last assigned to this member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assigned {
    /// The generation of the group the assignment belongs to.
    pub generation: i32,
    /// This member's id in that generation.
    pub member_id: String,
    /// `(topic, partition)`s, sorted.
    pub partitions: Vec<(String, i32)>,
}

/// A running membership.
pub struct Membership {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// `None` until the first sync completes.
    pub assigned: watch::Receiver<Option<Assigned>>,
}

impl Membership {
    /// Joins `group` subscribed to `topics`.
    pub fn start(kafka: Arc<Kafka>, group: String, topics: Vec<String>) -> Membership {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run(kafka, group, topics, tx, stop_rx));
        Membership {
            stop: Some(stop_tx),
            task,
            assigned: rx,
        }
    }

    /// Leaves the group and waits (bounded) for the task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The leave is one in-process request; a task stuck longer than this is abandoned.
        if tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Dropped without `stop` (a panic elsewhere): the member then expires with its session.
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

async fn run(
    kafka: Arc<Kafka>,
    group: String,
    topics: Vec<String>,
    tx: watch::Sender<Option<Assigned>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut member_id = String::new();
    loop {
        let joined = tokio::select! {
            _ = &mut stop => break,
            r = join_and_sync(&kafka, &group, &mut member_id, &topics) => r,
        };
        let Some(assigned) = joined else {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(RETRY_BACKOFF) => continue,
            }
        };
        let generation = assigned.generation;
        tx.send_replace(Some(assigned));
        // Heartbeat until the group rebalances or this member is fenced.
        loop {
            tokio::select! {
                _ = &mut stop => {
                    leave(&kafka, &group, &member_id).await;
                    return;
                }
                _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            }
            match kafka.heartbeat(&group, generation, &member_id).await {
                Ok(0) => {}
                Ok(UNKNOWN_MEMBER_ID) => {
                    member_id.clear();
                    break;
                }
                Ok(_) | Err(_) => break,
            }
        }
    }
    if !member_id.is_empty() {
        leave(&kafka, &group, &member_id).await;
    }
}

async fn leave(kafka: &Kafka, group: &str, member_id: &str) {
    if let Err(e) = kafka.leave_group(group, member_id).await {
        tracing::debug!(group, member_id, error = %e, "rest consumer leave failed");
    }
}

/// One JoinGroup + SyncGroup round; `None` when it must be tried again.
async fn join_and_sync(
    kafka: &Kafka,
    group: &str,
    member_id: &mut String,
    topics: &[String],
) -> Option<Assigned> {
    let joined = kafka
        .join_group(
            group,
            member_id,
            topics,
            SESSION_TIMEOUT_MS,
            REBALANCE_TIMEOUT_MS,
        )
        .await
        .ok()?;
    match joined.error_code {
        0 => {}
        MEMBER_ID_REQUIRED => {
            // KIP-394: the coordinator hands out the id, the member joins again with it.
            *member_id = joined.member_id.to_string();
            return None;
        }
        UNKNOWN_MEMBER_ID => {
            member_id.clear();
            return None;
        }
        code => {
            tracing::debug!(group, code, "rest consumer join refused");
            return None;
        }
    }
    *member_id = joined.member_id.to_string();
    let assignments = if joined.leader == joined.member_id {
        let members: Vec<(String, Bytes)> = joined
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.metadata.clone()))
            .collect();
        let counts = partition_counts(kafka, &members).await;
        range_assign(&members, &counts)
    } else {
        Vec::new()
    };
    let synced = kafka
        .sync_group(group, joined.generation_id, member_id, assignments)
        .await
        .ok()?;
    match synced.error_code {
        0 => {}
        UNKNOWN_MEMBER_ID => {
            member_id.clear();
            return None;
        }
        REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => return None,
        _ => return None,
    }
    let mut partitions: Vec<(String, i32)> = decode_assignment(&synced.assignment)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
        .collect();
    partitions.sort();
    Some(Assigned {
        generation: joined.generation_id,
        member_id: member_id.clone(),
        partitions,
    })
}

/// The topics a member's JoinGroup metadata subscribes to.
fn subscription(metadata: &[u8]) -> Vec<String> {
    if metadata.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    let mut rest = Bytes::copy_from_slice(&metadata[2..]);
    ConsumerProtocolSubscription::decode(&mut rest, version.clamp(0, 3))
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

async fn partition_counts(kafka: &Kafka, members: &[(String, Bytes)]) -> BTreeMap<String, usize> {
    let mut topics: Vec<String> = members.iter().flat_map(|(_, m)| subscription(m)).collect();
    topics.sort();
    topics.dedup();
    let mut counts = BTreeMap::new();
    if let Ok(meta) = kafka.metadata(Some(&topics)).await {
        for t in meta.topics.into_iter().filter(|t| t.error_code == 0) {
            if let Some(name) = t.name {
                counts.insert(name.to_string(), t.partitions.len());
            }
        }
    }
    counts
}

/// Kafka's range assignor: per topic, its partitions split into contiguous ranges over the
/// members subscribed to it, sorted by member id, the first `n % m` members taking one more.
pub fn range_assign(
    members: &[(String, Bytes)],
    counts: &BTreeMap<String, usize>,
) -> MemberAssignments {
    let mut out: BTreeMap<String, crate::kafka::TopicPartitions> = members
        .iter()
        .map(|(id, _)| (id.clone(), Vec::new()))
        .collect();
    for (topic, &n) in counts {
        let mut subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, m)| subscription(m).contains(topic))
            .map(|(id, _)| id)
            .collect();
        subscribers.sort();
        let m = subscribers.len();
        if m == 0 {
            continue;
        }
        let (per, extra) = (n / m, n % m);
        let mut next = 0usize;
        for (i, id) in subscribers.into_iter().enumerate() {
            let take = per + usize::from(i < extra);
            let parts: Vec<i32> = (next..next + take).map(|p| p as i32).collect();
            next += take;
            if let Some(list) = out.get_mut(id) {
                list.push((topic.clone(), parts));
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn sub(topics: &[&str]) -> Bytes {
        let s = ConsumerProtocolSubscription::default().with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        );
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        s.encode(&mut buf, 1).unwrap();
        buf.freeze()
    }

    #[test]
    fn range_assignment_splits_like_kafka() {
        let members = vec![
            ("b".to_string(), sub(&["t", "u"])),
            ("a".to_string(), sub(&["t"])),
        ];
        let counts: BTreeMap<String, usize> = [("t".to_string(), 5), ("u".to_string(), 2)].into();
        let got: BTreeMap<_, _> = range_assign(&members, &counts).into_iter().collect();
        assert_eq!(got["a"], vec![("t".to_string(), vec![0, 1, 2])]);
        assert_eq!(
            got["b"],
            vec![("t".to_string(), vec![3, 4]), ("u".to_string(), vec![0, 1])]
        );
        assert!(subscription(&[0]).is_empty());
        assert!(subscription(&[0, 0, 0xff]).is_empty());
    }
}
