//! One router per resource, merged.

mod crypto;
pub mod keys;
mod openapi;
mod registrations;
pub mod schema;
mod system;
mod vouchers;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Caller, Permission};
use crate::db::{AuditEntry, KeyRecord};
use crate::error::{AppError, AppResult};

/// Default request body limit.
pub const BODY_LIMIT: usize = 1 << 20;
/// Body limit of decrypt and rewrap, which carry up to [`MAX_ITEMS`] JWEs.
pub const BATCH_BODY_LIMIT: usize = 32 << 20;
/// Most items in one batch request.
pub const MAX_ITEMS: usize = 1000;

/// The API router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(keys::router())
        .merge(crypto::router())
        .merge(system::router())
        .merge(vouchers::router())
        .merge(registrations::router())
        .fallback(|| async { AppError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            AppError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .route("/metrics", axum::routing::get(crate::metrics::metrics))
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::observe))
        .with_state(state)
}

/// Checks a permission; a refusal is audited before the 403 goes out.
pub async fn authorize(
    state: &AppState,
    caller: &Caller,
    wanted: Permission,
    action: &str,
    target: &str,
) -> AppResult<()> {
    if caller.may(&wanted) {
        return Ok(());
    }
    state
        .audit(AuditEntry {
            actor: caller.name.clone(),
            action: action.into(),
            target: target.into(),
            outcome: "denied".into(),
            detail: Some(json!({ "missing_permission": wanted.to_text() })),
        })
        .await?;
    Err(AppError::forbidden(format!("this operation needs the permission {}", wanted.to_text())))
}

/// Refuses a key name that cannot exist before anything else happens (it would otherwise reach
/// the database and the audit log: a NUL byte, say, which PostgreSQL rejects).
pub fn check_name(name: &str) -> AppResult<()> {
    if vouchsafe_core::kid::valid_name(name) {
        Ok(())
    } else {
        Err(AppError::not_found("no such key: a key name is 1–64 of a-z, 0-9, '-', '_', starting with a letter"))
    }
}

/// Records a refused or failed operation: `denied` for a 403, `error:<code>` otherwise. If the
/// entry cannot be written the original error still goes back (the operation did not happen).
pub async fn audit_failure(state: &AppState, caller: &Caller, action: &str, target: &str, e: &AppError) {
    let outcome =
        if e.status == axum::http::StatusCode::FORBIDDEN { "denied".to_string() } else { format!("error:{}", e.code) };
    let entry =
        AuditEntry { actor: caller.name.clone(), action: action.into(), target: target.into(), outcome, detail: None };
    if let Err(a) = state.audit(entry).await {
        tracing::error!(code = a.code, "could not audit a failed operation");
    }
}

/// An audit entry for a successful operation.
pub fn ok_entry(caller: &Caller, action: &str, target: &str, detail: Option<Value>) -> AuditEntry {
    AuditEntry {
        actor: caller.name.clone(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        detail,
    }
}

/// RFC 3339 (UTC) of Unix seconds.
pub fn rfc3339(unix_seconds: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0) as u64),
    )
    .to_string()
}

/// A key as the API shows it.
pub fn key_view(k: &KeyRecord) -> schema::KeyView {
    schema::KeyView {
        name: k.name.clone(),
        kind: k.kind.as_str().into(),
        current_version: k.current_version,
        created_at: rfc3339(k.created_at),
        versions: k
            .versions
            .iter()
            .map(|v| schema::VersionView {
                version: v.version,
                kid: v.kid.clone(),
                state: v.state.as_str().into(),
                created_at: rfc3339(v.created_at),
            })
            .collect(),
    }
}
