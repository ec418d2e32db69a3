//! The audit log writer. Entries from concurrent requests are committed together in one
//! transaction (group commit), and each request waits until its entry is durable before it
//! answers: no audit, no operation. Operations that change stored state append their entry
//! inside their own transaction instead ([`crate::db::Tx::append_audit`]).

use tokio::sync::{mpsc, oneshot};

use crate::db::{AuditEntry, Db};
use crate::error::{AppError, AppResult};

/// Most entries committed in one transaction.
const MAX_BATCH: usize = 2048;

type Pending = (AuditEntry, oneshot::Sender<AppResult<()>>);

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(db: Db) -> Self {
        let (tx, rx) = mpsc::channel(64 * 1024);
        tokio::spawn(writer(db, rx));
        AuditLog { tx }
    }

    /// Appends `entry` and waits until it is committed.
    pub async fn record(&self, entry: AuditEntry) -> AppResult<()> {
        let (reply, done) = oneshot::channel();
        self.tx.send((entry, reply)).await.map_err(|_| AppError::internal("audit writer stopped"))?;
        done.await.map_err(|_| AppError::internal("audit writer stopped"))?
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let entries: Vec<AuditEntry> = batch.iter().map(|(e, _)| e.clone()).collect();
        let result = append(&db, &entries).await;
        if result.is_err() && batch.len() > 1 {
            // One entry the database refuses must not fail everyone else's request: retry each
            // alone, so only the operations whose entries cannot be written fail.
            for (entry, reply) in batch.drain(..) {
                let r = append(&db, std::slice::from_ref(&entry)).await;
                if let Err(e) = &r {
                    tracing::error!(code = e.code, action = %entry.action, "audit entry could not be written; its operation fails");
                }
                let _ = reply.send(r);
            }
            continue;
        }
        if let Err(e) = &result {
            tracing::error!(
                code = e.code,
                entries = entries.len(),
                "audit entries could not be written; their operations fail"
            );
        }
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}

async fn append(db: &Db, entries: &[AuditEntry]) -> AppResult<()> {
    let mut tx = db.begin().await?;
    tx.append_audit(entries).await?;
    tx.commit().await
}
