//! A task handle that aborts its task when dropped, so a dropped owner never leaves a task
//! (and the socket it holds) running behind it.

use tokio::task::JoinHandle;

pub(crate) struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    pub(crate) fn new(handle: JoinHandle<T>) -> Self {
        Self(Some(handle))
    }

    /// Aborts the task and waits until it is gone, so whatever it held is closed on return.
    pub(crate) async fn abort_and_wait(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            // A cancelled or panicked task is exactly what we are waiting for.
            let _ = handle.await;
        }
    }

    /// Whether the task has ended (or was already awaited).
    pub(crate) fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(|handle| handle.is_finished())
    }

    /// Waits for the task to finish by itself. Pending forever once taken.
    pub(crate) async fn finished(&mut self) {
        match self.0.as_mut() {
            Some(handle) => {
                let _ = handle.await;
                self.0 = None;
            }
            None => std::future::pending().await,
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}
