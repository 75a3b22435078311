//! Shared pieces of the raw-bytes TCP tests: a node in a temporary directory with the Kafka
//! server on 127.0.0.1:0, a tiny client that frames requests encoded by kafka-protocol, and record
//! batch builders.
//!
//! The client is deliberately dumb — it writes whatever bytes it is given and reads frames — so
//! tests can send broken input and see exactly what the server answers (or that it closes).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use jet_kafka::ServerConfig;
use jet_replication::{CreateTopic, Node, NodeConfig, TopicMeta};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for a response before calling it missing.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node and Kafka server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    pub served: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Starts a node and server with test settings, adjusted by the two closures.
pub async fn start_with(
    adjust_node: impl FnOnce(&mut NodeConfig),
    adjust_server: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node_config = NodeConfig::new(dir.path().to_path_buf());
    node_config.data_shards = 2;
    node_config.fsync = false;
    node_config.tick = Duration::from_millis(20);
    node_config.store.raft_log_write_buffer_bytes = 4 << 20;
    node_config.store.block_cache_bytes = 4 << 20;
    adjust_node(&mut node_config);
    let node = Node::start(node_config).await.expect("node starts");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut config = ServerConfig::new(addr, "jet-test-cluster");
    config.max_request_bytes = 4 << 20;
    adjust_server(&mut config);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let served = tokio::spawn(jet_kafka::run(config, node.clone(), listener, async move {
        let _ = stop_rx.await;
    }));
    TestServer {
        addr,
        node,
        stop: Some(stop_tx),
        served: Some(served),
        _dir: dir,
    }
}

/// Starts a node and server with test settings.
pub async fn start() -> TestServer {
    start_with(|_| {}, |_| {}).await
}

impl TestServer {
    /// Connects a client.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// Creates a topic through the node.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> TopicMeta {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// Creates a topic with configs through the node.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> TopicMeta {
        self.node
            .create_topic(CreateTopic {
                name: name.into(),
                partitions,
                replication_factor: 1,
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                validate_only: false,
            })
            .await
            .expect("topic created")
    }

    /// Stops the server and waits for `run` to return.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.served.take() {
            Some(served) => served.await.expect("server task"),
            None => Ok(()),
        }
    }
}

/// A raw Kafka client.
pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Encodes a request (header and body) into one frame; returns it with its correlation id.
    pub fn frame<R: Encodable>(&mut self, api_key: ApiKey, version: i16, req: &R) -> (i32, Bytes) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("jet-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .expect("encode header");
        req.encode(&mut body, version).expect("encode body");
        (correlation_id, frame_bytes(&body))
    }

    /// Sends a request; returns its correlation id.
    pub async fn send<R: Encodable>(&mut self, api_key: ApiKey, version: i16, req: &R) -> i32 {
        let (correlation_id, frame) = self.frame(api_key, version, req);
        self.send_raw(&frame).await;
        correlation_id
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one response frame's body; `None` when the server closed the connection.
    pub async fn recv_frame(&mut self) -> Option<Bytes> {
        tokio::time::timeout(RESPONSE_TIMEOUT, self.recv_frame_no_timeout())
            .await
            .expect("response in time")
    }

    async fn recv_frame_no_timeout(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size).await {
            Ok(_) => {}
            Err(_) => return None,
        }
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    /// Reads one response and decodes it as `api_key` at `version`; returns its correlation id.
    pub async fn recv<T: Decodable>(&mut self, api_key: ApiKey, version: i16) -> (i32, T) {
        let mut body = self
            .recv_frame()
            .await
            .expect("a response, not a closed connection");
        let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
            .expect("response header");
        let resp = T::decode(&mut body, version).expect("response body");
        assert!(!body.has_remaining(), "trailing bytes after the response");
        (header.correlation_id, resp)
    }

    /// Sends a request and reads its response.
    pub async fn call<R: Encodable, T: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        req: &R,
    ) -> T {
        let id = self.send(api_key, version, req).await;
        let (got, resp) = self.recv(api_key, version).await;
        assert_eq!(got, id, "correlation id");
        resp
    }

    /// True when the server closes the connection (within the response timeout) without sending
    /// anything more.
    pub async fn is_closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

/// Puts a size prefix in front of `body`.
pub fn frame_bytes(body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(body.len() as i32);
    frame.put_slice(body);
    frame.freeze()
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

/// One uncompressed record batch holding `values`, the i-th record at `timestamps[i]`.
pub fn batch_at(values: &[&[u8]], timestamps: &[i64]) -> Bytes {
    assert_eq!(values.len(), timestamps.len());
    let base = timestamps.first().copied().unwrap_or(0);
    let mut records = Vec::new();
    for (i, (value, ts)) in values.iter().zip(timestamps).enumerate() {
        let mut r = Vec::new();
        r.push(0); // attributes
        put_varint(&mut r, ts - base);
        put_varint(&mut r, i as i64);
        put_varint(&mut r, -1); // null key
        put_varint(&mut r, value.len() as i64);
        r.extend_from_slice(value);
        put_varint(&mut r, 0); // no headers
        put_varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let mut b =
        jet_protocol::batch::build_uncompressed(base, (-1, -1, -1), values.len() as i32, &records);
    // build_uncompressed stamps the base timestamp as the max; fix it and the CRC.
    let max = timestamps.iter().copied().max().unwrap_or(base);
    b[35..43].copy_from_slice(&max.to_be_bytes());
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// One uncompressed batch of `values` stamped now.
pub fn batch(values: &[&[u8]]) -> Bytes {
    let now = now_ms();
    batch_at(values, &vec![now; values.len()])
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// CRC-32C (Castagnoli), bit by bit: slow and obviously right, for tests only.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    !crc
}

/// The values of every record in `records` (back-to-back batches), with their offsets.
pub fn decode_values(records: &Bytes) -> Vec<(i64, Bytes)> {
    let mut buf = records.clone();
    let sets =
        kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).expect("valid batches");
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| (r.offset, r.value.unwrap_or_default()))
        .collect()
}

/// A topic name as kafka-protocol types it.
pub fn name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(s.to_string()))
}

/// A Produce request for one partition (by topic name; v13 callers set the id themselves).
pub fn produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    kafka_protocol::messages::ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// A Fetch request for one partition by name.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// Produces `records` to a partition with acks=-1 (Produce v9) and returns the base offset.
pub async fn produce(client: &mut Client, topic: &str, partition: i32, records: Bytes) -> i64 {
    let resp: kafka_protocol::messages::ProduceResponse = client
        .call(
            ApiKey::Produce,
            9,
            &produce_request(topic, partition, records, -1),
        )
        .await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce failed: {:?}", p.error_message);
    p.base_offset
}
