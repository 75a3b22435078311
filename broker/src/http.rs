//! The broker's side of the HTTP listener (`jet-http`): binding it, installing the metrics
//! recorder, serving it next to the Kafka server, stopping it, and `jet check`.
//!
//! Kept out of `main.rs` so the start-up sequence there stays a list of steps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Args;

/// How long in-flight HTTP requests (a long-polling read among them) may take once stopping.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Binds the HTTP listener unless it is off, so an address in use fails before the disk is
/// touched, like the Kafka listener.
pub async fn bind(args: &Args) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = args.http_listen.0 else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Some(listener))
}

/// Installs the Prometheus recorder when the listener is on; before the node starts, so the
/// replication layer's metrics are recorded from its first entry.
pub fn install_metrics(enabled: bool) -> Option<jet_http::metrics::Metrics> {
    if !enabled {
        return None;
    }
    match jet_http::metrics::install() {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics will lack request metrics");
            None
        }
    }
}

/// A running HTTP listener.
pub struct Http {
    app: jet_http::AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Starts serving `listener`.
pub fn start(
    args: &Args,
    listener: tokio::net::TcpListener,
    server: Arc<jet_kafka::Server>,
    node: Arc<jet_replication::Node>,
    metrics: Option<jet_http::metrics::Metrics>,
) -> Http {
    let app = jet_http::App::new(args.http_config(), server, node, metrics);
    let (stop, mut stopped) = watch::channel(false);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(addr = %addr, "http listening on {addr} (no authentication)");
    }
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let task = tokio::spawn(jet_http::serve(app.clone(), listener, shutdown));
    Http { app, stop, task }
}

impl Http {
    /// Fails readiness at once (load balancers stop sending), then stops serving: in-flight
    /// requests get [`STOP_GRACE`], REST consumers leave their groups.
    pub async fn stop(mut self) {
        self.app.set_stopping();
        let _ = self.stop.send(true);
        match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!("http listener stopped"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "http listener failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "http listener task failed"),
            Err(_) => {
                tracing::warn!("http requests still running after the grace period; dropping them");
                self.task.abort();
            }
        }
    }

    /// The listener's state, to mark the node as stopping (readiness answers 503) from the
    /// moment the stop begins.
    pub fn readiness(&self) -> jet_http::AppState {
        self.app.clone()
    }
}

/// `jet check [--ready]`: exit 0 when the node's listener says alive (ready), 1 when not, 2 when
/// the listener is off.
pub fn check(args: &Args, ready: bool) -> ExitCode {
    let Some(addr) = args.http_listen.0 else {
        eprintln!("jet: --http-listen is off; there is nothing to check");
        return ExitCode::from(2);
    };
    let addr = dialable(addr).to_string();
    let result = if ready {
        jet_http::health::check_ready(&addr)
    } else {
        match jet_http::health::get(&addr, "/health") {
            Ok((200, body)) => Ok(body),
            Ok((code, body)) => Err(format!("not healthy (HTTP {code}): {}", body.trim())),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(body) => {
            println!("{}", body.trim());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jet: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A wildcard listen address is dialled on loopback.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_dialled_on_loopback() {
        assert_eq!(
            dialable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            dialable("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            dialable("10.0.0.1:80".parse().unwrap()),
            "10.0.0.1:80".parse().unwrap()
        );
    }
}
