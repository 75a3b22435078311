//! [`run`]: the accept loop.
//!
//! Shaped like mini-redis's `server.rs`: a semaphore caps open connections (a permit is taken
//! *before* `accept`, so excess clients wait in the kernel backlog instead of costing a task and a
//! buffer each), accept errors back off instead of spinning, and shutdown is a broadcast every
//! connection listens to. On shutdown the server stops accepting, each connection stops reading
//! and finishes the requests it already has, and after [`SHUTDOWN_GRACE`] whatever is left is
//! dropped.
//!
//! **Listeners.** [`Server::serve_listeners`] accepts on several named listeners at once (the
//! default one and every `--listener NAME=HOST:PORT`), under one connection limit; each
//! connection's [`Ctx::listener`] names the listener it came in on, so Metadata answers with the
//! addresses of that listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use jet_replication::Node;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{ServerConfig, DEFAULT_LISTENER};
use crate::connection;
use crate::handlers::Ctx;

/// How long in-flight requests may take to finish once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Longest pause after repeated accept errors (such as running out of file descriptors).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves Kafka clients on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (up to [`SHUTDOWN_GRACE`]) and returns.
pub async fn run(
    config: ServerConfig,
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Server::start(config, node, listener.local_addr()?)
        .await?
        .serve(listener, shutdown)
        .await
}

/// The Kafka server's shared state: settings, node and the one group coordinator. Built before
/// the listener serves so that in-process callers (the HTTP layer) share the coordinator with the
/// Kafka clients: group membership lives in that coordinator's memory.
pub struct Server {
    config: Arc<ServerConfig>,
    node: Arc<Node>,
    groups: Arc<jet_groups::Coordinator>,
}

impl Server {
    /// Starts the group coordinator (restoring every group from the store). `listen` is the
    /// address the Kafka listener is bound to; it replaces `config.listen`, so a port of 0 is
    /// resolved for everyone who reads it (the advertised address among them).
    pub async fn start(
        mut config: ServerConfig,
        node: Arc<Node>,
        listen: SocketAddr,
    ) -> std::io::Result<Server> {
        config.listen = listen;
        let groups =
            jet_groups::Coordinator::start_with_config(node.clone(), config.groups.clone())
                .await
                .map_err(|e| {
                    std::io::Error::other(format!("cannot start the group coordinator: {e}"))
                })?;
        Ok(Server {
            config: Arc::new(config),
            node,
            groups,
        })
    }

    /// A handler context for a request made inside the process on behalf of `peer_addr`: it
    /// answers as if the client had dialled the Kafka listener.
    pub fn context(&self, peer_addr: SocketAddr) -> Ctx {
        Ctx {
            node: self.node.clone(),
            config: self.config.clone(),
            local_addr: self.config.listen,
            peer_addr,
            listener: Arc::from(DEFAULT_LISTENER),
            groups: self.groups.clone(),
        }
    }

    /// The server settings (with the listen address resolved).
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Serves Kafka clients on `listener` (the default listener) until `shutdown` resolves,
    /// then lets in-flight requests finish (up to [`SHUTDOWN_GRACE`]) and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_listeners(vec![(DEFAULT_LISTENER.to_string(), listener)], shutdown)
            .await
    }

    /// Serves Kafka clients on every `(name, listener)` until `shutdown` resolves, then lets
    /// in-flight requests finish (up to [`SHUTDOWN_GRACE`]) and returns. Each name other than
    /// [`DEFAULT_LISTENER`] should be one of `config.listeners`, bound where it says.
    pub async fn serve_listeners(
        &self,
        listeners: Vec<(String, TcpListener)>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listeners: Vec<(Arc<str>, TcpListener)> = listeners
            .into_iter()
            .map(|(name, l)| (Arc::from(name), l))
            .collect();
        // Where the next accept starts looking, so a busy listener cannot starve the others.
        let mut next_first = 0usize;
        let config = self.config.clone();
        let node = self.node.clone();
        let groups = self.groups.clone();
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        tokio::pin!(shutdown);

        loop {
            // Reap finished connections so the set does not grow with every client ever served.
            while tasks.try_join_next().is_some() {}

            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is never closed; if it were, no connection could be served.
                    Err(_) => break,
                },
            };
            let (which, accepted) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = accept_any(&listeners, next_first) => accepted,
            };
            next_first = which + 1;
            let listener_name = listeners[which].0.clone();
            let (socket, peer_addr) = match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(10);
                    accepted
                }
                Err(e) => {
                    // EMFILE, ECONNABORTED and friends: none is a reason to stop serving the
                    // clients already connected, so wait a little and try again.
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let local_addr = match socket.local_addr() {
                Ok(addr) => addr,
                Err(e) => {
                    tracing::debug!(peer = %peer_addr, error = %e, "connection gone before it was served");
                    continue;
                }
            };
            if let Err(e) = socket.set_nodelay(true) {
                tracing::debug!(peer = %peer_addr, error = %e, "cannot set TCP_NODELAY");
            }
            let ctx = Ctx {
                node: node.clone(),
                config: config.clone(),
                local_addr,
                peer_addr,
                listener: listener_name,
                groups: groups.clone(),
            };
            let stop = stop_rx.clone();
            let open = crate::metrics::OpenConnection::new();
            tasks.spawn(async move {
                connection::serve(socket, ctx, stop).await;
                drop(open);
                drop(permit);
            });
        }

        tracing::info!(
            connections = tasks.len(),
            "kafka server stops accepting; finishing in-flight requests"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = tasks.len(),
                grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                "connections still busy after the shutdown grace period; dropping them"
            );
            tasks.shutdown().await;
        }
        Ok(())
    }
}

/// Accepts the next connection on any of `listeners`, looking at them from `first` on; returns
/// the index of the listener with the outcome. Cancel-safe, as `TcpListener::accept` is.
async fn accept_any(
    listeners: &[(Arc<str>, TcpListener)],
    first: usize,
) -> (usize, std::io::Result<(tokio::net::TcpStream, SocketAddr)>) {
    let n = listeners.len();
    if n == 0 {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for k in 0..n {
            let i = (first + k) % n;
            if let Poll::Ready(r) = listeners[i].1.poll_accept(cx) {
                return Poll::Ready((i, r));
            }
        }
        Poll::Pending
    })
    .await
}
