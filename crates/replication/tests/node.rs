//! The replication layer end to end on a real RocksDB: appends through the single-voter Raft
//! shards, reads, restarts, log-start moves and topic deletion.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use jet_protocol::batch;
use jet_replication::{CreateTopic, Error, Node, NodeConfig, TopicPartition};

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig::new(dir.to_path_buf());
    c.data_shards = 2;
    c.retention_check_interval = Duration::from_secs(3600);
    c
}

/// The batches of a read, one `Bytes` each.
fn batches(r: &jet_replication::ReadResult) -> Vec<Bytes> {
    let v: Vec<Bytes> = batch::iter(&r.records)
        .map(|(at, h)| r.records.slice(at..at + h.total_len()))
        .collect();
    assert_eq!(v.len(), r.batch_count);
    v
}

fn batch_of(count: i32, ts: i64, payload: &[u8]) -> Bytes {
    Bytes::from(batch::build_uncompressed(ts, (-1, -1, -1), count, payload))
}

async fn create(node: &Node, name: &str, partitions: i32, configs: &[(&str, &str)]) -> uuid::Uuid {
    node.create_topic(CreateTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        validate_only: false,
    })
    .await
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let node = Node::start(config(dir.path())).await.unwrap();
        id = create(&node, "t", 3, &[]).await;
        let tp = TopicPartition::new(id, 1);
        let mut expected = Vec::new();
        // Concurrent appends share Raft entries; offsets still come out dense and ordered.
        let mut tasks = Vec::new();
        for i in 0..50 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                node.append(tp, batch_of(4, 1000 + i, &[i as u8; 16])).await
            }));
        }
        for t in tasks {
            expected.push(t.await.unwrap().unwrap().base_offset);
        }
        expected.sort();
        assert_eq!(expected, (0..50).map(|i| i * 4).collect::<Vec<_>>());
        let h = node.partition(&tp).unwrap();
        assert_eq!(h.high_watermark(), 200);
        assert!(h.leader_epoch() >= 1);

        let r = batches(&node.read(tp, 10, 1 << 20, true).await.unwrap());
        assert_eq!(r.len(), 48, "reads from the batch holding offset 10");
        let first = batch::validate(&r[0]).unwrap();
        assert_eq!(first.base_offset, 8);
        assert_eq!(first.partition_leader_epoch, h.leader_epoch());
        assert_eq!(
            node.read(tp, 201, 100, true).await.unwrap_err(),
            Error::OffsetOutOfRange {
                log_start_offset: 0,
                high_watermark: 200
            }
        );
        node.shutdown().await;
    }
    // Restart: the same data at the same offsets.
    let node = Node::start(config(dir.path())).await.unwrap();
    let tp = TopicPartition::new(id, 1);
    assert_eq!(node.partition(&tp).unwrap().high_watermark(), 200);
    let r = batches(&node.read(tp, 0, 1 << 20, true).await.unwrap());
    assert_eq!(r.len(), 50);
    let offsets: Vec<i64> = r
        .iter()
        .map(|b| batch::validate(b).unwrap().base_offset)
        .collect();
    assert_eq!(offsets, (0..50).map(|i| i * 4).collect::<Vec<_>>());
    // And appends continue after the restored offsets.
    let out = node.append(tp, batch_of(1, 5, b"x")).await.unwrap();
    assert_eq!(out.base_offset, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_retention_and_topic_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let id = create(&node, "r", 1, &[("retention.bytes", "300")]).await;
    let tp = TopicPartition::new(id, 0);
    for i in 0..10 {
        node.append(tp, batch_of(10, i, &[7u8; 100])).await.unwrap();
    }
    assert_eq!(node.delete_records(tp, 15).await.unwrap(), 15);
    let h = node.partition(&tp).unwrap();
    assert_eq!(h.log_start_offset(), 15);
    let r = batches(&node.read(tp, 15, 1 << 20, true).await.unwrap());
    assert_eq!(batch::validate(&r[0]).unwrap().base_offset, 10);
    assert!(matches!(
        node.read(tp, 5, 1 << 20, true).await,
        Err(Error::OffsetOutOfRange { .. })
    ));

    // retention.bytes = 300 keeps only the newest batches (each is 161 bytes).
    node.enforce_retention().await.unwrap();
    assert_eq!(h.log_start_offset(), 90);
    assert_eq!(h.high_watermark(), 100);

    // LogAppendTime topics get the broker's time, with a valid CRC.
    let lat = create(
        &node,
        "lat",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let ltp = TopicPartition::new(lat, 0);
    let out = node.append(ltp, batch_of(2, 1, b"ab")).await.unwrap();
    assert!(out.log_append_time_ms > 1_600_000_000_000);
    let stored = node.read(ltp, 0, 1 << 20, true).await.unwrap();
    let h2 = batch::validate(&batches(&stored)[0]).unwrap();
    assert_eq!(h2.max_timestamp, out.log_append_time_ms);

    node.delete_topic("r").await.unwrap();
    assert!(node.partition(&tp).is_none());
    assert_eq!(
        node.append(tp, batch_of(1, 1, b"z")).await.unwrap_err(),
        Error::UnknownTopicOrPartition
    );
    assert_eq!(
        node.delete_topic("r").await.unwrap_err(),
        Error::UnknownTopicOrPartition
    );
    // Re-creating the name gives a new, empty topic.
    let id2 = create(&node, "r", 1, &[]).await;
    assert_ne!(id, id2);
    assert_eq!(
        node.partition(&TopicPartition::new(id2, 0))
            .unwrap()
            .high_watermark(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_shard_count_is_cluster_state_not_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let node = Node::start(config(dir.path())).await.unwrap();
        assert_eq!(node.metadata().data_shards, 2);
        id = create(&node, "wide", 4, &[]).await;
        for p in 0..4 {
            let tp = TopicPartition::new(id, p);
            node.append(tp, batch_of(1, 1, b"x")).await.unwrap();
        }
        node.shutdown().await;
    }
    // A restart with another --shards keeps the cluster's count, so placement (and every
    // partition's data) stays where it was.
    let mut c = config(dir.path());
    c.data_shards = 1;
    let node = Node::start(c).await.unwrap();
    assert_eq!(node.config().data_shards, 2);
    assert_eq!(node.metadata().data_shards, 2);
    for p in 0..4 {
        let h = node.partition(&TopicPartition::new(id, p)).unwrap();
        assert_eq!(h.high_watermark(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directory_of_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Node::start(config(dir.path()))
        .await
        .unwrap()
        .shutdown()
        .await;
    let mut c = config(dir.path());
    c.node_id = 7;
    let err = Node::start(c).await.err().unwrap();
    assert!(err.to_string().contains("belongs to node 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_records_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::start(config(dir.path())).await.unwrap();
        let shard = node.coordinator_shard("my-group");
        assert!((1..=2).contains(&shard));
        assert_eq!(
            shard,
            node.coordinator_shard("my-group"),
            "placement is stable"
        );
        node.group_write(
            shard,
            vec![
                (b"gmy-group/a".to_vec(), Some(b"1".to_vec())),
                (b"gmy-group/b".to_vec(), Some(b"2".to_vec())),
            ],
        )
        .await
        .unwrap();
        node.group_write(shard, vec![(b"gmy-group/a".to_vec(), None)])
            .await
            .unwrap();
        // Keys outside the group prefix are refused, so group writes cannot clobber metadata.
        assert!(matches!(
            node.group_write(shard, vec![(b"cluster".to_vec(), Some(b"x".to_vec()))])
                .await,
            Err(Error::InvalidRequest(_))
        ));
        assert!(node.group_write(0, vec![]).await.is_err());
        node.shutdown().await;
    }
    let node = Node::start(config(dir.path())).await.unwrap();
    let got = node.store().scan_meta(b"gmy-group/").unwrap();
    assert_eq!(got, vec![(b"gmy-group/b".to_vec(), b"2".to_vec())]);
    assert!(node.metadata().topics.is_empty());
}

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, count: i32) -> Bytes {
    Bytes::from(batch::build_uncompressed(
        1,
        (pid, epoch, seq),
        count,
        &[1, 2, 3],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (id, pid);
    {
        let node = Node::start(config(dir.path())).await.unwrap();
        id = create(&node, "idem", 1, &[]).await;
        let tp = TopicPartition::new(id, 0);
        pid = node.new_producer_id().await.unwrap();
        assert_eq!(node.new_producer_id().await.unwrap(), pid + 1);
        assert_eq!(
            node.append(tp, idempotent_batch(pid, 0, 0, 5))
                .await
                .unwrap()
                .base_offset,
            0
        );
        assert_eq!(
            node.append(tp, idempotent_batch(pid, 0, 5, 5))
                .await
                .unwrap()
                .base_offset,
            5
        );
        // A retry of the first batch is acknowledged with its original offset, not written.
        assert_eq!(
            node.append(tp, idempotent_batch(pid, 0, 0, 5))
                .await
                .unwrap()
                .base_offset,
            0
        );
        assert_eq!(node.partition(&tp).unwrap().high_watermark(), 10);
        // A gap is refused.
        assert!(matches!(
            node.append(tp, idempotent_batch(pid, 0, 20, 1)).await,
            Err(Error::OutOfOrderSequence(_))
        ));
        let producers = node.producers(tp).await.unwrap();
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].0, pid);
        assert_eq!(producers[0].1.last_sequence(), 9);
        node.shutdown().await;
    }
    let node = Node::start(config(dir.path())).await.unwrap();
    let tp = TopicPartition::new(id, 0);
    // After a restart the state is still there: the retry is still a duplicate...
    assert_eq!(
        node.append(tp, idempotent_batch(pid, 0, 5, 5))
            .await
            .unwrap()
            .base_offset,
        5
    );
    // ...and the next batch follows on.
    assert_eq!(
        node.append(tp, idempotent_batch(pid, 0, 10, 1))
            .await
            .unwrap()
            .base_offset,
        10
    );
    // A bumped epoch starts again at sequence 0; the old epoch is then fenced.
    assert_eq!(
        node.append(tp, idempotent_batch(pid, 1, 0, 1))
            .await
            .unwrap()
            .base_offset,
        11
    );
    assert!(matches!(
        node.append(tp, idempotent_batch(pid, 0, 11, 1)).await,
        Err(Error::InvalidProducerEpoch(_))
    ));
    // Producer ids never repeat across restarts.
    assert!(node.new_producer_id().await.unwrap() >= pid + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_byte_budget_applies_backpressure_without_losing_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // Room for about two batches at a time.
    c.max_append_bytes_in_flight = 600;
    let node = Node::start(c).await.unwrap();
    let id = create(&node, "budget", 1, &[]).await;
    let tp = TopicPartition::new(id, 0);
    let mut tasks = Vec::new();
    for i in 0..40u8 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            node.append(tp, batch_of(1, 1, &[i; 200])).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(node.partition(&tp).unwrap().high_watermark(), 40);
    // A batch larger than the whole budget still goes through, alone.
    node.append(tp, batch_of(1, 1, &[9; 1000])).await.unwrap();
    assert_eq!(node.partition(&tp).unwrap().high_watermark(), 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.producer_id_expiration_ms = 50;
    let node = Node::start(c).await.unwrap();
    let id = create(&node, "expiry", 1, &[]).await;
    let tp = TopicPartition::new(id, 0);
    node.append(tp, idempotent_batch(7, 0, 0, 1)).await.unwrap();
    // While remembered, a gap is refused...
    assert!(matches!(
        node.append(tp, idempotent_batch(7, 0, 9, 1)).await,
        Err(Error::OutOfOrderSequence(_))
    ));
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    // ...once expired (judged at the next append's entry time), the producer is unknown and may
    // start anywhere, as in Kafka.
    node.append(tp, batch_of(1, 1, b"tick")).await.unwrap();
    assert_eq!(
        node.append(tp, idempotent_batch(7, 0, 9, 1))
            .await
            .unwrap()
            .base_offset,
        2
    );
    let producers = node.producers(tp).await.unwrap();
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].1.last_sequence(), 9);
}
