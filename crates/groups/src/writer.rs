//! The group-record writer: one task that takes every pending write and sends it through the
//! coordinator shards' Raft logs.
//!
//! Why one writer and not a write per request: records are overwritten by key, so two writes of
//! the same key must reach the log in the order their states happened. Writes are queued under
//! the coordinator lock (where that order is known) and merged per group — a later value for a
//! key replaces an earlier one not yet written, which is what writing both in order would have
//! left. The queue is therefore bounded by the keys that exist, not by the request rate, and
//! many commits travel in one Raft entry per shard.
//!
//! The offset cache is updated from the written records once they are durable (Kafka's rule: an
//! offset is visible to OffsetFetch after its commit is). Group metadata records are not read
//! back: memory is ahead of them by construction.
//!
//! Leadership: writes of a shard this node stops serving fail with NOT_COORDINATOR, whether
//! they are still queued or taken by the writer but not sent; the result of one already sent is
//! passed on to its waiters but not applied to the groups, which by then came back from the
//! store or are gone (see `failover`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use futures::future::join_all;
use tokio::sync::{oneshot, Notify};

use crate::backend::Op;
use crate::codec::{self, Key};
use crate::coordinator::Coordinator;
use crate::Error;

/// Writes waiting for the writer, by group.
#[derive(Default)]
pub(crate) struct Writes {
    by_group: BTreeMap<String, PendingWrite>,
}

struct PendingWrite {
    shard: u64,
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Offset commits in this write (their pending counts drop once it is done).
    commits: Vec<(String, i32)>,
    waiters: Vec<oneshot::Sender<Result<(), Error>>>,
}

impl PendingWrite {
    fn size_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 16)
            .sum()
    }
}

/// One Raft write: records of whole groups, up to the size limit.
struct Chunk {
    ops: Vec<Op>,
    groups: Vec<String>,
    size_bytes: usize,
}

impl Writes {
    /// Fails every queued write of `shard` with `error`; returns how many groups had one.
    pub(crate) fn fail_shard(&mut self, shard: u64, error: &Error) -> usize {
        let mut failed = 0;
        self.by_group.retain(|_, pending| {
            if pending.shard != shard {
                return true;
            }
            failed += 1;
            for w in pending.waiters.drain(..) {
                let _ = w.send(Err(error.clone()));
            }
            false
        });
        failed
    }
}

impl Coordinator {
    /// Queues records of `group` for the writer; `waiter` hears when they are durable.
    pub(crate) fn enqueue(
        &self,
        writes: &mut Writes,
        group: &str,
        shard: u64,
        ops: Vec<Op>,
        commits: Vec<(String, i32)>,
        waiter: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        let pending = writes
            .by_group
            .entry(group.to_string())
            .or_insert_with(|| PendingWrite {
                shard,
                ops: BTreeMap::new(),
                commits: Vec::new(),
                waiters: Vec::new(),
            });
        pending.ops.extend(ops);
        pending.commits.extend(commits);
        pending.waiters.extend(waiter);
        self.write_wakeup.notify_one();
    }

    /// True while `shard` is served by the load whose epoch is `epoch`.
    fn serves_epoch(&self, shard: u64, epoch: Option<u64>) -> bool {
        let st = self.lock();
        epoch.is_some()
            && st.served.get(&shard).map(|s| s.epoch) == epoch
            && self.serving(&st.served, shard)
    }

    /// Writes everything queued; returns when it is durable (or failed) and applied.
    async fn write_pending(&self) {
        // Each shard's epoch is noted with the batch (every queued write belongs to a served
        // shard's current load: dropping a shard fails its queued writes).
        let (batch, epochs) = {
            let mut st = self.lock();
            let batch = std::mem::take(&mut st.writes.by_group);
            let epochs: HashMap<u64, Option<u64>> = batch
                .values()
                .map(|p| (p.shard, st.served.get(&p.shard).map(|s| s.epoch)))
                .collect();
            (batch, epochs)
        };
        if batch.is_empty() {
            return;
        }
        let mut by_shard: BTreeMap<u64, Vec<Chunk>> = BTreeMap::new();
        for (group, pending) in &batch {
            let size = pending.size_bytes();
            let chunks = by_shard.entry(pending.shard).or_default();
            let fits = chunks
                .last()
                .is_some_and(|c| c.size_bytes + size <= self.config.max_write_bytes);
            if !fits {
                chunks.push(Chunk {
                    ops: Vec::new(),
                    groups: Vec::new(),
                    size_bytes: 0,
                });
            }
            if let Some(chunk) = chunks.last_mut() {
                chunk
                    .ops
                    .extend(pending.ops.iter().map(|(k, v)| (k.clone(), v.clone())));
                chunk.groups.push(group.clone());
                chunk.size_bytes += size;
            }
        }
        // Shards write concurrently; a shard's chunks go one after the other, in order.
        let epochs = &epochs;
        let per_shard = join_all(by_shard.into_iter().map(|(shard, chunks)| async move {
            let epoch = epochs.get(&shard).copied().flatten();
            let mut done = Vec::with_capacity(chunks.len());
            for chunk in chunks {
                // A shard lost or reloaded since the batch was taken: its records were decided
                // by state that is gone, and another leader may have written newer ones.
                let result = if self.serves_epoch(shard, epoch) {
                    self.backend.write(shard, chunk.ops).await
                } else {
                    Err(jet_replication::Error::NotLeader)
                };
                if let Err(e) = &result {
                    tracing::warn!(shard, groups = chunk.groups.len(), error = %e, "writing group records failed");
                }
                done.push((shard, chunk.groups, result));
            }
            done
        }))
        .await;

        let mut batch = batch;
        let mut st = self.lock();
        for (shard, groups, result) in per_shard.into_iter().flatten() {
            let epoch = epochs.get(&shard).copied().flatten();
            let current = epoch.is_some() && st.served.get(&shard).map(|s| s.epoch) == epoch;
            for group_id in groups {
                let Some(pending) = batch.remove(&group_id) else {
                    continue;
                };
                let group = if current {
                    st.groups.get_mut(&group_id)
                } else {
                    None
                };
                if let Some(g) = group {
                    for tp in &pending.commits {
                        if let Some(n) = g.pending_commits.get_mut(tp) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                g.pending_commits.remove(tp);
                            }
                        }
                    }
                    if result.is_ok() {
                        for (key, value) in &pending.ops {
                            let Some(Key::Offset(_, topic, partition)) = codec::parse_key(key)
                            else {
                                continue;
                            };
                            match value.as_deref().map(codec::decode_offset) {
                                Some(Some(v)) => {
                                    g.offsets.insert((topic, partition), v);
                                }
                                Some(None) => {}
                                None => {
                                    g.offsets.remove(&(topic, partition));
                                }
                            }
                        }
                    }
                }
                let answer = result.as_ref().map(|_| ()).map_err(Error::from_write);
                for w in pending.waiters {
                    let _ = w.send(answer.clone());
                }
            }
        }
    }
}

/// Starts the writer; it ends when the coordinator is dropped.
pub(crate) fn spawn(
    coordinator: Weak<Coordinator>,
    wakeup: Arc<Notify>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        loop {
            wakeup.notified().await;
            let Some(c) = coordinator.upgrade() else {
                return;
            };
            c.write_pending().await;
        }
    })
    .abort_handle()
}
