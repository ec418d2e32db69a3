//! Data keys, unwrap, decrypt (both JWE modes, single and batch), rewrap, public keys.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use getrandom::SysRng;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use vouchsafe_core::jwe::{ALG_A256GCMKW, ALG_ECDH_ES_A256KW};
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{DataKey, Dek, Jwe, PublicJwk, WrappedDek, b64e, seal_to_public_key};
use vouchsafe_keystore::{KeyKind, KeyRef};

use super::schema::{
    DataKeyResponse, DecryptResponse, ErrorBody, ErrorDetail, ItemResult, Plaintext, RewrapResponse, Sealed, WrapHeader,
};
use super::{BATCH_BODY_LIMIT, MAX_ITEMS, authorize, ok_entry};
use crate::auth::{KeyPattern, Permission};
use crate::db::{KeyRecord, VersionRecord, VersionState};
use crate::error::{AppError, AppResult};
use crate::{ApiBytes, ApiJson, ApiPath, AppState, Authenticated};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys/{name}/datakey", post(datakey))
        .route("/v1/keys/{name}/unwrap", post(unwrap))
        .route("/v1/keys/{name}/decrypt", post(decrypt).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)))
        .route("/v1/keys/{name}/rewrap", post(rewrap).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)))
        .route("/v1/keys/{name}/public", get(public))
}

fn encrypt_perm(name: &str) -> Permission {
    Permission::KeysEncrypt(KeyPattern::Name(name.into()))
}

fn decrypt_perm(name: &str) -> Permission {
    Permission::KeysDecrypt(KeyPattern::Name(name.into()))
}

fn version_ref(v: &VersionRecord, kind: KeyKind) -> (String, KeyKind, vouchsafe_keystore::KeyHandle) {
    (v.kid.clone(), kind, v.handle.clone())
}

/// The current version of an AES key, which must be active.
fn current_aes(rec: &KeyRecord) -> AppResult<&VersionRecord> {
    if rec.kind != KeyKind::Aes256Gcm {
        return Err(AppError::invalid(format!(
            "'{}' is a {} key; data keys come from aes256-gcm keys",
            rec.name,
            rec.kind.as_str()
        )));
    }
    let v = rec.current().ok_or_else(|| AppError::internal("key has no current version"))?;
    if v.state != VersionState::Active {
        return Err(AppError::conflict("the current version is not active"));
    }
    Ok(v)
}

async fn wrap_new_dek(state: &AppState, rec: &KeyRecord) -> AppResult<(Dek, WrappedDek)> {
    let (kid, kind, handle) = version_ref(current_aes(rec)?, rec.kind);
    state.keystore_call("wrap", move |ks| ks.new_dek(KeyRef { kid: &kid, kind, handle: &handle })).await
}

/// `POST /v1/keys/{name}/datakey` (the body may also be empty).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataKeyRequest {
    /// `false` returns only the wrapped DEK (to store, and unwrap later). Default `true`.
    #[serde(default = "yes")]
    plaintext: bool,
}

fn yes() -> bool {
    true
}

/// A fresh DEK wrapped under the key's current version (`A256GCMKW`).
#[utoipa::path(post, path = "/v1/keys/{name}/datakey", tag = "data keys", security(("bearer" = [])),
    params(("name" = String, Path)), request_body(content = DataKeyRequest, description = "optional"),
    responses((status = 200, body = DataKeyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn datakey(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> AppResult<Json<DataKeyResponse>> {
    super::check_name(&name)?;
    authorize(&state, &caller, encrypt_perm(&name), "keys.datakey", &name).await?;
    // The body is optional: none, `{}` and `{"plaintext":false}` are all fine.
    let req: DataKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DataKeyRequest { plaintext: true }
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::invalid(format!("invalid datakey request: {e}")))?
    };
    let rec = state.key(&name).await?;
    let (dek, wrapped) = wrap_new_dek(&state, &rec).await?;
    state
        .audit(ok_entry(&caller, "keys.datakey", &wrapped.kid, (!req.plaintext).then(|| json!({ "plaintext": false }))))
        .await?;
    Ok(Json(DataKeyResponse {
        kid: wrapped.kid.clone(),
        plaintext: req.plaintext.then(|| b64e(dek.expose_secret())),
        // The header's layout is vouchsafe-core's; the typed struct only describes it.
        header: serde_json::from_value::<WrapHeader>(Value::Object(wrapped.header())).map_err(AppError::internal)?,
        encrypted_key: wrapped.encrypted_key_b64(),
    }))
}

/// `POST /v1/keys/{name}/unwrap`: a wrap header and wrapped DEK, as `datakey` returned them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnwrapRequest {
    /// `{"alg":"A256GCMKW","enc":"A256GCM","kid","iv","tag"}`.
    header: Value,
    /// base64url.
    encrypted_key: String,
}

