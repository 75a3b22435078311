//! `GET /health` and `GET /ready`, and [`check_ready`], the client behind `jet check --ready`
//! for images that have no curl.
//!
//! - **health** answers 200 while the process serves HTTP at all: a liveness probe.
//! - **ready** answers 200 when this node can serve clients: it has the cluster metadata (the
//!   metadata shard has a leader) and every one of its shards has a leader, and it is not
//!   stopping; otherwise 503 with the reasons. On a single node every shard's leader is this
//!   node, so "has a leader" is "this node leads it". A node that follows shards of a cluster
//!   will also have to report their replication lag here; the replication layer does not expose
//!   it yet.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::error::json_with;
use crate::AppState;

const JSON: &str = "application/json";

/// `GET /health`.
pub async fn health(State(app): State<AppState>) -> Response {
    json_with(
        StatusCode::OK,
        &json!({"status": "ok", "node_id": app.node.node_id()}),
        JSON,
    )
}

/// `GET /ready`.
pub async fn ready(State(app): State<AppState>) -> Response {
    let shards = shard_states(&app);
    let mut reasons: Vec<String> = shards
        .iter()
        .filter(|s| !s["has_leader"].as_bool().unwrap_or(false))
        .map(|s| format!("shard {} has no leader", s["shard"]))
        .collect();
    if app.stopping.load(Ordering::Acquire) {
        reasons.push("the node is stopping".into());
    }
    let (status, word) = if reasons.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    json_with(
        status,
        &json!({"status": word, "node_id": app.node.node_id(), "reasons": reasons, "shards": shards}),
        JSON,
    )
}

/// Every shard this node holds (0 is the metadata shard): whether it has a leader, which node,
/// its term and its replicas.
pub fn shard_states(app: &AppState) -> Vec<Value> {
    let data_shards = app
        .node
        .metadata()
        .data_shards
        .max(app.node.config().data_shards);
    (0..=data_shards)
        .filter_map(|id| app.node.shard_status(id))
        .filter(|s| s.local.load(Ordering::Acquire))
        .map(|s| {
            let leader = app.node.shard_leader(s.id).map(|(node, _)| node);
            let term = s.term.load(Ordering::Acquire);
            json!({
                "shard": s.id,
                "kind": if s.id == 0 { "metadata" } else { "data" },
                "has_leader": leader.is_some(),
                "leader": leader,
                "term": term,
                "replicas": app.node.shard_replicas(s.id),
                "isr": app.node.shard_isr(s.id),
            })
        })
        .collect()
}

/// How long `jet check` waits for the answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `GET {path}` of the listener at `addr` (HOST:PORT) with plain HTTP/1.0 over TCP: the
/// status code and body.
pub fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, CHECK_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(CHECK_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CHECK_TIMEOUT)))
        .map_err(|e| format!("socket: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    // Bounded: a health answer is small; more than this is not ours.
    stream
        .take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read from {addr}: {e}"))?;
    parse_response(&raw)
}

/// The status code and body of a raw HTTP/1.x response.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let code = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code
            .parse::<u16>()
            .map_err(|_| format!("bad status line '{status_line}'"))?,
        _ => return Err(format!("not an HTTP response: '{status_line}'")),
    };
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// `jet check --ready`: Ok with the body when `/ready` answers 200.
pub fn check_ready(addr: &str) -> Result<String, String> {
    match get(addr, "/ready")? {
        (200, body) => Ok(body),
        (code, body) => Err(format!("not ready (HTTP {code}): {}", body.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let (code, body) =
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!((code, body.as_str()), (503, "{\"x\":1}"));
        assert!(parse_response(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_response(b"HTTP/1.1 abc").is_err());
        assert!(parse_response(b"").is_err());
    }

    #[test]
    fn check_fails_without_a_listener() {
        // Port 1 on loopback: nothing listens there in a test environment.
        assert!(check_ready("127.0.0.1:1").is_err());
        assert!(check_ready("no-such-host.invalid:80").is_err());
    }
}
