//! The Kafka protocol server: connections, dispatch, one handler per API.
//!
//! Map of the crate:
//! - [`server`] — [`run`]: the accept loop, the connection limit and graceful shutdown.
//! - [`connection`] — one client connection: the read buffer, framing, pipelined requests whose
//!   responses leave in request order.
//! - [`handlers`] — the registry of APIs and the one dispatch `match`; one file per Kafka API.
//! - [`error_map`] — the one mapping from replication and record-batch errors to Kafka codes.
//! - [`config`] — [`ServerConfig`], the server's settings and limits.
//! - [`error`] — [`RequestError`], the failures that close a connection.
//! - [`fault`] — [`fault::FaultInjector`], test-only dropping of produce responses.
//! - [`metrics`] — request, connection and byte counters through the `metrics` facade.
//!
//! In-process callers (the HTTP layer) get the same handlers through [`Server::context`] and
//! [`handlers::call`].
//!
//! The data path of one request: `connection` reads a frame whose size was checked before the body
//! was read (`jet_protocol::frame`), `handlers::decode_request` decodes it, `handlers::dispatch`
//! runs its handler as its own future next to the connection's other requests, and the encoded
//! response is written when every earlier response has been. A Produce is split in two
//! (`handlers::start`/`handlers::finish`): its appends are handed to the shards in arrival order
//! before the next request is read, and only the wait for their commit runs concurrently.

pub mod config;
pub mod connection;
pub mod error;
pub mod error_map;
pub mod fault;
pub mod handlers;
pub mod metrics;
pub mod server;

pub use config::{ListenerConfig, ServerConfig, DEFAULT_LISTENER};
pub use error::RequestError;
pub use fault::FaultInjector;
pub use server::{run, Server};
