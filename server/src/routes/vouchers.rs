//! Vouchers: issue (single, batch, NDJSON stream), redeem exactly once, revoke, status lists.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use vouchsafe_core::{Jwks, VoucherValidator};
use vouchsafe_keystore::KeyKind;

use super::schema::ErrorBody;
use super::{audit_failure, authorize, ok_entry};
use crate::auth::{Caller, Permission};
use crate::db::{VersionState, now_ms};
use crate::error::{AppError, AppResult};
use crate::vouchers::{self, Entry, IssueRequest, Issued, Outcome, rfc3339_ms};
use crate::{ApiJson, ApiPath, AppState, Authenticated};

/// Most vouchers in one JSON batch; larger runs use the NDJSON stream.
pub const MAX_BATCH: usize = 10_000;
/// Body limit of a JSON batch.
const BATCH_JSON_LIMIT: usize = 32 << 20;
/// Longest line of an NDJSON stream.
const MAX_LINE: usize = 64 << 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/vouchers", post(issue))
        .route("/v1/vouchers/batch", post(batch).layer(DefaultBodyLimit::disable()))
        .route("/v1/vouchers/redeem", post(redeem))
        .route("/v1/vouchers/{jti}/revoke", post(revoke))
        .route("/v1/status", get(status_lists))
        .route("/v1/status/{list}", get(status_list))
}

/// Issue one voucher, signed inside the keystore by the current voucher key.
#[utoipa::path(post, path = "/v1/vouchers", tag = "vouchers", security(("bearer" = [])), request_body = IssueRequest,
    responses((status = 201, body = Issued), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn issue(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(req): ApiJson<IssueRequest>,
) -> AppResult<(StatusCode, Json<Issued>)> {
    authorize(&state, &caller, Permission::VouchersIssue, "vouchers.issue", "vouchers").await?;
    let result = async {
        let claims = vouchers::draft(&state, req, now_ms() / 1000, &mut vouchers::JtiSource::new(1))?;
        vouchers::issue_one(&state, &caller, claims).await
    }
    .await;
    match result {
        Ok(v) => Ok((StatusCode::CREATED, Json(v))),
        Err(e) => {
            audit_failure(&state, &caller, "vouchers.issue", "vouchers", &e).await;
            Err(e)
        }
    }
}

/// `POST /v1/vouchers/batch` (JSON).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to 10 000 voucher requests.
    items: Vec<IssueRequest>,
}

/// Issued vouchers, in request order.
#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    items: Vec<Issued>,
}

/// Issue many vouchers. JSON (`{"items":[…]}`, up to 10 000, all checked before any is issued)
/// answers `{"items":[…]}`. With `Content-Type: application/x-ndjson` the body is one request
/// per line, of any length, and the answer streams one line per input line (`{"line",…token}`
/// or `{"line","error"}`), ending with `{"done":true,"issued","rejected"}` — or with
/// `{"error":…}` if the keystore or database fails, after which nothing more is issued.
#[utoipa::path(post, path = "/v1/vouchers/batch", tag = "vouchers", security(("bearer" = [])),
    request_body(content = BatchRequest, description = "or application/x-ndjson: one IssueRequest per line"),
    responses((status = 201, body = BatchResponse, description = "JSON; NDJSON streams one line per item"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Response> {
    authorize(&state, &caller, Permission::VouchersIssue, "vouchers.issue", "vouchers").await?;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/ndjson" => stream_batch(state, caller, body).await,
        "application/json" => json_batch(state, caller, body).await,
        _ => Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json, or application/x-ndjson to stream",
        )),
    }
}

