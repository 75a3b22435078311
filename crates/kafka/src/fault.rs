//! Fault injection for tests: drop the connection after a produce was applied but before its
//! response is written, so a test can prove that client retries do not duplicate.
//!
//! Off and inert unless the broker is started with `--fault-drop-produce-responses N`: then one
//! in every `--fault-drop-every K` produce responses (acks 1 or -1) is dropped, N times in all.
//! Each drop is logged as `fault injection: dropped produce response`, which tests count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts produce responses and says which to drop.
#[derive(Debug, Default)]
pub struct FaultInjector {
    remaining: AtomicU64,
    every: u64,
    seen: AtomicU64,
}

impl FaultInjector {
    /// Drops `drop_produce_responses` responses, one in every `every`.
    pub fn new(drop_produce_responses: u64, every: u64) -> Self {
        Self {
            remaining: AtomicU64::new(drop_produce_responses),
            every: every.max(1),
            seen: AtomicU64::new(0),
        }
    }

    /// Injects nothing.
    pub fn inert() -> Self {
        Self::default()
    }

    /// True when the produce response now being sent must be dropped instead.
    pub fn drop_produce_response(&self) -> bool {
        if self.remaining.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(self.every) {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_one_in_every_k_n_times() {
        let f = FaultInjector::new(3, 4);
        let drops: Vec<bool> = (0..20).map(|_| f.drop_produce_response()).collect();
        let at: Vec<usize> = drops
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, vec![3, 7, 11]);
        assert!(!FaultInjector::inert().drop_produce_response());
    }
}
