//! Voucher storage: status-list index ranges, issued vouchers, redemption and revocation.

use sqlx::Row;

use super::{Db, Tx, insert_blocks, now_ms};
use crate::error::{AppError, AppResult};

/// A run of consecutive indices in one status list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRange {
    /// The list.
    pub list: i64,
    /// First index.
    pub start: i64,
    /// One past the last index.
    pub end: i64,
}

/// A voucher as issued (what the database keeps; never the token).
#[derive(Clone, Debug)]
pub struct VoucherRow {
    /// Voucher id.
    pub jti: String,
    /// Status list.
    pub list: i64,
    /// Index in the list.
    pub idx: i64,
    /// Signing key version.
    pub kid: String,
    /// Beneficiary.
    pub sub: String,
    /// Programme.
    pub aud: String,
    /// Decimal amount.
    pub amount: String,
    /// ISO 4217.
    pub currency: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Who issued it.
    pub issued_by: String,
}

/// A stored voucher with its redemption and revocation state.
#[derive(Clone, Debug)]
pub struct VoucherRecord {
    /// Voucher id.
    pub jti: String,
    /// Status list.
    pub list: i64,
    /// Index in the list.
    pub idx: i64,
    /// Beneficiary.
    pub sub: String,
    /// Programme.
    pub aud: String,
    /// Decimal amount.
    pub amount: String,
    /// ISO 4217.
    pub currency: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Unix milliseconds, if revoked.
    pub revoked_at: Option<i64>,
    /// Unix milliseconds, if redeemed.
    pub redeemed_at: Option<i64>,
    /// Who redeemed it.
    pub redeemed_by: Option<String>,
    /// The redeemer's `Idempotency-Key`.
    pub redeem_key: Option<String>,
    /// The winning redemption attempt's random id.
    pub redeem_nonce: Option<String>,
}

impl Db {
    /// Reserves up to `n` (≥ 1) consecutive indices from the newest status list, starting a new
    /// list of `new_list_size` entries when it is full. May return fewer than `n` (the rest of a
    /// list); call again for more. Safe across instances: the newest list is locked, and two
    /// instances starting the same new list collide on its primary key and retry.
    pub async fn reserve_indices(&self, n: i64, new_list_size: i64) -> AppResult<IndexRange> {
        for _ in 0..8 {
            let mut tx = self.begin().await?;
            let newest: Option<(i64, i64, i64)> = match &mut tx {
                Tx::Sqlite(t) => sqlx::query("SELECT id, size, next_idx FROM status_lists ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut **t)
                    .await?
                    .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("size")?, r.try_get("next_idx")?)))
                    .transpose()?,
                Tx::Postgres(t) => {
                    sqlx::query("SELECT id, size, next_idx FROM status_lists ORDER BY id DESC LIMIT 1 FOR UPDATE")
                        .fetch_optional(&mut **t)
                        .await?
                        .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("size")?, r.try_get("next_idx")?)))
                        .transpose()?
                }
            };
            let (list, size, next) = match newest {
                Some((id, size, next)) if next < size => (id, size, next),
                other => {
                    let id = other.map_or(1, |(id, _, _)| id + 1);
                    let created = on_tx!(&mut tx, c => sqlx::query(
                        "INSERT INTO status_lists (id, size, next_idx, created_at) VALUES ($1, $2, 0, $3) ON CONFLICT (id) DO NOTHING")
                        .bind(id).bind(new_list_size).bind(now_ms() / 1000).execute(c).await?.rows_affected());
                    if created == 0 {
                        // Another instance started this list first: look again.
                        continue;
                    }
                    (id, new_list_size, 0)
                }
            };
            let take = n.min(size - next);
            on_tx!(&mut tx, c => sqlx::query("UPDATE status_lists SET next_idx = $1 WHERE id = $2")
                .bind(next + take).bind(list).execute(c).await?.rows_affected());
            tx.commit().await?;
            return Ok(IndexRange { list, start: next, end: next + take });
        }
        Err(AppError::database_unavailable("status list allocation kept colliding"))
    }

    /// Every status list: id and size.
    pub async fn status_lists(&self) -> AppResult<Vec<(i64, i64)>> {
        Ok(on_db!(self, p => {
            let rows = sqlx::query("SELECT id, size FROM status_lists ORDER BY id").fetch_all(p).await?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("size")?))).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// A status list's size and the indices revoked in it; `None` if there is no such list.
    pub async fn revoked_in_list(&self, list: i64) -> AppResult<Option<(i64, Vec<i64>)>> {
        let size: Option<i64> = on_db!(self, p => sqlx::query("SELECT size FROM status_lists WHERE id = $1")
            .bind(list).fetch_optional(p).await?.map(|r| r.try_get("size")).transpose()?);
        let Some(size) = size else { return Ok(None) };
        let idx = on_db!(self, p => {
            let rows = sqlx::query("SELECT idx FROM vouchers WHERE list_id = $1 AND revoked_at IS NOT NULL")
                .bind(list).fetch_all(p).await?;
            rows.iter().map(|r| r.try_get::<i64, _>("idx")).collect::<Result<Vec<_>, _>>()?
        });
        Ok(Some((size, idx)))
    }

    /// A voucher by `jti`.
    pub async fn voucher(&self, jti: &str) -> AppResult<Option<VoucherRecord>> {
        Ok(on_db!(self, p => {
            match sqlx::query(
                "SELECT jti, list_id, idx, sub, aud, amount, currency, exp, revoked_at, redeemed_at, redeemed_by, redeem_key, redeem_nonce \
                 FROM vouchers WHERE jti = $1")
                .bind(jti).fetch_optional(p).await? {
                None => None,
                Some(r) => Some(VoucherRecord {
                    jti: r.try_get("jti")?,
                    list: r.try_get("list_id")?,
                    idx: r.try_get("idx")?,
                    sub: r.try_get("sub")?,
                    aud: r.try_get("aud")?,
                    amount: r.try_get("amount")?,
                    currency: r.try_get("currency")?,
                    exp: r.try_get("exp")?,
                    revoked_at: r.try_get("revoked_at")?,
                    redeemed_at: r.try_get("redeemed_at")?,
                    redeemed_by: r.try_get("redeemed_by")?,
                    redeem_key: r.try_get("redeem_key")?,
                    redeem_nonce: r.try_get("redeem_nonce")?,
                }),
            }
        }))
    }
}

