//! The typed cluster view, and the tracker that builds it from what chitchat holds.
//!
//! Chitchat knows identities (name, generation, gossip address), their keys, their heartbeat
//! counters and which of them its failure detector thinks are live. Jet needs nodes: one entry
//! per node id, alive or not, dead after `node_dead_after`, and a loud error when two running
//! processes claim one node id. The tracker adds the two things chitchat does not keep: when each
//! identity's heartbeat last advanced (chitchat's detector forgets its samples when it marks a
//! node dead) and when each identity was first seen. It takes `now` as an argument, so it is
//! tested without sleeping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::gossip::keys::{self, Parsed, Published};
use crate::{NodeId, ShardId, Term};

/// Whether a node is up, as far as gossip can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Its heartbeats arrive: list it, route to it.
    Alive,
    /// Its heartbeats stopped, for less than `node_dead_after`: a restart or a partition, so
    /// its replicas stay where they are.
    Unreachable,
    /// Its heartbeats stopped `node_dead_after` ago or more: its replicas may be re-placed.
    Dead,
}

/// One node as gossip sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The Kafka broker id.
    pub node_id: NodeId,
    /// The generation of the process seen (the newest, when a restart left an old one behind).
    pub generation: u64,
    /// Client address per named listener (`host:port`).
    pub listeners: BTreeMap<String, String>,
    /// Where its peer transport listens.
    pub peer_addr: SocketAddr,
    /// Where it gossips.
    pub gossip_addr: SocketAddr,
    /// Its rack, if it has one.
    pub rack: Option<String>,
    /// It says it serves clients.
    pub ready: bool,
    /// The shards it says it leads, with their terms, sorted by shard.
    pub leads: Vec<(ShardId, Term)>,
    /// The in-sync replicas it computed for the shards it leads.
    pub isr: BTreeMap<ShardId, Vec<NodeId>>,
    /// The nodes its cluster was formed with; empty until it runs.
    pub formed_with: Vec<NodeId>,
    /// Alive, unreachable or dead.
    pub liveness: Liveness,
    /// This is the local node.
    pub is_self: bool,
}

impl NodeInfo {
    /// Its heartbeats arrive.
    pub fn is_alive(&self) -> bool {
        self.liveness == Liveness::Alive
    }

    /// Gone for `node_dead_after` or more.
    pub fn is_dead(&self) -> bool {
        self.liveness == Liveness::Dead
    }
}

/// Two or more running processes claim one node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateNodeId {
    /// The contested id.
    pub node_id: NodeId,
    /// The claiming processes, as `name@gossip_addr` (the name holds the generation).
    pub identities: Vec<String>,
    /// One of them is the local node: it should refuse to go on.
    pub includes_self: bool,
}

/// The cluster as gossip sees it at one moment. Cheap to share: [`crate::Gossip`] hands out
/// `Arc<ClusterView>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// One entry per node id, sorted by node id, the local node included.
    pub nodes: Vec<NodeInfo>,
    /// Node ids claimed by more than one running process.
    pub duplicates: Vec<DuplicateNodeId>,
}

impl ClusterView {
    /// The node with this id.
    pub fn node(&self, node_id: NodeId) -> Option<&NodeInfo> {
        self.nodes
            .binary_search_by_key(&node_id, |n| n.node_id)
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The nodes whose heartbeats arrive.
    pub fn alive_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.is_alive())
    }

    /// The peer address of every other node that is not dead: what the caller feeds to
    /// `PeerTransport::set_peer_addr` (an unreachable node keeps its address, so the transport
    /// goes on redialing it while it restarts).
    pub fn peer_addrs(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.nodes
            .iter()
            .filter(|n| !n.is_self && !n.is_dead())
            .map(|n| (n.node_id, n.peer_addr))
    }

    /// The alive node claiming the highest term for `shard`: a leader hint for clients, not
    /// an agreed fact (gossip lags; the metadata shard and Raft decide).
    pub fn leader_hint(&self, shard: ShardId) -> Option<(NodeId, Term)> {
        self.alive_nodes()
            .filter_map(|n| {
                n.leads
                    .binary_search_by_key(&shard, |(s, _)| *s)
                    .ok()
                    .map(|i| (n.node_id, n.leads[i].1))
            })
            .max_by_key(|(node, term)| (*term, std::cmp::Reverse(*node)))
    }
}

/// One chitchat identity: a process incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) generation: u64,
    pub(crate) gossip_addr: SocketAddr,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.gossip_addr)
    }
}

/// What chitchat holds about one identity, copied out under its lock.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) identity: Identity,
    pub(crate) heartbeat: u64,
    /// Chitchat's failure detector thinks it is live.
    pub(crate) live: bool,
    pub(crate) is_self: bool,
    pub(crate) key_values: Vec<(String, String)>,
}

#[derive(Debug)]
struct Track {
    first_seen: Instant,
    heartbeat: u64,
    last_advance: Instant,
}

