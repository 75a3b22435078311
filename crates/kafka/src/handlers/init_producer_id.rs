//! InitProducerId (key 22): producer ids for idempotent producers, versions 0–5.
//!
//! kafka-protocol 0.18 lists version 6 as valid but cannot decode it, so 5 is the top.
//!
//! Without a transactional id Kafka always hands out a fresh producer id at epoch 0 — also when
//! the request names an existing id and epoch (the KIP-360 epoch bump of an idempotent producer:
//! the broker "blindly accepts" it and answers with a new id). Jet does the same; ids come from
//! blocks allocated through the metadata shard. Version 0 requests (aiokafka sends them) carry
//! no producer id or epoch; kafka-protocol fills in -1, which is what Kafka assumes.
//!
//! A transactional id asks for a transaction coordinator, which Jet does not have yet:
//! COORDINATOR_NOT_AVAILABLE, the same answer FindCoordinator gives for transaction keys.

use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::InitProducerId;
/// Versions 0–5 (the ones kafka-protocol decodes).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers an InitProducerId request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = |error_code: i16, producer_id: i64, producer_epoch: i16| {
        InitProducerIdResponse::default()
            .with_error_code(error_code)
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_ongoing_txn_producer_id(ProducerId(-1))
            .with_ongoing_txn_producer_epoch(-1)
    };
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        return response(ResponseError::CoordinatorNotAvailable.code(), -1, -1);
    }
    match ctx.node.new_producer_id().await {
        Ok(id) => response(0, id, 0),
        Err(e) => response(error_map::error_code(&e), -1, -1),
    }
}
