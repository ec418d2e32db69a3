//! Voucher issuance: claims from requests, status-list indices, signing inside the keystore, and
//! the three-stage pipeline (prepare → sign → record) that issues large batches with flat memory.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use vouchsafe_core::jws::PreparedJws;
use vouchsafe_core::{StatusRef, VoucherClaims, b64e};
use vouchsafe_keystore::{KeyHandle, KeyKind, KeyRef};

use crate::AppState;
use crate::auth::Caller;
use crate::db::{AuditEntry, IndexRange, VersionState, VoucherRow, now_ms};
use crate::error::{AppError, AppResult};

/// Vouchers signed per keystore call and recorded per transaction in a batch.
pub const CHUNK: usize = 256;

/// Chunks of one run being signed at the same time.
const SIGNING_IN_FLIGHT: usize = 2;

/// The first chunk of a run; each next one is twice as large, up to [`CHUNK`].
const FIRST_CHUNK: usize = 32;
/// Indices an instance reserves at a time for single issuance.
const INDEX_BLOCK: i64 = 256;
/// Most bytes the caller's extra claims may take (vouchers travel as QR codes).
pub const MAX_EXTRA_CLAIMS_BYTES: usize = 4096;

/// One voucher to issue.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Beneficiary id.
    pub sub: String,
    /// Programme id.
    pub aud: String,
    /// Decimal string, e.g. `"1500.00"`.
    pub amount: String,
    /// ISO 4217 code, e.g. `"KES"`.
    pub currency: String,
    /// Seconds of validity from `not_before` (or from now); default from configuration.
    pub expires_in: Option<u64>,
    /// Unix seconds before which the voucher is not valid; default now.
    pub not_before: Option<i64>,
    /// Extra claims; may not use a registered claim name.
    #[schema(value_type = Option<Object>)]
    pub claims: Option<Map<String, Value>>,
}

/// An issued voucher.
#[derive(Clone, Debug, serde::Serialize, ToSchema)]
pub struct Issued {
    /// The ES256 JWS.
    pub token: String,
    /// Voucher id.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// The signing key version vouchers are issued under now.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// `<name>.v<n>`.
    pub kid: String,
    /// Keystore handle.
    pub handle: KeyHandle,
}

/// The configured voucher key's current version, creating the key (as `system`) the first time.
pub async fn signing_key(state: &AppState) -> AppResult<SigningKey> {
    let name = state.config().vouchers.key.clone();
    let rec =
        crate::routes::keys::ensure_key(state, &name, KeyKind::EcdsaP256, "vouchers (setting vouchers.key)").await?;
    let v = rec.current().ok_or_else(|| AppError::internal("voucher key has no current version"))?;
    if v.state != VersionState::Active {
        return Err(AppError::conflict("the voucher key's current version is not active"));
    }
    Ok(SigningKey { kid: v.kid.clone(), handle: v.handle.clone() })
}

/// A fresh voucher id: 128 random bits, base64url.
pub fn new_jti() -> AppResult<String> {
    JtiSource::new(1).draw()
}

/// Voucher ids, 128 random bits each, drawn from the OS generator up to 64 at a time: a batch of
/// 100 000 makes ~1 600 system calls instead of 100 000. Ids are public (they travel in the
/// token), so the few drawn ahead and held in memory reveal nothing.
#[derive(Debug)]
pub struct JtiSource {
    /// Drawn, not yet handed out.
    ready: Vec<u8>,
    /// Ids still expected; draws are sized by it.
    expected: usize,
}

impl JtiSource {
    const MAX_DRAW: usize = 64;

    /// A source for about `expected` ids (more are fine).
    pub fn new(expected: usize) -> Self {
        JtiSource { ready: Vec::new(), expected: expected.max(1) }
    }

    /// The next id.
    pub fn draw(&mut self) -> AppResult<String> {
        if self.ready.len() < 16 {
            let n = self.expected.clamp(1, Self::MAX_DRAW);
            self.ready.resize(16 * n, 0);
            getrandom::fill(&mut self.ready).map_err(AppError::internal)?;
        }
        self.expected = self.expected.saturating_sub(1);
        let id = b64e(&self.ready[self.ready.len() - 16..]);
        self.ready.truncate(self.ready.len() - 16);
        Ok(id)
    }
}

