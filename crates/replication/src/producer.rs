//! Idempotent-producer state of one partition: for each producer id, its epoch and the sequence
//! ranges and offsets of its last [`MAX_BATCHES`] batches.
//!
//! Checked at apply time, on every replica alike, as Kafka's `ProducerStateManager` does:
//! - a batch equal (same epoch, first and last sequence) to one of the last five is a duplicate:
//!   it is acknowledged with the original offset and not written again;
//! - a lower epoch is `INVALID_PRODUCER_EPOCH`; a higher epoch must start at sequence 0;
//! - within an epoch, the first sequence must follow the last one (wrapping at `i32::MAX`),
//!   else `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - a producer the partition has never seen (or has expired) may start at any sequence, as
//!   Kafka does since KIP-360, so produce never answers `UNKNOWN_PRODUCER_ID`.

use std::collections::VecDeque;

use crate::Error;

/// Batches remembered per producer (Kafka's limit on in-flight requests with idempotence).
pub const MAX_BATCHES: usize = 5;

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// Sequence of its first record.
    pub first_seq: i32,
    /// Sequence of its last record.
    pub last_seq: i32,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// What the partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// Time of its last append (entry time, so replicas agree), for expiration.
    pub last_timestamp_ms: i64,
    /// Its last batches, oldest first.
    pub batches: VecDeque<BatchMeta>,
}

/// The verdict on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Write it.
    Append,
    /// Already written at `base_offset`: acknowledge, do not write.
    Duplicate {
        /// Offset the original got.
        base_offset: i64,
    },
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (next == 0 && last == i32::MAX)
}

/// Checks a batch of producer `epoch` with sequences `first_seq..=last_seq` against `entry`.
pub fn check(
    entry: Option<&ProducerEntry>,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
) -> Result<Check, Error> {
    let Some(e) = entry else {
        return Ok(Check::Append);
    };
    if epoch < e.epoch {
        return Err(Error::InvalidProducerEpoch(format!(
            "producer epoch {epoch} is older than the current epoch {}",
            e.epoch
        )));
    }
    if epoch > e.epoch {
        if first_seq != 0 {
            return Err(Error::OutOfOrderSequence(format!(
                "a new producer epoch must start at sequence 0, got {first_seq}"
            )));
        }
        return Ok(Check::Append);
    }
    if let Some(d) = e
        .batches
        .iter()
        .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
    {
        return Ok(Check::Duplicate {
            base_offset: d.base_offset,
        });
    }
    match e.batches.back() {
        Some(b) if in_sequence(b.last_seq, first_seq) => Ok(Check::Append),
        Some(b) => Err(Error::OutOfOrderSequence(format!(
            "expected sequence {} but got {first_seq}",
            b.last_seq.wrapping_add(1)
        ))),
        None if first_seq == 0 => Ok(Check::Append),
        None => Err(Error::OutOfOrderSequence(format!(
            "expected sequence 0 but got {first_seq}"
        ))),
    }
}

impl ProducerEntry {
    /// A producer seen for the first time.
    pub fn new(epoch: i16) -> Self {
        Self {
            epoch,
            last_timestamp_ms: -1,
            batches: VecDeque::new(),
        }
    }

    /// Records an appended batch (after [`check`] said [`Check::Append`]).
    pub fn record(&mut self, epoch: i16, meta: BatchMeta, timestamp_ms: i64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == MAX_BATCHES {
            self.batches.pop_front();
        }
        self.batches.push_back(meta);
        self.last_timestamp_ms = timestamp_ms;
    }

