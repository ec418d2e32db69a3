//! The HTTP API (CONTRACT §2, key endpoints), run on SQLite + soft keystore, PostgreSQL + soft
//! keystore, and SQLite + SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{ADMIN, AUDITOR, Backend, DECRYPTOR, ENCRYPTOR, NOBODY, TestApp, test_app};
use serde_json::{Value, json};
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{DataKey, Jwks, KeyUse, b64d, seal_to_public_key};
use vouchsafe_server::db::{ChainCheck, Db};

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

async fn datakey(app: &TestApp, key: &str) -> DataKey {
    let (s, v) = app.post(&format!("/v1/keys/{key}/datakey"), ENCRYPTOR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    DataKey::from_response_json(&v.to_string()).unwrap()
}

async fn decrypt(app: &TestApp, key: &str, token: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/keys/{key}/decrypt"), token, body).await
}

async fn key_lifecycle(b: Backend) {
    let app = test_app(b).await;
    let k = app.create_key("pii", "aes256-gcm").await;
    assert_eq!(k["current_version"], 1);
    assert_eq!(k["versions"][0]["kid"], "pii.v1");
    assert_eq!(k["versions"][0]["state"], "active");
    let (s, v) = app.post("/v1/keys", ADMIN, json!({"name":"pii","type":"aes256-gcm"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    for (name, kind) in [("PII", "aes256-gcm"), ("pii.v2", "aes256-gcm"), ("", "aes256-gcm"), ("x", "rsa-2048")] {
        let (s, v) = app.post("/v1/keys", ADMIN, json!({"name":name,"type":kind})).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{name} {kind}"
        );
    }
    let (s, v) = app.post("/v1/keys/pii/rotate", ADMIN, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["current_version"], 2);
    let (s, v) = app.post("/v1/keys/pii/versions/2/state", ADMIN, json!({"state":"retired"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "current must stay active");
    let (s, v) = app.post("/v1/keys/pii/versions/1/state", ADMIN, json!({"state":"retired"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["versions"][0]["state"], "retired");
    let (s, _) = app.post("/v1/keys/pii/versions/9/state", ADMIN, json!({"state":"retired"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = app.post("/v1/keys/pii/versions/1/state", ADMIN, json!({"state":"gone"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    app.create_key("vouchers", "ecdsa-p256").await;
    let (s, v) = app.get("/v1/keys", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pii", "vouchers"]);
    let (s, v) = app.get("/v1/keys/vouchers", ADMIN).await;
    assert_eq!((s, v["type"].as_str()), (StatusCode::OK, Some("ecdsa-p256")));
    let (s, v) = app.get("/v1/keys/nope", ADMIN).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

async fn online_round_trip_with_context(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    let dk = datakey(&app, "pii").await;
    assert_eq!(dk.wrapped().kid, "pii.v1");
    let jwe = dk.seal("0712 345 678".as_bytes(), Some("registrant/123/phone"), &mut rng()).unwrap();
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": jwe, "ctx": "registrant/123/phone"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["text"], "0712 345 678");
    assert_eq!(b64d(v["plaintext"].as_str().unwrap(), "p").unwrap(), b"0712 345 678");
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": jwe, "ctx": "registrant/124/phone"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("context_mismatch")));

    // unwrap gives back the same DEK; plaintext:false withholds it.
    let w = dk.wrapped();
    let (s, v) = app
        .post("/v1/keys/pii/unwrap", DECRYPTOR, json!({"header": w.header(), "encrypted_key": w.encrypted_key_b64()}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(b64d(v["plaintext"].as_str().unwrap(), "p").unwrap(), dk.dek().expose_secret());
    let (s, v) = app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({"plaintext": false})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("plaintext").is_none() && v["encrypted_key"].is_string() && v["header"]["tag"].is_string(), "{v}");
    let (s, _) = app.call("POST", "/v1/keys/pii/datakey", Some(ENCRYPTOR), None).await;
    assert_eq!(s, StatusCode::OK, "an empty body is a default request");

    // Batch: good, tampered, and foreign items each get their own result.
    let other = dk.seal(b"second", None, &mut rng()).unwrap();
    let mut tampered = jwe.clone();
    tampered.replace_range(tampered.len() - 3.., "AAA");
    let (s, v) = decrypt(
        &app,
        "pii",
        DECRYPTOR,
        json!({"items": [
            {"jwe": jwe, "ctx": "registrant/123/phone"}, {"jwe": other}, {"jwe": tampered}, {"jwe": "not.a.jwe"}
        ]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items[0]["text"], "0712 345 678");
    assert_eq!(items[1]["text"], "second");
    assert_eq!(items[2]["error"]["code"], "decrypt_failed");
    assert_eq!(items[3]["error"]["code"], "malformed");
}

async fn offline_sealed_data_opens_inside_the_keystore(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    app.create_key("pii-seal", "ecdh-p256").await;
    let (s, jwks) = app.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let jwks = Jwks::from_json(&jwks.to_string()).unwrap();
    let key = jwks.current("pii-seal", KeyUse::Enc).unwrap();
    let form = br#"{"name":"Amina Wanjiru","national_id":"12345678"}"#;
    let jwe = seal_to_public_key(key, form, Some("registrant/77"), &mut rng()).unwrap();
    for path_key in ["pii", "pii-seal"] {
        let (s, v) = decrypt(&app, path_key, ADMIN, json!({"jwe": jwe, "ctx": "registrant/77"})).await;
        assert_eq!(s, StatusCode::OK, "{path_key}: {v}");
        assert_eq!(v["text"].as_str().unwrap().as_bytes(), form);
    }
    // The public endpoint serves the same key; an AES key has none.
    let (s, v) = app.call("GET", "/v1/keys/pii-seal/public", None, None).await;
    assert_eq!((s, v["kid"].as_str(), v["use"].as_str()), (StatusCode::OK, Some("pii-seal.v1"), Some("enc")));
    let (s, _) = app.call("GET", "/v1/keys/pii/public", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn rotation_never_strands_old_data(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    app.create_key("pii-seal", "ecdh-p256").await;
    let v1 = datakey(&app, "pii").await.seal(b"from v1", Some("r/1"), &mut rng()).unwrap();
    let (_, jwks) = app.call("GET", "/.well-known/jwks.json", None, None).await;
    let seal_v1 = Jwks::from_json(&jwks.to_string()).unwrap().current("pii-seal", KeyUse::Enc).unwrap().clone();
    let offline_v1 = seal_to_public_key(&seal_v1, b"offline v1", None, &mut rng()).unwrap();
    for _ in 0..3 {
        assert_eq!(app.post("/v1/keys/pii/rotate", ADMIN, json!({})).await.0, StatusCode::OK);
        assert_eq!(app.post("/v1/keys/pii-seal/rotate", ADMIN, json!({})).await.0, StatusCode::OK);
    }
    assert_eq!(datakey(&app, "pii").await.wrapped().kid, "pii.v4");
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": v1, "ctx": "r/1"})).await;
    assert_eq!((s, v["text"].as_str()), (StatusCode::OK, Some("from v1")));
    let (s, v) = decrypt(&app, "pii", ADMIN, json!({"jwe": offline_v1})).await;
    assert_eq!((s, v["text"].as_str()), (StatusCode::OK, Some("offline v1")));

    // JWKS: only the current sealing key.
    let (_, jwks) = app.call("GET", "/.well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["pii-seal.v4"]);

    // Rewrap moves both to the current versions without returning plaintext.
    let (s, v) = app.post("/v1/keys/pii/rewrap", DECRYPTOR, json!({"items": [{"jwe": v1}, {"jwe": offline_v1}]})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_online = v["items"][0]["jwe"].as_str().unwrap();
    let new_offline = v["items"][1]["jwe"].as_str().unwrap();
    assert!(!v.to_string().contains("from v1"));
    let kid_of = |jwe: &str| vouchsafe_core::Jwe::parse(jwe).unwrap().header().kid().unwrap().to_string();
    assert_eq!(kid_of(new_online), "pii.v4");
    assert_eq!(kid_of(new_offline), "pii-seal.v4");
    let (_, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": new_online, "ctx": "r/1"})).await;
    assert_eq!(v["text"], "from v1", "the context travels with the data");

    // A disabled version refuses; re-enabling restores it.
    app.post("/v1/keys/pii/versions/1/state", ADMIN, json!({"state":"disabled"})).await;
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": v1, "ctx": "r/1"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("key_disabled")));
    app.post("/v1/keys/pii/versions/1/state", ADMIN, json!({"state":"retired"})).await;
    let (s, _) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": v1, "ctx": "r/1"})).await;
    assert_eq!(s, StatusCode::OK, "retired still decrypts");
}

async fn jwks_lists_signing_history_with_caching_headers(b: Backend) {
    let app = test_app(b).await;
    app.create_key("vouchers", "ecdsa-p256").await;
    app.post("/v1/keys/vouchers/rotate", ADMIN, json!({})).await;
    app.post("/v1/keys/vouchers/rotate", ADMIN, json!({})).await;
    app.post("/v1/keys/vouchers/versions/1/state", ADMIN, json!({"state":"disabled"})).await;
    let req = Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap();
    let (s, headers, v) = app.send(req).await;
    assert_eq!(s, StatusCode::OK);
    let kids: Vec<&str> = v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["vouchers.v2", "vouchers.v3"], "retired and active signing keys, never disabled ones");
    assert!(v["keys"].as_array().unwrap().iter().all(|k| k["alg"] == "ES256" && k["use"] == "sig"));
    assert!(headers["cache-control"].to_str().unwrap().contains("max-age"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let req = Request::get("/.well-known/jwks.json").header("if-none-match", &etag).body(Body::empty()).unwrap();
    let (s, _, _) = app.send(req).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
}

async fn authentication_and_authorisation(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    app.create_key("financial", "aes256-gcm").await;
    let before = app.audit().await.len();
    let req = Request::post("/v1/keys/pii/datakey").body(Body::empty()).unwrap();
    let (s, headers, v) = app.send(req).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (s, _) = app.post("/v1/keys/pii/datakey", "forged-token", json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let cases = [
        (ENCRYPTOR, "/v1/keys/financial/datakey", json!({})),
        (ENCRYPTOR, "/v1/keys/pii/decrypt", json!({"jwe":"a.b.c.d.e"})),
        (DECRYPTOR, "/v1/keys/pii/datakey", json!({})),
        (NOBODY, "/v1/keys", json!({"name":"x","type":"aes256-gcm"})),
        (AUDITOR, "/v1/keys/pii/rotate", json!({})),
    ];
    for (tok, path, body) in cases {
        let (s, v) = app.post(path, tok, body).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{tok} {path}");
    }
    let (s, _) = app.get("/v1/audit", ENCRYPTOR).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Every refusal is in the audit log, with who and what.
    let audit = app.audit().await;
    let denied: Vec<&Value> = audit[before..].iter().filter(|e| e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 2 + 5 + 1, "{denied:#?}");
    assert!(denied.iter().any(|e| e["actor"] == "anonymous"));
    assert!(denied.iter().any(|e| e["actor"] == "portal" && e["target"] == "financial"));
    let (s, v) = app.get("/v1/audit?limit=2", AUDITOR).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["entries"][0]["seq"], 1);
}

async fn bad_input_gets_a_clear_4xx_and_changes_nothing(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    app.create_key("pii-seal", "ecdh-p256").await;
    app.create_key("financial", "aes256-gcm").await;
    let keys_before = app.get("/v1/keys", ADMIN).await.1;
    let raw = |body: &'static str, ctype: Option<&str>| {
        let mut r = Request::post("/v1/keys").header("authorization", format!("Bearer {ADMIN}"));
        if let Some(c) = ctype {
            r = r.header("content-type", c);
        }
        r.body(Body::from(body)).unwrap()
    };
    for (body, ctype, status, code) in [
        ("{not json", Some("application/json"), 400, "invalid_request"),
        (r#"{"name":5,"type":"aes256-gcm"}"#, Some("application/json"), 400, "invalid_request"),
        (r#"{"name":"x","type":"aes256-gcm","extra":1}"#, Some("application/json"), 400, "invalid_request"),
        (r#"{"name":"x"}"#, Some("application/json"), 400, "invalid_request"),
        (r#"{"name":"x","type":"aes256-gcm"}"#, None, 415, "unsupported_media_type"),
    ] {
        let (s, _, v) = app.send(raw(body, ctype)).await;
        assert_eq!((s.as_u16(), v["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    let huge = json!({"jwe": "A".repeat(40 << 20)});
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, huge).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    let (s, v) = app.post("/v1/keys", ADMIN, json!({"name": "y".repeat(2 << 20), "type": "aes256-gcm"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    let (s, v) = app.post("/v1/keys/nope/datakey", ADMIN, json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, v) = app.post("/v1/keys/pii-seal/datakey", ADMIN, json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "wrong key type");
    let (s, v) = app.post("/v1/keys/pii/datakey", ADMIN, json!({"plaintext": "no"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    // A JWE of another key is refused even for a caller who may decrypt both.
    let fin = datakey_admin(&app, "financial").await.seal(b"salary", None, &mut rng()).unwrap();
    let (s, v) = decrypt(&app, "pii", ADMIN, json!({"jwe": fin})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{v}");
    for (jwe, code) in [("e30.e30.e30.e30.e30", "malformed"), ("x", "malformed"), ("", "malformed")] {
        let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": jwe})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{jwe:?}");
    }
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"items": []})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (s, v) = app.call("GET", "/v1/nothing-here", None, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, v) = app.call("DELETE", "/v1/keys", Some(ADMIN), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    assert_eq!(app.get("/v1/keys", ADMIN).await.1, keys_before, "no key was created or changed");
    // Error bodies never echo the input.
    let (_, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": "c2VjcmV0LXZhbHVl.b.c.d.e"})).await;
    assert!(!v.to_string().contains("c2VjcmV0LXZhbHVl"));
}

async fn datakey_admin(app: &TestApp, key: &str) -> DataKey {
    let (_, v) = app.post(&format!("/v1/keys/{key}/datakey"), ADMIN, json!({})).await;
    DataKey::from_response_json(&v.to_string()).unwrap()
}

async fn audit_chain_records_who_decrypted_what(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    let dk = datakey(&app, "pii").await;
    let jwe = dk.seal(b"x", Some("registrant/42/nid"), &mut rng()).unwrap();
    decrypt(&app, "pii", DECRYPTOR, json!({"jwe": jwe})).await;
    let audit = app.audit().await;
    let entry = audit.iter().rev().find(|e| e["action"] == "keys.decrypt").unwrap();
    assert_eq!(entry["actor"], "officer");
    assert_eq!(entry["outcome"], "ok");
    assert_eq!(entry["detail"]["kids"], json!(["pii.v1"]));
    assert_eq!(entry["detail"]["ctx"], json!(["registrant/42/nid"]));
    assert!(!entry.to_string().contains(&vouchsafe_core::b64e(b"x")), "no plaintext in the log");
    assert!(audit.iter().any(|e| e["action"] == "keys.datakey" && e["actor"] == "portal" && e["target"] == "pii.v1"));
    assert_eq!(app.state.db().verify_audit_chain().await.unwrap(), ChainCheck::Intact { entries: audit.len() as i64 });
}

async fn health_and_readiness(b: Backend) {
    let app = test_app(b).await;
    let (s, v) = app.call("GET", "/healthz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["database"]["ok"], true);
    assert_eq!(v["keystore"]["ok"], true);
}

macro_rules! suite {
    ($backend:ident) => {
        #[allow(non_snake_case)]
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn key_lifecycle() {
                super::key_lifecycle(Backend::$backend).await;
            }
            #[tokio::test]
            async fn online_round_trip_with_context() {
                super::online_round_trip_with_context(Backend::$backend).await;
            }
            #[tokio::test]
            async fn offline_sealed_data_opens_inside_the_keystore() {
                super::offline_sealed_data_opens_inside_the_keystore(Backend::$backend).await;
            }
            #[tokio::test]
            async fn rotation_never_strands_old_data() {
                super::rotation_never_strands_old_data(Backend::$backend).await;
            }
            #[tokio::test]
            async fn jwks_lists_signing_history_with_caching_headers() {
                super::jwks_lists_signing_history_with_caching_headers(Backend::$backend).await;
            }
            #[tokio::test]
            async fn authentication_and_authorisation() {
                super::authentication_and_authorisation(Backend::$backend).await;
            }
            #[tokio::test]
            async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
                super::bad_input_gets_a_clear_4xx_and_changes_nothing(Backend::$backend).await;
            }
            #[tokio::test]
            async fn audit_chain_records_who_decrypted_what() {
                super::audit_chain_records_who_decrypted_what(Backend::$backend).await;
            }
            #[tokio::test]
            async fn health_and_readiness() {
                super::health_and_readiness(Backend::$backend).await;
            }
        }
    };
}

suite!(SqliteSoft);
suite!(PostgresSoft);
suite!(SqliteSoftHsm);

/// Several server instances on one PostgreSQL behave as one: rotations never collide, and the
/// audit chain stays a single line while all of them append to it at once.
#[tokio::test]
async fn two_instances_on_one_postgres() {
    let url = common::postgres_database().await;
    let a = common::app_on(Backend::PostgresSoft, &url, None).await;
    let b = common::app_on(Backend::PostgresSoft, &url, None).await;
    a.create_key("pii", "aes256-gcm").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        // Every task is a server instance of its own: its own pool, key cache and audit writer.
        let app = common::app_on(Backend::PostgresSoft, &url, None).await;
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                app.post("/v1/keys/pii/rotate", ADMIN, json!({})).await.0
            } else {
                app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await.0
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let (_, k) = b.get("/v1/keys/pii", ADMIN).await;
    let versions: Vec<u64> = k["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=11).collect::<Vec<_>>());
    assert_eq!(k["current_version"], 11);
    let check = a.state.db().verify_audit_chain().await.unwrap();
    assert!(matches!(check, ChainCheck::Intact { entries } if entries >= 41), "{check:?}");
}

#[tokio::test]
async fn metrics_and_request_ids() {
    let app = test_app(Backend::SqliteSoft).await;
    app.create_key("pii", "aes256-gcm").await;
    for _ in 0..3 {
        app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await;
    }
    app.post("/v1/keys/pii/datakey", NOBODY, json!({})).await;
    let req = Request::get("/metrics").header("x-request-id", "trace-abc.1").body(Body::empty()).unwrap();
    let (s, headers, body) = app.send(req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "trace-abc.1", "a plain caller id is echoed");
    let text = body.as_str().unwrap();
    assert!(
        text.contains(r#"vouchsafe_http_requests_total{method="POST",route="/v1/keys/{name}/datakey",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/v1/keys/{name}/datakey",status="403"} 1"#));
    assert!(text.contains("vouchsafe_http_request_duration_seconds_bucket"));
    assert!(
        text.contains(
            r#"vouchsafe_keystore_operation_duration_seconds_count{provider="soft",op="wrap",outcome="ok"} 3"#
        ),
        "{text}"
    );
    let req = Request::get("/healthz").header("x-request-id", "bad id with spaces").body(Body::empty()).unwrap();
    let (_, headers, _) = app.send(req).await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a new id replaces an unsafe one: {id}");
}

#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let app = test_app(Backend::SqliteSoft).await;
    let (s, doc) = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/keys", "post"),
        ("/v1/keys", "get"),
        ("/v1/keys/{name}", "get"),
        ("/v1/keys/{name}/rotate", "post"),
        ("/v1/keys/{name}/versions/{version}/state", "post"),
        ("/v1/keys/{name}/datakey", "post"),
        ("/v1/keys/{name}/unwrap", "post"),
        ("/v1/keys/{name}/decrypt", "post"),
        ("/v1/keys/{name}/rewrap", "post"),
        ("/v1/keys/{name}/public", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/v1/audit", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/vouchers", "post"),
        ("/v1/vouchers/batch", "post"),
        ("/v1/vouchers/redeem", "post"),
        ("/v1/vouchers/{jti}/revoke", "post"),
        ("/v1/status", "get"),
        ("/v1/status/{list}", "get"),
    ] {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let dk = &doc["components"]["schemas"]["DataKeyResponse"]["properties"];
    for field in ["kid", "plaintext", "header", "encrypted_key"] {
        assert!(dk.get(field).is_some(), "DataKeyResponse.{field}");
    }
}

/// Findings of a security review, each pinned by a test.
async fn review_findings_stay_fixed(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    // A key merely *named* like the sealing companion, but symmetric, grants nothing to
    // holders of keys:decrypt:pii.
    app.create_key("pii-seal", "aes256-gcm").await;
    let jwe = datakey_admin(&app, "pii-seal").await.seal(b"other key's data", None, &mut rng()).unwrap();
    let (s, v) = decrypt(&app, "pii", DECRYPTOR, json!({"jwe": jwe})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{v}");
    let (s, _) = app.post("/v1/keys/pii/rewrap", DECRYPTOR, json!({"jwe": jwe})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A NUL byte (or any impossible name) in the path never reaches the database or the audit
    // log, and does not disturb anyone else's requests.
    for path in ["/v1/keys/a%00b/datakey", "/v1/keys/A/datakey", "/v1/keys/%F0%9F%94%91/decrypt"] {
        let (s, v) = app.post(path, NOBODY, json!({"jwe": "x"})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}");
    }
    assert_eq!(app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await.0, StatusCode::OK);

    // Path parameters of the wrong type get the JSON error shape.
    let (s, v) = app.post("/v1/keys/pii/versions/one/state", ADMIN, json!({"state":"retired"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{v}");

    // Unauthenticated noise is logged by route template, not by the bytes sent.
    let (s, _) = app.call("POST", "/v1/keys/zzzzzzzzzzzzzzzz/datakey", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let last = app.audit().await.pop().unwrap();
    assert_eq!((last["actor"].as_str(), last["target"].as_str()), (Some("anonymous"), Some("/v1/keys/{name}/datakey")));

    // A refused unwrap (disabled version) is a denial on record.
    let dk = datakey(&app, "pii").await;
    app.post("/v1/keys/pii/rotate", ADMIN, json!({})).await;
    app.post("/v1/keys/pii/versions/1/state", ADMIN, json!({"state":"disabled"})).await;
    let w = dk.wrapped();
    let (s, v) = app
        .post("/v1/keys/pii/unwrap", DECRYPTOR, json!({"header": w.header(), "encrypted_key": w.encrypted_key_b64()}))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("key_disabled")));
    let last = app.audit().await.pop().unwrap();
    assert_eq!((last["action"].as_str(), last["outcome"].as_str()), (Some("keys.unwrap"), Some("denied")));
}

#[tokio::test]
async fn review_findings_sqlite() {
    review_findings_stay_fixed(Backend::SqliteSoft).await;
}

#[tokio::test]
async fn review_findings_postgres() {
    review_findings_stay_fixed(Backend::PostgresSoft).await;
}

#[tokio::test]
async fn metric_labels_never_take_caller_values() {
    let app = test_app(Backend::SqliteSoft).await;
    let req = Request::builder().method("FROBNICATE").uri("/healthz").body(Body::empty()).unwrap();
    app.send(req).await;
    let (_, _, body) = app.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = body.as_str().unwrap();
    assert!(!text.contains("FROBNICATE") && text.contains(r#"method="other""#), "{text}");
}

#[tokio::test]
async fn concurrent_rotations_on_sqlite_all_land_in_order() {
    let app = std::sync::Arc::new(test_app(Backend::SqliteSoft).await);
    app.create_key("vouchers", "ecdsa-p256").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.post("/v1/keys/vouchers/rotate", ADMIN, json!({})).await.0 })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let (_, k) = app.get("/v1/keys/vouchers", ADMIN).await;
    assert_eq!(k["current_version"], 9);
    // The JWKS served right after reflects every version at once (its cache is dropped on change).
    let (_, jwks) = app.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 9);
}

/// Two server instances (two audit writers, each remembering the chain's head) and key
/// operations appending in their own transactions, all on one SQLite file: every append from a
/// stale head is refused and redone, so the chain stays one line and no request fails.
#[tokio::test]
async fn two_instances_on_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vs.db").display());
    let a = common::app_on(Backend::SqliteSoft, &url, None).await;
    let b = common::app_on(Backend::SqliteSoft, &url, None).await;
    a.create_key("pii", "aes256-gcm").await;
    let before = a.state.db().audit_head().await.unwrap().seq;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            if i % 10 == 0 {
                app.post("/v1/keys/pii/rotate", ADMIN, json!({})).await.0
            } else {
                app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await.0
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    // One entry per operation, none lost, none twice.
    assert_eq!(a.state.db().verify_audit_chain().await.unwrap(), ChainCheck::Intact { entries: before + 60 });
    let (status, audit) = b.get("/v1/audit?limit=1000", AUDITOR).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "keys.datakey").count(), 54);
    assert_eq!(actions.iter().filter(|a| **a == "keys.rotate").count(), 6);
}

/// SQLite appends link from a head the writer remembers; one from a stale head is refused whole
/// (the writer then reads the head again), and the trigger keeps the stored head on the last entry.
#[tokio::test]
async fn sqlite_append_from_a_stale_head_is_refused() {
    use vouchsafe_server::db::{AUDIT_HEAD_STALE, AuditEntry, AuditHead};
    let app = common::test_app(Backend::SqliteSoft).await;
    let db = app.state.db();
    let entry = AuditEntry {
        actor: "test".into(),
        action: "test.append".into(),
        target: "chain".into(),
        outcome: "ok".into(),
        detail: Some(json!({ "n": 1 })),
    };
    let head = db.audit_head().await.unwrap();
    let mut conn = db.append_conn().await.unwrap().expect("SQLite appends on a connection of their own");
    let moved = conn.append(&head, &[entry.clone(), entry.clone()]).await.unwrap();
    assert_eq!(moved.seq, head.seq + 2);
    assert_eq!(db.audit_head().await.unwrap(), moved);
    let err = conn.append(&head, std::slice::from_ref(&entry)).await.unwrap_err();
    assert_eq!((err.status, err.code), (StatusCode::SERVICE_UNAVAILABLE, AUDIT_HEAD_STALE));
    assert_eq!(db.audit_head().await.unwrap(), moved);
    // A head ahead of the stored chain (say, the file was restored from a backup under a running
    // server) would leave a gap: refused too.
    let ahead = AuditHead { seq: moved.seq + 5, hash: moved.hash.clone() };
    let err = conn.append(&ahead, std::slice::from_ref(&entry)).await.unwrap_err();
    assert_eq!(err.code, AUDIT_HEAD_STALE);
    let forged = AuditHead { seq: moved.seq, hash: head.hash.clone() };
    let err = conn.append(&forged, std::slice::from_ref(&entry)).await.unwrap_err();
    assert_eq!(err.code, AUDIT_HEAD_STALE, "the right seq with the wrong hash does not link");
    assert_eq!(db.audit_head().await.unwrap(), moved);
    // A transaction appending from the stale head is refused the same way.
    let mut tx = db.begin().await.unwrap();
    let err = tx.append_audit_after(Some(&head), std::slice::from_ref(&entry)).await.unwrap_err();
    assert_eq!(err.code, AUDIT_HEAD_STALE);
    drop(tx);
    assert_eq!(db.verify_audit_chain().await.unwrap(), ChainCheck::Intact { entries: moved.seq });
}

/// `verify_audit_chain` names the first entry that was altered, and notices entries cut from
/// the end; on both engines.
async fn audit_chain_reports_the_first_altered_entry(b: Backend) {
    let app = test_app(b).await;
    app.create_key("pii", "aes256-gcm").await;
    for _ in 0..4 {
        datakey(&app, "pii").await;
    }
    let db = app.state.db();
    let ChainCheck::Intact { entries } = db.verify_audit_chain().await.unwrap() else { panic!("intact at first") };
    assert!(entries >= 5);
    // Raw SQL, as someone with the database file or a login would run it.
    let exec = |sql: &'static str, arg: Option<String>| async move {
        match db {
            Db::Sqlite(p) => {
                let q = sqlx::query(sql);
                let q = if let Some(a) = arg { q.bind(a) } else { q };
                q.execute(p).await.map(|_| ())
            }
            Db::Postgres(p) => {
                let q = sqlx::query(sql);
                let q = if let Some(a) = arg { q.bind(a) } else { q };
                q.execute(p).await.map(|_| ())
            }
        }
        .unwrap()
    };
    let rows = db.audit_after(2, 2).await.unwrap();
    let (actor3, actor4) = (rows[0].actor.clone(), rows[1].actor.clone());
    // Someone rewrites who did it in entry 3 (and, to cover it, entry 4's too).
    exec("UPDATE audit_log SET actor = $1 WHERE seq IN (3, 4)", Some("mallory".into())).await;
    let check = db.verify_audit_chain().await.unwrap();
    assert!(
        matches!(&check, ChainCheck::Broken { seq: 3, reason } if reason.contains("do not match the stored hash")),
        "{check:?}"
    );
    exec("UPDATE audit_log SET actor = $1 WHERE seq = 3", Some(actor3)).await;
    exec("UPDATE audit_log SET actor = $1 WHERE seq = 4", Some(actor4)).await;
    assert!(matches!(db.verify_audit_chain().await.unwrap(), ChainCheck::Intact { .. }));
    // The last entry removed: every remaining link holds, the head does not.
    exec("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)", None).await;
    let check = db.verify_audit_chain().await.unwrap();
    assert!(matches!(&check, ChainCheck::Broken { reason, .. } if reason.contains("head")), "{check:?}");
}

#[tokio::test]
async fn audit_chain_reports_the_first_altered_entry_on_sqlite() {
    audit_chain_reports_the_first_altered_entry(Backend::SqliteSoft).await;
}

#[tokio::test]
async fn audit_chain_reports_the_first_altered_entry_on_postgres() {
    audit_chain_reports_the_first_altered_entry(Backend::PostgresSoft).await;
}
