//! What the null broker remembers: topics (name, id, partitions), each partition's next offset,
//! and — for retained topics only — the batches with the offsets assigned to them.
//!
//! Batches are kept exactly as they arrived (a `Bytes` slice of the request frame, no copy); the
//! offsets assigned here are written into the copy Fetch sends, not into the stored bytes.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use uuid::Uuid;

/// Offset within a magic-2 record batch of each header field the null broker reads.
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const LAST_OFFSET_DELTA_AT: usize = 23;
/// Bytes before the attributes field: base offset (8), length (4), leader epoch (4), magic (1),
/// CRC (4) — the part of a batch the CRC does not cover.
const BATCH_HEADER_MIN: usize = 61;

/// Why a produce to one partition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendError {
    /// Unknown topic or partition.
    UnknownPartition,
    /// Not a sequence of well-formed magic-2 batches.
    Corrupt,
    /// Retaining it would pass the retained-bytes limit.
    Full,
}

/// One batch kept for Fetch.
pub(crate) struct StoredBatch {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) bytes: Bytes,
}

/// One partition.
#[derive(Default)]
pub(crate) struct Partition {
    /// First offset Fetch can serve: 0 for a retained topic; for the others, everything below
    /// `next_offset` was never kept, so it moves with it.
    pub(crate) log_start: i64,
    pub(crate) next_offset: i64,
    pub(crate) batches: Vec<StoredBatch>,
}

/// One topic.
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<Partition>,
}

/// The whole store.
pub(crate) struct State {
    topics: HashMap<String, Topic>,
    names_by_id: HashMap<Uuid, String>,
    retain: HashSet<String>,
    retain_all: bool,
    retained_bytes: u64,
    retained_bytes_max: u64,
}

impl State {
    pub(crate) fn new(retained_bytes_max: u64) -> State {
        State {
            topics: HashMap::new(),
            names_by_id: HashMap::new(),
            retain: HashSet::new(),
            retain_all: false,
            retained_bytes: 0,
            retained_bytes_max,
        }
    }

    /// Creates `name` with `partitions` partitions; false if it already exists.
    pub(crate) fn create(&mut self, name: &str, partitions: usize) -> bool {
        if self.topics.contains_key(name) {
            return false;
        }
        let id = Uuid::new_v4();
        let parts = (0..partitions).map(|_| Partition::default()).collect();
        self.topics.insert(
            name.to_string(),
            Topic {
                id,
                partitions: parts,
            },
        );
        self.names_by_id.insert(id, name.to_string());
        true
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub(crate) fn name_of(&self, id: &Uuid) -> Option<&str> {
        self.names_by_id.get(id).map(String::as_str)
    }

    /// Topic names, sorted (Metadata for "all topics").
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.topics.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn retain(&mut self, topic: &str) {
        self.retain.insert(topic.to_string());
    }

    pub(crate) fn retain_all(&mut self, on: bool) {
        self.retain_all = on;
    }

    pub(crate) fn forget(&mut self, topic: &str) {
        self.retain.remove(topic);
        if let Some(t) = self.topics.get_mut(topic) {
            for p in &mut t.partitions {
                let freed: usize = p.batches.iter().map(|b| b.bytes.len()).sum();
                self.retained_bytes -= freed as u64;
                p.batches = Vec::new();
                p.log_start = p.next_offset;
            }
        }
    }

    pub(crate) fn retained_bytes(&self) -> u64 {
        self.retained_bytes
    }

    /// Assigns offsets to the batches in `records` and keeps them if the topic is retained.
    /// Returns the base offset of the first batch.
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: i32,
        records: &Bytes,
    ) -> Result<i64, AppendError> {
        let counts = batch_record_counts(records).ok_or(AppendError::Corrupt)?;
        let retained = self.retain_all || self.retain.contains(topic);
        if retained && self.retained_bytes + records.len() as u64 > self.retained_bytes_max {
            return Err(AppendError::Full);
        }
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            })
            .ok_or(AppendError::UnknownPartition)?;
        let first = p.next_offset;
        let mut at = 0usize;
        for (len, count) in counts {
            let base = p.next_offset;
            let last = base + count - 1;
            if retained {
                p.batches.push(StoredBatch {
                    base_offset: base,
                    last_offset: last,
                    bytes: records.slice(at..at + len),
                });
            }
            p.next_offset = last + 1;
            at += len;
        }
        if retained {
            self.retained_bytes += records.len() as u64;
        } else {
            p.log_start = p.next_offset;
        }
        Ok(first)
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        let t = self.topics.get(topic)?;
        t.partitions.get(usize::try_from(partition).ok()?)
    }
}

