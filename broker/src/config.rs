//! The `jet` command line: every flag, its `JET_*` environment variable, its default, and how a
//! parsed command line becomes the settings of the replication layer and of the Kafka server.
//!
//! Flags are checked here, before anything is opened, so a bad value costs one line on stderr
//! and a non-zero exit rather than a half-started node.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

/// Jet: a Kafka-compatible broker. One binary; alone it is a single-node broker.
#[derive(Debug, Clone, Parser)]
#[command(name = "jet", version, long_about = None)]
pub struct Args {
    /// This node's id: the Kafka broker id and the Raft peer id (unset: the id stored in the data
    /// directory; for a new node, 1 alone or a random id in a cluster, then stored)
    #[arg(long, env = "JET_NODE_ID", value_name = "ID",
          value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub node_id: Option<u64>,

    /// Cluster id: nodes gossip and exchange Raft messages only within one cluster id (unset:
    /// the one stored in the data directory; for a new node, a random id alone, or "jet" in a
    /// cluster)
    #[arg(long, env = "JET_CLUSTER_ID", value_name = "ID", value_parser = parse_cluster_id)]
    pub cluster_id: Option<String>,

    /// Address of the peer listener for Raft traffic between nodes (TCP, HOST:PORT); used only
    /// in a cluster (--seeds or --bootstrap-expect)
    #[arg(long, env = "JET_PEER_LISTEN", default_value = "127.0.0.1:9093", value_name = "ADDR",
          value_parser = parse_listen)]
    pub peer_listen: SocketAddr,

    /// HOST:PORT other nodes dial for Raft traffic (unset: --peer-listen)
    #[arg(long, env = "JET_PEER_ADVERTISE", value_name = "HOST:PORT", value_parser = parse_listen)]
    pub peer_advertise: Option<SocketAddr>,

    /// Address of the gossip listener (UDP, HOST:PORT; unset: the --peer-listen address)
    #[arg(long, env = "JET_GOSSIP_LISTEN", value_name = "ADDR", value_parser = parse_listen)]
    pub gossip_listen: Option<SocketAddr>,

    /// Gossip addresses of other nodes to join through, comma-separated HOST:PORT (names are
    /// resolved again while gossiping)
    #[arg(long, env = "JET_SEEDS", value_name = "HOST:PORT,...", value_delimiter = ',',
          value_parser = parse_seed)]
    pub seeds: Vec<String>,

    /// A new cluster of N nodes: each of N nodes started with the same flags waits until N nodes
    /// are visible in gossip, and all derive the same initial replicas; a new node that finds a
    /// cluster formed without it joins it instead. 1 makes a cluster of one that others can
    /// join. Without it, a new node with --seeds joins the seeds' cluster
    #[arg(long, env = "JET_BOOTSTRAP_EXPECT", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub bootstrap_expect: Option<u64>,

    /// Replicas of each data shard in a new cluster (capped by the node count)
    #[arg(long, env = "JET_REPLICATION_FACTOR", default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=7))]
    pub replication_factor: u64,

    /// A node missing from gossip this long is reported dead (e.g. 10m, 30s, 1500ms)
    #[arg(long, env = "JET_NODE_DEAD_AFTER", default_value = "10m", value_name = "DURATION",
          value_parser = parse_duration)]
    pub node_dead_after: Duration,

    /// A follower is in sync while it caught up with its leader within this long, in
    /// milliseconds (Kafka's replica.lag.time.max.ms)
    #[arg(long, env = "JET_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub replica_lag_time_max_ms: u64,

    /// Address of the default Kafka listener, named kafka (HOST:PORT)
    #[arg(long, env = "JET_LISTEN", default_value = "127.0.0.1:9092", value_name = "ADDR",
          value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// HOST:PORT put in Metadata for clients of the --listen listener to dial, or NAME=HOST:PORT
    /// for the listener NAME; repeatable, comma-separated in the variable (unset: the listen
    /// address, or the address the client dialled when listening on 0.0.0.0)
    #[arg(long, env = "JET_ADVERTISE", value_name = "[NAME=]HOST:PORT", value_delimiter = ',',
          value_parser = parse_advertise)]
    pub advertise: Vec<Advertise>,

    /// Another Kafka listener, NAME=HOST:PORT (repeatable, comma-separated in the variable):
    /// Metadata on a connection to it names every broker at its address for NAME (the --listen
    /// one for a broker without it)
    #[arg(long = "listener", env = "JET_LISTENERS", value_name = "NAME=HOST:PORT",
          value_delimiter = ',', value_parser = parse_named_listener)]
    pub listeners: Vec<NamedListen>,

    /// Directory of the node's data (RocksDB and the cluster_id file)
    #[arg(
        long,
        env = "JET_DATA_DIR",
        default_value = "./jet-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Data shards (Raft groups holding partitions) per node: a new cluster has N × nodes ÷ replication factor, and adds shards as nodes join
    #[arg(long, env = "JET_SHARDS", default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: u64,

    /// Durability: fsync every Raft write batch (always), or leave flushing to the OS (never)
    #[arg(long, env = "JET_FSYNC", value_enum, default_value_t = Fsync::Always, value_name = "MODE")]
    pub fsync: Fsync,

    /// Partition count of auto-created topics and of CreateTopics requests that leave it unset
    #[arg(long, env = "JET_DEFAULT_PARTITIONS", default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub default_partitions: i32,

    /// Replication factor of auto-created topics and of CreateTopics requests that leave it unset
    #[arg(long, env = "JET_DEFAULT_REPLICATION_FACTOR", default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(i16).range(1..))]
    pub default_replication_factor: i16,

    /// Create a topic when a client asks for one that does not exist (true or false)
    #[arg(long, env = "JET_AUTO_CREATE_TOPICS", default_value_t = true, value_name = "BOOL",
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_create_topics: bool,

    /// Largest request accepted, in bytes (Kafka's socket.request.max.bytes)
    #[arg(long, env = "JET_MAX_REQUEST_BYTES", default_value_t = 104_857_600, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=i32::MAX as u64))]
    pub max_request_bytes: u64,

    /// Largest record batch accepted, in bytes, when a topic does not set max.message.bytes
    /// (Kafka's message.max.bytes)
    #[arg(long, env = "JET_MAX_BATCH_BYTES", default_value_t = 1_048_588, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(64..=i32::MAX as u64))]
    pub max_batch_bytes: u64,

    /// Open client connections accepted at once
    #[arg(long, env = "JET_MAX_CONNECTIONS", default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections: u64,

    /// Requests processed at once per connection (further requests wait unread)
    #[arg(long, env = "JET_MAX_IN_FLIGHT", default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_in_flight: u64,

    /// Proposals queued for the replication driver before producers are held back
    #[arg(long, env = "JET_MAX_PENDING_PROPOSALS", default_value_t = 8192, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_pending_proposals: u64,

    /// Bytes of produced record batches accepted but not yet applied, node-wide; past it
    /// producers wait (bounds memory whatever clients send)
    #[arg(long, env = "JET_MAX_APPEND_BYTES_IN_FLIGHT", default_value_t = 16 << 20,
          value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..=4_294_967_295))]
    pub max_append_bytes_in_flight: u64,

    /// How often retention.ms and retention.bytes are enforced, in milliseconds (Kafka's
    /// log.retention.check.interval.ms)
    #[arg(long, env = "JET_RETENTION_CHECK_INTERVAL_MS", default_value_t = 300_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..))]
    pub retention_check_interval_ms: u64,

    /// How long a new consumer group waits for more members before its first rebalance, in
    /// milliseconds (Kafka's group.initial.rebalance.delay.ms)
    #[arg(long, env = "JET_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 3000,
          value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub group_initial_rebalance_delay_ms: u64,

    /// How long a partition remembers an idle idempotent producer, in milliseconds (Kafka's
    /// producer.id.expiration.ms)
    #[arg(long, env = "JET_PRODUCER_ID_EXPIRATION_MS", default_value_t = 86_400_000,
          value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub producer_id_expiration_ms: u64,

    /// How long committed offsets of an empty consumer group are kept, in minutes (Kafka's
    /// offsets.retention.minutes)
    #[arg(long, env = "JET_OFFSETS_RETENTION_MINUTES", default_value_t = 10_080,
          value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..=52_560_000))]
    pub offsets_retention_minutes: u64,

    /// Log filter: a level (error, warn, info, debug, trace) or RUST_LOG-style directives such as
    /// "info,jet_replication=debug"
    #[arg(long, env = "JET_LOG_LEVEL", default_value = "info", value_name = "FILTER",
          value_parser = parse_log_filter)]
    pub log_level: String,

    /// Rack of this node, reported in Metadata (Kafka's broker.rack)
    #[arg(long, env = "JET_RACK", value_name = "RACK")]
    pub rack: Option<String>,

    /// Address of the HTTP listener: health, metrics, REST API and console (HOST:PORT, or off);
    /// it has no authentication
    #[arg(long, env = "JET_HTTP_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR",
          value_parser = parse_http_listen, global = true)]
    pub http_listen: HttpListen,

    /// Largest HTTP request body accepted, in bytes
    #[arg(long, env = "JET_HTTP_MAX_BODY_BYTES", default_value_t = 16 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=i32::MAX as u64))]
    pub http_max_body_bytes: u64,

    /// Most records in one REST produce request or returned by one REST read
    #[arg(long, env = "JET_HTTP_MAX_RECORDS", default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub http_max_records: u64,

    /// Longest a REST read waits for records, in milliseconds
    #[arg(long, env = "JET_HTTP_MAX_WAIT_MS", default_value_t = 30_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub http_max_wait_ms: u64,

    /// A REST consumer instance that makes no request for this long is deleted, in milliseconds
    #[arg(long, env = "JET_HTTP_CONSUMER_IDLE_TIMEOUT_MS", default_value_t = 300_000,
          value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub http_consumer_idle_timeout_ms: u64,

    /// `jet check`: probe a running node instead of starting one.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Test only: drop this many produce responses after their batches were applied, closing the
    /// connection instead (proves that client retries do not duplicate). Hidden from --help.
    #[arg(
        long,
        env = "JET_FAULT_DROP_PRODUCE_RESPONSES",
        default_value_t = 0,
        value_name = "N",
        hide = true
    )]
    pub fault_drop_produce_responses: u64,

    /// Test only: drop one in every this many produce responses (with the flag above).
    #[arg(long, env = "JET_FAULT_DROP_EVERY", default_value_t = 1, value_name = "K", hide = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub fault_drop_every: u64,
}

