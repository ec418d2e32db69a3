//! The demo registry's storage: sealed registration records, kept as submitted.

use sqlx::Row;

use super::{Db, Tx};
use crate::error::AppResult;

/// A stored registration: its id, when it arrived (Unix ms), who sent it, and the record JSON.
#[derive(Clone, Debug)]
pub struct RegistrationRow {
    /// Record id (chosen by the portal).
    pub id: String,
    /// When the registry received it, Unix milliseconds.
    pub received_at: i64,
    /// The caller that submitted it.
    pub submitted_by: String,
    /// The sealed record as JSON text.
    pub record: String,
}

macro_rules! registration_row {
    ($r:expr) => {
        RegistrationRow {
            id: $r.try_get("id")?,
            received_at: $r.try_get("received_at")?,
            submitted_by: $r.try_get("submitted_by")?,
            record: $r.try_get("record")?,
        }
    };
}

impl Db {
    /// The most recent `limit` registrations, newest first.
    pub async fn registrations(&self, limit: i64) -> AppResult<Vec<RegistrationRow>> {
        Ok(on_db!(self, p => {
            let rows = sqlx::query(
                "SELECT id, received_at, submitted_by, record FROM registrations ORDER BY received_at DESC, id LIMIT $1")
                .bind(limit).fetch_all(p).await?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>(registration_row!(r))).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// One registration by id.
    pub async fn registration(&self, id: &str) -> AppResult<Option<RegistrationRow>> {
        Ok(on_db!(self, p => match sqlx::query(
            "SELECT id, received_at, submitted_by, record FROM registrations WHERE id = $1").bind(id).fetch_optional(p).await? {
            None => None,
            Some(r) => Some(registration_row!(r)),
        }))
    }
}

impl Tx {
    /// Stores a registration unless one with this id exists; whether it was stored.
    pub async fn insert_registration(&mut self, row: &RegistrationRow) -> AppResult<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "INSERT INTO registrations (id, received_at, submitted_by, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING")
            .bind(&row.id).bind(row.received_at).bind(&row.submitted_by).bind(&row.record)
            .execute(c).await?.rows_affected());
        Ok(n == 1)
    }
}
