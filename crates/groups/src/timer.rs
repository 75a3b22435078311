//! [`Timer`]: one pending timeout of the coordinator (a rebalance deadline, a member's session,
//! a sync deadline), as a sleeping tokio task.
//!
//! Whoever owns the `Timer` owns the timeout: dropping it aborts the task, so a member removed
//! or a rebalance completed early leaves nothing behind. A timer that fires calls back into the
//! coordinator with its token; state that has moved on since (the token no longer matches)
//! ignores it, which covers the race between a firing timer and its cancellation.
//! A session timer sleeps until the member's current deadline and, when heartbeats have pushed
//! the deadline on, goes back to sleep until the new one — one wake-up per session timeout at
//! most, never a polling loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::coordinator::Coordinator;

/// Tokens are unique for the life of the process, so a stale timer can never match.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// What a timer is for.
#[derive(Debug, Clone)]
pub(crate) enum TimerKind {
    /// The group's join phase ends (rebalance timeout or initial delay).
    Join { group: String },
    /// Members that did not send SyncGroup in time are removed.
    Sync { group: String },
    /// A member's session ends unless it heartbeated.
    Session { group: String, member: String },
    /// A member id handed out with MEMBER_ID_REQUIRED is forgotten.
    Pending { group: String, member: String },
}

/// A pending timeout; dropping it cancels it.
#[derive(Debug)]
pub(crate) struct Timer {
    pub token: u64,
    abort: AbortHandle,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

impl Timer {
    /// Starts a timer that calls `Coordinator::fire(kind, token)` at `at`, and again at the
    /// instant `fire` returns, until it returns `None`.
    pub fn start(coordinator: Weak<Coordinator>, at: Instant, kind: TimerKind) -> Timer {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move {
            let mut at = at;
            loop {
                tokio::time::sleep_until(at).await;
                let Some(c) = coordinator.upgrade() else {
                    return;
                };
                match c.fire(&kind, token) {
                    Some(next) => at = next,
                    None => return,
                }
            }
        });
        Timer {
            token,
            abort: task.abort_handle(),
        }
    }
}
