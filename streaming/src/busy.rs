//! The time a job's tasks spend being polled (computing): its own task's and the tasks its
//! exchanges start, which `SHOW JOB STATUS` reports as CPU seconds, in all and per instance.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The poll time of a job's tasks, shared by them (found in a task's session config): in
/// all, and per instance of a parallel job (the tasks that drive its partitions).
#[derive(Debug, Default)]
pub struct BusyTime {
    micros: AtomicU64,
    instances: Mutex<BTreeMap<usize, Arc<AtomicU64>>>,
}

impl BusyTime {
    /// The time counted so far.
    pub fn total(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    /// The time counted so far for the tasks of `instance`.
    pub fn of_instance(&self, instance: usize) -> Duration {
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        instances.get(&instance).map_or(Duration::ZERO, |micros| {
            Duration::from_micros(micros.load(Ordering::Relaxed))
        })
    }

    fn instance_counter(&self, instance: usize) -> Arc<AtomicU64> {
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        instances.entry(instance).or_default().clone()
    }
}

/// `work`, its poll time counted into a [`BusyTime`].
pub struct Timed<F> {
    work: Pin<Box<F>>,
    busy: Arc<BusyTime>,
    instance: Option<Arc<AtomicU64>>,
}

impl<F> Timed<F> {
    /// `work`, counted into `busy`.
    pub fn new(work: F, busy: Arc<BusyTime>) -> Self {
        Self {
            work: Box::pin(work),
            busy,
            instance: None,
        }
    }

    /// `work`, which drives partition `instance` of a parallel job, counted into `busy`.
    pub fn of_instance(work: F, busy: Arc<BusyTime>, instance: usize) -> Self {
        let counter = busy.instance_counter(instance);
        Self {
            work: Box::pin(work),
            busy,
            instance: Some(counter),
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let poll = self.work.as_mut().poll(cx);
        let micros = started.elapsed().as_micros() as u64;
        self.busy.micros.fetch_add(micros, Ordering::Relaxed);
        if let Some(instance) = &self.instance {
            instance.fetch_add(micros, Ordering::Relaxed);
        }
        poll
    }
}
