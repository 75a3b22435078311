//! A node of a multi-node cluster: the peer transport, gossip, forming a new cluster, and what
//! gossip tells the node about the others.
//!
//! Start-up of a clustered node (`--seeds` or `--bootstrap-expect N > 1`):
//! 1. bind the peer listener (TCP, Raft traffic) and start gossip (UDP), publishing the node's
//!    Kafka address per listener (`listener.<name>`), peer address and rack;
//! 2. a task feeds every node gossip sees to the transport (so Raft can reach it) and, once the
//!    node runs, to its [`Directory`] (broker list, leaders of shards it does not hold); it also
//!    publishes the shards this node leads and refuses to go on if another process claims this
//!    node's id;
//! 3. with an empty data directory, wait until `--bootstrap-expect` nodes are visible; the
//!    members are the N lowest node ids seen, so every node derives the same initial replicas.
//!    A node with data rejoins as itself whatever gossip says.
//!
//! 4. with an empty data directory and `--seeds` but no `--bootstrap-expect`, join the seeds'
//!    cluster: wait until gossip shows its nodes serving (their led shards give the number of
//!    data shards), then start with no shard of its own. The metadata leader admits the node,
//!    its metadata replica and then data replicas arrive as snapshots.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use jet_cluster::gossip::generation_now;
use jet_cluster::{ClusterView, Gossip, GossipConfig, PeerTransport, TransportConfig};
use jet_replication::driver::network::RaftMessage;
use jet_replication::driver::Network;
use jet_replication::{BrokerInfo, Directory, Node};
use tokio::sync::oneshot;

use crate::config::Args;

/// The name of the default Kafka listener in gossip (`listener.kafka`); each named listener is
/// published under its own name.
const KAFKA_LISTENER: &str = jet_kafka::DEFAULT_LISTENER;
/// How long gossip runs before a duplicate node id counts (a restarted node's old heartbeats
/// must finish spreading first).
const DUPLICATE_CHECK_AFTER: Duration = Duration::from_secs(6);
/// Longest a starting node waits for gossip to name the other leaders before it serves.
const DIRECTORY_WAIT: Duration = Duration::from_secs(5);