impl Tx {
    /// Records issued vouchers.
    pub async fn insert_vouchers(&mut self, rows: &[VoucherRow]) -> AppResult<()> {
        for block in insert_blocks(rows.len()) {
            let chunk = &rows[block];
            let res: Result<u64, sqlx::Error> = on_tx!(self, c => {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO vouchers (jti, list_id, idx, kid, sub, aud, amount, currency, iat, exp, issued_by) ",
                );
                q.push_values(chunk, |mut b, v| {
                    b.push_bind(v.jti.as_str())
                        .push_bind(v.list)
                        .push_bind(v.idx)
                        .push_bind(v.kid.as_str())
                        .push_bind(v.sub.as_str())
                        .push_bind(v.aud.as_str())
                        .push_bind(v.amount.as_str())
                        .push_bind(v.currency.as_str())
                        .push_bind(v.iat)
                        .push_bind(v.exp)
                        .push_bind(v.issued_by.as_str());
                });
                q.build().execute(c).await.map(|r| r.rows_affected())
            });
            res.map_err(|e| match e {
                sqlx::Error::Database(ref d) if d.is_unique_violation() => {
                    AppError::conflict("a voucher id or status index is already taken")
                }
                other => other.into(),
            })?;
        }
        Ok(())
    }

    /// Marks a voucher redeemed unless it already is, or is revoked. True if this call did it.
    /// `nonce` identifies this attempt (see [`VoucherRecord::redeem_nonce`]).
    pub async fn redeem(&mut self, jti: &str, at_ms: i64, by: &str, key: Option<&str>, nonce: &str) -> AppResult<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE vouchers SET redeemed_at = $1, redeemed_by = $2, redeem_key = $3, redeem_nonce = $4 \
             WHERE jti = $5 AND redeemed_at IS NULL AND revoked_at IS NULL")
            .bind(at_ms).bind(by).bind(key).bind(nonce).bind(jti).execute(c).await?.rows_affected());
        Ok(n == 1)
    }

    /// Marks a voucher revoked unless it already is, or has been redeemed. True if this call did it.
    pub async fn revoke(&mut self, jti: &str, at_ms: i64, by: &str) -> AppResult<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE vouchers SET revoked_at = $1, revoked_by = $2 \
             WHERE jti = $3 AND revoked_at IS NULL AND redeemed_at IS NULL")
            .bind(at_ms).bind(by).bind(jti).execute(c).await?.rows_affected());
        Ok(n == 1)
    }
}
