//! The one mapping from Jet's internal errors to Kafka error codes.
//!
//! Handlers never pick a code for a replication or record-batch error themselves: they call
//! [`response_error`] (or [`error_code`]), so the same failure reads the same on every API, and the
//! table test below pins every variant.
//!
//! Choices that are not one-to-one:
//! - `ShuttingDown` → NOT_LEADER_OR_FOLLOWER: the client refreshes metadata and retries
//!   elsewhere (or here, after a restart), which is what a leader moving away looks like to Kafka
//!   clients.
//! - A record batch with magic 0 or 1 → INVALID_RECORD (87), not CORRUPT_MESSAGE: Kafka 4 refuses
//!   old-format batches in Produce v3+ with `InvalidRecordException` ("Produce requests with
//!   version 3 or higher are only allowed to contain record batches with magic version 2"), which
//!   travels as 87 per partition; the connection stays open.
//! - No batch at all → INVALID_RECORD (87), as Kafka's `ProduceRequest.validateRecords` answers
//!   ("must have at least one record batch per partition").
//! - CRC mismatch, truncation and impossible header fields → CORRUPT_MESSAGE (2), as Kafka's
//!   `ensureValid` (CorruptRecordException) answers.

use jet_protocol::batch::BatchError;
use jet_replication::Error;
use kafka_protocol::ResponseError;

/// An internal error on its way to a client.
#[derive(Debug, Clone, Copy)]
pub enum Internal<'a> {
    /// From the replication layer.
    Replication(&'a Error),
    /// From record-batch validation.
    Batch(&'a BatchError),
}

impl<'a> From<&'a Error> for Internal<'a> {
    fn from(e: &'a Error) -> Self {
        Internal::Replication(e)
    }
}

impl<'a> From<&'a BatchError> for Internal<'a> {
    fn from(e: &'a BatchError) -> Self {
        Internal::Batch(e)
    }
}

/// The Kafka error a client gets for an internal error.
pub fn response_error<'a>(e: impl Into<Internal<'a>>) -> ResponseError {
    match e.into() {
        Internal::Replication(e) => match e {
            Error::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            Error::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            Error::InvalidTopic(_) => ResponseError::InvalidTopicException,
            Error::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            Error::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            Error::InvalidConfig(_) => ResponseError::InvalidConfig,
            Error::InvalidRequest(_) => ResponseError::InvalidRequest,
            Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            Error::NotLeader => ResponseError::NotLeaderOrFollower,
            Error::Timeout => ResponseError::RequestTimedOut,
            Error::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            Error::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
            Error::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
            Error::InvalidTxnState => ResponseError::InvalidTxnState,
            Error::ShuttingDown => ResponseError::NotLeaderOrFollower,
            Error::Storage(_) => ResponseError::KafkaStorageError,
        },
        Internal::Batch(e) => match e {
            BatchError::Truncated | BatchError::CrcMismatch | BatchError::Invalid(_) => {
                ResponseError::CorruptMessage
            }
            BatchError::UnsupportedMagic(_) | BatchError::Empty => ResponseError::InvalidRecord,
        },
    }
}

/// The Kafka error code (as the wire carries it) for an internal error.
pub fn error_code<'a>(e: impl Into<Internal<'a>>) -> i16 {
    response_error(e).code()
}

/// The Kafka error a client gets for a group coordinator error (one variant per Kafka code;
/// failed record writes were already mapped by `jet_groups::Error::from_write`).
pub fn group_error(e: &jet_groups::Error) -> ResponseError {
    use jet_groups::Error as G;
    match e {
        G::InvalidGroupId => ResponseError::InvalidGroupId,
        G::UnknownMemberId => ResponseError::UnknownMemberId,
        G::IllegalGeneration => ResponseError::IllegalGeneration,
        G::RebalanceInProgress => ResponseError::RebalanceInProgress,
        G::FencedInstanceId => ResponseError::FencedInstanceId,
        G::MemberIdRequired => ResponseError::MemberIdRequired,
        G::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        G::GroupIdNotFound => ResponseError::GroupIdNotFound,
        G::NonEmptyGroup => ResponseError::NonEmptyGroup,
        G::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        G::NotCoordinator => ResponseError::NotCoordinator,
        G::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        G::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        G::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        G::InvalidCommitOffsetSize => ResponseError::InvalidCommitOffsetSize,
        G::UnstableOffsetCommit => ResponseError::UnstableOffsetCommit,
        G::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        G::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
    }
}

