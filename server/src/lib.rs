#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod auth;
mod batcher;
pub mod config;
pub mod db;
pub mod error;
mod extract;
pub mod metrics;
pub mod oidc;
pub mod routes;
pub mod vouchers;
pub mod web;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use vouchsafe_core::PublicJwk;
use vouchsafe_keystore::{KeyRef, KeyStore};

pub use config::Config;
pub use extract::{ApiBytes, ApiJson, ApiPath, Authenticated};

use crate::audit::AuditLog;
use crate::auth::TokenTable;
use crate::db::{AuditEntry, Db, KeyRecord, VersionRecord};
use crate::error::{AppError, AppResult};

/// How long a key's versions are cached. Other instances see a rotation or a state change
/// within this time; the instance that made it sees it at once.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// When the JWKS body was built, and the body with its ETag.
type JwksCache = (Instant, Arc<(Vec<u8>, String)>);

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    db: Db,
    keystore: Arc<dyn KeyStore>,
    audit: AuditLog,
    tokens: TokenTable,
    keys: RwLock<HashMap<String, (Instant, Arc<KeyRecord>)>>,
    /// Public keys by kid: a version's public key never changes, so no expiry.
    publics: RwLock<HashMap<String, PublicJwk>>,
    oidc: Option<oidc::OidcVerifier>,
    metrics: metrics::Metrics,
    batcher: batcher::Batcher,
    rotation: tokio::sync::Mutex<()>,
    /// Bumped by every invalidation: a read that began before it must not refill the cache.
    key_generation: std::sync::atomic::AtomicU64,
    /// The JWKS body and its ETag, briefly.
    jwks: RwLock<Option<JwksCache>>,
    /// Status-list indices this instance reserved and has not handed out yet.
    index_block: tokio::sync::Mutex<Option<db::IndexRange>>,
    /// Signed status list tokens by list, briefly.
    status: RwLock<HashMap<i64, (Instant, Arc<String>)>>,
    /// Bumped by every revocation on this instance.
    status_generation: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// Builds the state; starts the audit writer on the current runtime.
    pub fn new(config: Config, db: Db, keystore: Arc<dyn KeyStore>, tokens: TokenTable) -> Self {
        Self::with_oidc(config, db, keystore, tokens, None)
    }

    /// Builds the state with an OIDC verifier for bearer JWTs.
    pub fn with_oidc(
        config: Config,
        db: Db,
        keystore: Arc<dyn KeyStore>,
        tokens: TokenTable,
        oidc: Option<oidc::OidcVerifier>,
    ) -> Self {
        let audit = AuditLog::start(db.clone());
        let lanes = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let batcher = batcher::Batcher::start(keystore.clone(), lanes);
        let inner = Inner {
            config,
            db,
            keystore,
            audit,
            tokens,
            keys: RwLock::default(),
            publics: RwLock::default(),
            oidc,
            metrics: metrics::Metrics::default(),
            batcher,
            rotation: tokio::sync::Mutex::new(()),
            key_generation: std::sync::atomic::AtomicU64::new(0),
            jwks: RwLock::default(),
            index_block: tokio::sync::Mutex::new(None),
            status: RwLock::default(),
            status_generation: std::sync::atomic::AtomicU64::new(0),
        };
        AppState { inner: Arc::new(inner) }
    }

    /// Serialises key rotations within this process (SQLite: generation happens outside the
    /// database-wide write lock).
    pub fn rotation_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.rotation
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The OIDC verifier, if configured.
    pub fn oidc(&self) -> Option<&oidc::OidcVerifier> {
        self.inner.oidc.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The keystore.
    pub fn keystore(&self) -> &Arc<dyn KeyStore> {
        &self.inner.keystore
    }

    /// Static tokens.
    pub fn tokens(&self) -> &TokenTable {
        &self.inner.tokens
    }

    /// Appends an audit entry and waits for it to be committed.
    pub async fn audit(&self, entry: AuditEntry) -> AppResult<()> {
        self.inner.audit.record(entry).await
    }

    /// The group-commit writer, for writes that go with their audit entry.
    pub fn audit_log(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// A key with its versions, from a short-lived cache.
    pub async fn key(&self, name: &str) -> AppResult<Arc<KeyRecord>> {
        if let Some((at, rec)) = self.inner.keys.read().map_err(|_| AppError::internal("key cache poisoned"))?.get(name)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(rec.clone());
        }
        let generation = self.inner.key_generation.load(std::sync::atomic::Ordering::Acquire);
        let rec =
            Arc::new(self.db().key(name).await?.ok_or_else(|| AppError::not_found(format!("no key named '{name}'")))?);
        let mut cache = self.inner.keys.write().map_err(|_| AppError::internal("key cache poisoned"))?;
        if self.inner.key_generation.load(std::sync::atomic::Ordering::Acquire) == generation {
            cache.insert(name.to_string(), (Instant::now(), rec.clone()));
        }
        Ok(rec)
    }

    /// Forgets a cached key after this instance changed it.
    pub fn invalidate_key(&self, name: &str) {
        self.inner.key_generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut k) = self.inner.keys.write() {
            k.remove(name);
        }
        if let Ok(mut j) = self.inner.jwks.write() {
            *j = None;
        }
    }

    /// The cached JWKS body and ETag, if fresh.
    pub fn cached_jwks(&self) -> Option<Arc<(Vec<u8>, String)>> {
        let j = self.inner.jwks.read().ok()?;
        j.as_ref().filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL).map(|(_, b)| b.clone())
    }

    /// Stores the JWKS body and ETag.
    pub fn cache_jwks(&self, body: Arc<(Vec<u8>, String)>) {
        if let Ok(mut j) = self.inner.jwks.write() {
            *j = Some((Instant::now(), body));
        }
    }

    /// The public JWK of an EC key version (`kid`, `use` and `alg` set), cached.
    pub async fn public_jwk(&self, key: &KeyRecord, v: &VersionRecord) -> AppResult<PublicJwk> {
        if let Some(j) =
            self.inner.publics.read().map_err(|_| AppError::internal("public key cache poisoned"))?.get(&v.kid)
        {
            return Ok(j.clone());
        }
        let (kid, kind, handle) = (v.kid.clone(), key.kind, v.handle.clone());
        let jwk = self
            .keystore_call("public_key", move |ks| ks.public_key(KeyRef { kid: &kid, kind, handle: &handle }))
            .await?;
        self.inner
            .publics
            .write()
            .map_err(|_| AppError::internal("public key cache poisoned"))?
            .insert(v.kid.clone(), jwk.clone());
        Ok(jwk)
    }

    /// Status-list indices reserved by this instance.
    pub fn index_block(&self) -> &tokio::sync::Mutex<Option<db::IndexRange>> {
        &self.inner.index_block
    }

    /// The cached token of status list `list`, if fresh.
    pub fn cached_status(&self, list: i64) -> Option<Arc<String>> {
        let c = self.inner.status.read().ok()?;
        c.get(&list).filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL).map(|(_, t)| t.clone())
    }

    /// The revocation generation; read it before building a list, pass it to [`Self::cache_status`].
    pub fn status_generation(&self) -> u64 {
        self.inner.status_generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Caches a status list token unless a revocation happened since `generation` was read.
    pub fn cache_status(&self, list: i64, token: Arc<String>, generation: u64) {
        if let Ok(mut c) = self.inner.status.write()
            && self.status_generation() == generation
        {
            c.insert(list, (Instant::now(), token));
        }
    }

    /// Drops cached status lists after a revocation on this instance.
    pub fn invalidate_status(&self) {
        self.inner.status_generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut c) = self.inner.status.write() {
            c.clear();
        }
    }

    /// Runs a long keystore call (a batch) on a blocking thread, whatever the provider, and
    /// records its latency as `op`.
    pub async fn keystore_bulk<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&dyn KeyStore) -> Result<T, vouchsafe_keystore::KeystoreError> + Send + 'static,
    ) -> AppResult<T> {
        let ks = self.inner.keystore.clone();
        let start = Instant::now();
        let res = tokio::task::spawn_blocking(move || f(&*ks))
            .await
            .map_err(|_| AppError::internal("keystore call panicked"))?;
        self.finish_keystore_op(op, start, res)
    }

    /// Records a keystore call's latency and outcome as `op`.
    fn finish_keystore_op<T>(
        &self,
        op: &'static str,
        start: Instant,
        res: Result<T, vouchsafe_keystore::KeystoreError>,
    ) -> AppResult<T> {
        self.metrics().keystore_op(self.inner.keystore.provider(), op, res.is_ok(), start.elapsed().as_secs_f64());
        res.map_err(AppError::from)
    }

    /// Runs a blocking keystore call off the async runtime and records its latency as `op`.
    pub async fn keystore_call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&dyn KeyStore) -> Result<T, vouchsafe_keystore::KeystoreError> + Send + 'static,
    ) -> AppResult<T> {
        let ks = self.inner.keystore.clone();
        let start = Instant::now();
        // An HSM call blocks: the batcher runs it in place only while such calls are quick, one at
        // a time, and otherwise off the runtime. The soft keystore's work is a few microseconds
        // of CPU, cheaper than any hand-off, so it always runs in place.
        let res = if ks.blocking() {
            self.inner.batcher.call(f).await.ok_or_else(|| AppError::internal("keystore dispatcher stopped"))?
        } else {
            f(&*ks)
        };
        self.finish_keystore_op(op, start, res)
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let web = web::router(&state.config().web);
    routes::router(state).merge(web)
}
