//! [`ServerConfig`]: everything the Kafka listener needs to know that is not the node itself.
//!
//! The broker binary fills it from flags; tests start from [`ServerConfig::new`]. Every limit
//! here is enforced by the server: request size by the framing check before the body is read,
//! connections by the accept loop's semaphore, in-flight requests by each connection's pipeline.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::fault::FaultInjector;

/// The name of the default listener (`--listen`/`--advertise`): what gossip publishes it under
/// (`listener.kafka`), and the one a broker without the listener a client came in on is
/// reported at.
pub const DEFAULT_LISTENER: &str = "kafka";

/// A named listener besides the default one (`--listener NAME=HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Its name; Metadata on a connection of this listener reports every broker's address for
    /// the listener of the same name.
    pub name: String,
    /// The address it is bound to (the real one: a port of 0 resolved).
    pub listen: SocketAddr,
    /// Host and port its clients are told to dial; `None` as for [`ServerConfig::advertise`].
    pub advertise: Option<(String, u16)>,
}

/// Settings of the Kafka server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address the listener is bound to. [`crate::run`] replaces it with the listener's real
    /// local address, so a port of 0 is resolved before any handler reads it.
    pub listen: SocketAddr,
    /// Host and port clients are told to dial (Metadata, FindCoordinator, DescribeCluster).
    /// `None` advertises the listen address, or the address the client dialled when listening on
    /// a wildcard address.
    pub advertise: Option<(String, u16)>,
    /// Named listeners besides the default one (named [`DEFAULT_LISTENER`]), bound to their
    /// real addresses before the server starts.
    pub listeners: Vec<ListenerConfig>,
    /// The cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Largest request accepted, size prefix excluded (Kafka's `socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Most client connections open at once; further connections wait in the accept backlog.
    pub max_connections: usize,
    /// Most requests one connection may have in progress; the connection stops reading until a
    /// response has been written (Kafka's `max.in.flight.requests.per.connection` seen from the
    /// server side).
    pub max_in_flight_per_connection: usize,
    /// Create unknown topics named by a Metadata request that allows it.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub default_partitions: i32,
    /// Replication factor of an auto-created topic.
    pub default_replication_factor: i16,
    /// This node's rack, reported in Metadata.
    pub rack: Option<String>,
    /// Test-only fault injection; inert by default.
    pub faults: Arc<FaultInjector>,
    /// Consumer group coordinator settings (rebalance delay, offset retention, limits).
    pub groups: jet_groups::GroupConfig,
}

impl ServerConfig {
    /// Kafka's defaults for a server listening on `listen`: 100 MiB requests, auto-created
    /// topics with one partition and one replica.
    pub fn new(listen: SocketAddr, cluster_id: impl Into<String>) -> Self {
        Self {
            listen,
            advertise: None,
            listeners: Vec::new(),
            cluster_id: cluster_id.into(),
            max_request_bytes: 100 << 20,
            max_connections: 10_000,
            max_in_flight_per_connection: 64,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            rack: None,
            faults: Arc::new(FaultInjector::inert()),
            groups: jet_groups::GroupConfig::default(),
        }
    }

    /// The bound address and advertised address of listener `name`; the default listener's for
    /// [`DEFAULT_LISTENER`] or a name the server does not have.
    pub fn listener(&self, name: &str) -> (SocketAddr, Option<&(String, u16)>) {
        match self.listeners.iter().find(|l| l.name == name) {
            Some(l) => (l.listen, l.advertise.as_ref()),
            None => (self.listen, self.advertise.as_ref()),
        }
    }
}
