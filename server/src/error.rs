//! One error type for every handler: an HTTP status and a stable code for the client, the cause
//! for the log. Messages never carry key material, tokens or plaintext.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vouchsafe_keystore::KeystoreError;

/// An error as the client sees it.
#[derive(Clone, Debug)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Safe, human-readable message.
    pub message: String,
    /// More members of the error object (e.g. `redeemed_at`), never secrets.
    pub detail: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl AppError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError { status, code, message: message.into(), detail: None }
    }

    /// Adds a member to the error object.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail.get_or_insert_with(Default::default).insert(name.into(), value.into());
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 `internal` (the cause goes to the log, not the client).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// 503 `database_unavailable`.
    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "database unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable; retry later")
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        if let Some(d) = self.detail {
            for (k, v) in *d {
                error.entry(k).or_insert(v);
            }
        }
        let body = Json(json!({ "error": error }));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<vouchsafe_core::Error> for AppError {
    fn from(e: vouchsafe_core::Error) -> Self {
        use vouchsafe_core::Error as E;
        let status = match e {
            E::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            E::KeyOperation => return AppError::internal(e),
            _ => StatusCode::BAD_REQUEST,
        };
        let code = if e == E::TooLarge { "payload_too_large" } else { e.code() };
        AppError::new(status, code, e.to_string())
    }
}

impl From<KeystoreError> for AppError {
    fn from(e: KeystoreError) -> Self {
        match &e {
            KeystoreError::Unavailable(_) => {
                tracing::error!(error = %e, "keystore unavailable");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "keystore_unavailable",
                    "the keystore is unavailable; retry later",
                )
            }
            KeystoreError::DecryptFailed => {
                AppError::new(StatusCode::BAD_REQUEST, "decrypt_failed", "decryption failed")
            }
            KeystoreError::InvalidInput(m) => AppError::invalid(*m),
            KeystoreError::WrongKeyType => AppError::invalid("the key's type does not support this operation"),
            _ => AppError::internal(e),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => AppError::not_found("not found"),
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => AppError::database_unavailable(e),
            sqlx::Error::Database(ref db) if is_unavailable_db_error(db.as_ref()) => AppError::database_unavailable(e),
            other => AppError::internal(other),
        }
    }
}

/// SQLite "database is locked/busy" and PostgreSQL connection/admin-shutdown classes.
fn is_unavailable_db_error(e: &dyn sqlx::error::DatabaseError) -> bool {
    let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
    matches!(code.as_str(), "5" | "6" | "517" | "261") || code.starts_with("08") || code.starts_with("57P")
}

/// The result type of handlers.
pub type AppResult<T> = Result<T, AppError>;
