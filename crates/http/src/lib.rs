//! The HTTP listener of a node: health and readiness, Prometheus metrics, a REST API compatible
//! with the Confluent REST Proxy v2, and a web console. Built on `axum`; docs/http.md lists every
//! route. The listener has no authentication, which is why it binds 127.0.0.1 by default.
//!
//! Map of the crate:
//! - [`config`] — [`HttpConfig`]: address and the limits (body size, records, waits, idle
//!   consumers).
//! - [`error`] — [`HttpError`], every refusal as the proxy's JSON error (`error_code`,
//!   `message`), and the middleware that turns any other 4xx/5xx (a rejected path, a body over
//!   the limit, an unknown route) into that JSON too.
//! - [`health`] — `GET /health`, `GET /ready`, and [`health::check_ready`] behind `jet check`.
//! - [`metrics`] — the Prometheus recorder, `GET /metrics`, and the gauges computed at scrape
//!   time (consumer groups, process).
//! - [`process`] — RSS and CPU time from `/proc`.
//! - [`kafka`] — [`kafka::Kafka`], the in-process Kafka client: it builds `kafka-protocol`
//!   requests and runs them through `jet_kafka::handlers::call`, the dispatch Kafka clients go
//!   through, so REST requests get the same validation, limits, metrics and (later) routing.
//! - [`records`] — the embedded formats (binary, json): request bodies in, record batches out,
//!   and fetched batches back to JSON.
//! - [`params`] — query strings and path values, validated into typed values.
//! - [`topics`], [`produce`], [`read`] — topic listing, produce, the stateless read.
//! - [`consumers`] — consumer instances in a group (create, subscribe or assign, delete) and
//!   their idle cleanup; [`consumer_io`] their records, commits, offsets and seeks; [`member`]
//!   runs one instance's group membership through JoinGroup/SyncGroup/Heartbeat.
//! - [`console`] — the web console (HTML, CSS and JavaScript compiled into the binary) and the
//!   JSON it reads.

pub mod config;
pub mod console;
pub mod consumer_io;
pub mod consumers;
pub mod error;
pub mod groups;
pub mod health;
pub mod kafka;
pub mod member;
pub mod metrics;
pub mod params;
pub mod process;
pub mod produce;
pub mod read;
pub mod records;
pub mod topics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use config::HttpConfig;
pub use error::HttpError;

/// What every route handler shares.
pub struct App {
    /// Limits and settings.
    pub config: HttpConfig,
    /// The in-process Kafka client.
    pub kafka: Arc<kafka::Kafka>,
    /// The node (shard status for readiness and the console).
    pub node: Arc<jet_replication::Node>,
    /// Rendering of the metrics; `None` when no recorder could be installed here.
    pub metrics: Option<metrics::Metrics>,
    /// Consumer instances created through the REST API.
    pub consumers: consumers::Consumers,
    /// True once the node is stopping: `/ready` answers 503 from then on.
    pub stopping: AtomicBool,
}

/// The shared state as handlers receive it.
pub type AppState = Arc<App>;

impl App {
    /// The state of a listener serving `server`'s node.
    pub fn new(
        config: HttpConfig,
        server: Arc<jet_kafka::Server>,
        node: Arc<jet_replication::Node>,
        metrics: Option<metrics::Metrics>,
    ) -> AppState {
        let consumers =
            consumers::Consumers::new(config.consumer_idle_timeout, config.max_consumers);
        Arc::new(App {
            config,
            kafka: Arc::new(kafka::Kafka::new(server)),
            node,
            metrics,
            consumers,
            stopping: AtomicBool::new(false),
        })
    }

    /// Marks the node as stopping (readiness fails from now on).
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Every route of the listener.
pub fn router(app: AppState) -> Router {
    let body_limit = app.config.max_body_bytes;
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/topics", get(topics::list))
        .route(
            "/topics/{topic}",
            get(topics::describe).post(produce::to_topic),
        )
        .route("/topics/{topic}/partitions", get(topics::partitions))
        .route(
            "/topics/{topic}/partitions/{partition}",
            get(topics::partition).post(produce::to_partition),
        )
        .route(
            "/topics/{topic}/partitions/{partition}/records",
            get(read::records),
        )
        .route("/consumers/{group}", post(consumers::create))
        .route(
            "/consumers/{group}/instances/{instance}",
            axum::routing::delete(consumers::delete),
        )
        .route(
            "/consumers/{group}/instances/{instance}/subscription",
            get(consumers::subscription)
                .post(consumers::subscribe)
                .delete(consumers::unsubscribe),
        )
        .route(
            "/consumers/{group}/instances/{instance}/assignments",
            get(consumers::assignments).post(consumers::assign),
        )
        .route(
            "/consumers/{group}/instances/{instance}/records",
            get(consumer_io::records),
        )
        .route(
            "/consumers/{group}/instances/{instance}/offsets",
            post(consumer_io::commit).get(consumer_io::committed),
        )
        .route(
            "/consumers/{group}/instances/{instance}/positions",
            post(consumer_io::seek),
        )
        .route(
            "/consumers/{group}/instances/{instance}/positions/beginning",
            post(consumer_io::seek_to_beginning),
        )
        .route(
            "/consumers/{group}/instances/{instance}/positions/end",
            post(consumer_io::seek_to_end),
        )
        .merge(console::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

/// Serves HTTP on `listener` until `shutdown` resolves. Consumer instances idle past their
/// timeout are removed in the background meanwhile; at shutdown every instance leaves its group.
pub async fn serve(
    app: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reaper = tokio::spawn(consumers::reap_idle(app.clone()));
    let upkeep = app.metrics.clone().map(|m| tokio::spawn(m.upkeep()));
    let service = router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    reaper.abort();
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    app.consumers.close_all(&app.kafka).await;
    served
}