/// Unwrap a DEK (for callers that cache wrapped DEKs).
#[utoipa::path(post, path = "/v1/keys/{name}/unwrap", tag = "data keys", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = UnwrapRequest,
    responses((status = 200, body = Plaintext), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn unwrap(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UnwrapRequest>,
) -> AppResult<Json<Plaintext>> {
    super::check_name(&name)?;
    authorize(&state, &caller, decrypt_perm(&name), "keys.unwrap", &name).await?;
    let result = async {
        let wrapped = WrappedDek::from_header(&req.header, &req.encrypted_key)?;
        let (rec, v) = resolve(&state, &name, &wrapped.kid, false).await?;
        let (kid, kind, handle) = version_ref(&v, rec.kind);
        let dek = state
            .keystore_call("unwrap", move |ks| ks.unwrap_dek(KeyRef { kid: &kid, kind, handle: &handle }, &wrapped))
            .await?;
        Ok::<_, AppError>((dek, v.kid))
    }
    .await;
    let (dek, kid) = match result {
        Ok(r) => r,
        Err(e) => {
            super::audit_failure(&state, &caller, "keys.unwrap", &name, &e).await;
            return Err(e);
        }
    };
    state.audit(ok_entry(&caller, "keys.unwrap", &kid, None)).await?;
    Ok(Json(Plaintext { plaintext: b64e(dek.expose_secret()), text: None }))
}

/// Finds the key version a kid names, checking it belongs to the key in the path (or, for data
/// sealed offline, to that key's `<name>-seal` companion) and is not disabled.
async fn resolve(
    state: &AppState,
    path_name: &str,
    kid: &str,
    allow_seal: bool,
) -> AppResult<(Arc<KeyRecord>, VersionRecord)> {
    let (key_name, version) = vouchsafe_core::kid::parse(kid)
        .ok_or_else(|| AppError::invalid(format!("kid '{kid}' is not of the form <name>.v<version>")))?;
    let seal_name = format!("{path_name}-seal");
    if key_name != path_name && !(allow_seal && key_name == seal_name) {
        return Err(AppError::invalid(format!("kid '{kid}' belongs to key '{key_name}', not '{path_name}'")));
    }
    let rec = state.key(key_name).await?;
    // The companion rule exists for one thing: data sealed offline to `<name>-seal`, an ecdh-p256
    // key. A key that merely has that name but another type grants nothing.
    if key_name != path_name && rec.kind != KeyKind::EcdhP256 {
        return Err(AppError::invalid(format!("kid '{kid}' belongs to key '{key_name}', not '{path_name}'")));
    }
    let v = rec.version(version).ok_or_else(|| AppError::not_found(format!("no key version '{kid}'")))?.clone();
    if v.state == VersionState::Disabled {
        return Err(AppError::new(
            axum::http::StatusCode::FORBIDDEN,
            "key_disabled",
            format!("key version '{kid}' is disabled"),
        ));
    }
    Ok((rec, v))
}

/// What opening one JWE yields.
struct Opened {
    plaintext: Vec<u8>,
    kid: String,
    ctx: Option<String>,
    key: Arc<KeyRecord>,
}

/// Opens a JWE of either mode with the keystore doing the key step.
async fn open_one(state: &AppState, path_name: &str, compact: &str, ctx: Option<&str>) -> AppResult<Opened> {
    let jwe = Jwe::parse(compact)?;
    jwe.check_context(ctx)?;
    let kid = jwe.header().kid().ok_or_else(|| AppError::invalid("the JWE has no kid"))?.to_string();
    let (rec, v) = resolve(state, path_name, &kid, true).await?;
    let header_ctx = jwe.header().ctx().map(String::from);
    let (vkid, kind, handle) = version_ref(&v, rec.kind);
    let plaintext = match (jwe.header().alg(), rec.kind) {
        (ALG_A256GCMKW, KeyKind::Aes256Gcm) => {
            let wrapped = jwe.wrapped_dek().ok_or(vouchsafe_core::Error::Malformed("encrypted_key"))?;
            let dek = state
                .keystore_call("unwrap", move |ks| {
                    ks.unwrap_dek(KeyRef { kid: &vkid, kind, handle: &handle }, &wrapped)
                })
                .await?;
            jwe.decrypt(&dek)?
        }
        (ALG_ECDH_ES_A256KW, KeyKind::EcdhP256) => {
            let epk = *jwe.header().epk().ok_or(vouchsafe_core::Error::Malformed("epk"))?;
            let z = state
                .keystore_call("ecdh", move |ks| ks.ecdh(KeyRef { kid: &vkid, kind, handle: &handle }, &epk))
                .await?;
            let cek = jwe.cek_from_shared_secret(&z)?;
            jwe.decrypt(&cek)?
        }
        (alg, kind) => {
            return Err(AppError::invalid(format!("a {alg} JWE cannot be opened with a {} key", kind.as_str())));
        }
    };
    Ok(Opened { plaintext, kid, ctx: header_ctx, key: rec })
}

/// One JWE to open.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Compact JWE, either mode.
    jwe: String,
    /// Expected context; the JWE's `ctx` must equal it.
    ctx: Option<String>,
}

