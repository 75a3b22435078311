//! Gossip: who is in the cluster, where to reach them, who leads what — over `chitchat`.
//!
//! Each node runs one [`Gossip`]. It publishes typed keys (see `keys.rs`), and a refresh task
//! turns chitchat's state into a [`ClusterView`] every `view_refresh_interval` (and at once
//! after a local change), publishing it on a watch channel when it changed.
//!
//! - **Identity.** The chitchat node id is `<node_id>.<generation>` with the generation also in
//!   chitchat's `generation_id`: a restarted node is a new identity, so its fresh state is not
//!   mistaken for stale versions of the old one. The view keeps the newest generation per node.
//! - **Cluster id.** chitchat's own `cluster_id`: a node of another cluster is answered
//!   `BadCluster` and never enters the view.
//! - **Dead.** chitchat's phi-accrual detector says within seconds that heartbeats stopped
//!   (`Unreachable`); a node whose heartbeat has not advanced for `node_dead_after` is `Dead`,
//!   the signal to re-place its replicas.
//! - **Duplicate node ids** are reported in [`ClusterView::duplicates`];
//!   [`Gossip::check_duplicate_node_id`] turns one involving this node into an error.
//!
//! Gossip is eventually consistent: it feeds broker lists, peer addresses and leader hints.
//! What must be agreed (placement, membership of Raft groups) goes through the metadata shard.

mod keys;
mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use thiserror::Error;
use tokio::sync::{watch, Mutex, Notify};
use tokio::time::Instant;
use tracing::info;

pub use self::view::{ClusterView, DuplicateNodeId, Liveness, NodeInfo};

use self::keys::{
    formed_with_value, is_host_port, leader_key, leader_value, listener_key, Published,
    KEY_FORMED_WITH, KEY_RACK, KEY_READY, LEADER_PREFIX,
};
use self::view::{Identity, Observed, ViewTracker};
use crate::task::AbortOnDrop;
use crate::{NodeId, ShardId, Term};

/// The longest listener name or rack accepted, so one node cannot fill gossip datagrams.
const MAX_LABEL_BYTES: usize = 128;

/// Gossip's settings. [`GossipConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// The cluster id; chitchat refuses gossip from another cluster.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: NodeId,
    /// Must increase at every start of the node ([`generation_now`] does).
    pub generation: u64,
    /// The UDP address gossip binds (`--gossip-listen`).
    pub listen_addr: SocketAddr,
    /// The UDP address others should gossip to; `listen_addr` when `None`. Required when
    /// `listen_addr` is a wildcard address.
    pub advertise_addr: Option<SocketAddr>,
    /// Gossip addresses to start from, `host:port` (`--seeds`); names are resolved again every
    /// minute by chitchat, so a DNS name of a StatefulSet works.
    pub seeds: Vec<String>,
    /// Where this node's peer transport listens, as others should dial it.
    pub peer_addr: SocketAddr,
    /// Client address per named Kafka listener, `host:port`.
    pub listeners: BTreeMap<String, String>,
    /// This node's rack.
    pub rack: Option<String>,
    /// Time between gossip rounds. Default 500 ms.
    pub gossip_interval: Duration,
    /// A node silent this long is [`Liveness::Dead`]. Default 10 min.
    pub node_dead_after: Duration,
    /// A node dead this long is dropped from gossip state altogether (and so from the view);
    /// at least twice `node_dead_after`. Default 24 h.
    pub forget_dead_after: Duration,
    /// How long two processes with one node id may both heartbeat before it is reported, to
    /// let a restarted node's last heartbeats finish spreading. Default 5 s.
    pub duplicate_grace: Duration,
    /// chitchat's phi-accrual threshold for "not live". Default 8.
    pub phi_threshold: f64,
    /// The heartbeat interval the failure detector assumes before it has measured one.
    /// Default 2 s.
    pub failure_detector_initial_interval: Duration,
    /// Heartbeat intervals longer than this are left out of the detector's statistics.
    /// Default 10 s.
    pub failure_detector_max_interval: Duration,
    /// How long a deleted key (a lost leadership) is remembered so every node sees the
    /// deletion. Default 1 h.
    pub deleted_key_grace: Duration,
    /// How often the view is rebuilt from chitchat's state. Default 250 ms.
    pub view_refresh_interval: Duration,
}

