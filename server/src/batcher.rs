//! Group commit for blocking keystore calls. Requests' calls queue up; a dispatcher hands each
//! batch to one blocking thread, at most `lanes` batches at a time. While the lanes are busy the
//! queue grows, so under load one thread hand-off serves many requests instead of one each —
//! the hand-offs, not the HSM, were a third of the CPU (docs/BENCHMARKS.md).

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use vouchsafe_keystore::{KeyStore, KeystoreError};

type Job = Box<dyn FnOnce(&dyn KeyStore) + Send>;

/// Most calls run in one batch.
const MAX_BATCH: usize = 256;

/// Handle to the dispatcher.
#[derive(Clone, Debug)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the dispatcher on the current runtime.
    pub fn start(keystore: Arc<dyn KeyStore>, lanes: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(64 * 1024);
        let lanes = Arc::new(Semaphore::new(lanes.max(1)));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            loop {
                // Wait for a free lane first: calls that arrive meanwhile join the next batch.
                let Ok(lane) = lanes.clone().acquire_owned().await else { break };
                if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    break;
                }
                let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                let ks = keystore.clone();
                tokio::task::spawn_blocking(move || {
                    for job in jobs {
                        job(&*ks);
                    }
                    drop(lane);
                });
            }
        });
        Batcher { tx }
    }

    /// Runs `f` in the next batch and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn KeyStore) -> Result<T, KeystoreError> + Send + 'static,
    ) -> Option<Result<T, KeystoreError>> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |ks| {
            // A panicking keystore call must not take the rest of the batch with it.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ks)))
                .unwrap_or_else(|_| Err(KeystoreError::Internal("keystore call panicked".into())));
            let _ = reply.send(r);
        });
        self.tx.send(job).await.ok()?;
        result.await.ok()
    }
}