/// The claims a request asks for (no status yet), checked against every rule; `now` in seconds.
pub fn draft(state: &AppState, req: IssueRequest, now: i64, jtis: &mut JtiSource) -> AppResult<VoucherClaims> {
    let cfg = &state.config().vouchers;
    let expires_in = req.expires_in.unwrap_or(cfg.default_expires_in);
    if expires_in == 0 || expires_in > cfg.max_expires_in {
        return Err(AppError::invalid(format!("expires_in is 1 to {} seconds", cfg.max_expires_in)));
    }
    let nbf = req.not_before.unwrap_or(now);
    if nbf < 0 || nbf > now + cfg.max_expires_in as i64 {
        return Err(AppError::invalid("not_before is Unix seconds, at most max_expires_in from now"));
    }
    let extra = req.claims.unwrap_or_default();
    if let Some(name) = extra.keys().find(|k| vouchsafe_core::REGISTERED_CLAIMS.contains(&k.as_str())) {
        return Err(AppError::invalid(format!("claims: '{name}' is a registered claim and cannot be set")));
    }
    if serde_json::to_vec(&extra).map_or(0, |v| v.len()) > MAX_EXTRA_CLAIMS_BYTES {
        return Err(AppError::invalid(format!("claims: at most {MAX_EXTRA_CLAIMS_BYTES} bytes of JSON")));
    }
    let claims = VoucherClaims {
        iss: state.config().issuer.clone(),
        sub: req.sub,
        aud: req.aud,
        jti: jtis.draw()?,
        iat: now,
        nbf,
        exp: nbf.max(now) + expires_in as i64,
        amount: req.amount,
        currency: req.currency,
        status: None,
        extra: extra.into_iter().collect(),
    };
    claims.check().map_err(|e| match e {
        vouchsafe_core::Error::InvalidClaim("amount") => {
            AppError::invalid("amount is a positive decimal string such as \"1500.00\" (up to 6 decimals)")
        }
        vouchsafe_core::Error::InvalidClaim("currency") => {
            AppError::invalid("currency is an ISO 4217 code of three capital letters")
        }
        vouchsafe_core::Error::InvalidClaim(c @ ("sub" | "aud")) => {
            AppError::invalid(format!("{c} is 1 to 256 characters"))
        }
        other => AppError::invalid(format!("invalid voucher: {other}")),
    })?;
    Ok(claims)
}

/// The URI of status list `list`.
pub fn status_uri(state: &AppState, list: i64) -> String {
    let cfg = state.config();
    let base = cfg.vouchers.public_url.as_deref().unwrap_or(&cfg.issuer).trim_end_matches('/');
    format!("{base}/v1/status/{list}")
}

/// `n` status-list positions (list, index): from this instance's reserved block when small,
/// straight from the database otherwise.
pub async fn allocate(state: &AppState, n: usize) -> AppResult<Vec<(i64, i64)>> {
    let size = state.config().vouchers.status_list_size as i64;
    let mut out = Vec::with_capacity(n);
    let mut block = state.index_block().lock().await;
    while out.len() < n {
        let want = (n - out.len()) as i64;
        let r = match block.as_mut().filter(|b| b.start < b.end) {
            Some(b) => b,
            None => {
                let r = state.db().reserve_indices(want.max(INDEX_BLOCK), size).await?;
                block.insert(r)
            }
        };
        let take = want.min(r.end - r.start);
        out.extend((r.start..r.start + take).map(|i| (r.list, i)));
        r.start += take;
    }
    Ok(out)
}

fn row(c: &VoucherClaims, list: i64, idx: i64, kid: &str, by: &str) -> VoucherRow {
    VoucherRow {
        jti: c.jti.clone(),
        list,
        idx,
        kid: kid.into(),
        sub: c.sub.clone(),
        aud: c.aud.clone(),
        amount: c.amount.clone(),
        currency: c.currency.clone(),
        iat: c.iat,
        exp: c.exp,
        issued_by: by.into(),
    }
}

/// Issues one voucher: index, signature (through the keystore's batcher), then the row and its
/// audit entry in one (group-committed) transaction. The token leaves only after that commit.
pub async fn issue_one(state: &AppState, caller: &Caller, claims: VoucherClaims) -> AppResult<Issued> {
    let key = signing_key(state).await?;
    let (list, idx) = allocate(state, 1).await?[0];
    let mut claims = claims;
    claims.status = Some(StatusRef { idx: idx as u64, uri: status_uri(state, list) });
    let prepared = claims.prepare(&key.kid)?;
    let digest = *prepared.digest();
    let (kid, handle) = (key.kid.clone(), key.handle.clone());
    let sig = state
        .keystore_call("sign", move |ks| {
            ks.sign_digest(KeyRef { kid: &kid, kind: KeyKind::EcdsaP256, handle: &handle }, &digest)
        })
        .await?;
    let token = prepared.finish(&sig)?;
    let detail = json!({ "kid": key.kid, "aud": claims.aud, "amount": claims.amount, "currency": claims.currency });
    let entry = crate::routes::ok_entry(caller, "vouchers.issue", &claims.jti, Some(detail));
    state.audit_log().issue(row(&claims, list, idx, &key.kid, &caller.name), entry).await?;
    Ok(Issued { token, jti: claims.jti, exp: claims.exp })
}