/// Commands other than running a node.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask the node's HTTP listener (--http-listen) whether it is alive (GET /health) or, with
    /// --ready, ready to serve (GET /ready); exit 0 if so, 1 if not. For container health checks
    /// in images without curl.
    Check {
        /// Check readiness (GET /ready) instead of liveness (GET /health)
        #[arg(long)]
        ready: bool,
    },
}

/// One `--advertise` value: for the default listener (`name` is `None`) or a named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// The listener, `None` for the default one (`--listen`).
    pub name: Option<String>,
    /// Host and port clients of that listener are told to dial.
    pub addr: (String, u16),
}

/// One `--listener NAME=HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedListen {
    /// Its name.
    pub name: String,
    /// The address to bind.
    pub addr: SocketAddr,
}

/// Every Kafka listener of the node, checked together: the default one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// The default listener's advertised address (`--advertise HOST:PORT`).
    pub advertise: Option<(String, u16)>,
    /// The named listeners, in the order given, each with its advertised address.
    pub named: Vec<(NamedListen, Option<(String, u16)>)>,
}

/// The HTTP listener's address, or `None` when it is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

/// When the Raft write batch reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// fsync each Raft write batch before acknowledging it (one fsync covers a whole group
    /// commit).
    Always,
    /// leave flushing to the operating system (Kafka's default); a power loss can lose
    /// acknowledged writes, a process crash cannot.
    Never,
}