/// The Kafka error code for a group coordinator error, or 0 for success.
pub fn group_error_code<T>(r: &Result<T, jet_groups::Error>) -> i16 {
    match r {
        Ok(_) => 0,
        Err(e) => group_error(e).code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replication_error_has_its_code() {
        let table: Vec<(Error, i16)> = vec![
            (Error::UnknownTopicOrPartition, 3),
            (Error::TopicAlreadyExists("t".into()), 36),
            (Error::InvalidTopic("t".into()), 17),
            (Error::InvalidPartitions("p".into()), 37),
            (Error::InvalidReplicationFactor("r".into()), 38),
            (Error::InvalidConfig("c".into()), 40),
            (Error::InvalidRequest("r".into()), 42),
            (
                Error::OffsetOutOfRange {
                    log_start_offset: 0,
                    high_watermark: 1,
                },
                1,
            ),
            (Error::NotLeader, 6),
            (Error::Timeout, 7),
            (Error::MessageTooLarge { size: 2, max: 1 }, 10),
            (Error::OutOfOrderSequence("seq".into()), 45),
            (Error::InvalidProducerEpoch("epoch".into()), 47),
            (Error::InvalidTxnState, 48),
            (Error::ShuttingDown, 6),
            (Error::Storage("disk".into()), 56),
        ];
        for (err, code) in &table {
            assert_eq!(error_code(err), *code, "{err:?}");
        }
        // A new variant must be added to the table: the match in `response_error` forces a code,
        // this count forces a test row.
        assert_eq!(table.len(), 16);
    }

    #[test]
    fn every_group_error_has_its_code() {
        use jet_groups::Error as G;
        let table: Vec<(G, i16)> = vec![
            (G::InvalidGroupId, 24),
            (G::UnknownMemberId, 25),
            (G::IllegalGeneration, 22),
            (G::RebalanceInProgress, 27),
            (G::FencedInstanceId, 82),
            (G::MemberIdRequired, 79),
            (G::InconsistentGroupProtocol, 23),
            (G::GroupIdNotFound, 69),
            (G::NonEmptyGroup, 68),
            (G::CoordinatorNotAvailable, 15),
            (G::NotCoordinator, 16),
            (G::InvalidSessionTimeout, 26),
            (G::GroupMaxSizeReached, 81),
            (G::OffsetMetadataTooLarge, 12),
            (G::InvalidCommitOffsetSize, 28),
            (G::UnstableOffsetCommit, 88),
            (G::GroupSubscribedToTopic, 86),
            (G::UnknownTopicOrPartition, 3),
        ];
        for (err, code) in &table {
            assert_eq!(group_error(err).code(), *code, "{err:?}");
        }
        assert_eq!(table.len(), 18);
        assert_eq!(group_error_code::<()>(&Ok(())), 0);
        // Failed group-record writes, as Kafka's coordinator maps log-append errors.
        for (err, code) in [
            (Error::NotLeader, 16),
            (Error::ShuttingDown, 16),
            (Error::Storage("disk".into()), 16),
            (Error::Timeout, 15),
            (Error::MessageTooLarge { size: 2, max: 1 }, 28),
        ] {
            assert_eq!(group_error(&G::from_write(&err)).code(), code, "{err:?}");
        }
    }

    #[test]
    fn every_batch_error_has_its_code() {
        let table: Vec<(BatchError, i16)> = vec![
            (BatchError::CrcMismatch, 2),
            (BatchError::Truncated, 2),
            (BatchError::Invalid("count"), 2),
            (BatchError::UnsupportedMagic(1), 87),
            (BatchError::UnsupportedMagic(0), 87),
            (BatchError::Empty, 87),
        ];
        for (err, code) in &table {
            assert_eq!(error_code(err), *code, "{err:?}");
        }
    }
}
