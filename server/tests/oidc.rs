//! OIDC bearer JWTs from a fake Keycloak: RS256 and ES256, realm and client roles and scopes,
//! JWKS from a file or a URL (with key rotation), and every way a token must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use common::{Backend, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use vouchsafe_server::auth::TokenTable;
use vouchsafe_server::config::OidcConfig;
use vouchsafe_server::db::Db;
use vouchsafe_server::oidc::OidcVerifier;
use vouchsafe_server::{AppState, Config};

const ISS: &str = "https://idp.example.org/realms/g2p";
const AUD: &str = "vouchsafe";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(extra: Value) -> Value {
    let mut c = json!({ "iss": ISS, "aud": AUD, "sub": "5f1c-alice", "preferred_username": "alice",
                        "iat": now(), "exp": now() + 300 });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn rs256(kid: &str, pem: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap()
}

fn es256(kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_pem(fixture("idp_ec.pem").as_bytes()).unwrap()).unwrap()
}

async fn app_with_oidc(jwks: &str) -> TestApp {
    let oidc = verifier(jwks).await;
    app_with_verifier(oidc).await
}

async fn verifier(jwks: &str) -> OidcVerifier {
    OidcVerifier::new(&OidcConfig { issuer: ISS.into(), jwks: jwks.into(), audience: AUD.into() }).await.unwrap()
}

async fn app_with_verifier(oidc: OidcVerifier) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("vs.db").display())).await.unwrap();
    let ks = common::keystore(Backend::SqliteSoft);
    let state = AppState::with_oidc(Config::default(), db, ks, TokenTable::default(), Some(oidc));
    TestApp::from_state(state, dir)
}

/// A fake identity provider serving its JWKS on 127.0.0.1.
async fn idp(jwks: Arc<RwLock<String>>) -> String {
    let router = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let body = jwks.read().unwrap().clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/certs")
}