async fn json_batch(state: AppState, caller: Caller, body: Body) -> AppResult<Response> {
    let bytes = axum::body::to_bytes(body, BATCH_JSON_LIMIT).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "a JSON batch is at most 32 MiB; stream larger runs as application/x-ndjson",
        )
    })?;
    let req: BatchRequest =
        serde_json::from_slice(&bytes).map_err(|e| AppError::invalid(format!("invalid batch request: {e}")))?;
    drop(bytes);
    if req.items.is_empty() || req.items.len() > MAX_BATCH {
        return Err(AppError::invalid(format!(
            "a batch has 1 to {MAX_BATCH} items; stream larger runs as application/x-ndjson"
        )));
    }
    let now = now_ms() / 1000;
    let mut drafts = Vec::with_capacity(req.items.len());
    let mut jtis = vouchers::JtiSource::new(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        let claims = vouchers::draft(&state, item, now, &mut jtis)
            .map_err(|e| AppError::new(e.status, e.code, format!("items[{i}]: {}", e.message)).with("index", i))?;
        drafts.push(claims);
    }
    let n = drafts.len();
    let (tx, rx) = mpsc::channel(vouchers::CHUNK);
    tokio::spawn(async move {
        for (i, c) in drafts.into_iter().enumerate() {
            if tx.send(Entry::Draft(i as u64, c)).await.is_err() {
                return;
            }
        }
    });
    let mut out = vouchers::issue_stream(state.clone(), caller.clone(), rx);
    let mut items = Vec::with_capacity(n);
    while let Some(o) = out.recv().await {
        match o {
            Outcome::Issued(_, v) => items.push(v),
            Outcome::Rejected(_, e) | Outcome::Failed(e) => {
                // Chunks recorded before the failure stand (each with its audit entry): name
                // them, so the caller can revoke them or knows not to issue them again.
                let jtis: Vec<&str> = items.iter().map(|v| v.jti.as_str()).collect();
                let e = e.with("issued_before_failure", jtis);
                audit_failure(&state, &caller, "vouchers.issue", "vouchers", &e).await;
                return Err(e);
            }
        }
    }
    if items.len() != n {
        return Err(AppError::internal("batch ended early"));
    }
    Ok((StatusCode::CREATED, Json(BatchResponse { items })).into_response())
}

