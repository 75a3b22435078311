//! DescribeGroups, ListGroups, DeleteGroups.

use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::oneshot;

use crate::codec;
use crate::coordinator::State;
use crate::group::GroupState;
use crate::{Coordinator, Error, GroupDescription, GroupListing, MemberDescription};

impl Coordinator {
    /// DescribeGroups for one group; `Ok(None)` when it does not exist. Members' metadata and
    /// assignments are reported only for a stable group, as Kafka does.
    pub fn describe_group(&self, group_id: &str) -> Result<Option<GroupDescription>, Error> {
        let guard = self.lock();
        self.check_group(&guard, group_id, true)?;
        let Some(g) = guard.groups.get(group_id) else {
            return Ok(None);
        };
        let stable = g.state == GroupState::Stable;
        let protocol = if stable {
            g.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Ok(Some(GroupDescription {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        }))
    }

    /// Every group this node coordinates, sorted by id.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let guard = self.lock();
        let mut out: Vec<GroupListing> = guard
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead && self.serving(&guard.served, g.shard))
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DeleteGroups: each empty group is removed with its offsets; one result per id.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Vec<Result<(), Error>> {
        let mut results: Vec<Result<(), Error>> = Vec::with_capacity(group_ids.len());
        let mut waits = Vec::new();
        {
            let mut guard = self.lock();
            for (i, id) in group_ids.iter().enumerate() {
                if let Err(e) = self.check_group(&guard, id, true) {
                    results.push(Err(e));
                    continue;
                }
                let State { groups, writes, .. } = &mut *guard;
                let Some(g) = groups.get(id).filter(|g| g.state != GroupState::Dead) else {
                    results.push(Err(Error::GroupIdNotFound));
                    continue;
                };
                if g.state != GroupState::Empty {
                    results.push(Err(Error::NonEmptyGroup));
                    continue;
                }
                let Some(g) = groups.remove(id) else {
                    results.push(Err(Error::GroupIdNotFound));
                    continue;
                };
                // Offsets still being written are deleted too: their records land before
                // these tombstones (the writer keeps per-key order).
                let mut ops = vec![(codec::group_key(id), None)];
                ops.extend(
                    g.offsets
                        .keys()
                        .chain(g.pending_commits.keys())
                        .map(|(t, p)| (codec::offset_key(id, t, *p), None)),
                );
                let (tx, rx) = oneshot::channel();
                self.enqueue(writes, id, g.shard, ops, Vec::new(), Some(tx));
                tracing::info!(group = %id, offsets = g.offsets.len(), "group deleted");
                waits.push((i, rx));
                results.push(Ok(()));
            }
        }
        let (slots, receivers): (Vec<usize>, Vec<_>) = waits.into_iter().unzip();
        let written = join_all(receivers).await;
        for (i, r) in slots.into_iter().zip(written) {
            results[i] = r.unwrap_or(Err(Error::CoordinatorNotAvailable));
        }
        results
    }
}