#[tokio::test]
async fn keycloak_roles_and_scopes_grant_permissions() {
    let jwks_file = format!("{FIXTURES}/idp_jwks.json");
    let app = app_with_oidc(&jwks_file).await;
    let admin = es256("idp-ec-1", &claims(json!({ "resource_access": { AUD: { "roles": ["keys:admin"] } } })));
    let (s, v) = app.post("/v1/keys", &admin, json!({"name":"pii","type":"aes256-gcm"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let portal = rs256(
        "idp-rsa-1",
        &fixture("idp_rsa.pem"),
        &claims(json!({ "realm_access": { "roles": ["keys:encrypt:pii", "offline_access"] } })),
    );
    let (s, v) = app.post("/v1/keys/pii/datakey", &portal, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let auditor = rs256("idp-rsa-1", &fixture("idp_rsa.pem"), &claims(json!({ "scope": "openid profile audit:read" })));
    let (s, v) = app.get("/v1/audit", &auditor).await;
    assert_eq!(s, StatusCode::OK);
    let actors: Vec<&str> = v["entries"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"oidc:5f1c-alice"), "{actors:?}");
    // Valid token, but roles of another client do not count.
    let other_client = rs256(
        "idp-rsa-1",
        &fixture("idp_rsa.pem"),
        &claims(json!({ "resource_access": { "account": { "roles": ["keys:admin"] } } })),
    );
    let (s, _) = app.post("/v1/keys/pii/rotate", &other_client, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_bad_token_is_refused_and_audited() {
    let app = app_with_oidc(&format!("{FIXTURES}/idp_jwks.json")).await;
    let rsa = fixture("idp_rsa.pem");
    let roles = json!({ "realm_access": { "roles": ["keys:admin"] } });
    let expired = {
        let mut c = claims(roles.clone());
        c["exp"] = json!(now() - 3600);
        c
    };
    let future = {
        let mut c = claims(roles.clone());
        c["nbf"] = json!(now() + 3600);
        c
    };
    let wrong_aud = {
        let mut c = claims(roles.clone());
        c["aud"] = json!("account");
        c
    };
    let wrong_iss = {
        let mut c = claims(roles.clone());
        c["iss"] = json!("https://evil.example/realms/g2p");
        c
    };
    let no_exp = {
        let mut c = claims(roles.clone());
        c.as_object_mut().unwrap().remove("exp");
        c
    };
    let mut id_token = claims(roles.clone());
    id_token["typ"] = json!("ID");
    let good = claims(roles.clone());
    // alg confusion: HS256 keyed with the IdP's public key material.
    let hs = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("idp-rsa-1".into());
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(fixture("idp_jwks.json").as_bytes())).unwrap()
    };
    let b64 = |v: &Value| vouchsafe_core::b64e(v.to_string().as_bytes());
    let none = format!("{}.{}.", b64(&json!({"alg":"none","kid":"idp-rsa-1"})), b64(&good));
    // ES256 header on the RSA key's kid.
    let es_on_rsa_kid = es256("idp-rsa-1", &good);
    let cases = [
        ("expired", rs256("idp-rsa-1", &rsa, &expired)),
        ("not yet valid", rs256("idp-rsa-1", &rsa, &future)),
        ("wrong audience", rs256("idp-rsa-1", &rsa, &wrong_aud)),
        ("wrong issuer", rs256("idp-rsa-1", &rsa, &wrong_iss)),
        ("missing exp", rs256("idp-rsa-1", &rsa, &no_exp)),
        ("an ID token, not an access token", rs256("idp-rsa-1", &rsa, &id_token)),
        ("forged with another key under the same kid", rs256("idp-rsa-1", &fixture("attacker_rsa.pem"), &good)),
        ("unknown kid", rs256("idp-rsa-9", &rsa, &good)),
        ("HS256 with the public key", hs),
        ("alg none", none),
        ("ES256 on an RSA kid", es_on_rsa_kid),
        ("garbage", "a.b.c".into()),
    ];
    for (what, token) in &cases {
        let (s, v) = app.post("/v1/keys", token, json!({"name":"x","type":"aes256-gcm"})).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{what}: {v}"
        );
    }
    let (s, _) = app.post("/v1/keys", &rs256("idp-rsa-1", &rsa, &good), json!({"name":"x","type":"aes256-gcm"})).await;
    assert_eq!(s, StatusCode::CREATED, "the same claims, properly signed, pass");
    let audit = app.audit().await;
    assert_eq!(audit.iter().filter(|e| e["outcome"] == "denied" && e["actor"] == "anonymous").count(), cases.len());
}

#[tokio::test]
async fn jwks_url_and_key_rotation_at_the_provider() {
    let full: Value = serde_json::from_str(&fixture("idp_jwks.json")).unwrap();
    let served = Arc::new(RwLock::new(json!({ "keys": [full["keys"][0]] }).to_string()));
    let url = idp(served.clone()).await;
    let roles = json!({ "realm_access": { "roles": ["keys:admin"] } });
    let ec_token = es256("idp-ec-1", &claims(roles));

    // Default 30 s rate limit: a token naming an unpublished kid cannot make us hammer the IdP.
    let app = app_with_oidc(&url).await;
    assert_eq!(app.get("/v1/keys", &ec_token).await.0, StatusCode::UNAUTHORIZED, "the EC key is not published yet");
    *served.write().unwrap() = full.to_string();
    assert_eq!(app.get("/v1/keys", &ec_token).await.0, StatusCode::UNAUTHORIZED, "no refetch within the interval");

    // With the interval passed (0 here), the unknown kid triggers one refetch and the provider's
    // new key is accepted without a restart.
    *served.write().unwrap() = json!({ "keys": [full["keys"][0]] }).to_string();
    let app = app_with_verifier(verifier(&url).await.with_refresh_interval(std::time::Duration::ZERO)).await;
    assert_eq!(app.get("/v1/keys", &ec_token).await.0, StatusCode::UNAUTHORIZED);
    *served.write().unwrap() = full.to_string();
    let (s, v) = app.get("/v1/keys", &ec_token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn unreadable_provider_keys_fail_start_up_clearly() {
    for jwks in ["/nonexistent/jwks.json", "http://127.0.0.1:9/certs"] {
        let err = OidcVerifier::new(&OidcConfig { issuer: ISS.into(), jwks: jwks.into(), audience: AUD.into() })
            .await
            .unwrap_err();
        assert!(err.contains(jwks), "{err}");
    }
}