/// NDJSON in, NDJSON out, a chunk at a time: memory stays flat however long the stream. The
/// status goes out with the first result, so a keystore or database that is down before anything
/// was issued is a plain 503, never an error inside a 201.
async fn stream_batch(state: AppState, caller: Caller, body: Body) -> AppResult<Response> {
    let (entry_tx, entry_rx) = mpsc::channel::<Entry>(vouchers::CHUNK);
    // Set when the request body breaks off: the answer then ends with an error, not `done`.
    let broken: Arc<Mutex<Option<AppError>>> = Arc::default();
    tokio::spawn(read_ndjson(state.clone(), body, entry_tx, broken.clone()));
    let mut out = vouchers::issue_stream(state.clone(), caller.clone(), entry_rx);
    let first = out.recv().await;
    if let Some(Outcome::Failed(e)) = first {
        audit_failure(&state, &caller, "vouchers.issue", "vouchers", &e).await;
        return Err(e);
    }
    let (line_tx, line_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let (mut issued, mut rejected) = (0u64, 0u64);
        let mut batch = Vec::with_capacity(256);
        batch.extend(first);
        loop {
            let mut text = Vec::with_capacity(64 * 1024);
            if batch.is_empty() && out.recv_many(&mut batch, 256).await == 0 {
                let end = match broken.lock().ok().and_then(|mut b| b.take()) {
                    Some(e) => json!({"error": {"code": e.code, "message": e.message}, "issued": issued}),
                    None => json!({"done": true, "issued": issued, "rejected": rejected}),
                };
                let _ = serde_json::to_writer(&mut text, &end);
                text.push(b'\n');
                let _ = line_tx.send(Ok(Bytes::from(text))).await;
                return;
            }
            let mut failed = None;
            for o in batch.drain(..) {
                let v = match o {
                    Outcome::Issued(line, v) => {
                        issued += 1;
                        json!({"line": line, "token": v.token, "jti": v.jti, "exp": v.exp})
                    }
                    Outcome::Rejected(line, e) => {
                        rejected += 1;
                        json!({"line": line, "error": {"code": e.code, "message": e.message}})
                    }
                    Outcome::Failed(e) => {
                        let v = json!({"error": {"code": e.code, "message": e.message}, "issued": issued});
                        failed = Some(e);
                        v
                    }
                };
                let _ = serde_json::to_writer(&mut text, &v);
                text.push(b'\n');
            }
            if line_tx.send(Ok(Bytes::from(text))).await.is_err() {
                return;
            }
            if let Some(e) = failed {
                audit_failure(&state, &caller, "vouchers.issue", "vouchers", &e).await;
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(line_rx));
    let mut resp = (StatusCode::CREATED, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}

/// Splits the body into lines (numbered from 1; blank lines are skipped but counted) and turns
/// each into an [`Entry`]. A line longer than [`MAX_LINE`] is refused on its own and skipped up
/// to its end; a body that breaks off stops the input and is reported through `broken`.
async fn read_ndjson(state: AppState, body: Body, tx: mpsc::Sender<Entry>, broken: Arc<Mutex<Option<AppError>>>) {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    // Inside an over-long line: drop bytes until its newline.
    let mut skipping = false;
    let mut jtis = vouchers::JtiSource::new(usize::MAX);
    let mut entry = |line: &[u8], line_no: u64| -> Option<Entry> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(match serde_json::from_slice::<IssueRequest>(line) {
            Err(e) => Entry::Rejected(line_no, AppError::invalid(format!("invalid voucher request: {e}"))),
            Ok(r) => match vouchers::draft(&state, r, now_ms() / 1000, &mut jtis) {
                Ok(c) => Entry::Draft(line_no, c),
                Err(e) => Entry::Rejected(line_no, e),
            },
        })
    };
    let too_long = || AppError::invalid(format!("line is longer than {MAX_LINE} bytes"));
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                if let Ok(mut b) = broken.lock() {
                    *b = Some(AppError::invalid(
                        "the request body broke off; lines after the last answered were not read",
                    ));
                }
                return;
            }
            None => break,
        };
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            if skipping {
                skipping = false;
            } else {
                line_no += 1;
                let e = if end - start > MAX_LINE {
                    Some(Entry::Rejected(line_no, too_long()))
                } else {
                    entry(&buf[start..end], line_no)
                };
                if let Some(e) = e
                    && tx.send(e).await.is_err()
                {
                    return;
                }
            }
            start = end + 1;
        }
        buf.drain(..start);
        if !skipping && buf.len() > MAX_LINE {
            line_no += 1;
            if tx.send(Entry::Rejected(line_no, too_long())).await.is_err() {
                return;
            }
            skipping = true;
        }
        if skipping {
            buf.clear();
        }
    }
    if !skipping && !buf.is_empty() {
        line_no += 1;
        if let Some(e) = entry(&buf, line_no) {
            let _ = tx.send(e).await;
        }
    }
}

/// `POST /v1/vouchers/redeem`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The voucher JWS.
    token: String,
    /// If given, the voucher's `aud` (programme) must be this.
    audience: Option<String>,
}

/// A redemption.
#[derive(Serialize, ToSchema)]
pub struct Redemption {
    jti: String,
    /// RFC 3339, when the (first) redemption happened.
    redeemed_at: String,
    sub: String,
    aud: String,
    amount: String,
    currency: String,
}

/// The JWK set a voucher's `kid` selects from: that one non-disabled `ecdsa-p256` version.
async fn verification_keys(state: &AppState, token: &str) -> AppResult<Jwks> {
    let kid = token
        .split('.')
        .next()
        .and_then(|h| vouchsafe_core::b64d(h, "header").ok())
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h.get("kid").and_then(|k| k.as_str()).map(str::to_owned));
    let Some((name, version)) = kid.as_deref().and_then(vouchsafe_core::kid::parse) else {
        return Ok(Jwks::default());
    };
    let rec = match state.key(name).await {
        Ok(r) => r,
        Err(e) if e.code == "not_found" => return Ok(Jwks::default()),
        Err(e) => return Err(e),
    };
    match rec.version(version) {
        Some(v) if rec.kind == KeyKind::EcdsaP256 && v.state != VersionState::Disabled => {
            Ok(Jwks::new(vec![state.public_jwk(&rec, v).await?])?)
        }
        _ => Ok(Jwks::default()),
    }
}

