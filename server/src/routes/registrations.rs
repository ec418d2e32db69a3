//! The demo registry behind the web portal (`/portal/`): sealed registration records in, for the
//! admin view (`/admin/`) to list and open through `decrypt`. An extension of CONTRACT §2: a
//! real deployment sends the portal's records to its own registry (OpenG2P, OpenSPP, …).
//!
//! The server checks each record's shape and that every field is a compact JWE whose `ctx` is
//! `registration/<id>/<field>`, so fields cannot be swapped between records or names; it never
//! sees a plain value.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use vouchsafe_core::Jwe;

use super::schema::ErrorBody;
use super::{audit_failure, authorize, ok_entry};
use crate::auth::Permission;
use crate::db::{RegistrationRow, RegistrationSummaryRow, now_ms};
use crate::error::{AppError, AppResult};
use crate::vouchers::rfc3339_ms;
use crate::{ApiJson, ApiPath, AppState, Authenticated};

/// Body limit of a submission: a sealed document photo (≤ 1 MiB plaintext) plus the fields.
const SUBMIT_LIMIT: usize = 4 << 20;
/// Most fields in one record.
const MAX_FIELDS: usize = 32;
/// Most registrations one list returns.
const MAX_LIST: i64 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/registrations", post(submit).layer(DefaultBodyLimit::max(SUBMIT_LIMIT)).get(list))
        .route("/v1/registrations/{id}", get(show))
}

/// A sealed registration as the portal sends it.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Record id: 1–64 of `A-Z a-z 0-9 - _`, chosen by the portal (so a retried submission is
    /// recognised).
    pub id: String,
    /// When the record was made on the device (RFC 3339, as the device's clock says).
    pub created_at: String,
    /// `online` (sealed with a data key) or `offline` (sealed to the public key).
    pub mode: String,
    /// The data key version used online, if any.
    #[serde(default)]
    pub kid: Option<String>,
    /// Field name → compact JWE with `ctx` `registration/<id>/<field>`.
    pub fields: BTreeMap<String, String>,
    /// Plain metadata, never personal data: names of 1–32 of `a-z _`, string values of at most
    /// 128 characters. `photo_type` is `image/jpeg`, `image/png` or `image/webp`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub meta: Map<String, Value>,
}

/// The photo types the admin view may display (never SVG or HTML: they can carry script).
pub const PHOTO_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_field(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Registration {
    fn check(&self) -> AppResult<()> {
        if !valid_id(&self.id) {
            return Err(AppError::invalid("id is 1–64 of A-Z, a-z, 0-9, '-', '_'"));
        }
        if self.created_at.is_empty() || self.created_at.len() > 64 {
            return Err(AppError::invalid("created_at is a timestamp of at most 64 characters"));
        }
        if self.mode != "online" && self.mode != "offline" {
            return Err(AppError::invalid("mode is 'online' or 'offline'"));
        }
        if self.kid.as_ref().is_some_and(|k| k.len() > 128) {
            return Err(AppError::invalid("kid is too long"));
        }
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            return Err(AppError::invalid(format!("fields has 1 to {MAX_FIELDS} entries")));
        }
        if self.meta.len() > 16 {
            return Err(AppError::invalid("meta has at most 16 entries"));
        }
        for (k, v) in &self.meta {
            let name_ok = !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            let value_ok = v.as_str().is_some_and(|v| v.len() <= 128);
            if !name_ok || !value_ok {
                return Err(AppError::invalid(
                    "meta names are 1–32 of a-z, '_'; values are strings of at most 128 bytes",
                ));
            }
        }
        if let Some(t) = self.meta.get("photo_type")
            && !t.as_str().is_some_and(|t| PHOTO_TYPES.contains(&t))
        {
            return Err(AppError::invalid(format!("photo_type is one of {}", PHOTO_TYPES.join(", "))));
        }
        for (name, jwe) in &self.fields {
            if !valid_field(name) {
                return Err(AppError::invalid("a field name is 1–64 of a-z, 0-9, '_'"));
            }
            let parsed =
                Jwe::parse(jwe).map_err(|e| AppError::invalid(format!("field '{name}' is not a compact JWE: {e}")))?;
            let want = format!("registration/{}/{name}", self.id);
            if parsed.header().ctx() != Some(want.as_str()) {
                return Err(AppError::invalid(format!("field '{name}' must be sealed with ctx '{want}'")));
            }
        }
        Ok(())
    }
}

/// What the registry answers to a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    /// The record id.
    pub id: String,
    /// When it was stored (RFC 3339).
    pub received_at: String,
}

