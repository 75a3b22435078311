//! [`GroupConfig`]: the coordinator's timing and limits, named and defaulted as Kafka's broker
//! settings so that clients see the behaviour they were written against.

use std::time::Duration;

/// Settings of the group coordinator. The broker fills them from flags; tests shorten the
/// delays.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How long a new (empty) group waits for more members before its first rebalance completes
    /// (`group.initial.rebalance.delay.ms`, Kafka default 3 s). Each member arriving during the
    /// wait extends it by the same delay, up to the group's rebalance timeout.
    pub initial_rebalance_delay: Duration,
    /// How long the offsets of an empty group are kept after it became empty (or, for groups
    /// that only commit offsets, after the last commit) (`offsets.retention.minutes`, Kafka
    /// default 7 days).
    pub offsets_retention: Duration,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`, Kafka
    /// default 10 minutes).
    pub offsets_retention_check_interval: Duration,
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`, 6 s).
    pub min_session_timeout: Duration,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`, 30 min).
    pub max_session_timeout: Duration,
    /// Most members in one group (`group.max.size`; Kafka's default is unbounded, Jet's is not).
    pub max_group_size: usize,
    /// Longest metadata string an offset commit may carry (`offset.metadata.max.bytes`, 4096).
    pub max_offset_metadata_bytes: usize,
    /// How long a member that joined without a member id and never heard back keeps its place
    /// (Kafka's fixed `NewMemberJoinTimeoutMs`, 5 minutes).
    pub new_member_join_timeout: Duration,
    /// Largest batch of group records written in one Raft entry; larger sets are split.
    pub max_write_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_secs(3),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            max_group_size: 10_000,
            max_offset_metadata_bytes: 4096,
            new_member_join_timeout: Duration::from_secs(300),
            max_write_bytes: 4 << 20,
        }
    }
}