/// `{"jwe","ctx"?}` or `{"items":[…]}` (at most 1000).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    Many { items: Vec<Item> },
    One(Item),
}

impl OneOrMany {
    fn into_items(self) -> AppResult<(Vec<Item>, bool)> {
        match self {
            OneOrMany::One(i) => Ok((vec![i], false)),
            OneOrMany::Many { items } if items.is_empty() => Err(AppError::invalid("items is empty")),
            OneOrMany::Many { items } if items.len() > MAX_ITEMS => {
                Err(AppError::invalid(format!("at most {MAX_ITEMS} items per request")))
            }
            OneOrMany::Many { items } => Ok((items, true)),
        }
    }
}

fn error_item<T>(e: &AppError) -> ItemResult<T> {
    ItemResult::Err(ErrorBody { error: ErrorDetail { code: e.code.into(), message: e.message.clone() } })
}

/// The decrypted bytes (base64url), and the same as text when they are UTF-8.
fn plaintext_view(p: &[u8]) -> Plaintext {
    Plaintext { plaintext: b64e(p), text: std::str::from_utf8(p).ok().map(String::from) }
}

/// An operational failure (keystore or database down) fails the whole request; a bad item
/// only its own slot.
fn is_operational(e: &AppError) -> bool {
    e.status.is_server_error()
}

