//! Kafka wire pieces Jet handles without `kafka-protocol`'s full decode: the record-batch
//! header (read, validate, patch) and request framing. No I/O here.
//!
//! Map of the crate:
//! - [`batch`] — [`batch::BatchHeader`]: the 61-byte magic-2 header, CRC32C check, iteration over
//!   back-to-back batches, and the in-place patches the broker makes at append (base offset,
//!   leader epoch, LogAppendTime).
//! - [`compact`] — key-based compaction of one batch: its record keys, keyless records
//!   (KIP-467), and the log cleaner's rewrite that keeps some records with their offsets.
//! - [`frame`] — the 4-byte size prefix and the request header fields needed before decoding.

pub mod batch;
pub mod compact;
pub mod frame;
