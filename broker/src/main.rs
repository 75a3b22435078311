//! `jet`: the broker binary. Parses flags ([`config`]), binds the Kafka listener, starts the
//! replication layer ([`jet_replication::Node`]), serves Kafka clients ([`jet_kafka::run`]) until
//! SIGINT or SIGTERM, then stops the server before the node so that no request is cut off between
//! its commit and its reply.
//!
//! Start-up order, and why:
//! 1. flags — a bad flag is one line on stderr, before anything touches the disk;
//! 2. bind — every Kafka listener (`--listen` and each `--listener NAME=HOST:PORT`); an address
//!    in use fails fast, before RocksDB is opened;
//! 3. cluster id — read from (or created once in) `<data-dir>/cluster_id`;
//! 4. node — opens RocksDB, restores every shard, waits for their leaders;
//! 5. serve — `jet listening on ADDR` is logged when clients can be answered; the HTTP listener
//!    ([`http`]: health, metrics, REST, console) serves next to the Kafka server.
//!
//! `jet check [--ready]` probes a running node's HTTP listener instead ([`http::check`]).

mod cluster;
mod config;
mod http;
mod identity;

use identity::{load_or_create_cluster_id, load_or_create_node_id};

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::oneshot;

use config::Args;

/// How long a stop may take before the process exits without finishing it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a clean stop waits for the shards this node leads to get other leaders.
const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the runtime may take to drop its remaining tasks once everything has stopped.
const RUNTIME_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return flag_error(e),
    };
    if let Some(config::Command::Check { ready }) = args.command {
        return http::check(&args, ready);
    }
    // Listener flags are checked together (names, duplicates), still before anything starts.
    let listeners = match args.kafka_listeners() {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("jet: {e} (see jet --help)");
            return ExitCode::from(2);
        }
    };
    init_logging(&args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("jet-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(args, listeners));
    // Tasks still parked on the runtime (idle connections' leftovers, timers) are dropped; a
    // blocking task that does not return in time is abandoned rather than holding the exit.
    runtime.shutdown_timeout(RUNTIME_EXIT_TIMEOUT);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined, so scripts and tests can match it.
            eprintln!("jet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a clap error as one plain line (help and version go out whole, with exit 0).
fn flag_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("bad command line");
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("jet: {line} (see jet --help)");
            ExitCode::from(2)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; files, pipes and `docker logs` get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}

async fn serve(args: Args, listeners: config::Listeners) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local_addr = listener
        .local_addr()
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The named listeners, bound now too so that an address in use fails before the disk is
    // touched; their real addresses (a port of 0 resolved) go to the server's settings.
    let mut kafka_listeners = vec![(jet_kafka::DEFAULT_LISTENER.to_string(), listener)];
    let mut named = Vec::new();
    for (l, advertise) in &listeners.named {
        let bound = tokio::net::TcpListener::bind(l.addr)
            .await
            .with_context(|| format!("cannot listen on {} (listener {})", l.addr, l.name))?;
        let addr = bound
            .local_addr()
            .with_context(|| format!("cannot listen on {} (listener {})", l.addr, l.name))?;
        named.push(jet_kafka::ListenerConfig {
            name: l.name.clone(),
            listen: addr,
            advertise: advertise.clone(),
        });
        kafka_listeners.push((l.name.clone(), bound));
    }
    let http_listener = http::bind(&args).await?;
    let metrics = http::install_metrics(http_listener.is_some());

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    // RocksDB's CURRENT file: a directory without it holds no node yet.
    let new_node = !args.data_dir.join("CURRENT").exists();
    let cluster_id =
        load_or_create_cluster_id(&args.data_dir, args.cluster_id.as_deref(), args.clustered())?;
    let node_id = load_or_create_node_id(&args.data_dir, args.node_id, args.clustered())?;

    // Signals are watched from here on: a SIGTERM while the node starts stops it right after.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(watch_signals(stop_tx));

    tracing::info!(
        node_id,
        data_dir = %args.data_dir.display(),
        shards = args.shards,
        fsync = ?args.fsync,
        cluster_id = %cluster_id,
        clustered = args.clustered(),
        "starting node"
    );
    let mut node_config = args.node_config();
    node_config.node_id = node_id;
    let (node, cluster, fatal) = if args.clustered() {
        let kafka_addr = match &listeners.advertise {
            Some(a) => a.clone(),
            None if !local_addr.ip().is_unspecified() => {
                (local_addr.ip().to_string(), local_addr.port())
            }
            None => anyhow::bail!(
                "--listen {local_addr} is a wildcard address: in a cluster, set --advertise to the address clients dial"
            ),
        };
        // What gossip publishes per listener: the default one and every named one that has an
        // address others can give out.
        let mut published = vec![(jet_kafka::DEFAULT_LISTENER.to_string(), kafka_addr)];
        for l in &named {
            match &l.advertise {
                Some(a) => published.push((l.name.clone(), a.clone())),
                None if !l.listen.ip().is_unspecified() => {
                    published.push((l.name.clone(), (l.listen.ip().to_string(), l.listen.port())))
                }
                None => tracing::warn!(
                    listener = %l.name,
                    listen = %l.listen,
                    "listener on a wildcard address without --advertise {}=HOST:PORT: its clients are given the other brokers' --advertise addresses",
                    l.name
                ),
            }
        }
        let formed = cluster::form(&args, node_id, &cluster_id, published, new_node).await?;
        if !formed.members.is_empty() {
            node_config.data_shards = jet_replication::placement::data_shard_count(
                args.shards,
                formed.members.len(),
                args.replication_factor as usize,
            );
            node_config.members = formed.members.clone();
        }
        if let Some(shards) = formed.joined_shards {
            node_config.data_shards = shards;
        }
        // A clustered node makes shards only when it forms the cluster now. Joining (seeds
        // without --bootstrap-expect, or a running cluster found) or restarting, it never does:
        // also not when it restarts before its first snapshot arrived, or crashed between
        // creating its store and writing its first shards (it would form a cluster of one).
        node_config.join = node_config.members.is_empty();
        let node = jet_replication::Node::start_clustered(node_config, Some(formed.network))
            .await
            .context("cannot start the node")?;
        formed.cluster.attach(node.clone()).await;
        (node, Some(formed.cluster), Some(formed.fatal))
    } else {
        let node = jet_replication::Node::start(node_config)
            .await
            .context("cannot start the node")?;
        (node, None, None)
    };

    let server_config = jet_kafka::ServerConfig {
        listen: local_addr,
        advertise: listeners.advertise.clone(),
        listeners: named.clone(),
        cluster_id: cluster_id.clone(),
        max_request_bytes: args.max_request_bytes as usize,
        max_connections: args.max_connections as usize,
        max_in_flight_per_connection: args.max_in_flight as usize,
        auto_create_topics: args.auto_create_topics,
        default_partitions: args.default_partitions,
        default_replication_factor: args.default_replication_factor,
        rack: args.rack.clone(),
        faults: Arc::new(args.faults()),
        groups: args.group_config(),
    };
    if args.fault_drop_produce_responses > 0 {
        tracing::warn!(
            drop_produce_responses = args.fault_drop_produce_responses,
            every = args.fault_drop_every,
            "fault injection enabled: produce responses will be dropped (test only)"
        );
    }

    tracing::info!(
        addr = %local_addr,
        advertise = ?listeners.advertise,
        node_id,
        cluster_id = %cluster_id,
        "jet listening on {local_addr}"
    );
    for l in &named {
        tracing::info!(
            listener = %l.name,
            addr = %l.listen,
            advertise = ?l.advertise,
            "jet listening on {} (listener {})",
            l.listen,
            l.name
        );
    }
    let server = Arc::new(
        jet_kafka::Server::start(server_config, node.clone(), local_addr)
            .await
            .context("cannot start the kafka server")?,
    );
    let http =
        http_listener.map(|l| http::start(&args, l, server.clone(), node.clone(), metrics.clone()));
    let readiness = http.as_ref().map(http::Http::readiness);
    // Fail fast: if the node's driver stops (a storage error, a failed assertion), the process
    // stops serving and exits non-zero, so a supervisor restarts it and replay makes it exact.
    let (failed_tx, failed_rx) = oneshot::channel::<String>();
    let watched = node.clone();
    let shutdown = async move {
        let fatal = async {
            match fatal {
                Some(rx) => match rx.await {
                    Ok(cause) => cause,
                    // The gossip task ended without a verdict (shutdown): nothing to report.
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let failure = tokio::select! {
            _ = stop_rx => {
                // A clean stop: leadership moves to the other replicas while this node still
                // answers, so clients see retriable NOT_LEADER errors rather than timeouts.
                watched.hand_off_leadership(HAND_OFF_TIMEOUT).await;
                None
            }
            cause = watched.failed() => Some(cause),
            cause = fatal => Some(cause),
        };
        // Readiness fails as soon as the stop begins, while the servers finish their requests.
        if let Some(app) = readiness {
            app.set_stopping();
        }
        if let Some(cause) = failure {
            let _ = failed_tx.send(cause);
        }
    };
    let served = server.serve_listeners(kafka_listeners, shutdown).await;
    if let Some(http) = http {
        http.stop().await;
    }

    tracing::info!("kafka server stopped; stopping node");
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, node.shutdown()).await {
        Ok(()) => tracing::info!("node stopped"),
        Err(_) => tracing::warn!(
            timeout_ms = SHUTDOWN_TIMEOUT.as_millis() as u64,
            "node did not stop in time; exiting anyway"
        ),
    }
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    if let Ok(cause) = failed_rx.await {
        anyhow::bail!("the node stopped serving: {cause}");
    }
    served.context("kafka server failed")?;
    Ok(())
}

/// Resolves `stop` on the first SIGINT or SIGTERM. A second signal while stopping exits at once
/// (an operator who presses Ctrl-C twice means it); the data stays consistent because every
/// acknowledged write is already in the Raft log.
async fn watch_signals(stop: oneshot::Sender<()>) {
    let first = next_signal().await;
    tracing::info!(signal = first, "stopping; a second signal exits at once");
    let _ = stop.send(());
    let second = next_signal().await;
    tracing::warn!(
        signal = second,
        "second signal; exiting without a clean stop"
    );
    std::process::exit(130);
}

/// Waits for SIGINT or SIGTERM and names it.
async fn next_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