/// Open JWEs of either mode (`A256GCMKW`, `ECDH-ES+A256KW` to `<name>-seal`); the key step runs
/// in the keystore. Who opened what (kids and contexts) goes to the audit log.
#[utoipa::path(post, path = "/v1/keys/{name}/decrypt", tag = "decryption", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = OneOrMany,
    responses((status = 200, body = DecryptResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn decrypt(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<OneOrMany>,
) -> AppResult<Json<DecryptResponse>> {
    super::check_name(&name)?;
    authorize(&state, &caller, decrypt_perm(&name), "keys.decrypt", &name).await?;
    let (items, batch) = req.into_items()?;
    let mut results = Vec::with_capacity(items.len());
    let (mut kids, mut ctxs, mut failed) = (std::collections::BTreeSet::new(), Vec::new(), 0usize);
    for item in &items {
        match open_one(&state, &name, &item.jwe, item.ctx.as_deref()).await {
            Ok(o) => {
                kids.insert(o.kid);
                if let Some(c) = o.ctx {
                    ctxs.push(c);
                }
                results.push(Ok(o.plaintext));
            }
            Err(e) if is_operational(&e) => return Err(e),
            Err(e) => {
                failed += 1;
                results.push(Err(e));
            }
        }
    }
    // Who decrypted what: the key versions and the caller-chosen contexts (record references,
    // never values) of everything opened.
    ctxs.truncate(100);
    let detail = json!({ "count": items.len(), "failed": failed, "kids": kids, "ctx": ctxs });
    let outcome_ok = failed < items.len();
    let mut entry = ok_entry(&caller, "keys.decrypt", &name, Some(detail));
    if !outcome_ok {
        entry.outcome =
            format!("error:{}", results.iter().find_map(|r| r.as_ref().err()).map(|e| e.code).unwrap_or("unknown"));
    }
    state.audit(entry).await?;
    if !batch {
        return match results.pop() {
            Some(Ok(p)) => Ok(Json(DecryptResponse::One(plaintext_view(&p)))),
            Some(Err(e)) => Err(e),
            None => Err(AppError::internal("no result")),
        };
    }
    let items = results
        .iter()
        .map(|r| match r {
            Ok(p) => ItemResult::Ok(plaintext_view(p)),
            Err(e) => error_item(e),
        })
        .collect();
    Ok(Json(DecryptResponse::Many { items }))
}

/// Seal JWEs again under the key's current version, keeping their context. The plaintext never
/// leaves the server.
#[utoipa::path(post, path = "/v1/keys/{name}/rewrap", tag = "decryption", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = OneOrMany,
    responses((status = 200, body = RewrapResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rewrap(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<OneOrMany>,
) -> AppResult<Json<RewrapResponse>> {
    super::check_name(&name)?;
    authorize(&state, &caller, decrypt_perm(&name), "keys.rewrap", &name).await?;
    let (items, batch) = req.into_items()?;
    let mut results: Vec<AppResult<String>> = Vec::with_capacity(items.len());
    let mut failed = 0usize;
    for item in &items {
        let res = async {
            let opened = open_one(&state, &name, &item.jwe, item.ctx.as_deref()).await?;
            reseal(&state, &opened).await
        }
        .await;
        match res {
            Err(e) if is_operational(&e) => return Err(e),
            Err(e) => {
                failed += 1;
                results.push(Err(e));
            }
            Ok(jwe) => results.push(Ok(jwe)),
        }
    }
    let mut entry = ok_entry(&caller, "keys.rewrap", &name, Some(json!({ "count": items.len(), "failed": failed })));
    if failed == items.len() {
        let code = results.iter().find_map(|r| r.as_ref().err()).map(|e| e.code).unwrap_or("unknown");
        entry.outcome = format!("error:{code}");
    }
    state.audit(entry).await?;
    if !batch {
        return match results.pop() {
            Some(Ok(jwe)) => Ok(Json(RewrapResponse::One(Sealed { jwe }))),
            Some(Err(e)) => Err(e),
            None => Err(AppError::internal("no result")),
        };
    }
    let items = results
        .into_iter()
        .map(|r| match r {
            Ok(jwe) => ItemResult::Ok(Sealed { jwe }),
            Err(e) => error_item(&e),
        })
        .collect();
    Ok(Json(RewrapResponse::Many { items }))
}

/// Seals opened data again under the current version of the key that held it, with the same
/// context. The plaintext never leaves the server.
async fn reseal(state: &AppState, o: &Opened) -> AppResult<String> {
    let key = state.key(&o.key.name).await?;
    let mut rng = UnwrapErr(SysRng);
    match key.kind {
        KeyKind::Aes256Gcm => {
            let (dek, wrapped) = wrap_new_dek(state, &key).await?;
            Ok(DataKey::new(dek, wrapped).seal(&o.plaintext, o.ctx.as_deref(), &mut rng)?)
        }
        KeyKind::EcdhP256 => {
            let v = key.current().ok_or_else(|| AppError::internal("key has no current version"))?;
            let jwk: PublicJwk = state.public_jwk(&key, v).await?;
            Ok(seal_to_public_key(&jwk, &o.plaintext, o.ctx.as_deref(), &mut rng)?)
        }
        KeyKind::EcdsaP256 => Err(AppError::invalid("signing keys hold no sealed data")),
    }
}

/// The current public JWK of an `ecdh-p256` or `ecdsa-p256` key.
#[utoipa::path(get, path = "/v1/keys/{name}/public", tag = "public keys", params(("name" = String, Path)),
    responses((status = 200, body = Object, description = "P-256 JWK with kid, use, alg"), (status = 404, body = ErrorBody)))]
pub async fn public(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> AppResult<Json<Value>> {
    super::check_name(&name)?;
    let rec = state.key(&name).await?;
    if rec.kind == KeyKind::Aes256Gcm {
        return Err(AppError::not_found(format!("'{name}' is a symmetric key; it has no public key")));
    }
    let v = rec.current().ok_or_else(|| AppError::internal("key has no current version"))?;
    Ok(Json(serde_json::to_value(state.public_jwk(&rec, v).await?).map_err(AppError::internal)?))
}
