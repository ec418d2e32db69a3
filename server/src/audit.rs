//! The audit log writer. Entries from concurrent requests are committed together in one
//! transaction (group commit), and each request waits until its entry is durable before it
//! answers: no audit, no operation. The small state changes that happen at request rates —
//! recording an issued voucher, redeeming one — ride in the same transactions as their entries,
//! so they are committed together with them or not at all. Rarer state changes (keys, revocation)
//! append their entry inside their own transaction instead ([`crate::db::Tx::append_audit`]).

use tokio::sync::{mpsc, oneshot};

use crate::db::{AUDIT_HEAD_STALE, AppendConn, AuditEntry, AuditHead, Db, VoucherRow};
use crate::error::{AppError, AppResult};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 2048;

/// One write and the audit entry that goes with it.
#[derive(Clone, Debug)]
enum Write {
    /// Only the entry.
    Audit(AuditEntry),
    /// Record an issued voucher.
    Issue(Box<VoucherRow>, AuditEntry),
    /// Redeem a voucher if nobody has and it is not revoked; the entry is written only if this
    /// redemption wins.
    Redeem { jti: String, at_ms: i64, by: String, key: Option<String>, nonce: String, entry: AuditEntry },
}

impl Write {
    fn entry(&self) -> &AuditEntry {
        match self {
            Write::Audit(e) | Write::Issue(_, e) | Write::Redeem { entry: e, .. } => e,
        }
    }
}

type Pending = (Write, oneshot::Sender<AppResult<bool>>);

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

    async fn submit(&self, w: Write) -> AppResult<bool> {
        let (reply, done) = oneshot::channel();
        self.tx.send((w, reply)).await.map_err(|_| AppError::internal("audit writer stopped"))?;
        done.await.map_err(|_| AppError::internal("audit writer stopped"))?
    }

    /// Appends `entry` and waits until it is committed.
    pub async fn record(&self, entry: AuditEntry) -> AppResult<()> {
        self.submit(Write::Audit(entry)).await.map(|_| ())
    }

    /// Records an issued voucher with its entry; returns once both are committed.
    pub async fn issue(&self, row: VoucherRow, entry: AuditEntry) -> AppResult<()> {
        self.submit(Write::Issue(Box::new(row), entry)).await.map(|_| ())
    }

    /// Redeems voucher `jti` unless it is redeemed or revoked already. True if this call won;
    /// then `entry` is committed with it. `nonce` (random, per attempt) is stored with the
    /// redemption, so a retry can recognise a commit whose acknowledgement was lost.
    pub async fn redeem(
        &self,
        jti: String,
        at_ms: i64,
        by: String,
        key: Option<String>,
        nonce: String,
        entry: AuditEntry,
    ) -> AppResult<bool> {
        self.submit(Write::Redeem { jti, at_ms, by, key, nonce, entry }).await
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let mut chain = Chain::default();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let writes: Vec<Write> = batch.iter().map(|(w, _)| w.clone()).collect();
        let result = apply_fresh(&db, &writes, &mut chain).await;
        match result {
            Ok(outcomes) => {
                for ((_, reply), won) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(won));
                }
            }
            Err(e) if batch.len() > 1 && e.status != axum::http::StatusCode::SERVICE_UNAVAILABLE => {
                // One write the database refuses must not fail everyone else's request: retry
                // each alone, so only the operations whose writes cannot land fail. (Not when
                // the database is unreachable: that would wait out a pool timeout per write.)
                tracing::warn!(code = e.code, writes = batch.len(), "group commit failed; retrying one by one");
                for (w, reply) in batch.drain(..) {
                    let r = retry_alone(&db, &w).await;
                    if let Err(e) = &r {
                        tracing::error!(code = e.code, action = %w.entry().action, "audit entry could not be written; its operation fails");
                    }
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(code = e.code, "audit entry could not be written; its operation fails");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies one write after its batch failed. The batch may in fact have committed (a connection
/// lost during COMMIT): a voucher row already there with this `jti`, or a redemption carrying
/// this attempt's nonce, is this write, already done.
async fn retry_alone(db: &Db, w: &Write) -> AppResult<bool> {
    match w {
        Write::Issue(row, _) if db.voucher(&row.jti).await?.is_some() => return Ok(true),
        Write::Redeem { jti, nonce, .. }
            if db.voucher(jti).await?.and_then(|r| r.redeem_nonce).as_deref() == Some(nonce.as_str()) =>
        {
            return Ok(true);
        }
        _ => {}
    }
    apply_fresh(db, std::slice::from_ref(w), &mut Chain::default()).await.map(|o| o[0])
}

/// What the writer keeps between batches on SQLite: the chain's head, instead of reading it in
/// every transaction (an append from a stale head is refused by a trigger, migration 0005, and
/// redone from a fresh one), and its own connection for appends.
#[derive(Default)]
struct Chain {
    head: Option<AuditHead>,
    conn: Option<AppendConn>,
}

/// [`apply`], once more from a freshly read head if the remembered one was stale. Forgets the
/// head and the connection on any failure: a commit whose outcome is unknown may have moved the
/// head, and the connection may be broken.
async fn apply_fresh(db: &Db, writes: &[Write], chain: &mut Chain) -> AppResult<Vec<bool>> {
    let mut result = apply(db, writes, chain).await;
    if result.as_ref().is_err_and(|e| e.code == AUDIT_HEAD_STALE) {
        chain.head = None;
        result = apply(db, writes, chain).await;
    }
    if result.is_err() {
        *chain = Chain::default();
    }
    result
}

/// Applies `writes` and their entries atomically; per write, whether it took effect. Only audit
/// entries on SQLite from a remembered head: one INSERT statement, atomic by itself. Otherwise
/// one transaction, which on SQLite reads the head under the write lock (so a retry after a
/// stale head cannot be stale again, whoever else appends).
async fn apply(db: &Db, writes: &[Write], chain: &mut Chain) -> AppResult<Vec<bool>> {
    let sqlite = matches!(db, Db::Sqlite(_));
    if sqlite
        && writes.iter().all(|w| matches!(w, Write::Audit(_)))
        && let Some(from) = chain.head.take()
    {
        if chain.conn.is_none() {
            chain.conn = db.append_conn().await?;
        }
        if let Some(conn) = chain.conn.as_mut() {
            let entries: Vec<AuditEntry> = writes.iter().map(|w| w.entry().clone()).collect();
            chain.head = Some(conn.append(&from, &entries).await?);
            return Ok(vec![true; writes.len()]);
        }
    }
    let mut tx = db.begin().await?;
    let rows: Vec<VoucherRow> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Issue(r, _) => Some((**r).clone()),
            _ => None,
        })
        .collect();
    if !rows.is_empty() {
        tx.insert_vouchers(&rows).await?;
    }
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut entries = Vec::with_capacity(writes.len());
    for w in writes {
        let took = match w {
            Write::Redeem { jti, at_ms, by, key, nonce, .. } => {
                tx.redeem(jti, *at_ms, by, key.as_deref(), nonce).await?
            }
            _ => true,
        };
        if took {
            entries.push(w.entry().clone());
        }
        outcomes.push(took);
    }
    let remembered = if sqlite { chain.head.take() } else { None };
    let appended = tx.append_audit_after(remembered.as_ref(), &entries).await?;
    tx.commit().await?;
    if sqlite {
        chain.head = Some(appended);
    }
    Ok(outcomes)
}