/// One item of a batch: claims to issue, or a request that was refused (with its line number).
pub enum Entry {
    /// Checked claims.
    Draft(u64, VoucherClaims),
    /// Refused before issuance.
    Rejected(u64, AppError),
}

/// What the pipeline reports, in input order.
pub enum Outcome {
    /// Issued and recorded.
    Issued(u64, Issued),
    /// Refused; nothing issued.
    Rejected(u64, AppError),
    /// The batch stopped here (keystore or database failure); what came before stands.
    Failed(AppError),
}

enum Stage {
    Draft(u64, VoucherClaims, i64, PreparedJws),
    Signed(u64, VoucherClaims, i64, String),
    Rejected(u64, AppError),
}

struct Chunk {
    kid: String,
    handle: KeyHandle,
    items: Vec<Stage>,
}

/// Issues every entry that `input` yields, `CHUNK` at a time: while chunks are being signed
/// ([`SIGNING_IN_FLIGHT`] at once), the next is prepared and the previous one recorded. Each
/// stage and channel holds a fixed number of chunks (about eight in all), so memory does
/// not grow with the batch. Outcomes arrive in input order; the receiver going away, or an
/// error, stops the pipeline after the chunks in flight (a chunk signed but not recorded is
/// dropped: no token leaves unrecorded). Each chunk being signed holds a keystore session for
/// its call, so one stream uses up to two; other callers wait for a session at most the length
/// of a chunk's signing.
pub fn issue_stream(state: AppState, caller: Caller, mut input: mpsc::Receiver<Entry>) -> mpsc::Receiver<Outcome> {
    let (prep_tx, prep_rx) = mpsc::channel::<AppResult<Chunk>>(1);
    let (sign_tx, mut sign_rx) = mpsc::channel::<AppResult<Chunk>>(1);
    let (out_tx, out_rx) = mpsc::channel::<Outcome>(CHUNK);

    // Prepare: allocate indices, build claims, hash.
    let st = state.clone();
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(CHUNK);
        // The first chunks are small so the keystore starts signing early; then they double.
        let mut limit = FIRST_CHUNK;
        while input.recv_many(&mut buf, limit).await > 0 {
            limit = (2 * limit).min(CHUNK);
            let entries = std::mem::replace(&mut buf, Vec::with_capacity(limit));
            let chunk = prepare_chunk(&st, entries).await;
            let failed = chunk.is_err();
            if prep_tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });

    // Sign: one keystore call per chunk, off the async runtime, two chunks at a time: the
    // keystore is never idle while a chunk's tokens are assembled, and an HSM that signs on
    // several sessions at once (SoftHSM does, partly) gets to.
    let st = state.clone();
    tokio::spawn(async move {
        let mut signed_chunks = tokio_stream::wrappers::ReceiverStream::new(prep_rx)
            .map(|chunk| {
                let st = st.clone();
                async move {
                    match chunk {
                        Ok(c) => sign_chunk(&st, c).await,
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(SIGNING_IN_FLIGHT);
        while let Some(signed) = signed_chunks.next().await {
            let failed = signed.is_err();
            if sign_tx.send(signed).await.is_err() || failed {
                return;
            }
        }
    });

    // Record: rows and one audit entry per chunk in one transaction, then hand out the tokens.
    tokio::spawn(async move {
        while let Some(chunk) = sign_rx.recv().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = out_tx.send(Outcome::Failed(e)).await;
                    return;
                }
            };
            if let Err(e) = record_chunk(&state, &caller, &chunk).await {
                let _ = out_tx.send(Outcome::Failed(e)).await;
                return;
            }
            for item in chunk.items {
                let o = match item {
                    Stage::Signed(line, c, _, token) => Outcome::Issued(line, Issued { token, jti: c.jti, exp: c.exp }),
                    Stage::Rejected(line, e) => Outcome::Rejected(line, e),
                    Stage::Draft(..) => Outcome::Failed(AppError::internal("unsigned voucher reached the recorder")),
                };
                if out_tx.send(o).await.is_err() {
                    return;
                }
            }
        }
    });
    out_rx
}

async fn prepare_chunk(state: &AppState, entries: Vec<Entry>) -> AppResult<Chunk> {
    let key = signing_key(state).await?;
    let drafts = entries.iter().filter(|e| matches!(e, Entry::Draft(..))).count();
    let mut slots = allocate_bulk(state, drafts).await?.into_iter();
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        items.push(match e {
            Entry::Rejected(line, err) => Stage::Rejected(line, err),
            Entry::Draft(line, mut c) => {
                let (list, idx) = slots.next().ok_or_else(|| AppError::internal("index allocation came up short"))?;
                c.status = Some(StatusRef { idx: idx as u64, uri: status_uri(state, list) });
                let p = c.prepare(&key.kid)?;
                Stage::Draft(line, c, list, p)
            }
        });
    }
    Ok(Chunk { kid: key.kid, handle: key.handle, items })
}

