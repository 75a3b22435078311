//! [`Error`]: every way a group operation can fail. The Kafka server maps each variant to one
//! Kafka error code (`jet_kafka::error_map::group_error`); the names follow Kafka's so that the
//! mapping reads as a table.

/// A failed group operation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// An empty group id where the API needs one (or one longer than a Kafka string).
    #[error("invalid group id")]
    InvalidGroupId,
    /// The member id is not (or no longer) in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation is not the group's current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// Another member now owns this `group.instance.id` (KIP-345).
    #[error("fenced instance id")]
    FencedInstanceId,
    /// First JoinGroup (v4+) without a member id: rejoin with the id this error carries
    /// (KIP-394).
    #[error("member id required")]
    MemberIdRequired,
    /// The protocol type differs from the group's, or no protocol is common to every member.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The group is being deleted, or its records could not be written in time.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// This node does not lead the group's coordinator shard.
    #[error("not the coordinator")]
    NotCoordinator,
    /// A session timeout outside the coordinator's bounds.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// The group holds as many members as it may.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// An offset commit's metadata string is longer than the limit.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// The group's records are too large for one write.
    #[error("invalid commit offset size")]
    InvalidCommitOffsetSize,
    /// A commit to this partition is still being written (OffsetFetch with `require_stable`).
    #[error("unstable offset commit")]
    UnstableOffsetCommit,
    /// OffsetDelete of a topic the group's members consume.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
    /// The offset commit names a topic or partition that does not exist.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
}

impl Error {
    /// What a failed group-record write means to a client, as Kafka maps log-append errors in
    /// its group coordinator: leadership and storage problems send the client to find the
    /// coordinator again; timeouts are retried here.
    pub fn from_write(e: &jet_replication::Error) -> Error {
        use jet_replication::Error as R;
        match e {
            R::NotLeader | R::ShuttingDown | R::Storage(_) => Error::NotCoordinator,
            R::MessageTooLarge { .. } => Error::InvalidCommitOffsetSize,
            _ => Error::CoordinatorNotAvailable,
        }
    }
}
