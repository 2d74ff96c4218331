//! A clean-stop signal shared by every source of a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Tells unbounded sources to finish their current batch and end, so that every operator
/// downstream flushes and every sink commits (Ctrl-C, `STOP JOB`).
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal; every waiter wakes.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether the signal has fired.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Waits until the signal fires.
    pub async fn stopped(&self) {
        // A `Notified` counts from its creation, so a stop between here and the await wakes it.
        let notified = self.inner.notify.notified();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }

    /// Sleeps for `duration`, or less if the signal fires meanwhile.
    pub async fn sleep(&self, duration: std::time::Duration) {
        let notified = self.inner.notify.notified();
        if self.is_stopped() {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(duration) => {}
        }
    }
}