impl Args {
    /// Settings of the consumer group coordinator: Kafka's defaults but for the flags above.
    pub fn group_config(&self) -> jet_groups::GroupConfig {
        jet_groups::GroupConfig {
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            offsets_retention: Duration::from_secs(self.offsets_retention_minutes * 60),
            ..jet_groups::GroupConfig::default()
        }
    }

    /// The test-only fault injector: inert unless `--fault-drop-produce-responses` is set.
    pub fn faults(&self) -> jet_kafka::FaultInjector {
        if self.fault_drop_produce_responses == 0 {
            jet_kafka::FaultInjector::inert()
        } else {
            jet_kafka::FaultInjector::new(self.fault_drop_produce_responses, self.fault_drop_every)
        }
    }

    /// Limits of the HTTP listener.
    pub fn http_config(&self) -> jet_http::HttpConfig {
        jet_http::HttpConfig {
            max_body_bytes: self.http_max_body_bytes as usize,
            max_records: self.http_max_records as usize,
            max_wait: Duration::from_millis(self.http_max_wait_ms),
            consumer_idle_timeout: Duration::from_millis(self.http_consumer_idle_timeout_ms),
            ..jet_http::HttpConfig::default()
        }
    }

    /// Settings of the replication layer.
    pub fn node_config(&self) -> jet_replication::NodeConfig {
        let mut cfg = jet_replication::NodeConfig::new(self.data_dir.clone());
        cfg.node_id = self.node_id.unwrap_or(1);
        cfg.replication_factor = self.replication_factor;
        cfg.replica_lag_time_max = Duration::from_millis(self.replica_lag_time_max_ms);
        cfg.data_shards = self.shards;
        cfg.shards_per_node = self.shards;
        cfg.fsync = self.fsync == Fsync::Always;
        cfg.max_batch_bytes = self.max_batch_bytes as usize;
        cfg.max_pending_proposals = self.max_pending_proposals as usize;
        cfg.max_append_bytes_in_flight = self.max_append_bytes_in_flight as usize;
        cfg.producer_id_expiration_ms = self.producer_id_expiration_ms as i64;
        cfg.retention_check_interval = Duration::from_millis(self.retention_check_interval_ms);
        // One Raft entry must hold at least the largest batch a client may send.
        cfg.max_entry_bytes = cfg.max_entry_bytes.max(cfg.max_batch_bytes + 4096);
        cfg
    }
}

