//! The time a job's tasks spend being polled (computing): its own task's and the tasks its
//! exchanges start, which `SHOW JOB STATUS` reports as CPU seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The poll time of a job's tasks, shared by them (found in a task's session config).
#[derive(Debug, Default)]
pub struct BusyTime {
    micros: AtomicU64,
}

impl BusyTime {
    /// The time counted so far.
    pub fn total(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

/// `work`, its poll time counted into a [`BusyTime`].
pub struct Timed<F> {
    work: Pin<Box<F>>,
    busy: Arc<BusyTime>,
}

impl<F> Timed<F> {
    /// `work`, counted into `busy`.
    pub fn new(work: F, busy: Arc<BusyTime>) -> Self {
        Self {
            work: Box::pin(work),
            busy,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let poll = self.work.as_mut().poll(cx);
        self.busy
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        poll
    }
}