/// Builds [`ClusterView`]s from successive observations.
#[derive(Debug)]
pub(crate) struct ViewTracker {
    node_dead_after: Duration,
    duplicate_grace: Duration,
    tracks: HashMap<Identity, Track>,
    /// Identities already warned about as malformed, so a bad node is logged once, not at
    /// every refresh.
    warned_malformed: HashSet<Identity>,
}

impl ViewTracker {
    pub(crate) fn new(node_dead_after: Duration, duplicate_grace: Duration) -> Self {
        Self {
            node_dead_after,
            duplicate_grace,
            tracks: HashMap::new(),
            warned_malformed: HashSet::new(),
        }
    }

    /// Folds in one observation of every identity chitchat holds and returns the view.
    pub(crate) fn update(&mut self, now: Instant, observed: &[Observed]) -> ClusterView {
        let present: HashSet<&Identity> = observed.iter().map(|o| &o.identity).collect();
        self.tracks.retain(|identity, _| present.contains(identity));
        self.warned_malformed
            .retain(|identity| present.contains(identity));

        let mut by_node: BTreeMap<NodeId, Vec<(&Observed, Published)>> = BTreeMap::new();
        for obs in observed {
            let track = self
                .tracks
                .entry(obs.identity.clone())
                .or_insert_with(|| Track {
                    first_seen: now,
                    heartbeat: obs.heartbeat,
                    last_advance: now,
                });
            if obs.heartbeat > track.heartbeat {
                track.heartbeat = obs.heartbeat;
                track.last_advance = now;
            }
            let kvs = obs.key_values.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            match keys::parse(kvs) {
                Parsed::Complete(published) => {
                    by_node
                        .entry(published.node_id)
                        .or_default()
                        .push((obs, published));
                }
                Parsed::Incomplete => {}
                Parsed::Malformed(reason) => {
                    if self.warned_malformed.insert(obs.identity.clone()) {
                        warn!(identity = %obs.identity, %reason, "gossip node publishes malformed keys; left out of the cluster view");
                    }
                }
            }
        }

        let mut view = ClusterView::default();
        for (node_id, claims) in by_node {
            if let Some(duplicate) = self.duplicate(node_id, &claims) {
                view.duplicates.push(duplicate);
            }
            // The newest generation stands for the node: after a restart the old incarnation
            // lingers in gossip until chitchat forgets it. Among equals, a live one.
            let Some((obs, published)) = claims.into_iter().max_by(|(a, pa), (b, pb)| {
                (pa.generation, a.is_self || a.live, &a.identity).cmp(&(
                    pb.generation,
                    b.is_self || b.live,
                    &b.identity,
                ))
            }) else {
                continue;
            };
            let liveness = self.liveness(now, obs);
            view.nodes.push(NodeInfo {
                node_id,
                generation: published.generation,
                listeners: published.listeners,
                peer_addr: published.peer_addr,
                gossip_addr: obs.identity.gossip_addr,
                rack: published.rack,
                ready: published.ready,
                leads: published.leads,
                isr: published.isr,
                formed_with: published.formed_with,
                liveness,
                is_self: obs.is_self,
            });
        }
        view
    }

    fn liveness(&self, now: Instant, obs: &Observed) -> Liveness {
        if obs.is_self || obs.live {
            return Liveness::Alive;
        }
        let last_advance = self
            .tracks
            .get(&obs.identity)
            .map_or(now, |t| t.last_advance);
        if now.saturating_duration_since(last_advance) >= self.node_dead_after {
            Liveness::Dead
        } else {
            Liveness::Unreachable
        }
    }