    /// Sequence of the last record written, or -1.
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    /// Byte encoding stored in RocksDB.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(11 + self.batches.len() * 24);
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.last_timestamp_ms.to_be_bytes());
        b.push(self.batches.len() as u8);
        for m in &self.batches {
            b.extend_from_slice(&m.first_seq.to_be_bytes());
            b.extend_from_slice(&m.last_seq.to_be_bytes());
            b.extend_from_slice(&m.base_offset.to_be_bytes());
            b.extend_from_slice(&m.last_offset.to_be_bytes());
        }
        b
    }

    /// Decodes [`ProducerEntry::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let epoch = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
        let last_timestamp_ms = i64::from_be_bytes(b.get(2..10)?.try_into().ok()?);
        let n = *b.get(10)? as usize;
        let mut batches = VecDeque::with_capacity(n);
        for i in 0..n {
            let at = 11 + i * 24;
            let f = b.get(at..at + 24)?;
            batches.push_back(BatchMeta {
                first_seq: i32::from_be_bytes(f[0..4].try_into().ok()?),
                last_seq: i32::from_be_bytes(f[4..8].try_into().ok()?),
                base_offset: i64::from_be_bytes(f[8..16].try_into().ok()?),
                last_offset: i64::from_be_bytes(f[16..24].try_into().ok()?),
            });
        }
        Some(Self {
            epoch,
            last_timestamp_ms,
            batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_with(epoch: i16, seqs: &[(i32, i32, i64)]) -> ProducerEntry {
        let mut e = ProducerEntry::new(epoch);
        for &(f, l, off) in seqs {
            e.record(
                epoch,
                BatchMeta {
                    first_seq: f,
                    last_seq: l,
                    base_offset: off,
                    last_offset: off + (l - f) as i64,
                },
                1,
            );
        }
        e
    }

    #[test]
    fn check_table() {
        let e = entry_with(3, &[(0, 9, 100), (10, 19, 110)]);
        type Case<'a> = (
            &'a str,
            Option<&'a ProducerEntry>,
            i16,
            i32,
            i32,
            Result<Check, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "unknown producer, any sequence",
                None,
                0,
                57,
                60,
                Ok(Check::Append),
            ),
            ("next in sequence", Some(&e), 3, 20, 29, Ok(Check::Append)),
            (
                "duplicate of last",
                Some(&e),
                3,
                10,
                19,
                Ok(Check::Duplicate { base_offset: 110 }),
            ),
            (
                "duplicate of older",
                Some(&e),
                3,
                0,
                9,
                Ok(Check::Duplicate { base_offset: 100 }),
            ),
            ("gap", Some(&e), 3, 21, 25, Err("OutOfOrderSequence")),
            ("overlap", Some(&e), 3, 15, 25, Err("OutOfOrderSequence")),
            (
                "stale epoch",
                Some(&e),
                2,
                20,
                29,
                Err("InvalidProducerEpoch"),
            ),
            ("new epoch at 0", Some(&e), 4, 0, 4, Ok(Check::Append)),
            (
                "new epoch not at 0",
                Some(&e),
                4,
                5,
                9,
                Err("OutOfOrderSequence"),
            ),
        ];
        for (name, entry, epoch, f, l, want) in cases {
            let got = check(entry, epoch, f, l);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
                (Err(g), Err(w)) => assert!(format!("{g:?}").starts_with(w), "{name}: {g:?}"),
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn sequence_wraps() {
        let e = entry_with(0, &[(i32::MAX - 1, i32::MAX, 5)]);
        assert_eq!(check(Some(&e), 0, 0, 3).unwrap(), Check::Append);
    }

    #[test]
    fn keeps_five_and_round_trips() {
        let seqs: Vec<(i32, i32, i64)> = (0..8).map(|i| (i * 2, i * 2 + 1, i as i64 * 2)).collect();
        let e = entry_with(1, &seqs);
        assert_eq!(e.batches.len(), MAX_BATCHES);
        assert_eq!(e.batches[0].first_seq, 6);
        assert_eq!(e.last_sequence(), 15);
        assert_eq!(ProducerEntry::decode(&e.encode()).unwrap(), e);
        assert!(ProducerEntry::decode(&e.encode()[..20]).is_none());
    }
}
