//! How blocking (HSM) keystore calls reach the keystore.
//!
//! - **In place, one at a time**, while the keystore's calls are quick on average (a local HSM
//!   answers in tens of microseconds, less than a thread hand-off costs): the call runs on the
//!   request's own worker thread. Only one call does so at a time, so a call that stalls holds
//!   up at most one worker and the others keep serving.
//! - **Group commit** otherwise: calls queue up; a dispatcher hands each batch to one blocking
//!   thread, at most `lanes` batches at a time. While the lanes are busy the queue grows, so
//!   under load one hand-off serves many requests instead of one each.
//!
//! Thread hand-offs, not the HSM, were most of the CPU of an HSM-backed request
//! (docs/BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use vouchsafe_keystore::{KeyStore, KeystoreError};

type Job = Box<dyn FnOnce(&dyn KeyStore) + Send>;

/// Most calls run in one batch.
const MAX_BATCH: usize = 256;

/// Handle to the dispatcher.
#[derive(Clone, Debug)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    gate: Arc<InlineGate>,
    keystore: Arc<dyn KeyStore>,
}

impl Batcher {
    /// Starts the dispatcher on the current runtime.
    pub fn start(keystore: Arc<dyn KeyStore>, lanes: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(64 * 1024);
        let lanes = Arc::new(Semaphore::new(lanes.max(1)));
        let gate = Arc::new(InlineGate::new(keystore.inline_below()));
        let ks = keystore.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            loop {
                // Wait for a free lane first: calls that arrive meanwhile join the next batch.
                let Ok(lane) = lanes.clone().acquire_owned().await else { break };
                if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    break;
                }
                let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                let ks = ks.clone();
                tokio::task::spawn_blocking(move || {
                    for job in jobs {
                        job(&*ks);
                    }
                    drop(lane);
                });
            }
        });
        Batcher { tx, gate, keystore }
    }

    /// Runs `f`, in place or in the next batch, and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn KeyStore) -> Result<T, KeystoreError> + Send + 'static,
    ) -> Option<Result<T, KeystoreError>> {
        if let Some(_turn) = self.gate.enter() {
            return Some(self.gate.timed(|| guarded(|| f(&*self.keystore))));
        }
        let (reply, result) = oneshot::channel();
        let gate = self.gate.clone();
        let job: Job = Box::new(move |ks| {
            let _ = reply.send(gate.timed(|| guarded(|| f(ks))));
        });
        self.tx.send(job).await.ok()?;
        result.await.ok()
    }
}

/// A panicking keystore call fails its own request only (not a batch, not a worker).
fn guarded<T>(f: impl FnOnce() -> Result<T, KeystoreError>) -> Result<T, KeystoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(KeystoreError::Internal("keystore call panicked".into())))
}

/// Decides whether a call may run in place: the keystore allows it, no other call is running in
/// place, and recent calls (wherever they ran) averaged under the keystore's limit.
#[derive(Debug)]
struct InlineGate {
    /// The limit in nanoseconds; 0: never in place.
    limit_ns: u64,
    busy: AtomicBool,
    /// Exponentially weighted average of recent call times (weight 1/8), in nanoseconds;
    /// `u64::MAX` until the first call was timed, so the first calls are handed off.
    avg_ns: AtomicU64,
}

/// One call's right to run in place; the next may enter once it is dropped (also on panic).
struct Turn<'a>(&'a AtomicBool);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl InlineGate {
    fn new(limit: Option<Duration>) -> Self {
        let limit_ns = limit.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        InlineGate { limit_ns, busy: AtomicBool::new(false), avg_ns: AtomicU64::new(u64::MAX) }
    }

    fn enter(&self) -> Option<Turn<'_>> {
        if self.limit_ns == 0 || self.avg_ns.load(Ordering::Relaxed) >= self.limit_ns {
            return None;
        }
        (!self.busy.swap(true, Ordering::Acquire)).then_some(Turn(&self.busy))
    }

    /// Runs `f` and folds its duration into the average.
    fn timed<R>(&self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Concurrent updates may lose one sample; the average only steers, it is not a metric.
        let old = self.avg_ns.load(Ordering::Relaxed);
        let new = if old == u64::MAX { ns } else { old - old / 8 + ns / 8 };
        self.avg_ns.store(new.min(u64::MAX - 1), Ordering::Relaxed);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_run_in_place_only_while_quick_and_one_at_a_time() {
        let gate = InlineGate::new(Some(Duration::from_millis(5)));
        assert!(gate.enter().is_none(), "handed off until a call was timed");
        gate.timed(|| ());
        let turn = gate.enter().expect("quick calls run in place");
        assert!(gate.enter().is_none(), "one call in place at a time");
        drop(turn);
        assert!(gate.enter().is_some(), "the turn is given back");
        gate.timed(|| std::thread::sleep(Duration::from_millis(60)));
        assert!(gate.enter().is_none(), "a slow call sends the next ones to the blocking threads");
        for _ in 0..64 {
            gate.timed(|| ());
        }
        assert!(gate.enter().is_some(), "quick calls again bring them back");
    }

    #[test]
    fn a_zero_limit_never_runs_in_place() {
        let gate = InlineGate::new(None);
        gate.timed(|| ());
        assert!(gate.enter().is_none());
    }
}