/// The running cluster layer of a node.
pub struct Cluster {
    gossip: Arc<Gossip>,
    transport: Arc<PeerTransport<RaftMessage>>,
    node: Arc<OnceLock<Arc<Node>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What forming produced: the network for the node, the members of a new cluster, and a
/// receiver that resolves when this node must stop (another process claims its id).
pub struct Formed {
    pub cluster: Cluster,
    pub network: Network,
    pub members: Vec<u64>,
    /// Joining a running cluster: its number of data shards, as gossip shows them.
    pub joined_shards: Option<u64>,
    pub fatal: oneshot::Receiver<String>,
}

/// Starts the transport and gossip, and with an empty data directory waits for the cluster's
/// first members.
pub async fn form(
    args: &Args,
    node_id: u64,
    cluster_id: &str,
    listeners: Vec<(String, (String, u16))>,
    new_node: bool,
) -> anyhow::Result<Formed> {
    let peer_advertise = args.peer_advertise.unwrap_or(args.peer_listen);
    if peer_advertise.ip().is_unspecified() {
        bail!(
            "--peer-listen {} is a wildcard address: set --peer-advertise to the address other nodes dial",
            args.peer_listen
        );
    }
    let (transport, inbound) = PeerTransport::<RaftMessage>::bind(TransportConfig::new(
        cluster_id,
        node_id,
        args.peer_listen,
    ))
    .await
    .context("cannot start the peer transport")?;
    let transport = Arc::new(transport);

    let gossip_listen = args.gossip_listen.unwrap_or(args.peer_listen);
    let mut config = GossipConfig::new(
        cluster_id,
        node_id,
        generation_now(),
        gossip_listen,
        peer_advertise,
    );
    if gossip_listen.ip().is_unspecified() {
        config.advertise_addr = Some(SocketAddr::new(peer_advertise.ip(), gossip_listen.port()));
    }
    config.seeds = args.seeds.clone();
    config.rack = args.rack.clone();
    config.node_dead_after = args.node_dead_after;
    config.forget_dead_after = config.forget_dead_after.max(args.node_dead_after * 2);
    config.listeners = listeners
        .into_iter()
        .map(|(name, (host, port))| {
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            (name, addr)
        })
        .collect::<BTreeMap<_, _>>();
    let gossip = Arc::new(Gossip::start(config).await.context("cannot start gossip")?);

    let node: Arc<OnceLock<Arc<Node>>> = Arc::new(OnceLock::new());
    let (fatal_tx, fatal) = oneshot::channel();
    let task = tokio::spawn(follow_view(
        gossip.clone(),
        transport.clone(),
        node.clone(),
        fatal_tx,
    ));

    let (members, joined_shards) = match (new_node, args.bootstrap_expect) {
        (true, Some(expect)) => match form_or_join(&gossip, expect as usize).await? {
            Start::Form(members) => (members, None),
            Start::Join => (Vec::new(), Some(wait_for_cluster(&gossip).await?)),
        },
        (true, None) => (Vec::new(), Some(wait_for_cluster(&gossip).await?)),
        (false, _) => (Vec::new(), None),
    };
    Ok(Formed {
        cluster: Cluster {
            gossip,
            transport: transport.clone(),
            node,
            task,
        },
        network: Network { transport, inbound },
        members,
        joined_shards,
        fatal,
    })
}

/// Waits until gossip shows a running cluster to join; returns its number of data shards (the
/// highest shard its serving nodes lead, once it has not changed for two seconds: shard ids
/// are `0..=data_shards` and every shard has a leader).
async fn wait_for_cluster(gossip: &Gossip) -> anyhow::Result<u64> {
    const STABLE_FOR: Duration = Duration::from_secs(2);
    let me = gossip.node_id();
    let mut view = gossip.subscribe();
    let started = tokio::time::Instant::now();
    let mut last_log = started;
    let mut seen: Option<(u64, tokio::time::Instant)> = None;
    loop {
        let highest = view
            .borrow_and_update()
            .alive_nodes()
            .filter(|n| n.node_id != me && n.ready)
            .flat_map(|n| n.leads.iter().map(|(shard, _)| *shard))
            .max();
        let now = tokio::time::Instant::now();
        match (highest, seen) {
            (Some(h), Some((s, since))) if h == s && h > 0 => {
                if now.duration_since(since) >= STABLE_FOR {
                    tracing::info!(data_shards = h, "joining a running cluster");
                    return Ok(h);
                }
            }
            (Some(h), _) => seen = Some((h, now)),
            (None, _) => seen = None,
        }
        if now.duration_since(last_log) >= Duration::from_secs(5) {
            last_log = now;
            tracing::info!(
                "waiting for the seeds' cluster to appear in gossip (to form a new cluster instead, start with --bootstrap-expect N)"
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), view.changed()).await;
    }
}

/// How a node with an empty data directory and `--bootstrap-expect` starts.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// Form the cluster with these members (sorted).
    Form(Vec<u64>),
    /// A cluster that does not list this node runs already: join it.
    Join,
}

/// Decides whether a new node started with `--bootstrap-expect` forms the cluster or joins
/// one, waiting on gossip until it can tell.
async fn form_or_join(gossip: &Gossip, expect: usize) -> anyhow::Result<Start> {
    let me = gossip.node_id();
    let mut view = gossip.subscribe();
    let mut last_log = tokio::time::Instant::now();
    loop {
        let decided = decide_start(&view.borrow_and_update(), me, expect);
        match decided {
            Some(Start::Form(members)) => {
                tracing::info!(?members, "forming a new cluster");
                return Ok(Start::Form(members));
            }
            Some(Start::Join) => {
                tracing::info!(
                    "a running cluster does not list this node: joining it (--bootstrap-expect applies only to forming)"
                );
                return Ok(Start::Join);
            }
            None => {}
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = tokio::time::Instant::now();
            let seen: Vec<u64> = view.borrow().alive_nodes().map(|n| n.node_id).collect();
            tracing::info!(seen = ?seen, expect, "waiting for the cluster's nodes to appear in gossip");
        }
        if tokio::time::timeout(Duration::from_millis(500), view.changed())
            .await
            .is_ok_and(|r| r.is_err())
        {
            bail!("gossip stopped while waiting for the cluster's nodes");
        }
    }
}