impl GossipConfig {
    /// The defaults for `node_id` of `cluster_id`.
    pub fn new(
        cluster_id: impl Into<String>,
        node_id: NodeId,
        generation: u64,
        listen_addr: SocketAddr,
        peer_addr: SocketAddr,
    ) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            node_id,
            generation,
            listen_addr,
            advertise_addr: None,
            seeds: Vec::new(),
            peer_addr,
            listeners: BTreeMap::new(),
            rack: None,
            gossip_interval: Duration::from_millis(500),
            node_dead_after: Duration::from_secs(600),
            forget_dead_after: Duration::from_secs(24 * 3600),
            duplicate_grace: Duration::from_secs(5),
            phi_threshold: 8.0,
            failure_detector_initial_interval: Duration::from_secs(2),
            failure_detector_max_interval: Duration::from_secs(10),
            deleted_key_grace: Duration::from_secs(3600),
            view_refresh_interval: Duration::from_millis(250),
        }
    }

    /// The gossip address others use.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise_addr.unwrap_or(self.listen_addr)
    }

    /// Refuses settings gossip cannot run with.
    pub fn validate(&self) -> Result<(), GossipError> {
        let invalid = |what: &str| Err(GossipError::InvalidConfig(what.to_owned()));
        if self.cluster_id.is_empty() {
            return invalid("cluster id is empty");
        }
        let advertise = self.advertise_addr();
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return invalid("gossip advertise address must be a concrete ip:port");
        }
        if self.peer_addr.ip().is_unspecified() || self.peer_addr.port() == 0 {
            return invalid("peer address must be a concrete ip:port others can dial");
        }
        for (name, addr) in &self.listeners {
            check_label(name)?;
            check_listener_addr(addr)?;
        }
        if let Some(rack) = &self.rack {
            check_label(rack)?;
        }
        if self.gossip_interval.is_zero()
            || self.view_refresh_interval.is_zero()
            || self.node_dead_after.is_zero()
            || self.failure_detector_initial_interval.is_zero()
        {
            return invalid("intervals must be positive");
        }
        if self.forget_dead_after < self.node_dead_after * 2 {
            return invalid("forget_dead_after must be at least twice node_dead_after");
        }
        if self.phi_threshold.is_nan() || self.phi_threshold <= 0.0 {
            return invalid("phi_threshold must be positive");
        }
        Ok(())
    }
}

/// A generation for a node starting now: milliseconds since the Unix epoch, so it increases
/// across restarts without a file. Not used for anything but telling incarnations apart.
pub fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Gossip failed or was misused.
#[derive(Debug, Error)]
pub enum GossipError {
    /// A setting is out of range.
    #[error("invalid gossip config: {0}")]
    InvalidConfig(String),
    /// chitchat did not start (for example the UDP address is taken).
    #[error("gossip failed to start: {0}")]
    Start(String),
    /// Another running process claims this node's id.
    #[error("node id {node_id} is also claimed by another running node ({identities}); refusing to continue")]
    DuplicateNodeId {
        /// The contested id.
        node_id: NodeId,
        /// The claiming processes.
        identities: String,
    },
}

/// This node's membership in the cluster's gossip. See the module doc.
pub struct Gossip {
    node_id: NodeId,
    chitchat: Arc<Mutex<Chitchat>>,
    handle: Option<ChitchatHandle>,
    view: watch::Receiver<Arc<ClusterView>>,
    refresh: Arc<Notify>,
    refresh_task: Option<AbortOnDrop<()>>,
}

