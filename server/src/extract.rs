//! Extractors whose rejections use the API's error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::Caller;
use crate::db::AuditEntry;
use crate::error::AppError;

/// A JSON body; malformed, mistyped, oversized or non-JSON bodies get the API's error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(AppError::invalid(e.body_text())),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(AppError::invalid(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large"))
            }
            Err(e) => Err(AppError::invalid(e.body_text())),
        }
    }
}

/// The authenticated caller. A missing or unknown token is refused with 401, and the refusal is
/// written to the audit log.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let mut reason =
            if token.is_some() { "unknown or invalid token".to_string() } else { "no bearer token".to_string() };
        let mut caller = token.and_then(|t| state.tokens().authenticate(t));
        if caller.is_none()
            && let (Some(oidc), Some(t)) = (state.oidc(), token)
            && t.split('.').count() == 3
        {
            match oidc.authenticate(t).await {
                Ok(c) => caller = Some(c),
                Err(e) => reason = e.to_string(),
            }
        }
        match caller {
            Some(c) => Ok(Authenticated(c)),
            None => {
                // The route template, not the raw path: bounded in size and variety, and never
                // bytes a caller typed.
                let route = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_else(|| "unmatched".into());
                state
                    .audit(AuditEntry {
                        actor: "anonymous".into(),
                        action: format!("http {} {route}", crate::metrics::method_label(&parts.method)),
                        target: route,
                        outcome: "denied".into(),
                        detail: Some(serde_json::json!({ "reason": reason.as_str() })),
                    })
                    .await?;
                Err(AppError::unauthenticated(format!("{reason}: send Authorization: Bearer <token>")))
            }
        }
    }
}

/// Path parameters; a value of the wrong type (a version that is not a number) is a 400 in the
/// API's error shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| AppError::invalid(e.body_text()))
    }
}

/// A raw body (for endpoints whose body is optional); too large is a 413 in the API's shape.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large"))
            }
            Err(e) => Err(AppError::invalid(e.body_text())),
        }
    }
}