/// `HOST:PORT` or `IP:PORT`, resolved once; a hostname takes its first address.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    parse_host_port(s)?;
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s} resolves to no address"))
}

impl Args {
    /// The Kafka listeners, with their advertised addresses: refuses duplicate names (the
    /// default listener is named `kafka`), an --advertise for a listener that does not exist,
    /// and two addresses for one listener.
    pub fn kafka_listeners(&self) -> Result<Listeners, String> {
        let default = jet_kafka::DEFAULT_LISTENER;
        let mut named: Vec<(NamedListen, Option<(String, u16)>)> = Vec::new();
        for l in &self.listeners {
            if l.name == default || named.iter().any(|(n, _)| n.name == l.name) {
                return Err(format!(
                    "--listener {}: a listener of that name is already defined (the --listen one is named {default})",
                    l.name
                ));
            }
            // Port 0 (any free port) never clashes.
            let clash = |a: &SocketAddr| *a == l.addr && a.port() != 0;
            if clash(&self.listen) || named.iter().any(|(n, _)| clash(&n.addr)) {
                return Err(format!(
                    "--listener {}={}: another listener already binds that address",
                    l.name, l.addr
                ));
            }
            named.push((l.clone(), None));
        }
        let mut advertise = None;
        for a in &self.advertise {
            let slot = match a.name.as_deref() {
                None | Some(jet_kafka::DEFAULT_LISTENER) => &mut advertise,
                Some(name) => match named.iter_mut().find(|(n, _)| n.name == name) {
                    Some((_, slot)) => slot,
                    None => {
                        return Err(format!(
                            "--advertise {name}=...: no listener named {name} (define it with --listener {name}=HOST:PORT)"
                        ))
                    }
                },
            };
            if slot.is_some() {
                let name = a.name.as_deref().unwrap_or(default);
                return Err(format!(
                    "--advertise: listener {name} is given two advertised addresses"
                ));
            }
            *slot = Some(a.addr.clone());
        }
        Ok(Listeners { advertise, named })
    }

    /// Whether this node is (or becomes) part of a multi-node cluster.
    pub fn clustered(&self) -> bool {
        !self.seeds.is_empty() || self.bootstrap_expect.is_some()
    }
}

/// A seed: `HOST:PORT`, kept as written so chitchat resolves names again (DNS of a StatefulSet).
fn parse_seed(s: &str) -> Result<String, String> {
    parse_host_port(s.trim()).map(|_| s.trim().to_string())
}

/// A listener name: 1 to 32 letters, digits, '-' or '_'.
fn parse_listener_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a listener name is 1 to 32 letters, digits, '-' or '_', got '{s}'"
        ))
    }
}

/// `NAME=HOST:PORT` for `--listener`.
fn parse_named_listener(s: &str) -> Result<NamedListen, String> {
    let s = s.trim();
    let (name, addr) = s.split_once('=').ok_or_else(|| {
        format!("expected NAME=HOST:PORT (e.g. external=0.0.0.0:19092), got '{s}'")
    })?;
    Ok(NamedListen {
        name: parse_listener_name(name)?,
        addr: parse_listen(addr)?,
    })
}

/// `HOST:PORT` (the default listener) or `NAME=HOST:PORT` for `--advertise`.
fn parse_advertise(s: &str) -> Result<Advertise, String> {
    let s = s.trim();
    match s.split_once('=') {
        Some((name, addr)) => Ok(Advertise {
            name: Some(parse_listener_name(name)?),
            addr: parse_host_port(addr)?,
        }),
        None => Ok(Advertise {
            name: None,
            addr: parse_host_port(s)?,
        }),
    }
}

/// 1 to 64 characters of letters, digits, '-' and '_'.
fn parse_cluster_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a cluster id is 1 to 64 letters, digits, '-' or '_', got '{s}'"
        ))
    }
}

/// A duration: a number with a unit, ms, s, m or h (`10m`, `30s`, `1500ms`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 10m, 30s or 1500ms, got '{s}'");
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d < Duration::from_secs(1) {
        return Err(format!("{s} is too short: at least 1s"));
    }
    Ok(d)
}

/// `off`, or an address as for `--listen`.
fn parse_http_listen(s: &str) -> Result<HttpListen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(HttpListen(None));
    }
    parse_listen(s).map(|a| HttpListen(Some(a)))
}

/// `HOST:PORT`, where HOST may be a name, an IPv4 address or a bracketed IPv6 address.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("expected HOST:PORT (e.g. 127.0.0.1:9092), got '{s}'");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Checks that a filter parses, so a typo fails at start-up rather than silently logging nothing.
fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("bad log filter '{s}': {e}"))
}

#[cfg(test)]
mod tests;