/// Store a sealed registration. A retry of a stored record (same id, same content) answers 200
/// with the first receipt; the same id with other content is 409 `conflict`.
#[utoipa::path(post, path = "/v1/registrations", tag = "registrations", security(("bearer" = [])),
    request_body = Registration,
    responses((status = 201, body = Received), (status = 200, body = Received, description = "already stored"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(record): ApiJson<Registration>,
) -> AppResult<(StatusCode, Json<Received>)> {
    authorize(&state, &caller, Permission::RegistrationsSubmit, "registrations.submit", "registrations").await?;
    let target = if valid_id(&record.id) { record.id.clone() } else { "registrations".into() };
    let result = async {
        record.check()?;
        let text = serde_json::to_string(&record).map_err(|_| AppError::internal("cannot store the record"))?;
        let row = RegistrationRow {
            summary: RegistrationSummaryRow {
                id: record.id.clone(),
                received_at: now_ms(),
                submitted_by: caller.name.clone(),
                created_at: record.created_at.clone(),
                mode: record.mode.clone(),
                field_names: record.fields.keys().cloned().collect::<Vec<_>>().join(","),
            },
            record: text.clone(),
        };
        let id = &row.summary.id;
        let mut tx = state.db().begin().await?;
        if tx.insert_registration(&row).await? {
            let detail = json!({ "fields": record.fields.len(), "mode": record.mode });
            tx.append_audit(&[ok_entry(&caller, "registrations.submit", id, Some(detail))]).await?;
            tx.commit().await?;
            return Ok((StatusCode::CREATED, row.summary.received_at));
        }
        drop(tx);
        let stored = state.db().registration(id).await?.ok_or_else(|| AppError::internal("registration vanished"))?;
        if stored.record == text {
            // A retry whose first answer was lost: acknowledged again, and on record.
            state.audit(ok_entry(&caller, "registrations.submit", id, Some(json!({ "retry": true })))).await?;
            Ok((StatusCode::OK, stored.summary.received_at))
        } else {
            Err(AppError::new(StatusCode::CONFLICT, "conflict", "another record with this id is stored"))
        }
    }
    .await;
    match result {
        Ok((status, at)) => Ok((status, Json(Received { id: record.id, received_at: rfc3339_ms(at) }))),
        Err(e) => {
            audit_failure(&state, &caller, "registrations.submit", &target, &e).await;
            Err(e)
        }
    }
}

/// One line of the list: no sealed data.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationSummary {
    /// Record id.
    pub id: String,
    /// When it was stored (RFC 3339).
    pub received_at: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// When the device made it.
    pub created_at: String,
    /// `online` or `offline`.
    pub mode: String,
    /// The names of its sealed fields.
    pub fields: Vec<String>,
}

/// The list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationList {
    /// Newest first.
    pub items: Vec<RegistrationSummary>,
}

/// `?limit=` of the list (1–1000, default 100).
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// How many, newest first.
    pub limit: Option<i64>,
}

fn summary(row: RegistrationSummaryRow) -> RegistrationSummary {
    RegistrationSummary {
        id: row.id,
        received_at: rfc3339_ms(row.received_at),
        submitted_by: row.submitted_by,
        created_at: row.created_at,
        mode: row.mode,
        fields: row.field_names.split(',').filter(|f| !f.is_empty()).map(String::from).collect(),
    }
}

fn stored(row: &RegistrationRow) -> AppResult<Registration> {
    serde_json::from_str(&row.record).map_err(|_| AppError::internal("a stored registration is unreadable"))
}

/// List received registrations, newest first (names of sealed fields only).
#[utoipa::path(get, path = "/v1/registrations", tag = "registrations", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = RegistrationList), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<RegistrationList>> {
    authorize(&state, &caller, Permission::RegistrationsRead, "registrations.list", "registrations").await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(AppError::invalid(format!("limit is 1 to {MAX_LIST}")));
    }
    let items: Vec<RegistrationSummary> = state.db().registrations(limit).await?.into_iter().map(summary).collect();
    state
        .audit(ok_entry(&caller, "registrations.list", "registrations", Some(json!({ "count": items.len() }))))
        .await?;
    Ok(Json(RegistrationList { items }))
}

/// A stored registration with its sealed fields (open them with `POST /v1/keys/{name}/decrypt`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredRegistration {
    /// When it was stored (RFC 3339).
    pub received_at: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// The record as submitted.
    #[serde(flatten)]
    pub record: Registration,
}

/// One registration, sealed fields included. Audited: who fetched which record.
#[utoipa::path(get, path = "/v1/registrations/{id}", tag = "registrations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = StoredRegistration), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> AppResult<Json<StoredRegistration>> {
    let target = if valid_id(&id) { id.as_str() } else { "registrations" };
    authorize(&state, &caller, Permission::RegistrationsRead, "registrations.read", target).await?;
    if !valid_id(&id) {
        return Err(AppError::not_found("no such registration"));
    }
    let row = match state.db().registration(&id).await? {
        Some(r) => r,
        None => {
            let e = AppError::not_found("no such registration");
            audit_failure(&state, &caller, "registrations.read", &id, &e).await;
            return Err(e);
        }
    };
    state.audit(ok_entry(&caller, "registrations.read", &id, None)).await?;
    let record = stored(&row)?;
    Ok(Json(StoredRegistration {
        received_at: rfc3339_ms(row.summary.received_at),
        submitted_by: row.summary.submitted_by,
        record,
    }))
}