impl Gossip {
    /// Binds the UDP socket, publishes this node's keys and starts gossiping with the seeds.
    pub async fn start(config: GossipConfig) -> Result<Self, GossipError> {
        config.validate()?;
        let advertise = config.advertise_addr();
        let chitchat_id = ChitchatId::new(
            format!("{}.{}", config.node_id, config.generation),
            config.generation,
            advertise,
        );
        let published = Published {
            node_id: config.node_id,
            generation: config.generation,
            peer_addr: config.peer_addr,
            listeners: config.listeners.clone(),
            rack: config.rack.clone(),
            ready: false,
            leads: Vec::new(),
            isr: BTreeMap::new(),
            formed_with: Vec::new(),
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: chitchat_id.clone(),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: config.listen_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                max_interval: config.failure_detector_max_interval,
                initial_interval: config.failure_detector_initial_interval,
                dead_node_grace_period: config.forget_dead_after,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: config.deleted_key_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // V0 until every node runs a version that decodes V1 (chitchat's own advice).
            protocol_version: ProtocolVersion::V0,
        };
        let handle = spawn_chitchat(chitchat_config, published.to_key_values(), &UdpTransport)
            .await
            .map_err(|e| GossipError::Start(format!("{e:#}")))?;
        let chitchat = handle.chitchat();
        let mut tracker = ViewTracker::new(config.node_dead_after, config.duplicate_grace);
        let first = Arc::new(tracker.update(Instant::now(), &observe(&*chitchat.lock().await)));
        let (view_tx, view_rx) = watch::channel(first);
        let refresh = Arc::new(Notify::new());
        let refresh_task = AbortOnDrop::new(tokio::spawn(refresh_loop(
            chitchat.clone(),
            tracker,
            view_tx,
            refresh.clone(),
            config.view_refresh_interval,
        )));
        info!(node_id = config.node_id, generation = config.generation, gossip_addr = %advertise, seeds = ?config.seeds, "gossip started");
        Ok(Self {
            node_id: config.node_id,
            chitchat,
            handle: Some(handle),
            view: view_rx,
            refresh,
            refresh_task: Some(refresh_task),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The latest view. Cheap: a shared pointer.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// A channel that changes whenever the view does (a node appears, changes a key, changes
    /// liveness, a duplicate appears).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// An error if another running process claims this node's id. Startup should call it once
    /// gossip has had a few rounds, and refuse to serve on error.
    pub fn check_duplicate_node_id(&self) -> Result<(), GossipError> {
        let view = self.view();
        match view.duplicates.iter().find(|d| d.includes_self) {
            Some(dup) => Err(GossipError::DuplicateNodeId {
                node_id: dup.node_id,
                identities: dup.identities.join(", "),
            }),
            None => Ok(()),
        }
    }

    /// Publishes whether this node serves clients.
    pub async fn set_ready(&self, ready: bool) {
        self.update_self(|state| state.set(KEY_READY, ready)).await;
    }

    /// Publishes the nodes the cluster was formed with.
    pub async fn set_formed_with(&self, members: &[NodeId]) {
        let value = formed_with_value(members);
        self.update_self(|state| {
            if members.is_empty() {
                if state.get(KEY_FORMED_WITH).is_some() {
                    state.delete(KEY_FORMED_WITH);
                }
            } else if state.get(KEY_FORMED_WITH) != Some(value.as_str()) {
                state.set(KEY_FORMED_WITH, &value);
            }
        })
        .await;
    }

    /// Publishes the shards this node leads, replacing the previous set: keys of shards no
    /// longer led are deleted, changed terms updated, unchanged ones left alone (so they cost
    /// no gossip).
    pub async fn set_leads(&self, leads: &[(ShardId, Term)]) {
        let with_isr: Vec<(ShardId, Term, Vec<NodeId>)> =
            leads.iter().map(|(s, t)| (*s, *t, Vec::new())).collect();
        self.set_leadership(&with_isr).await;
    }

    /// [`Gossip::set_leads`] with each led shard's in-sync replicas, so nodes that do not hold a
    /// shard (or follow it) can report its ISR.
    pub async fn set_leadership(&self, leads: &[(ShardId, Term, Vec<NodeId>)]) {
        let wanted: BTreeMap<String, String> = leads
            .iter()
            .map(|(shard, term, isr)| (leader_key(*shard), leader_value(*term, Some(isr))))
            .collect();
        self.update_self(|state| {
            let stale: Vec<String> = state
                .iter_prefix(LEADER_PREFIX)
                .map(|(key, _)| key.to_owned())
                .filter(|key| !wanted.contains_key(key))
                .collect();
            for key in stale {
                state.delete(&key);
            }
            for (key, value) in &wanted {
                if state.get(key) != Some(value.as_str()) {
                    state.set(key, value);
                }
            }
        })
        .await;
    }

    /// Publishes (or changes) the client address of one named listener, `host:port`.
    pub async fn set_listener(&self, name: &str, addr: &str) -> Result<(), GossipError> {
        check_label(name)?;
        check_listener_addr(addr)?;
        self.update_self(|state| state.set(listener_key(name), addr))
            .await;
        Ok(())
    }

    /// Publishes this node's rack, or removes it.
    pub async fn set_rack(&self, rack: Option<&str>) -> Result<(), GossipError> {
        if let Some(rack) = rack {
            check_label(rack)?;
        }
        self.update_self(|state| match rack {
            Some(rack) => state.set(KEY_RACK, rack),
            None if state.contains_key(KEY_RACK) => state.delete(KEY_RACK),
            None => {}
        })
        .await;
        Ok(())
    }

    /// Stops gossiping. Others see this node's heartbeats stop.
    pub async fn shutdown(mut self) -> Result<(), GossipError> {
        if let Some(task) = self.refresh_task.take() {
            task.abort_and_wait().await;
        }
        match self.handle.take() {
            Some(handle) => handle
                .shutdown()
                .await
                .map_err(|e| GossipError::Start(format!("gossip stopped with an error: {e:#}"))),
            None => Ok(()),
        }
    }

    async fn update_self(&self, change: impl FnOnce(&mut chitchat::NodeState)) {
        change(self.chitchat.lock().await.self_node_state());
        self.refresh.notify_one();
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        // Dropping the handle does not stop chitchat's task; abort it so the UDP socket closes.
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

fn check_label(label: &str) -> Result<(), GossipError> {
    if label.is_empty() || label.len() > MAX_LABEL_BYTES {
        return Err(GossipError::InvalidConfig(format!(
            "name {label:?} must be 1 to {MAX_LABEL_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_listener_addr(addr: &str) -> Result<(), GossipError> {
    if addr.len() > MAX_LABEL_BYTES || !is_host_port(addr) {
        return Err(GossipError::InvalidConfig(format!(
            "listener address {addr:?} is not host:port"
        )));
    }
    Ok(())
}

/// Copies what the view needs out of chitchat, so its lock is held only for the copy.
fn observe(chitchat: &Chitchat) -> Vec<Observed> {
    let self_id = chitchat.self_chitchat_id();
    let live: std::collections::HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    chitchat
        .node_states()
        .iter()
        .map(|(id, state)| Observed {
            identity: Identity {
                name: id.node_id.to_string(),
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr,
            },
            heartbeat: u64::from(state.heartbeat()),
            live: live.contains(id),
            is_self: id == self_id,
            key_values: state
                .key_values()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
        .collect()
}

async fn refresh_loop(
    chitchat: Arc<Mutex<Chitchat>>,
    mut tracker: ViewTracker,
    view_tx: watch::Sender<Arc<ClusterView>>,
    refresh: Arc<Notify>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = refresh.notified() => {}
        }
        let observed = observe(&*chitchat.lock().await);
        let view = tracker.update(Instant::now(), &observed);
        view_tx.send_if_modified(|current| {
            if **current == view {
                return false;
            }
            *current = Arc::new(view);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GossipConfig {
        GossipConfig::new(
            "c",
            1,
            1,
            SocketAddr::from(([127, 0, 0, 1], 7000)),
            SocketAddr::from(([127, 0, 0, 1], 9093)),
        )
    }

    /// One way to break a valid config.
    type Breakage = Box<dyn Fn(&mut GossipConfig)>;

    #[test]
    fn config_validation_refuses_what_gossip_cannot_run_with() {
        assert!(valid().validate().is_ok());
        let cases: Vec<(&str, Breakage)> = vec![
            (
                "wildcard advertise",
                Box::new(|c| c.listen_addr = SocketAddr::from(([0, 0, 0, 0], 7000))),
            ),
            (
                "wildcard peer address",
                Box::new(|c| c.peer_addr = SocketAddr::from(([0, 0, 0, 0], 9093))),
            ),
            (
                "listener without port",
                Box::new(|c| {
                    c.listeners.insert("plain".into(), "localhost".into());
                }),
            ),
            (
                "forget before dead",
                Box::new(|c| c.forget_dead_after = c.node_dead_after),
            ),
            (
                "zero interval",
                Box::new(|c| c.gossip_interval = Duration::ZERO),
            ),
            ("nan phi", Box::new(|c| c.phi_threshold = f64::NAN)),
            (
                "long rack",
                Box::new(|c| c.rack = Some("r".repeat(MAX_LABEL_BYTES + 1))),
            ),
        ];
        for (what, break_it) in cases {
            let mut config = valid();
            break_it(&mut config);
            assert!(config.validate().is_err(), "{what} accepted");
        }
        // A wildcard listen address is fine with a concrete advertise address.
        let mut config = valid();
        config.listen_addr = SocketAddr::from(([0, 0, 0, 0], 7000));
        config.advertise_addr = Some(SocketAddr::from(([10, 0, 0, 3], 7000)));
        assert!(config.validate().is_ok());
    }
}
