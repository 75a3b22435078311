//! The `rdkafka` crate (librdkafka) against the real `jet` binary: a producer with acks=all sends
//! 1,000 keyed messages with headers; a consumer that assigns the partition from a committed
//! (stored) offset of 500 reads exactly the other 500, byte for byte, at the same offsets.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const MESSAGES: usize = 1_000;
const STORED_OFFSET: i64 = 500;
const TOPIC: &str = "rdkafka-compat";

/// A `jet` process that is killed when the test ends, however it ends.
struct Broker {
    child: Child,
    bootstrap: String,
    log: std::path::PathBuf,
}

impl Broker {
    fn start(data_dir: &Path) -> Broker {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            probe.local_addr().expect("local addr").port()
        };
        let bootstrap = format!("127.0.0.1:{port}");
        let log = data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_jet"))
            // No HTTP listener: tests run in parallel and would race for its default port.
            .args(["--listen", &bootstrap, "--http-listen", "off", "--data-dir"])
            .arg(data_dir)
            .env_remove("JET_LISTEN")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn jet");
        let mut broker = Broker {
            child,
            bootstrap,
            log,
        };
        broker.wait_for_port(Duration::from_secs(60));
        broker
    }

    fn wait_for_port(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "jet exited with {status} while starting:\n{}",
                    self.log_text()
                );
            }
            if std::net::TcpStream::connect(&self.bootstrap).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "jet did not listen on {} within {timeout:?}:\n{}",
            self.bootstrap,
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- jet log ---\n{}", self.log_text());
        }
    }
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

fn value(i: usize) -> Vec<u8> {
    // Values of varied length, with every byte value, so nothing depends on text.
    (0..(i % 300) + 1)
        .map(|b| ((b * 31 + i) % 256) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_acks_all_then_consume_from_stored_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(&dir.path().join("data"));

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let sends = (0..MESSAGES).map(|i| {
        let producer = &producer;
        async move {
            let k = key(i);
            let v = value(i);
            let seq = i.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "seq",
                value: Some(seq.as_bytes()),
            });
            let record = FutureRecord::to(TOPIC)
                .partition(0)
                .key(&k)
                .payload(&v)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(60))
                .await
                .map_err(|(e, _)| e)
        }
    });
    let delivered = futures::future::join_all(sends).await;
    for (i, d) in delivered.iter().enumerate() {
        let d = d
            .as_ref()
            .unwrap_or_else(|e| panic!("message {i} not delivered: {e}"));
        assert_eq!((d.partition, d.offset), (0, i as i64), "message {i}");
    }

    let group = "rdkafka-compat-group";
    let consumer_config = |group: &str| {
        ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error")
            .clone()
    };

    // Store offset 500 for the group.
    let committer: BaseConsumer = consumer_config(group).create().expect("committer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(STORED_OFFSET))
        .expect("offset");
    committer
        .commit(&tpl, CommitMode::Sync)
        .expect("commit offset 500");
    drop(committer);

    // Assign from the stored offset and read until the end, then a while longer.
    let consumer: BaseConsumer = consumer_config(group).create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Stored)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let want = MESSAGES - STORED_OFFSET as usize;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_until = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push((
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            )),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
        if got.len() >= want {
            // Keep polling briefly: anything past the end would be a bug too.
            let until = *quiet_until.get_or_insert(Instant::now() + Duration::from_millis(500));
            if Instant::now() >= until {
                break;
            }
        }
    }
    assert_eq!(got.len(), want, "messages read from the stored offset");
    for (n, (offset, k, v, headers)) in got.into_iter().enumerate() {
        let i = STORED_OFFSET as usize + n;
        assert_eq!(offset, i as i64);
        assert_eq!(k.as_deref(), Some(key(i).as_bytes()), "key at {i}");
        assert_eq!(v, Some(value(i)), "value at {i}");
        assert_eq!(
            headers,
            vec![("seq".to_string(), Some(i.to_string().into_bytes()))],
            "headers at {i}"
        );
    }
}