/// Positions for a whole chunk, straight from the database (no per-instance block).
async fn allocate_bulk(state: &AppState, n: usize) -> AppResult<Vec<(i64, i64)>> {
    let size = state.config().vouchers.status_list_size as i64;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let IndexRange { list, start, end } = state.db().reserve_indices((n - out.len()) as i64, size).await?;
        out.extend((start..end).map(|i| (list, i)));
    }
    Ok(out)
}

async fn sign_chunk(state: &AppState, mut chunk: Chunk) -> AppResult<Chunk> {
    let digests: Vec<[u8; 32]> = chunk
        .items
        .iter()
        .filter_map(|s| match s {
            Stage::Draft(_, _, _, p) => Some(*p.digest()),
            _ => None,
        })
        .collect();
    if !digests.is_empty() {
        let (kid, handle) = (chunk.kid.clone(), chunk.handle.clone());
        let n = digests.len();
        let sigs = state
            .keystore_bulk("sign_batch", move |ks| {
                ks.sign_digests(KeyRef { kid: &kid, kind: KeyKind::EcdsaP256, handle: &handle }, &digests)
            })
            .await?;
        if sigs.len() != n {
            return Err(AppError::internal("keystore returned the wrong number of signatures"));
        }
        let mut sigs = sigs.into_iter();
        let mut signed = Vec::with_capacity(chunk.items.len());
        for item in chunk.items {
            signed.push(match item {
                Stage::Draft(line, c, list, p) => {
                    let sig = sigs.next().ok_or_else(|| AppError::internal("signature count"))?;
                    Stage::Signed(line, c, list, p.finish(&sig)?)
                }
                other => other,
            });
        }
        chunk.items = signed;
    }
    Ok(chunk)
}

async fn record_chunk(state: &AppState, caller: &Caller, chunk: &Chunk) -> AppResult<()> {
    let rows: Vec<VoucherRow> = chunk
        .items
        .iter()
        .filter_map(|s| match s {
            Stage::Signed(_, c, list, _) => {
                c.status.as_ref().map(|st| row(c, *list, st.idx as i64, &chunk.kid, &caller.name))
            }
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let entry = AuditEntry {
        actor: caller.name.clone(),
        action: "vouchers.issue".into(),
        target: chunk.kid.clone(),
        outcome: "ok".into(),
        detail: Some(json!({
            "count": rows.len(),
            "first_jti": rows.first().map(|r| r.jti.as_str()),
            "last_jti": rows.last().map(|r| r.jti.as_str()),
        })),
    };
    let mut tx = state.db().begin().await?;
    tx.insert_vouchers(&rows).await?;
    tx.append_audit(&[entry]).await?;
    tx.commit().await
}

/// Milliseconds to RFC 3339 (UTC, milliseconds).
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// The status list `list` as a signed `statuslist+jwt`, from a 2-second cache.
pub async fn status_token(state: &AppState, list: i64) -> AppResult<Arc<String>> {
    if let Some(t) = state.cached_status(list) {
        return Ok(t);
    }
    let generation = state.status_generation();
    let (size, revoked) =
        state.db().revoked_in_list(list).await?.ok_or_else(|| AppError::not_found(format!("no status list {list}")))?;
    let mut bits = vouchsafe_core::StatusList::new(1, size as usize)?;
    for idx in revoked {
        bits.set(idx as u64, vouchsafe_core::status::STATUS_INVALID)?;
    }
    let key = signing_key(state).await?;
    let cfg = &state.config().vouchers;
    let (uri, iat) = (status_uri(state, list), now_ms() / 1000);
    let (exp, ttl) = (iat + cfg.status_list_lifetime as i64, cfg.status_list_ttl);
    let token = state
        .keystore_call("sign", move |ks| {
            let signer = vouchsafe_keystore::KeystoreSigner {
                store: ks,
                key: KeyRef { kid: &key.kid, kind: KeyKind::EcdsaP256, handle: &key.handle },
            };
            bits.sign(&uri, iat, Some(exp), Some(ttl), &key.kid, &signer)
        })
        .await?;
    let token = Arc::new(token);
    state.cache_status(list, token.clone(), generation);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_sources_give_distinct_128_bit_ids() {
        let mut ids = std::collections::HashSet::new();
        for expected in [1, 3, 64, 1000, usize::MAX] {
            let mut src = JtiSource::new(expected);
            for _ in 0..200 {
                let id = src.draw().unwrap();
                assert_eq!(vouchsafe_core::b64d(&id, "jti").unwrap().len(), 16, "{id}");
                assert!(ids.insert(id), "ids never repeat");
            }
        }
    }
}