/// The decision of [`form_or_join`] on one view, or `None` to wait:
/// - a live node that runs a cluster (it publishes the nodes the cluster was formed with)
///   decides it: a cluster formed with this node is formed again with exactly those nodes (this
///   one was slow to start, and the others bootstrapped its replicas' peers); one formed
///   without it is joined (a node added to a StatefulSet or a compose file, or one that lost
///   its data and drew a new id);
/// - else, once `expect` nodes are visible, the `expect` lowest ids form the cluster, and
///   every node derives the same set. A node left out waits until they run, then joins.
fn decide_start(view: &ClusterView, me: u64, expect: usize) -> Option<Start> {
    let running = view
        .alive_nodes()
        .filter(|n| n.node_id != me && !n.formed_with.is_empty())
        .max_by_key(|n| n.formed_with.len());
    if let Some(n) = running {
        return Some(if n.formed_with.contains(&me) {
            Start::Form(n.formed_with.clone())
        } else {
            Start::Join
        });
    }
    let mut seen: Vec<u64> = view.alive_nodes().map(|n| n.node_id).collect();
    if seen.len() < expect {
        return None;
    }
    seen.sort_unstable();
    seen.truncate(expect);
    seen.contains(&me).then_some(Start::Form(seen))
}

/// Feeds gossip to the transport and the node, and publishes what this node leads.
async fn follow_view(
    gossip: Arc<Gossip>,
    transport: Arc<PeerTransport<RaftMessage>>,
    node: Arc<OnceLock<Arc<Node>>>,
    fatal: oneshot::Sender<String>,
) {
    let me = gossip.node_id();
    let mut view = gossip.subscribe();
    let started = tokio::time::Instant::now();
    let mut fatal = Some(fatal);
    let mut ready = false;
    loop {
        let current = view.borrow_and_update().clone();
        for (id, addr) in current.peer_addrs() {
            if let Err(e) = transport.set_peer_addr(id, addr) {
                tracing::warn!(peer = id, error = %e, "cannot add peer");
            }
        }
        if let Some(dup) = current.duplicates.iter().find(|d| d.includes_self) {
            if started.elapsed() >= DUPLICATE_CHECK_AFTER {
                if let Some(tx) = fatal.take() {
                    let _ = tx.send(format!(
                        "another node uses node id {} ({}); give each node its own --node-id",
                        dup.node_id,
                        dup.identities.join(", ")
                    ));
                }
            }
        }
        if let Some(node) = node.get() {
            node.set_directory(directory(&current, me));
            // The shards it leads, with the ISR only the leader computes, for nodes that report
            // these partitions without following them.
            let leads: Vec<(u64, u64, Vec<u64>)> = (0..=node.metadata().data_shards)
                .filter_map(|s| node.shard_status(s))
                .filter(|st| st.is_leader.load(Ordering::Acquire))
                .map(|st| (st.id, st.term.load(Ordering::Acquire), st.members().isr))
                .collect();
            gossip.set_leadership(&leads).await;
            let md = node.metadata();
            let formed_with = if md.formed_with.is_empty() {
                &md.members
            } else {
                &md.formed_with
            };
            gossip.set_formed_with(formed_with).await;
            if !ready {
                ready = true;
                gossip.set_ready(true).await;
            }
        }
        // Again on every change of the view, and at least every second: leadership changes
        // and the duplicate check do not change the view.
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// `host:port` or `[v6]:port` as gossip carries it.
fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (h, p) = addr.rsplit_once(':')?;
    Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
}

/// What the node needs from a view: other live brokers' client addresses (per listener), shard
/// leaders.
fn directory(view: &ClusterView, me: u64) -> Directory {
    let mut d = Directory::default();
    for n in view.alive_nodes().filter(|n| n.node_id != me) {
        let Some((host, port)) = n
            .listeners
            .get(KAFKA_LISTENER)
            .and_then(|a| split_host_port(a))
        else {
            continue;
        };
        let listeners = n
            .listeners
            .iter()
            .filter_map(|(name, a)| Some((name.clone(), split_host_port(a)?)))
            .collect();
        d.brokers.insert(
            n.node_id,
            BrokerInfo {
                node_id: n.node_id,
                host,
                port,
                rack: n.rack.clone(),
                listeners,
            },
        );
        for (shard, term) in &n.leads {
            let e = d.leaders.entry(*shard).or_insert((n.node_id, *term));
            if *term > e.1 {
                *e = (n.node_id, *term);
            }
        }
    }
    d.alive = view
        .alive_nodes()
        .map(|n| n.node_id)
        .filter(|id| *id != me)
        .collect();
    d.dead = view
        .nodes
        .iter()
        .filter(|n| n.is_dead() && n.node_id != me)
        .map(|n| n.node_id)
        .collect();
    // The ISR published by the leader gossip believes in (the highest term).
    for (shard, (leader, _)) in &d.leaders {
        if let Some(isr) = view.node(*leader).and_then(|n| n.isr.get(shard)) {
            d.isr.insert(*shard, isr.clone());
        }
    }
    d
}

impl Cluster {
    /// Hands the running node to the gossip task: from now on it gets the directory, and its
    /// leadership is published.
    ///
    /// Waits (at most [`DIRECTORY_WAIT`]) until gossip knows the client address of every
    /// leader of the shards this node holds, so the first Metadata it answers is complete
    /// rather than "leader not available" for partitions led elsewhere.
    pub async fn attach(&self, node: Arc<Node>) {
        let me = self.gossip.node_id();
        let deadline = tokio::time::Instant::now() + DIRECTORY_WAIT;
        let mut view = self.gossip.subscribe();
        loop {
            let d = directory(&view.borrow_and_update(), me);
            let complete = (0..=node.metadata().data_shards).all(|s| {
                node.shard_status(s).is_none_or(|st| {
                    let leader = st.leader.load(Ordering::Acquire);
                    !st.local.load(Ordering::Acquire)
                        || leader == 0
                        || leader == me
                        || d.brokers.contains_key(&leader)
                })
            });
            node.set_directory(d);
            if complete || tokio::time::Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, view.changed()).await;
        }
        let _ = self.node.set(node);
    }

    /// Stops publishing, then gossip and the transport (after the node stopped).
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
        self.gossip.set_ready(false).await;
        self.gossip.set_leads(&[]).await;
        match Arc::try_unwrap(self.gossip) {
            Ok(g) => {
                if let Err(e) = g.shutdown().await {
                    tracing::warn!(error = %e, "gossip did not stop cleanly");
                }
            }
            Err(_) => tracing::warn!("gossip still in use at shutdown"),
        }
        if let Ok(t) = Arc::try_unwrap(self.transport) {
            t.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jet_cluster::{Liveness, NodeInfo};

    fn node(id: u64, alive: bool, formed_with: &[u64]) -> NodeInfo {
        NodeInfo {
            node_id: id,
            generation: 1,
            listeners: BTreeMap::new(),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 9000 + id as u16)),
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 9000 + id as u16)),
            rack: None,
            ready: !formed_with.is_empty(),
            leads: Vec::new(),
            isr: BTreeMap::new(),
            formed_with: formed_with.to_vec(),
            liveness: if alive {
                Liveness::Alive
            } else {
                Liveness::Dead
            },
            is_self: false,
        }
    }

    fn view(nodes: Vec<NodeInfo>) -> ClusterView {
        ClusterView {
            nodes,
            duplicates: Vec::new(),
        }
    }

    #[test]
    fn new_nodes_form_with_the_lowest_ids_or_join_a_running_cluster() {
        let cases: Vec<(&str, ClusterView, u64, Option<Start>)> = vec![
            (
                "too few nodes seen: wait",
                view(vec![node(1, true, &[]), node(2, true, &[])]),
                1,
                None,
            ),
            (
                "a dead node does not count",
                view(vec![
                    node(1, true, &[]),
                    node(2, true, &[]),
                    node(3, false, &[]),
                ]),
                1,
                None,
            ),
            (
                "enough nodes: the lowest ids form",
                view(vec![
                    node(5, true, &[]),
                    node(2, true, &[]),
                    node(9, true, &[]),
                ]),
                9,
                Some(Start::Form(vec![2, 5, 9])),
            ),
            (
                "left out of the lowest ids: wait for them to run",
                view(vec![
                    node(1, true, &[]),
                    node(2, true, &[]),
                    node(3, true, &[]),
                    node(4, true, &[]),
                ]),
                4,
                None,
            ),
            (
                "a running cluster formed with this node: form with its members",
                view(vec![node(1, true, &[1, 2, 7]), node(7, true, &[])]),
                7,
                Some(Start::Form(vec![1, 2, 7])),
            ),
            (
                "a running cluster without this node: join, even with a lower id",
                view(vec![
                    node(0, true, &[]),
                    node(4, true, &[4, 5, 6]),
                    node(5, true, &[4, 5, 6]),
                    node(6, true, &[4, 5, 6]),
                ]),
                0,
                Some(Start::Join),
            ),
            (
                "a dead node's cluster decides nothing",
                view(vec![node(1, false, &[1, 2, 3]), node(4, true, &[])]),
                4,
                None,
            ),
        ];
        for (what, v, me, want) in cases {
            assert_eq!(decide_start(&v, me, 3), want, "{what}");
        }
    }
}
