//! `jet-bench`: the command line. Each subcommand maps to one module of the library
//! (produce, consume, latency, suite, ceiling), prints a one-line summary, and exits non-zero on
//! any count, order or delivery error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use jet_bench::client::{self, DEFAULT_BROKERS};
use jet_bench::consume::{self, ConsumeOpts};
use jet_bench::latency::{self, LatencyOpts};
use jet_bench::null_broker::NullBroker;
use jet_bench::procstat;
use jet_bench::produce::{self, ProduceOpts};
use jet_bench::report;
use jet_bench::suite::{self, SuiteOpts};

/// Load generator for Kafka-compatible brokers (through librdkafka), with an in-process null
/// broker as the ceiling.
#[derive(Parser, Debug)]
#[command(name = "jet-bench", version)]
struct Cli {
    /// Bootstrap servers of the broker under test.
    #[arg(long, global = true, default_value = DEFAULT_BROKERS, env = "JET_BENCH_BROKERS")]
    brokers: String,
    /// Pid of the broker, to report its CPU seconds and peak RSS (from /proc).
    #[arg(long, global = true)]
    broker_pid: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Produce N messages of S bytes over P partitions; every delivery report is counted.
    Produce(ProduceArgs),
    /// Consume from earliest until N messages; count and per-partition order are checked.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate while consuming; end-to-end latency percentiles.
    Latency(LatencyArgs),
    /// The standard scenarios against --brokers and the null broker; JSON, Markdown and SVG.
    Suite(SuiteArgs),
    /// The standard scenarios against the in-process null broker only (or just serve it).
    Ceiling(CeilingArgs),
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Topic to use (created with --partitions); a unique name by default.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Payload bytes per message (at least 24: the jet-bench header).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    /// linger.ms.
    #[arg(long)]
    linger_ms: Option<u32>,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: u32,
    /// compression.type.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

impl LoadArgs {
    fn produce_opts(&self, brokers: &str, tag: &str, linger_default: u32) -> ProduceOpts {
        let topic = self
            .topic
            .clone()
            .unwrap_or_else(|| client::unique_topic(tag));
        let mut p = ProduceOpts::new(brokers, &topic);
        p.partitions = self.partitions;
        p.size = self.size;
        p.acks = self.acks.clone();
        p.linger_ms = self.linger_ms.unwrap_or(linger_default);
        p.batch_bytes = self.batch_bytes;
        p.compression = self.compression.clone();
        p.timeout = Duration::from_secs(self.timeout_secs);
        p
    }
}

#[derive(Args, Debug)]
struct ProduceArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Messages in total.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Total messages per second (as fast as possible when absent).
    #[arg(long)]
    rate: Option<f64>,
    /// Producer clients (connections) sending at once.
    #[arg(long, default_value_t = 1)]
    producers: u32,
}

#[derive(Args, Debug)]
struct ConsumeArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Messages to read. Without --topic, this many are produced first into a new topic.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Consume in this group (subscribe) instead of assigning every partition.
    #[arg(long)]
    group: Option<String>,
}

#[derive(Args, Debug)]
struct LatencyArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Messages per second.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
}

#[derive(Args, Debug)]
struct SuiteArgs {
    /// Scaled-down scenarios that run in seconds (CI smoke test: counts only).
    #[arg(long)]
    quick: bool,
    /// Directory for results.json, results.md and chart.svg.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Only these scenarios (comma-separated ids, 1–7).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Skip the null-broker runs (no ratios).
    #[arg(long)]
    no_ceiling: bool,
}

#[derive(Args, Debug)]
struct CeilingArgs {
    /// Scaled-down scenarios.
    #[arg(long)]
    quick: bool,
    /// Also write results.json, results.md and chart.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these scenarios (comma-separated ids, 1–7).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Instead of measuring, serve the null broker on --listen for this many seconds (every
    /// topic's batches are kept for Fetch, up to 4 GiB).
    #[arg(long)]
    serve_secs: Option<u64>,
    /// Address for --serve-secs.
    #[arg(long, default_value = "127.0.0.1:9099")]
    listen: std::net::SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jet-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Broker CPU and peak RSS around one command, for its summary line.
struct BrokerWatch {
    pid: Option<u32>,
    cpu_before: Option<f64>,
}

impl BrokerWatch {
    fn start(pid: Option<u32>) -> BrokerWatch {
        let cpu_before = pid
            .and_then(|p| procstat::sample(p).ok())
            .map(|s| s.cpu_secs);
        BrokerWatch { pid, cpu_before }
    }

