//! The demo registry's storage: sealed registration records, kept as submitted.

use sqlx::Row;

use super::{Db, Tx};
use crate::error::AppResult;

/// A registration's summary: what the list shows (no sealed data).
#[derive(Clone, Debug)]
pub struct RegistrationSummaryRow {
    /// Record id (chosen by the portal).
    pub id: String,
    /// When the registry received it, Unix milliseconds.
    pub received_at: i64,
    /// The caller that submitted it.
    pub submitted_by: String,
    /// When the device made it (as the device said).
    pub created_at: String,
    /// `online` or `offline`.
    pub mode: String,
    /// The sealed fields' names, comma-separated.
    pub field_names: String,
}

/// A stored registration: the summary and the record JSON.
#[derive(Clone, Debug)]
pub struct RegistrationRow {
    /// The list's columns.
    pub summary: RegistrationSummaryRow,
    /// The sealed record as JSON text.
    pub record: String,
}

macro_rules! summary_row {
    ($r:expr) => {
        RegistrationSummaryRow {
            id: $r.try_get("id")?,
            received_at: $r.try_get("received_at")?,
            submitted_by: $r.try_get("submitted_by")?,
            created_at: $r.try_get("created_at")?,
            mode: $r.try_get("mode")?,
            field_names: $r.try_get("field_names")?,
        }
    };
}

impl Db {
    /// The most recent `limit` registrations, newest first, without their records.
    pub async fn registrations(&self, limit: i64) -> AppResult<Vec<RegistrationSummaryRow>> {
        Ok(on_db!(self, p => {
            let rows = sqlx::query(
                "SELECT id, received_at, submitted_by, created_at, mode, field_names FROM registrations \
                 ORDER BY received_at DESC, id LIMIT $1")
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>(summary_row!(r))).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// One registration by id.
    pub async fn registration(&self, id: &str) -> AppResult<Option<RegistrationRow>> {
        Ok(on_db!(self, p => match sqlx::query(
            "SELECT id, received_at, submitted_by, created_at, mode, field_names, record FROM registrations WHERE id = $1")
            .bind(id).fetch_optional(p).await? {
            None => None,
            Some(r) => Some(RegistrationRow { summary: summary_row!(r), record: r.try_get("record")? }),
        }))
    }
}

impl Tx {
    /// Stores a registration unless one with this id exists; whether it was stored.
    pub async fn insert_registration(&mut self, row: &RegistrationRow) -> AppResult<bool> {
        let s = &row.summary;
        let n = on_tx!(self, c => sqlx::query(
            "INSERT INTO registrations (id, received_at, submitted_by, created_at, mode, field_names, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING")
            .bind(&s.id).bind(s.received_at).bind(&s.submitted_by).bind(&s.created_at).bind(&s.mode)
            .bind(&s.field_names).bind(&row.record)
            .execute(c).await?.rows_affected());
        Ok(n == 1)
    }
}
