//! Key administration: create, list, show, rotate, set a version's state. Every change and its
//! audit entry commit in one transaction.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use vouchsafe_keystore::KeyKind;

use super::schema::{ErrorBody, KeyList, KeyView};
use super::{authorize, key_view, ok_entry};
use crate::auth::{Caller, Permission};
use crate::db::{VersionRecord, VersionState, now_ms};
use crate::error::{AppError, AppResult};
use crate::{ApiJson, ApiPath, AppState, Authenticated};

/// Key administration routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", post(create).get(list))
        .route("/v1/keys/{name}", get(show))
        .route("/v1/keys/{name}/rotate", post(rotate))
        .route("/v1/keys/{name}/versions/{version}/state", post(set_state))
}

/// `POST /v1/keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1–64 of a-z, 0-9, '-', '_', starting with a letter.
    name: String,
    /// `aes256-gcm`, `ecdh-p256` or `ecdsa-p256`.
    #[serde(rename = "type")]
    kind: String,
}

/// Create a key with its first version.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey, security(("bearer" = [])),
    responses((status = 201, body = KeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(req): ApiJson<CreateKey>,
) -> AppResult<(StatusCode, Json<KeyView>)> {
    authorize(&state, &caller, Permission::KeysAdmin, "keys.create", &req.name).await?;
    let rec = create_key(&state, &caller, &req.name, &req.kind).await?;
    Ok((StatusCode::CREATED, Json(key_view(&rec))))
}

/// Key `name`, created by `system` (audited) if it does not exist yet; an existing key of
/// another type is a 409 naming the `setting` that chose the name.
pub async fn ensure_key(
    state: &AppState,
    name: &str,
    kind: KeyKind,
    setting: &str,
) -> AppResult<std::sync::Arc<crate::db::KeyRecord>> {
    let rec = match state.key(name).await {
        Ok(r) => r,
        Err(e) if e.code == "not_found" => {
            let system = Caller { name: "system".into(), permissions: vec![] };
            match create_key(state, &system, name, kind.as_str()).await {
                Ok(r) => r,
                // Another instance created it at the same moment.
                Err(e) if e.code == "conflict" => {
                    state.invalidate_key(name);
                    state.key(name).await?
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    if rec.kind != kind {
        return Err(AppError::conflict(format!(
            "the key '{name}' is a {} key; {setting} needs an {} key",
            rec.kind.as_str(),
            kind.as_str()
        )));
    }
    Ok(rec)
}

/// Creates key `name` of type `kind` with its first version (HTTP handler and CLI).
pub async fn create_key(
    state: &AppState,
    caller: &Caller,
    name: &str,
    kind: &str,
) -> AppResult<std::sync::Arc<crate::db::KeyRecord>> {
    let req = CreateKey { name: name.into(), kind: kind.into() };
    if !vouchsafe_core::kid::valid_name(&req.name) {
        return Err(AppError::invalid("a key name is 1–64 of a-z, 0-9, '-', '_', starting with a letter"));
    }
    let kind = KeyKind::parse(&req.kind)
        .ok_or_else(|| AppError::invalid("type must be aes256-gcm, ecdh-p256 or ecdsa-p256"))?;
    if state.db().key(&req.name).await?.is_some() {
        return Err(AppError::conflict(format!("key '{}' already exists", req.name)));
    }
    let kid = vouchsafe_core::kid::format(&req.name, 1);
    let k = kid.clone();
    let handle = state.keystore_call("generate", move |ks| ks.generate(&k, kind)).await?;
    let now = now_ms() / 1000;
    let v = VersionRecord { version: 1, kid: kid.clone(), state: VersionState::Active, handle, created_at: now };
    let mut tx = state.db().begin().await?;
    tx.insert_key(&req.name, kind, &v).await?;
    tx.append_audit(&[ok_entry(caller, "keys.create", &kid, Some(json!({ "type": kind.as_str() })))]).await?;
    tx.commit().await?;
    state.invalidate_key(&req.name);
    state.key(&req.name).await
}

/// List keys with their versions.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, Authenticated(caller): Authenticated) -> AppResult<Json<KeyList>> {
    authorize(&state, &caller, Permission::KeysAdmin, "keys.list", "*").await?;
    let mut keys = Vec::new();
    for name in state.db().key_names().await? {
        if let Some(k) = state.db().key(&name).await? {
            keys.push(key_view(&k));
        }
    }
    Ok(Json(KeyList { keys }))
}

/// One key with its versions.
#[utoipa::path(get, path = "/v1/keys/{name}", tag = "keys", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
) -> AppResult<Json<KeyView>> {
    super::check_name(&name)?;
    authorize(&state, &caller, Permission::KeysAdmin, "keys.show", &name).await?;
    let k = state.db().key(&name).await?.ok_or_else(|| AppError::not_found(format!("no key named '{name}'")))?;
    Ok(Json(key_view(&k)))
}

/// Add a new current version; older versions keep decrypting and verifying.
#[utoipa::path(post, path = "/v1/keys/{name}/rotate", tag = "keys", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
) -> AppResult<Json<KeyView>> {
    super::check_name(&name)?;
    authorize(&state, &caller, Permission::KeysAdmin, "keys.rotate", &name).await?;
    let rec = rotate_key(&state, &caller, &name).await?;
    Ok(Json(key_view(&rec)))
}

/// Adds a new current version to key `name` (HTTP handler and CLI).
pub async fn rotate_key(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> AppResult<std::sync::Arc<crate::db::KeyRecord>> {
    let name = name.to_string();
    let rec = state.db().key(&name).await?.ok_or_else(|| AppError::not_found(format!("no key named '{name}'")))?;
    let kind = rec.kind;
    let generate = |version: u32| {
        let kid = vouchsafe_core::kid::format(&name, version);
        async move {
            let k = kid.clone();
            let handle = state.keystore_call("generate", move |ks| ks.generate(&k, kind)).await?;
            Ok::<_, AppError>(VersionRecord {
                version,
                kid,
                state: VersionState::Active,
                handle,
                created_at: now_ms() / 1000,
            })
        }
    };
    // If the transaction does not commit, an unused keystore object remains — never a stored
    // version without its key.
    // SQLite's write lock is database-wide: there, generate first (one rotation at a time in
    // this process, the only one on the file; the guard lives until the commit), then hold the
    // database lock only to insert.
    let sqlite = state.db().engine() == "sqlite";
    let _one_at_a_time = if sqlite { Some(state.rotation_lock().lock().await) } else { None };
    let (mut tx, current, v) = if sqlite {
        // Read under the lock: a rotation queued behind another must see its result.
        let current = state.db().key(&name).await?.ok_or_else(|| AppError::not_found("key vanished"))?.current_version;
        let v = generate(current + 1).await?;
        let mut tx = state.db().begin().await?;
        if tx.current_version_for_update(&name).await? != Some(current) {
            return Err(AppError::conflict("the key changed while rotating; retry"));
        }
        (tx, current, v)
    } else {
        // PostgreSQL locks just this key's row, so other instances' rotations of it wait.
        let mut tx = state.db().begin().await?;
        let current = tx.current_version_for_update(&name).await?.ok_or_else(|| AppError::not_found("key vanished"))?;
        let v = generate(current + 1).await?;
        (tx, current, v)
    };
    let kid = v.kid.clone();
    tx.add_current_version(&name, &v).await?;
    tx.append_audit(&[ok_entry(caller, "keys.rotate", &kid, Some(json!({ "previous": current })))]).await?;
    tx.commit().await?;
    state.invalidate_key(&name);
    state.key(&name).await
}

/// `POST /v1/keys/{name}/versions/{version}/state`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetState {
    /// `active`, `retired` (decrypts and verifies only) or `disabled` (refuses everything).
    state: String,
}

/// Set a version's state. The current version stays active.
#[utoipa::path(post, path = "/v1/keys/{name}/versions/{version}/state", tag = "keys", security(("bearer" = [])),
    params(("name" = String, Path), ("version" = u32, Path)), request_body = SetState,
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn set_state(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((name, version)): ApiPath<(String, u32)>,
    ApiJson(req): ApiJson<SetState>,
) -> AppResult<Json<KeyView>> {
    super::check_name(&name)?;
    let kid = vouchsafe_core::kid::format(&name, version);
    authorize(&state, &caller, Permission::KeysAdmin, "keys.set_state", &kid).await?;
    let new = VersionState::parse(&req.state)
        .ok_or_else(|| AppError::invalid("state must be active, retired or disabled"))?;
    let mut tx = state.db().begin().await?;
    let current = tx
        .current_version_for_update(&name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no key named '{name}'")))?;
    let rec = state.db().key(&name).await?.ok_or_else(|| AppError::not_found(format!("no key named '{name}'")))?;
    let old =
        rec.version(version).ok_or_else(|| AppError::not_found(format!("no version {version} of '{name}'")))?.state;
    if version == current && new != VersionState::Active {
        return Err(AppError::conflict("the current version must stay active; rotate first"));
    }
    tx.set_version_state(&name, version, new).await?;
    tx.append_audit(&[ok_entry(
        &caller,
        "keys.set_state",
        &kid,
        Some(json!({ "from": old.as_str(), "to": new.as_str() })),
    )])
    .await?;
    tx.commit().await?;
    state.invalidate_key(&name);
    Ok(Json(key_view(&*state.key(&name).await?)))
}