    fn suffix(&self) -> String {
        let Some(pid) = self.pid else {
            return String::new();
        };
        match (procstat::sample(pid), self.cpu_before) {
            (Ok(s), Some(before)) => format!(
                " [broker cpu {:.2} s, peak rss {:.0} MiB]",
                s.cpu_secs - before,
                s.rss_peak_bytes as f64 / (1024.0 * 1024.0)
            ),
            (Err(e), _) => format!(" [broker pid {pid}: {e:#}]"),
            (Ok(_), None) => format!(" [broker pid {pid}: not readable at start]"),
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(pid) = cli.broker_pid {
        // Fail now, not after the load, if the pid cannot be read. (`$!` after
        // `cargo run -p jet … &` is the broker's pid: cargo execs the binary.)
        procstat::sample(pid).context("--broker-pid")?;
    }
    let brokers = cli.brokers.as_str();
    match cli.command {
        Command::Produce(a) => {
            let mut p = a.load.produce_opts(brokers, "produce", 5);
            p.messages = a.messages;
            p.rate = a.rate;
            p.producers = a.producers;
            let watch = BrokerWatch::start(cli.broker_pid);
            let r = produce::run(&p)?;
            println!("{}{}", produce::summary(&p, &r), watch.suffix());
        }
        Command::Consume(a) => {
            let timeout = Duration::from_secs(a.load.timeout_secs);
            let topic = match &a.load.topic {
                Some(t) => t.clone(),
                None => {
                    let mut p = a.load.produce_opts(brokers, "consume", 5);
                    p.messages = a.messages;
                    let r = produce::run(&p)?;
                    println!("{}", produce::summary(&p, &r));
                    p.topic
                }
            };
            let c = ConsumeOpts {
                brokers: brokers.to_string(),
                topic,
                messages: a.messages,
                group: a.group.clone(),
                timeout,
            };
            let watch = BrokerWatch::start(cli.broker_pid);
            let r = consume::run(&c)?;
            println!("{}{}", consume::summary(&c, &r), watch.suffix());
            r.verify()?;
        }
        Command::Latency(a) => {
            let mut p = a.load.produce_opts(brokers, "latency", 0);
            p.rate = Some(a.rate);
            let opts = LatencyOpts {
                produce: p,
                duration: Duration::from_secs_f64(a.duration_secs),
            };
            let watch = BrokerWatch::start(cli.broker_pid);
            let r = latency::run(&opts)?;
            println!("{}{}", latency::summary(&opts, &r), watch.suffix());
            r.verify()?;
        }
        Command::Suite(a) => {
            let opts = SuiteOpts {
                brokers: Some(cli.brokers.clone()),
                broker_pid: cli.broker_pid,
                quick: a.quick,
                ceiling: !a.no_ceiling,
                only: a.only,
            };
            return finish_suite(&opts, Some(&a.out));
        }
        Command::Ceiling(a) => {
            if let Some(secs) = a.serve_secs {
                let null = NullBroker::start_on(a.listen)?;
                null.retain_all();
                println!("null broker listening on {} for {secs} s", null.addr());
                std::thread::sleep(Duration::from_secs(secs));
                null.stop();
                return Ok(ExitCode::SUCCESS);
            }
            let opts = SuiteOpts {
                brokers: None,
                broker_pid: None,
                quick: a.quick,
                ceiling: true,
                only: a.only,
            };
            return finish_suite(&opts, a.out.as_ref());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the suite, writes the report, prints where, and fails on any count or order error.
fn finish_suite(opts: &SuiteOpts, out: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let result = suite::run(opts)?;
    if let Some(dir) = out {
        report::write_all(dir, &result).with_context(|| format!("write {}", dir.display()))?;
        println!(
            "wrote {0}/results.json, {0}/results.md, {0}/chart.svg",
            dir.display()
        );
    }
    // Targets concern the broker under test; the ceiling alone has none.
    let checks = if opts.brokers.is_some() {
        &result.checks[..]
    } else {
        &[]
    };
    for c in checks {
        let verdict = match c.pass {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let value = c
            .value
            .map_or(String::new(), |v| report::format_value(v, c.unit) + " ");
        println!("target {} {}: {value}{verdict}", c.what, c.target);
    }
    let failures = result.failures();
    if failures.is_empty() {
        println!("suite: all counts and order checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            eprintln!("suite failure: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
