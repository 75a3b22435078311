//! The command line's parsing, defaults, refusals, and the docs' flags tables.

use super::*;
use clap::CommandFactory;
use std::path::Path;

#[test]
fn command_is_well_formed() {
    Args::command().debug_assert();
}

#[test]
fn defaults() {
    let a = Args::try_parse_from(["jet"]).unwrap();
    assert_eq!(a.node_id, None);
    assert!(!a.clustered());
    assert_eq!(a.bootstrap_expect, None);
    assert_eq!(a.replication_factor, 3);
    assert_eq!(a.node_dead_after, Duration::from_secs(600));
    assert_eq!(
        a.peer_listen,
        "127.0.0.1:9093".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(a.listen, "127.0.0.1:9092".parse::<SocketAddr>().unwrap());
    assert!(a.advertise.is_empty());
    assert!(a.listeners.is_empty());
    assert_eq!(
        a.kafka_listeners().unwrap(),
        Listeners {
            advertise: None,
            named: vec![]
        }
    );
    assert_eq!(a.data_dir, PathBuf::from("./jet-data"));
    assert_eq!(a.shards, 4);
    assert_eq!(a.fsync, Fsync::Always);
    assert!(a.auto_create_topics);
    assert_eq!(a.max_request_bytes, 104_857_600);
    assert_eq!(a.max_batch_bytes, 1_048_588);
    assert_eq!(a.max_in_flight, 32);
    assert_eq!(a.retention_check_interval_ms, 300_000);
    assert_eq!(
        a.http_listen,
        HttpListen(Some("127.0.0.1:8080".parse().unwrap()))
    );
    assert!(a.command.is_none());
    let h = a.http_config();
    assert_eq!(h.max_body_bytes, 16 << 20);
    assert_eq!(h.max_wait, Duration::from_secs(30));
    let n = a.node_config();
    assert!(n.fsync);
    assert_eq!(n.data_shards, 4);
    assert_eq!(n.retention_check_interval, Duration::from_secs(300));
}

#[test]
fn flags_parse() {
    let a = Args::try_parse_from([
        "jet",
        "--auto-create-topics=false",
        "--fsync",
        "never",
        "--advertise",
        "[::1]:19092",
        "--listen",
        "0.0.0.0:0",
        "--log-level",
        "warn,jet=debug",
    ])
    .unwrap();
    assert!(!a.auto_create_topics);
    assert_eq!(a.fsync, Fsync::Never);
    assert_eq!(
        a.kafka_listeners().unwrap().advertise,
        Some(("::1".to_string(), 19092))
    );
    assert!(
        Args::try_parse_from(["jet", "--auto-create-topics"])
            .unwrap()
            .auto_create_topics
    );
    let c = Args::try_parse_from([
        "jet",
        "--seeds",
        "jet-0.jet:9093, 127.0.0.1:9193",
        "--bootstrap-expect",
        "3",
        "--node-dead-after",
        "30s",
        "--cluster-id",
        "prod_1",
    ])
    .unwrap();
    assert!(c.clustered());
    assert_eq!(c.seeds, vec!["jet-0.jet:9093", "127.0.0.1:9193"]);
    assert_eq!(c.node_dead_after, Duration::from_secs(30));
    assert_eq!(c.cluster_id.as_deref(), Some("prod_1"));
    let off = Args::try_parse_from(["jet", "--http-listen", "OFF"]).unwrap();
    assert_eq!(off.http_listen, HttpListen(None));
    let check =
        Args::try_parse_from(["jet", "check", "--ready", "--http-listen", "127.0.0.1:9"]).unwrap();
    assert!(matches!(
        check.command,
        Some(Command::Check { ready: true })
    ));
    assert_eq!(
        check.http_listen,
        HttpListen(Some("127.0.0.1:9".parse().unwrap()))
    );
}

#[test]
fn bad_values_are_rejected() {
    for bad in [
        &["jet", "--listen", "nonsense"][..],
        &["jet", "--advertise", "host"],
        &["jet", "--advertise", "host:99999"],
        &["jet", "--shards", "0"],
        &["jet", "--node-id", "0"],
        &["jet", "--fsync", "sometimes"],
        &["jet", "--no-such-flag"],
        &["jet", "--log-level", "info,[[["],
        &["jet", "--http-listen", "nowhere"],
        &["jet", "--http-max-records", "0"],
        &["jet", "check", "--bogus"],
        &["jet", "--seeds", "nohost"],
        &["jet", "--seeds", "a:1,b"],
        &["jet", "--bootstrap-expect", "0"],
        &["jet", "--replication-factor", "0"],
        &["jet", "--node-dead-after", "10"],
        &["jet", "--node-dead-after", "5ms"],
        &["jet", "--node-dead-after", "3 days"],
        &["jet", "--cluster-id", "has space"],
        &["jet", "--cluster-id", ""],
    ] {
        assert!(Args::try_parse_from(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn named_listeners() {
    let a = Args::try_parse_from([
        "jet",
        "--listen",
        "0.0.0.0:9092",
        "--advertise",
        "jet-1:9092",
        "--listener",
        "external=0.0.0.0:19092",
        "--listener",
        "tools=127.0.0.1:29092",
        "--advertise",
        "external=127.0.0.1:19092",
    ])
    .unwrap();
    let l = a.kafka_listeners().unwrap();
    assert_eq!(l.advertise, Some(("jet-1".to_string(), 9092)));
    assert_eq!(l.named.len(), 2);
    assert_eq!(l.named[0].0.name, "external");
    assert_eq!(l.named[0].0.addr, "0.0.0.0:19092".parse().unwrap());
    assert_eq!(l.named[0].1, Some(("127.0.0.1".to_string(), 19092)));
    assert_eq!(l.named[1].0.name, "tools");
    assert_eq!(l.named[1].1, None);
    // Port 0 twice is two free ports, not a clash.
    let zero = Args::try_parse_from([
        "jet",
        "--listen",
        "127.0.0.1:0",
        "--listener",
        "a=127.0.0.1:0",
    ])
    .unwrap();
    assert!(zero.kafka_listeners().is_ok());
    // `--advertise kafka=` is the default listener's.
    let k = Args::try_parse_from(["jet", "--advertise", "kafka=h:1"]).unwrap();
    assert_eq!(
        k.kafka_listeners().unwrap().advertise,
        Some(("h".into(), 1))
    );
}

#[test]
fn named_listeners_from_the_environment() {
    // Comma-separated lists, as JET_LISTENERS / JET_ADVERTISE carry them.
    let a = Args::try_parse_from([
        "jet",
        "--listener",
        "a=127.0.0.1:1001,b=127.0.0.1:1002",
        "--advertise",
        "h:9092,a=x:1",
    ])
    .unwrap();
    let l = a.kafka_listeners().unwrap();
    assert_eq!(l.advertise, Some(("h".into(), 9092)));
    assert_eq!(
        l.named
            .iter()
            .map(|(n, _)| n.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(l.named[0].1, Some(("x".into(), 1)));
}

#[test]
fn bad_listeners_are_refused() {
    for bad in [
        &["jet", "--listener", "external"][..],
        &["jet", "--listener", "=127.0.0.1:1"],
        &["jet", "--listener", "ext ernal=127.0.0.1:1"],
        &["jet", "--listener", "external=nohost"],
        &["jet", "--listener", "external=127.0.0.1:99999"],
        &["jet", "--advertise", "external=nohost"],
        &["jet", "--advertise", "=h:1"],
    ] {
        assert!(Args::try_parse_from(bad).is_err(), "{bad:?} should fail");
    }
    for (bad, why) in [
        (
            &[
                "jet",
                "--listener",
                "a=127.0.0.1:1",
                "--listener",
                "a=127.0.0.1:2",
            ][..],
            "already defined",
        ),
        (
            &["jet", "--listener", "kafka=127.0.0.1:1"],
            "already defined",
        ),
        (
            &["jet", "--listener", "a=127.0.0.1:9092"],
            "already binds that address",
        ),
        (
            &["jet", "--advertise", "nope=h:1"],
            "no listener named nope",
        ),
        (
            &["jet", "--advertise", "h:1", "--advertise", "g:2"],
            "two advertised",
        ),
        (
            &[
                "jet",
                "--listener",
                "a=127.0.0.1:1",
                "--advertise",
                "a=h:1,a=h:2",
            ],
            "two advertised",
        ),
    ] {
        let args = Args::try_parse_from(bad).unwrap();
        let err = args.kafka_listeners().unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

/// The flags table of README.md and docs/operations.md, as the command defines it.
fn flags_table() -> Vec<String> {
    let cmd = Args::command();
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|arg| {
            let long = arg.get_long().expect("every flag is long");
            let mut values = arg
                .get_value_names()
                .map(|v| v.iter().map(|n| format!("<{n}>")).collect::<Vec<_>>())
                .unwrap_or_default()
                .join(" ");
            if arg.get_num_args().is_some_and(|n| n.min_values() == 0) {
                values = format!("[{values}]");
            }
            let env = arg.get_env().expect("every flag has an env var");
            let default = match arg.get_default_values() {
                [] => "(none)".to_string(),
                [d, ..] => format!("`{}`", d.to_string_lossy()),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            format!(
                "| `--{long} {values}` | `{}` | {default} | {help} |",
                env.to_string_lossy()
            )
        })
        .collect()
}

/// The README's promise: its flags table (and the one in docs/operations.md) lists every flag
/// of `jet --help`, in order, with its environment variable, default and help text. On a
/// mismatch the message holds the table to paste.
#[test]
fn docs_flag_tables_match_the_command() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let want = flags_table();
    for doc in ["README.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap_or_default();
        let got: Vec<&str> = text.lines().filter(|l| l.starts_with("| `--")).collect();
        assert!(
            got == want,
            "{doc}: the flags table differs from the command; it should read:\n{}",
            want.join("\n")
        );
    }
}
