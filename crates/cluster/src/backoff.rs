//! Reconnect backoff: exponential, bounded, with jitter.
//!
//! Jitter matters here because a node that comes back is dialed by every other node at once;
//! without it they would all retry in lockstep. Each delay is drawn uniformly from the upper
//! half of the current step ("equal jitter"), so it never falls below half the step and never
//! exceeds `max`.

use std::time::Duration;

/// The delay before the next reconnect attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`. `seed` feeds the jitter; any value
    /// works (zero is replaced), and the same seed gives the same delays, so tests replay.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            step: initial,
            // xorshift has one fixed point, zero.
            rng: seed | 1,
        }
    }

    /// The next delay; the step doubles for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let jitter_nanos = self.next_random() % (half.as_nanos() as u64 + 1);
        half + Duration::from_nanos(jitter_nanos)
    }

    /// Back to the initial step, after a connection succeeded.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }

    /// xorshift64*: enough randomness to spread retries, no dependency, replayable from a seed.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_max_stays_within_bounds_and_resets() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut backoff = Backoff::new(initial, max, 42);
        let mut step = initial;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(max);
        }
        assert!(backoff.next_delay() >= max / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= initial);
    }

    #[test]
    fn jitter_spreads_two_nodes_and_replays_from_the_seed() {
        let delays = |seed| {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
    }
}
