//! Where a leader epoch ends in a partition's log: what OffsetForLeaderEpoch answers, so a
//! consumer (or, later, a follower) can tell whether the records it holds diverge from the
//! leader's log after a leader change (KIP-101, KIP-320).
//!
//! The partition's Raft terms stamp its batches as leader epochs, and the index keeps each
//! batch's epoch, so the answer is a binary search over the index
//! (`Store::epoch_end_offset`), bounded by the published log start offset and high watermark:
//! what a reader may see, never an entry still being applied.

use jet_storage::index::{EpochEnd, UNDEFINED_EPOCH};
use jet_storage::TopicPartition;

use super::Node;
use crate::error::Error;

impl Node {
    /// Kafka's `endOffsetFor(requested)` for `tp`: the largest epoch at or below `requested`
    /// that the log holds and the offset where the next epoch starts, with the partition's
    /// current leader epoch as the epoch still being written (it ends at the high watermark).
    /// An epoch newer than the current one, or -1, is [`EpochEnd::UNDEFINED`].
    pub async fn epoch_end_offset(
        &self,
        tp: TopicPartition,
        requested: i32,
    ) -> Result<EpochEnd, Error> {
        let handle = self.partition_here(&tp)?;
        let current = handle.leader_epoch();
        // Both read before the search: a batch published meanwhile is past `end` and not seen,
        // and retention moving the log start only leaves index entries the bound skips.
        let (from, end) = (handle.log_start_offset(), handle.high_watermark());
        if requested >= current || requested == UNDEFINED_EPOCH {
            // Answered from the epochs alone, without touching the store: no need to hop to a
            // blocking thread.
            return Ok(self
                .store
                .epoch_end_offset(&tp, requested, current, from, end)?);
        }
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || {
            store.epoch_end_offset(&tp, requested, current, from, end)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??)
    }
}
