//! JWKS, audit log, health and readiness.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vouchsafe_keystore::KeyKind;

use super::authorize;
use super::schema::{AuditEntryView, AuditPage, ErrorBody};
use crate::auth::Permission;
use crate::db::VersionState;
use crate::error::{AppError, AppResult};
use crate::{AppState, Authenticated};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/audit", get(audit))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The JWK set: signing keys (every non-disabled version) and sealing keys (current version).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "public keys",
    responses((status = 200, body = Object, description = "{\"keys\":[…]} with Cache-Control and ETag"), (status = 304)))]
/// Every non-disabled version of each signing key (old vouchers keep verifying) and only the
/// current version of each sealing key (clients seal to the newest).
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    // Unauthenticated and polled by every client: served from a copy that lives as long as the
    // key cache (2 s) and is dropped as soon as this instance changes a key.
    let cached = match state.cached_jwks() {
        Some(c) => c,
        None => {
            let c = std::sync::Arc::new(build_jwks(&state).await?);
            state.cache_jwks(c.clone());
            c
        }
    };
    let (body, etag) = (&cached.0, &cached.1);
    let mut resp = if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::ETAG, HeaderValue::from_str(etag).map_err(AppError::internal)?);
    Ok(resp)
}

/// The JWKS body and its ETag.
async fn build_jwks(state: &AppState) -> AppResult<(Vec<u8>, String)> {
    let mut keys = Vec::new();
    for name in state.db().key_names().await? {
        let rec = state.key(&name).await?;
        match rec.kind {
            KeyKind::EcdsaP256 => {
                for v in rec.versions.iter().filter(|v| v.state != VersionState::Disabled) {
                    keys.push(state.public_jwk(&rec, v).await?);
                }
            }
            KeyKind::EcdhP256 => {
                if let Some(v) = rec.current().filter(|v| v.state == VersionState::Active) {
                    keys.push(state.public_jwk(&rec, v).await?);
                }
            }
            KeyKind::Aes256Gcm => {}
        }
    }
    let body = serde_json::to_vec(&json!({ "keys": keys })).map_err(AppError::internal)?;
    let etag = format!("\"{}\"", vouchsafe_core::b64e(&Sha256::digest(&body)[..18]));
    Ok((body, etag))
}

/// `GET /v1/audit` parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries with `seq` greater than this (default 0).
    after: Option<i64>,
    /// At most this many, 1–1000 (default 100).
    limit: Option<i64>,
}

/// Read the audit log, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<AuditPage>> {
    authorize(&state, &caller, Permission::AuditRead, "audit.read", "audit").await?;
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::invalid("limit is 1 to 1000"));
    }
    let rows = state.db().audit_after(q.after.unwrap_or(0), limit).await?;
    let entries = rows
        .into_iter()
        .map(|r| AuditEntryView {
            ts: humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.ts.max(0) as u64),
            )
            .to_string(),
            seq: r.seq,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            detail: r.detail,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
        .collect();
    Ok(Json(AuditPage { entries }))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers and the keystore passes its health probe.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Object), (status = 503, body = Object, description = "names the failing part")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.db().ping().await;
    let ks = state.keystore_call("health", |ks| ks.health()).await;
    let body = json!({
        "status": if db.is_ok() && ks.is_ok() { "ready" } else { "unavailable" },
        "database": match &db { Ok(()) => json!({ "ok": true, "engine": state.db().engine() }), Err(e) => json!({ "ok": false, "code": e.code }) },
        "keystore": match &ks {
            Ok(h) => json!({ "ok": true, "provider": h.provider, "hsm_backed": h.hsm_backed, "detail": h.detail }),
            Err(e) => json!({ "ok": false, "code": e.code }),
        },
    });
    let status = if db.is_ok() && ks.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