    /// Two identities claim one node id *and both kept heartbeating after both were seen*.
    ///
    /// Liveness alone cannot tell: after a restart the old incarnation still looks live for a
    /// few seconds, until the failure detector gives up on it. But a stopped process's
    /// heartbeat stops advancing, while two running processes both advance. `duplicate_grace`
    /// covers old heartbeats still spreading through gossip after the newcomer appears.
    fn duplicate(
        &self,
        node_id: NodeId,
        claims: &[(&Observed, Published)],
    ) -> Option<DuplicateNodeId> {
        let running: Vec<(&Observed, &Track)> = claims
            .iter()
            .filter(|(obs, _)| obs.is_self || obs.live)
            .filter_map(|(obs, _)| Some((*obs, self.tracks.get(&obs.identity)?)))
            .collect();
        let mut contested: Vec<&Observed> = Vec::new();
        for (i, (a, ta)) in running.iter().enumerate() {
            for (b, tb) in &running[i + 1..] {
                let both_seen_at = ta.first_seen.max(tb.first_seen);
                let both_advanced_at = ta.last_advance.min(tb.last_advance);
                if both_advanced_at > both_seen_at + self.duplicate_grace {
                    contested.push(a);
                    contested.push(b);
                }
            }
        }
        if contested.is_empty() {
            return None;
        }
        contested.sort_by(|a, b| a.identity.cmp(&b.identity));
        contested.dedup_by(|a, b| a.identity == b.identity);
        Some(DuplicateNodeId {
            node_id,
            includes_self: contested.iter().any(|o| o.is_self),
            identities: contested.iter().map(|o| o.identity.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD_AFTER: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(2);

    fn observed(
        node_id: NodeId,
        generation: u64,
        port: u16,
        heartbeat: u64,
        live: bool,
    ) -> Observed {
        let published = Published {
            node_id,
            generation,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            listeners: BTreeMap::from([("plain".to_owned(), format!("127.0.0.1:{}", port + 2))]),
            rack: None,
            ready: true,
            leads: vec![(1, 5)],
            isr: BTreeMap::new(),
            formed_with: Vec::new(),
        };
        Observed {
            identity: Identity {
                name: format!("{node_id}.{generation}"),
                generation,
                gossip_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            },
            heartbeat,
            live,
            is_self: false,
            key_values: published.to_key_values(),
        }
    }

    #[test]
    fn silent_node_goes_unreachable_then_dead_after_node_dead_after() {
        let mut tracker = ViewTracker::new(DEAD_AFTER, GRACE);
        let t0 = Instant::now();
        let view = tracker.update(t0, &[observed(1, 1, 7000, 10, true)]);
        assert_eq!(view.node(1).map(|n| n.liveness), Some(Liveness::Alive));
        // Heartbeat stops advancing; chitchat's detector marks it not live.
        let t1 = t0 + Duration::from_secs(5);
        let view = tracker.update(t1, &[observed(1, 1, 7000, 10, false)]);
        assert_eq!(
            view.node(1).map(|n| n.liveness),
            Some(Liveness::Unreachable)
        );
        let view = tracker.update(
            t0 + DEAD_AFTER - Duration::from_millis(1),
            &[observed(1, 1, 7000, 10, false)],
        );
        assert_eq!(
            view.node(1).map(|n| n.liveness),
            Some(Liveness::Unreachable)
        );
        let view = tracker.update(t0 + DEAD_AFTER, &[observed(1, 1, 7000, 10, false)]);
        assert_eq!(view.node(1).map(|n| n.liveness), Some(Liveness::Dead));
        // It comes back: its heartbeat advances and the detector sees it again.
        let view = tracker.update(t0 + DEAD_AFTER * 2, &[observed(1, 1, 7000, 11, true)]);
        assert_eq!(view.node(1).map(|n| n.liveness), Some(Liveness::Alive));
    }

    #[test]
    fn restart_is_not_a_duplicate_and_the_new_generation_stands_for_the_node() {
        let mut tracker = ViewTracker::new(DEAD_AFTER, GRACE);
        let t0 = Instant::now();
        tracker.update(t0, &[observed(1, 1, 7000, 10, true)]);
        // Generation 2 appears; generation 1 still looks live for a while but is silent.
        for step in 1..20u64 {
            let now = t0 + Duration::from_secs(step);
            let view = tracker.update(
                now,
                &[
                    observed(1, 1, 7000, 10, step < 8),
                    observed(1, 2, 7000, 10 + step, true),
                ],
            );
            assert!(
                view.duplicates.is_empty(),
                "restart reported as duplicate at {step}s"
            );
            assert_eq!(view.node(1).map(|n| n.generation), Some(2));
            assert_eq!(view.node(1).map(|n| n.liveness), Some(Liveness::Alive));
        }
    }

    #[test]
    fn two_running_processes_with_one_id_are_a_duplicate() {
        let mut tracker = ViewTracker::new(DEAD_AFTER, GRACE);
        let t0 = Instant::now();
        let mut me = observed(1, 1, 7000, 10, true);
        me.is_self = true;
        tracker.update(t0, &[me.clone()]);
        let mut duplicate_seen = false;
        for step in 1..6u64 {
            me.heartbeat += 1;
            let other = observed(1, 9, 7100, 100 + step, true);
            let view = tracker.update(t0 + Duration::from_secs(step), &[me.clone(), other]);
            if let Some(dup) = view.duplicates.first() {
                assert_eq!(dup.node_id, 1);
                assert!(dup.includes_self);
                assert_eq!(dup.identities.len(), 2);
                duplicate_seen = true;
            } else {
                assert!(
                    step <= 3,
                    "duplicate not reported {step}s after both were running"
                );
            }
        }
        assert!(duplicate_seen);
    }

    #[test]
    fn leader_hint_takes_the_highest_term_of_alive_nodes() {
        let mut tracker = ViewTracker::new(DEAD_AFTER, GRACE);
        let t0 = Instant::now();
        let mut a = observed(1, 1, 7000, 1, true);
        let mut b = observed(2, 1, 7100, 1, true);
        a.key_values.retain(|(k, _)| !k.starts_with("leader."));
        b.key_values.retain(|(k, _)| !k.starts_with("leader."));
        a.key_values.push(("leader.4".into(), "7".into()));
        b.key_values.push(("leader.4".into(), "8".into()));
        let view = tracker.update(t0, &[a.clone(), b.clone()]);
        assert_eq!(view.leader_hint(4), Some((2, 8)));
        assert_eq!(view.leader_hint(5), None);
        b.live = false;
        let view = tracker.update(t0, &[a, b]);
        assert_eq!(view.leader_hint(4), Some((1, 7)));
    }
}