impl Partition {
    /// Index of the first stored batch holding an offset ≥ `offset`.
    pub(crate) fn first_batch_from(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last_offset < offset)
    }
}

/// Splits back-to-back magic-2 batches into (byte length, record count) pairs; `None` if any is
/// malformed. Only the framing fields are read — no CRC check: the null broker must cost as
/// little as a broker can.
pub(crate) fn batch_record_counts(records: &[u8]) -> Option<Vec<(usize, i64)>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < BATCH_HEADER_MIN {
            return None;
        }
        let length =
            i32::from_be_bytes(rest[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].try_into().ok()?);
        let total = usize::try_from(length).ok()? + 12;
        if total < BATCH_HEADER_MIN || total > rest.len() || rest[MAGIC_AT] != 2 {
            return None;
        }
        let delta = i32::from_be_bytes(
            rest[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .ok()?,
        );
        if delta < 0 {
            return None;
        }
        out.push((total, i64::from(delta) + 1));
        at += total;
    }
    if out.is_empty() {
        return None;
    }
    Some(out)
}

/// A fake batch for tests: just the framing fields set, the rest zero.
#[cfg(test)]
pub(crate) fn fake_batch(records: i32, body: usize) -> Vec<u8> {
    let total = BATCH_HEADER_MIN + body;
    let mut b = vec![0u8; total];
    b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&((total - 12) as i32).to_be_bytes());
    b[MAGIC_AT] = 2;
    b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(records - 1).to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::fake_batch as batch;

    #[test]
    fn counts_back_to_back_batches_and_rejects_garbage() {
        let mut two = batch(3, 10);
        two.extend(batch(1, 0));
        assert_eq!(
            batch_record_counts(&two),
            Some(vec![(BATCH_HEADER_MIN + 10, 3), (BATCH_HEADER_MIN, 1)])
        );
        assert_eq!(batch_record_counts(&two[..two.len() - 1]), None);
        assert_eq!(batch_record_counts(&[]), None);
        let mut bad_magic = batch(1, 0);
        bad_magic[MAGIC_AT] = 1;
        assert_eq!(batch_record_counts(&bad_magic), None);
    }

    #[test]
    fn retained_topics_keep_batches_with_offsets_others_do_not() {
        let mut s = State::new(1 << 20);
        assert!(s.create("kept", 2));
        assert!(s.create("dropped", 1));
        assert!(!s.create("kept", 2));
        s.retain("kept");
        let b = Bytes::from(batch(5, 4));
        assert_eq!(s.append("kept", 1, &b), Ok(0));
        assert_eq!(s.append("kept", 1, &b), Ok(5));
        assert_eq!(s.append("dropped", 0, &b), Ok(0));
        assert_eq!(s.append("kept", 2, &b), Err(AppendError::UnknownPartition));
        let p = s.partition("kept", 1).unwrap();
        assert_eq!((p.log_start, p.next_offset, p.batches.len()), (0, 10, 2));
        assert_eq!(p.first_batch_from(4), 0);
        assert_eq!(p.first_batch_from(5), 1);
        assert_eq!(p.first_batch_from(10), 2);
        let d = s.partition("dropped", 0).unwrap();
        assert_eq!((d.log_start, d.next_offset, d.batches.len()), (5, 5, 0));
        assert_eq!(s.retained_bytes(), 2 * b.len() as u64);
        s.forget("kept");
        assert_eq!(s.retained_bytes(), 0);
        assert_eq!(s.partition("kept", 1).unwrap().log_start, 10);
    }

    #[test]
    fn retained_bytes_are_bounded() {
        let mut s = State::new(100);
        s.create("t", 1);
        s.retain("t");
        let b = Bytes::from(batch(1, 30));
        assert_eq!(s.append("t", 0, &b), Ok(0));
        assert_eq!(s.append("t", 0, &b), Err(AppendError::Full));
    }
}