fn idempotency_key(headers: &HeaderMap) -> AppResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(s.into())),
            _ => Err(AppError::invalid("Idempotency-Key is 1 to 255 visible ASCII characters")),
        },
    }
}

/// Redeem a voucher: verified (signature, `exp`, `nbf`, issuer, revocation), then recorded
/// exactly once. A retry by the same caller with the same `Idempotency-Key` gets the first answer.
#[utoipa::path(post, path = "/v1/vouchers/redeem", tag = "vouchers", security(("bearer" = [])),
    request_body = RedeemRequest, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Redemption), (status = 400, body = ErrorBody, description = "bad_signature, expired, not_yet_valid, unknown_kid, …"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "already_redeemed (with redeemed_at) or revoked"),
              (status = 503, body = ErrorBody)))]
pub async fn redeem(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> AppResult<Response> {
    authorize(&state, &caller, Permission::VouchersRedeem, "vouchers.redeem", "vouchers").await?;
    let mut target = "vouchers".to_string();
    let result = async {
        let key = idempotency_key(&headers)?;
        let jwks = verification_keys(&state, &req.token).await?;
        let mut validator = VoucherValidator::new().with_issuer(state.config().issuer.clone());
        if let Some(a) = &req.audience {
            validator = validator.with_audience(a.clone());
        }
        let claims = validator.validate(&req.token, &jwks, now_ms() / 1000)?;
        target = claims.jti.clone();
        let at = now_ms();
        let detail = json!({ "aud": claims.aud, "amount": claims.amount, "currency": claims.currency });
        let entry = ok_entry(&caller, "vouchers.redeem", &claims.jti, Some(detail));
        let nonce = vouchers::new_jti()?;
        let redeemed = state
            .audit_log()
            .redeem(claims.jti.clone(), at, caller.name.clone(), key.clone(), nonce.clone(), entry)
            .await;
        match redeemed {
            Ok(true) => return Ok((at, claims, false)),
            Ok(false) => {}
            // The commit may have landed before the failure: if the stored redemption is this
            // attempt's, it succeeded.
            Err(e) => match state.db().voucher(&claims.jti).await {
                Ok(Some(rec)) if rec.redeem_nonce.as_deref() == Some(nonce.as_str()) => {
                    return Ok((rec.redeemed_at.unwrap_or(at), claims, false));
                }
                _ => return Err(e),
            },
        }
        let rec = state
            .db()
            .voucher(&claims.jti)
            .await?
            .ok_or_else(|| AppError::not_found("this voucher was not issued here"))?;
        if let Some(first) = rec.redeemed_at {
            if key.is_some() && rec.redeem_key == key && rec.redeemed_by.as_deref() == Some(caller.name.as_str()) {
                state.audit(ok_entry(&caller, "vouchers.redeem", &claims.jti, Some(json!({ "replay": true })))).await?;
                return Ok((first, claims, true));
            }
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "already_redeemed",
                "this voucher has already been redeemed",
            )
            .with("redeemed_at", rfc3339_ms(first)));
        }
        if rec.revoked_at.is_some() {
            return Err(AppError::new(StatusCode::CONFLICT, "revoked", "this voucher has been revoked"));
        }
        Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "redemption did not land; retry"))
    }
    .await;
    match result {
        Ok((at, c, replay)) => {
            let body = Redemption {
                jti: c.jti,
                redeemed_at: rfc3339_ms(at),
                sub: c.sub,
                aud: c.aud,
                amount: c.amount,
                currency: c.currency,
            };
            let mut resp = Json(body).into_response();
            if replay {
                resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            Ok(resp)
        }
        Err(e) => {
            audit_failure(&state, &caller, "vouchers.redeem", &target, &e).await;
            Err(e)
        }
    }
}

/// A revocation.
#[derive(Serialize, ToSchema)]
pub struct Revocation {
    jti: String,
    /// RFC 3339.
    revoked_at: String,
    /// Where verifiers learn of it: the status list and the voucher's index in it.
    status: StatusView,
}

/// A voucher's place in its status list.
#[derive(Serialize, ToSchema)]
pub struct StatusView {
    uri: String,
    idx: i64,
}

