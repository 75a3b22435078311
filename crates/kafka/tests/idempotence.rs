//! Idempotent producers at the protocol level over real TCP: InitProducerId (v0 as aiokafka
//! sends it, v4, transactional ids), and each answer Produce gives a producer batch: a retried
//! batch gets its original offset, a gap OUT_OF_ORDER_SEQUENCE_NUMBER (45), a stale epoch
//! INVALID_PRODUCER_EPOCH (47), a transactional batch INVALID_TXN_STATE (48); DescribeProducers
//! reports what the partition remembers.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceResponse, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

/// A one-record batch from producer `pid` at `epoch`, sequence `seq`; `transactional` sets the
/// attribute bit.
fn producer_batch(pid: i64, epoch: i16, seq: i32, transactional: bool) -> Bytes {
    let plain = batch(&[b"v"]);
    let mut b = plain.to_vec();
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    if transactional {
        let attrs = i16::from_be_bytes([b[21], b[22]]) | 0x10;
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
    }
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

async fn produce_code(c: &mut Client, records: Bytes) -> (i16, i64) {
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_request("idem", 0, records, -1))
        .await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_id_versions_and_transactional_ids() {
    let server = start().await;
    let mut c = server.client().await;
    // v0 carries no producer id or epoch (aiokafka sends it like this).
    let v0: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            0,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await;
    assert_eq!(v0.error_code, 0);
    assert!(v0.producer_id.0 >= 0);
    assert_eq!(v0.producer_epoch, 0);
    // v4 with an existing id and epoch (a KIP-360 bump): Kafka hands a non-transactional
    // producer a fresh id at epoch 0.
    let v4: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(v0.producer_id)
                .with_producer_epoch(0),
        )
        .await;
    assert_eq!(v4.error_code, 0);
    assert_ne!(v4.producer_id, v0.producer_id);
    assert_eq!(v4.producer_epoch, 0);
    // A transactional id needs a transaction coordinator, which Jet does not have.
    let txn: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1")))),
        )
        .await;
    assert_eq!(txn.error_code, 15, "COORDINATOR_NOT_AVAILABLE");
    assert_eq!(txn.producer_id.0, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_answers_each_sequence_case() {
    let server = start().await;
    server.create_topic("idem", 1).await;
    let mut c = server.client().await;
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
    let pid = init.producer_id.0;

    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 0, 0, false)).await,
        (0, 0)
    );
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 0, 1, false)).await,
        (0, 1)
    );
    // A retry of an acknowledged batch: success with the original offset, nothing written.
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 0, 0, false)).await,
        (0, 0)
    );
    // A gap in the sequence.
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 0, 5, false))
            .await
            .0,
        45
    );
    // A new epoch must start at 0; then the old epoch is fenced.
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 1, 3, false))
            .await
            .0,
        45
    );
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 1, 0, false)).await,
        (0, 2)
    );
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 0, 2, false))
            .await
            .0,
        47
    );
    // Transactional batches need a transaction coordinator.
    assert_eq!(
        produce_code(&mut c, producer_batch(pid, 1, 1, true))
            .await
            .0,
        48
    );
    // The log holds exactly the three accepted batches.
    let h = server
        .node
        .partition(&jet_replication::TopicPartition::new(
            server.node.metadata().topic("idem").unwrap().id,
            0,
        ))
        .unwrap();
    assert_eq!(h.high_watermark(), 3);

    let described: DescribeProducersResponse = c
        .call(
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default()
                    .with_name(name("idem"))
                    .with_partition_indexes(vec![0, 7]),
                TopicRequest::default()
                    .with_name(name("missing"))
                    .with_partition_indexes(vec![0]),
            ]),
        )
        .await;
    let p0 = &described.topics[0].partitions[0];
    assert_eq!(p0.error_code, 0);
    assert_eq!(p0.active_producers.len(), 1);
    let state = &p0.active_producers[0];
    assert_eq!(state.producer_id.0, pid);
    assert_eq!(state.producer_epoch, 1);
    assert_eq!(state.last_sequence, 0);
    assert!(state.last_timestamp > 0);
    assert_eq!(described.topics[0].partitions[1].error_code, 3);
    assert_eq!(described.topics[1].partitions[0].error_code, 3);
}
