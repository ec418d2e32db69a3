//! Test harness: an app over a chosen database and keystore, with tokens for each role, called
//! through `tower::ServiceExt::oneshot`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/keystore/tests/common/mod.rs"]
pub mod softhsm;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vouchsafe_keystore::KeyStore;
use vouchsafe_server::auth::{Permission, TokenTable, token_hash};
use vouchsafe_server::db::Db;
use vouchsafe_server::{AppState, Config, app};

/// Which database and keystore a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    SqliteSoft,
    PostgresSoft,
    SqliteSoftHsm,
}

pub const ADMIN: &str = "tok-admin";
pub const ENCRYPTOR: &str = "tok-encryptor";
pub const DECRYPTOR: &str = "tok-decryptor";
pub const AUDITOR: &str = "tok-auditor";
pub const NOBODY: &str = "tok-nobody";
pub const ISSUER: &str = "tok-programme";
pub const MERCHANT: &str = "tok-merchant";
pub const MERCHANT2: &str = "tok-merchant2";
pub const REGISTRAR: &str = "tok-registrar";
pub const RECORDS: &str = "tok-records";

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    /// Keeps a SQLite file alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

fn tokens() -> TokenTable {
    let mut t = TokenTable::default();
    let p = |s: &[&str]| s.iter().map(|x| Permission::parse(x).unwrap()).collect::<Vec<_>>();
    t.add("admin".into(), token_hash(ADMIN), p(&["keys:admin", "keys:encrypt:*", "keys:decrypt:*", "audit:read"]));
    t.add("portal".into(), token_hash(ENCRYPTOR), p(&["keys:encrypt:pii"]));
    t.add("officer".into(), token_hash(DECRYPTOR), p(&["keys:decrypt:pii"]));
    t.add("auditor".into(), token_hash(AUDITOR), p(&["audit:read"]));
    t.add("nobody".into(), token_hash(NOBODY), vec![]);
    t.add("programme".into(), token_hash(ISSUER), p(&["vouchers:issue", "vouchers:revoke"]));
    t.add("merchant".into(), token_hash(MERCHANT), p(&["vouchers:redeem"]));
    t.add("merchant2".into(), token_hash(MERCHANT2), p(&["vouchers:redeem"]));
    t.add("registrar".into(), token_hash(REGISTRAR), p(&["registrations:submit", "keys:encrypt:pii"]));
    t.add("records".into(), token_hash(RECORDS), p(&["registrations:read"]));
    t
}

/// A fresh, empty PostgreSQL database on the server `DATABASE_URL` points at.
pub async fn postgres_database() -> String {
    let admin = std::env::var("DATABASE_URL").expect(
        "PostgreSQL tests need DATABASE_URL: run scripts/test (it starts a throwaway cluster) or point it at a server",
    );
    let name = format!("vs_test_{}_{}", std::process::id(), rand_suffix());
    let pool = sqlx::PgPool::connect(&admin).await.expect("connect to DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    vouchsafe_core::rand_core::TryRng::try_fill_bytes(&mut getrandom::SysRng, &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn keystore(backend: Backend) -> Arc<dyn KeyStore> {
    match backend {
        Backend::SqliteSoft | Backend::PostgresSoft => softhsm::soft(),
        Backend::SqliteSoftHsm => softhsm::softhsm(),
    }
}

/// An app on `backend`; a PostgreSQL app gets its own database.
pub async fn test_app(backend: Backend) -> TestApp {
    test_app_with(backend, Config::default()).await
}

/// [`test_app`] with a configuration.
pub async fn test_app_with(backend: Backend, config: Config) -> TestApp {
    let (url, dir) = match backend {
        Backend::PostgresSoft => (postgres_database().await, None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            (format!("sqlite://{}", dir.path().join("vs.db").display()), Some(dir))
        }
    };
    app_with(backend, &url, dir, config).await
}

/// Another app instance on the same database (several servers, one PostgreSQL).
pub async fn app_on(backend: Backend, url: &str, dir: Option<tempfile::TempDir>) -> TestApp {
    app_with(backend, url, dir, Config::default()).await
}

/// An app with its own configuration (the database URL is filled in).
pub async fn app_with(backend: Backend, url: &str, dir: Option<tempfile::TempDir>, config: Config) -> TestApp {
    let db = Db::connect(url).await.unwrap();
    let config = Config { database_url: url.into(), ..config };
    let state = AppState::new(config, db, keystore(backend), tokens());
    TestApp { router: app(state.clone()), state, _dir: dir }
}

impl TestApp {
    /// Wraps a state built by the test itself.
    pub fn from_state(state: AppState, dir: tempfile::TempDir) -> Self {
        TestApp { router: app(state.clone()), state, _dir: Some(dir) }
    }

    /// Sends a request and returns status, headers and the JSON body (Null if empty).
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, body)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let (s, _, v) = self.send(req).await;
        (s, v)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    /// Creates a key as admin and checks it worked.
    pub async fn create_key(&self, name: &str, kind: &str) -> Value {
        let (s, v) = self.post("/v1/keys", ADMIN, serde_json::json!({ "name": name, "type": kind })).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// All audit entries.
    pub async fn audit(&self) -> Vec<Value> {
        self.state
            .db()
            .audit_after(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }
}