/// Revoke a voucher: its bit in the status list is set (offline verifiers see it after their
/// next sync) and redemption is refused at once. Revoking again is a no-op; a redeemed voucher
/// cannot be revoked.
#[utoipa::path(post, path = "/v1/vouchers/{jti}/revoke", tag = "vouchers", security(("bearer" = [])),
    params(("jti" = String, Path)),
    responses((status = 200, body = Revocation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "already_redeemed"), (status = 503, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(jti): ApiPath<String>,
) -> AppResult<Json<Revocation>> {
    let valid = !jti.is_empty() && jti.len() <= 256 && !jti.chars().any(char::is_control);
    authorize(&state, &caller, Permission::VouchersRevoke, "vouchers.revoke", if valid { &jti } else { "vouchers" })
        .await?;
    if !valid {
        return Err(AppError::not_found("no such voucher"));
    }
    let result = async {
        let at = now_ms();
        let mut tx = state.db().begin().await?;
        let done = tx.revoke(&jti, at, &caller.name).await?;
        if done {
            tx.append_audit(&[ok_entry(&caller, "vouchers.revoke", &jti, None)]).await?;
            tx.commit().await?;
            state.invalidate_status();
        } else {
            drop(tx);
        }
        let rec = state.db().voucher(&jti).await?.ok_or_else(|| AppError::not_found("no such voucher"))?;
        match (rec.revoked_at, rec.redeemed_at) {
            (Some(r), _) => Ok((r, rec)),
            (None, Some(first)) => {
                Err(AppError::new(StatusCode::CONFLICT, "already_redeemed", "a redeemed voucher cannot be revoked")
                    .with("redeemed_at", rfc3339_ms(first)))
            }
            (None, None) => Err(AppError::internal("revocation did not land")),
        }
    }
    .await;
    match result {
        Ok((at, rec)) => Ok(Json(Revocation {
            jti: rec.jti,
            revoked_at: rfc3339_ms(at),
            status: StatusView { uri: vouchers::status_uri(&state, rec.list), idx: rec.idx },
        })),
        Err(e) => {
            audit_failure(&state, &caller, "vouchers.revoke", &jti, &e).await;
            Err(e)
        }
    }
}

/// Status lists that exist.
#[derive(Serialize, ToSchema)]
pub struct StatusListIndex {
    lists: Vec<StatusListInfo>,
}

/// One status list.
#[derive(Serialize, ToSchema)]
pub struct StatusListInfo {
    id: i64,
    uri: String,
    size: i64,
}

/// Every status list, so an offline verifier can fetch them all when it syncs.
#[utoipa::path(get, path = "/v1/status", tag = "vouchers", responses((status = 200, body = StatusListIndex)))]
pub async fn status_lists(State(state): State<AppState>) -> AppResult<Json<StatusListIndex>> {
    let lists = state
        .db()
        .status_lists()
        .await?
        .into_iter()
        .map(|(id, size)| StatusListInfo { id, uri: vouchers::status_uri(&state, id), size })
        .collect();
    Ok(Json(StatusListIndex { lists }))
}

/// A status list as a signed `statuslist+jwt` (IETF Token Status List; 1 bit per voucher, set
/// when revoked), signed by the current voucher key.
#[utoipa::path(get, path = "/v1/status/{list}", tag = "vouchers", params(("list" = i64, Path)),
    responses((status = 200, content_type = "application/statuslist+jwt", body = String), (status = 404, body = ErrorBody)))]
pub async fn status_list(State(state): State<AppState>, ApiPath(list): ApiPath<String>) -> AppResult<Response> {
    let list: i64 = list.parse().ok().filter(|l| *l > 0).ok_or_else(|| AppError::not_found("no such status list"))?;
    let token = vouchers::status_token(&state, list).await?;
    let ttl = state.config().vouchers.status_list_ttl.min(300);
    let mut resp = (StatusCode::OK, token.as_str().to_owned()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/statuslist+jwt"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={ttl}")).map_err(AppError::internal)?,
    );
    Ok(resp)
}
