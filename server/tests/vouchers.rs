//! Vouchers (CONTRACT §1.2, §2): issuance, batch and NDJSON streams, exactly-once redemption,
//! revocation with status lists, rotation, and every way a voucher can be refused — on SQLite +
//! soft keystore, PostgreSQL + soft keystore, and SQLite + SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{ADMIN, AUDITOR, Backend, ENCRYPTOR, ISSUER, MERCHANT, MERCHANT2, TestApp, test_app, test_app_with};
use serde_json::{Value, json};
use vouchsafe_core::{Jwks, StatusRef, VerifiedStatusList, VoucherClaims, VoucherValidator, b64d, b64e};
use vouchsafe_keystore::{KeyKind, KeyRef, KeystoreSigner};
use vouchsafe_server::Config;

const ISS: &str = "http://127.0.0.1:8080";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn request(sub: &str) -> Value {
    json!({"sub": sub, "aud": "cash-transfer-2026", "amount": "1500.00", "currency": "KES"})
}

async fn issue(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.post("/v1/vouchers", ISSUER, body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn jwks(app: &TestApp) -> Jwks {
    let (s, v) = app.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    Jwks::from_json(&v.to_string()).unwrap()
}

async fn redeem(app: &TestApp, token: &str, who: &str) -> (StatusCode, Value) {
    app.post("/v1/vouchers/redeem", who, json!({ "token": token })).await
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&b64d(it.next().unwrap(), "h").unwrap()).unwrap();
    let p = serde_json::from_slice(&b64d(it.next().unwrap(), "p").unwrap()).unwrap();
    (h, p)
}

/// Signs `claims` with the server's own voucher key, as an insider or a bug might: the server
/// must still refuse what is wrong with the claims.
async fn sign_with_server_key(app: &TestApp, claims: &VoucherClaims) -> String {
    let rec = app.state.key("vouchers").await.unwrap();
    let v = rec.current().unwrap().clone();
    let signer = KeystoreSigner {
        store: &**app.state.keystore(),
        key: KeyRef { kid: &v.kid, kind: KeyKind::EcdsaP256, handle: &v.handle },
    };
    claims.sign(&v.kid, &signer).unwrap()
}

async fn issue_verify_redeem_once(b: Backend) {
    let app = test_app(b).await;
    let v = issue(&app, request("hh-0001")).await;
    let token = v["token"].as_str().unwrap();
    let (h, p) = parts(token);
    assert_eq!(h, json!({"alg":"ES256","typ":"voucher+jwt","kid":"vouchers.v1"}), "the header and nothing else");
    assert_eq!(p["iss"], ISS);
    assert_eq!((p["sub"].as_str(), p["aud"].as_str()), (Some("hh-0001"), Some("cash-transfer-2026")));
    assert_eq!((p["amount"].as_str(), p["currency"].as_str()), (Some("1500.00"), Some("KES")));
    assert_eq!(p["jti"], v["jti"]);
    assert_eq!(p["exp"], v["exp"]);
    assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 30 * 86_400, "configured default");
    assert_eq!(p["status"]["status_list"]["uri"], format!("{ISS}/v1/status/1"));
    assert!(p["status"]["status_list"]["idx"].is_u64());

    // An offline verifier with only the JWKS accepts it.
    let keys = jwks(&app).await;
    let claims = VoucherValidator::new()
        .with_issuer(ISS)
        .with_audience("cash-transfer-2026")
        .validate(token, &keys, now())
        .unwrap();
    assert_eq!(claims.jti, v["jti"].as_str().unwrap());

    let (s, r) = redeem(&app, token, MERCHANT).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["jti"].as_str(), r["amount"].as_str()), (v["jti"].as_str(), Some("1500.00")));
    let first = r["redeemed_at"].as_str().unwrap().to_string();
    for who in [MERCHANT, MERCHANT2] {
        let (s, r) = redeem(&app, token, who).await;
        assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "already_redeemed"));
        assert_eq!(r["error"]["redeemed_at"], first.as_str(), "the first redemption's time");
    }

    // Idempotency-Key: the same caller retrying gets the first answer; nobody else does.
    let t2 = issue(&app, request("hh-0002")).await["token"].as_str().unwrap().to_string();
    let send = |who: &'static str, key: &'static str| {
        let body = json!({ "token": t2 }).to_string();
        Request::post("/v1/vouchers/redeem")
            .header("authorization", format!("Bearer {who}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body))
            .unwrap()
    };
    let (s, _, a) = app.send(send(MERCHANT, "till-7-receipt-19")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let (s, h, b) = app.send(send(MERCHANT, "till-7-receipt-19")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(a["redeemed_at"], b["redeemed_at"]);
    let (s, _, c) = app.send(send(MERCHANT2, "till-7-receipt-19")).await;
    assert_eq!((s, code(&c)), (StatusCode::CONFLICT, "already_redeemed"));
    let (s, _, c) = app.send(send(MERCHANT, "another-receipt")).await;
    assert_eq!((s, code(&c)), (StatusCode::CONFLICT, "already_redeemed"));

    // Who issued and who redeemed what is in the audit log.
    let audit = app.audit().await;
    let issued = audit.iter().filter(|e| e["action"] == "vouchers.issue" && e["outcome"] == "ok").count();
    assert_eq!(issued, 2);
    let redeemed: Vec<&Value> =
        audit.iter().filter(|e| e["action"] == "vouchers.redeem" && e["outcome"] == "ok").collect();
    assert_eq!(redeemed[0]["actor"], "merchant");
    assert_eq!(redeemed[0]["target"], v["jti"]);
    assert!(audit.iter().any(|e| e["action"] == "vouchers.redeem" && e["outcome"] == "error:already_redeemed"));
    assert!(audit.iter().any(|e| e["action"] == "keys.create" && e["actor"] == "system"), "key made on first use");
}

async fn every_bad_voucher_is_refused_with_its_code(b: Backend) {
    let app = test_app(b).await;
    let v = issue(&app, request("hh-1")).await;
    let good = v["token"].as_str().unwrap().to_string();
    let (_, p) = parts(&good);
    let base = VoucherClaims::from_payload(p.to_string().as_bytes()).unwrap();
    let mut segs: Vec<String> = good.split('.').map(String::from).collect();

    let mut cases: Vec<(&str, String, StatusCode, &str)> = Vec::new();
    // Forged: signature bytes changed.
    let mut sig = b64d(&segs[2], "s").unwrap();
    sig[10] ^= 1;
    cases.push(("forged", format!("{}.{}.{}", segs[0], segs[1], b64e(&sig)), StatusCode::BAD_REQUEST, "bad_signature"));
    // Tampered claims: amount raised, signature kept.
    let mut more = p.clone();
    more["amount"] = json!("150000.00");
    let tampered = format!("{}.{}.{}", segs[0], b64e(more.to_string().as_bytes()), segs[2]);
    cases.push(("tampered", tampered, StatusCode::BAD_REQUEST, "bad_signature"));
    // Re-signed with a key the server does not have, under its kid and under another.
    let attacker = vouchsafe_core::p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    cases.push(("re-signed", base.sign("vouchers.v1", &attacker).unwrap(), StatusCode::BAD_REQUEST, "bad_signature"));
    cases.push(("unknown kid", base.sign("vouchers.v9", &attacker).unwrap(), StatusCode::BAD_REQUEST, "unknown_kid"));
    cases.push(("foreign key", base.sign("evil.v1", &attacker).unwrap(), StatusCode::BAD_REQUEST, "unknown_kid"));
    // alg none and HS256 with the public key as secret.
    segs[0] = b64e(br#"{"alg":"none","typ":"voucher+jwt","kid":"vouchers.v1"}"#);
    cases.push(("alg none", format!("{}.{}.", segs[0], segs[1]), StatusCode::BAD_REQUEST, "unsupported_alg"));
    segs[0] = b64e(br#"{"alg":"HS256","typ":"voucher+jwt","kid":"vouchers.v1"}"#);
    cases.push(("HS256", format!("{}.{}.{}", segs[0], segs[1], segs[2]), StatusCode::BAD_REQUEST, "unsupported_alg"));
    // Signed by the real key but wrong in themselves.
    let mut c = base.clone();
    (c.jti, c.iat, c.nbf, c.exp) = ("expired-1".into(), now() - 7200, now() - 7200, now() - 60);
    cases.push(("expired", sign_with_server_key(&app, &c).await, StatusCode::BAD_REQUEST, "expired"));
    let mut c = base.clone();
    c.iss = "https://registry.evil.example".into();
    cases.push(("other issuer", sign_with_server_key(&app, &c).await, StatusCode::BAD_REQUEST, "wrong_issuer"));
    let mut c = base.clone();
    c.jti = "never-issued".into();
    cases.push(("not issued here", sign_with_server_key(&app, &c).await, StatusCode::NOT_FOUND, "not_found"));
    let future =
        issue(&app, json!({"sub":"hh-2","aud":"a","amount":"5","currency":"KES","not_before": now() + 3600})).await;
    cases.push(("not yet valid", future["token"].as_str().unwrap().into(), StatusCode::BAD_REQUEST, "not_yet_valid"));
    cases.push(("garbage", "not-a-token".into(), StatusCode::BAD_REQUEST, "malformed"));
    for (what, token, status, want) in cases {
        let (s, r) = redeem(&app, &token, MERCHANT).await;
        assert_eq!((s, code(&r)), (status, want), "{what}: {r}");
    }
    // Wrong programme, when the merchant names theirs.
    let (s, r) = app.post("/v1/vouchers/redeem", MERCHANT, json!({"token": good, "audience": "school-meals"})).await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "wrong_audience"));
    // None of that redeemed the good voucher.
    let (s, r) =
        app.post("/v1/vouchers/redeem", MERCHANT, json!({"token": good, "audience": "cash-transfer-2026"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
}

async fn revocation_reaches_status_lists(b: Backend) {
    let app = test_app(b).await;
    let vs: Vec<Value> = futures_join(&app, 3).await;
    let jti = vs[1]["jti"].as_str().unwrap();
    let (s, r) = app.post(&format!("/v1/vouchers/{jti}/revoke"), ISSUER, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"]["uri"], format!("{ISS}/v1/status/1"));
    let (s, again) = app.post(&format!("/v1/vouchers/{jti}/revoke"), ISSUER, json!({})).await;
    assert_eq!((s, &again["revoked_at"]), (StatusCode::OK, &r["revoked_at"]), "revoking twice changes nothing");

    let (s, idx) = app.call("GET", "/v1/status", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(idx["lists"][0]["uri"], format!("{ISS}/v1/status/1"));
    assert_eq!(idx["lists"][0]["size"], 131_072);
    let req = Request::get("/v1/status/1").body(Body::empty()).unwrap();
    let (s, h, body) = app.send(req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/statuslist+jwt");
    let list_token = body.as_str().unwrap();
    let keys = jwks(&app).await;
    let list = VerifiedStatusList::from_token(list_token, &keys, Some(&format!("{ISS}/v1/status/1")), now()).unwrap();
    assert_eq!(list.ttl, Some(300));
    assert!(list.exp.unwrap() > now() + 86_400);
    let validator = VoucherValidator::new().with_issuer(ISS);
    for (i, v) in vs.iter().enumerate() {
        let token = v["token"].as_str().unwrap();
        let idx = parts(token).1["status"]["status_list"]["idx"].as_u64().unwrap();
        assert_eq!(list.list.get(idx), Some(u8::from(i == 1)), "voucher {i}");
        let verdict = validator.validate_with_status(token, &keys, now(), std::slice::from_ref(&list));
        assert_eq!(verdict.is_err(), i == 1, "voucher {i}: {verdict:?}");
        if i == 1 {
            assert_eq!(verdict.unwrap_err(), vouchsafe_core::Error::Revoked);
        }
    }
    // Online, revocation is immediate.
    let (s, r) = redeem(&app, vs[1]["token"].as_str().unwrap(), MERCHANT).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "revoked"));
    // A redeemed voucher cannot be revoked; an unknown one is not found.
    assert_eq!(redeem(&app, vs[0]["token"].as_str().unwrap(), MERCHANT).await.0, StatusCode::OK);
    let (s, r) = app.post(&format!("/v1/vouchers/{}/revoke", vs[0]["jti"].as_str().unwrap()), ISSUER, json!({})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "already_redeemed"));
    let (s, r) = app.post("/v1/vouchers/nope/revoke", ISSUER, json!({})).await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    for path in ["/v1/status/2", "/v1/status/0", "/v1/status/x"] {
        let (s, r) = app.call("GET", path, None, None).await;
        assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"), "{path}");
    }
    let (s, r) = app.post(&format!("/v1/vouchers/{jti}/revoke"), MERCHANT, json!({})).await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));
    let audit = app.audit().await;
    assert_eq!(audit.iter().filter(|e| e["action"] == "vouchers.revoke" && e["outcome"] == "ok").count(), 1);
}

async fn futures_join(app: &TestApp, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(issue(app, request(&format!("hh-{i}"))).await);
    }
    out
}

async fn batches_and_streams(b: Backend) {
    let app = test_app(b).await;
    let items: Vec<Value> = (0..25).map(|i| request(&format!("hh-{i:04}"))).collect();
    let (s, v) = app.post("/v1/vouchers/batch", ISSUER, json!({ "items": items })).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let out = v["items"].as_array().unwrap();
    assert_eq!(out.len(), 25);
    let keys = jwks(&app).await;
    let validator = VoucherValidator::new().with_issuer(ISS);
    let mut idx = HashSet::new();
    for (i, item) in out.iter().enumerate() {
        let c = validator.validate(item["token"].as_str().unwrap(), &keys, now()).unwrap();
        assert_eq!(c.sub, format!("hh-{i:04}"), "request order kept");
        assert!(idx.insert(c.status.unwrap().idx));
    }
    let audit = app.audit().await;
    let e: Vec<&Value> = audit.iter().filter(|e| e["action"] == "vouchers.issue").collect();
    assert_eq!(e.len(), 1, "one audit entry per batch chunk");
    assert_eq!(e[0]["detail"]["count"], 25);
    assert_eq!(e[0]["detail"]["first_jti"], out[0]["jti"]);
    assert_eq!(e[0]["detail"]["last_jti"], out[24]["jti"]);

    // All or nothing: one bad item refuses the whole JSON batch, naming it.
    let mut bad = items.clone();
    bad[3]["amount"] = json!("-5");
    let (s, v) = app.post("/v1/vouchers/batch", ISSUER, json!({ "items": bad })).await;
    assert_eq!((s, code(&v), &v["error"]["index"]), (StatusCode::BAD_REQUEST, "invalid_request", &json!(3)));
    let (s, v) = app.post("/v1/vouchers/batch", ISSUER, json!({ "items": [] })).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let too_many: Vec<Value> = (0..10_001).map(|_| request("x")).collect();
    let (s, v) = app.post("/v1/vouchers/batch", ISSUER, json!({ "items": too_many })).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"), "{v}");
    assert_eq!(app.audit().await.iter().filter(|e| e["action"] == "vouchers.issue" && e["outcome"] == "ok").count(), 1);

    // NDJSON: 2 500 lines (three chunks), one bad and one blank; one line out per line in.
    let mut text = String::new();
    for i in 0..2500 {
        match i {
            700 => text.push_str("{\"sub\":\"x\",\"aud\":\"a\",\"amount\":\"ten\",\"currency\":\"KES\"}\n"),
            701 => text.push('\n'),
            _ => text.push_str(&format!("{}\n", request(&format!("nd-{i}")))),
        }
    }
    let req = Request::post("/v1/vouchers/batch")
        .header("authorization", format!("Bearer {ISSUER}"))
        .header("content-type", "application/x-ndjson")
        .body(Body::from(text))
        .unwrap();
    let (s, h, body) = app.send(req).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = body.as_str().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2499 + 1, "one per non-blank line, then the summary");
    assert_eq!(lines[700]["line"], 701);
    assert_eq!(lines[700]["error"]["code"], "invalid_request");
    assert_eq!(lines[701]["line"], 703, "blank lines are skipped but counted");
    assert_eq!(*lines.last().unwrap(), json!({"done": true, "issued": 2498, "rejected": 1}));
    for l in &lines[..2499] {
        if let Some(t) = l["token"].as_str() {
            let c = validator.validate(t, &keys, now()).unwrap();
            assert_eq!(c.sub, format!("nd-{}", l["line"].as_u64().unwrap() - 1));
            assert!(idx.insert(c.status.unwrap().idx), "status indices are never shared");
        }
    }
    let (s, v) = app.post("/v1/vouchers/batch", ENCRYPTOR, json!({ "items": [request("x")] })).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));

    // An over-long line is refused on its own and skipped; CRLF line ends are fine.
    let long = format!("{{\"sub\":\"{}\"}}", "x".repeat(70 * 1024));
    let text = format!("{}\r\n{long}\n{}\n{}", request("a"), request("b"), request("c"));
    let req = Request::post("/v1/vouchers/batch")
        .header("authorization", format!("Bearer {ISSUER}"))
        .header("content-type", "application/x-ndjson")
        .body(Body::from(text))
        .unwrap();
    let (s, _, body) = app.send(req).await;
    assert_eq!(s, StatusCode::CREATED);
    let lines: Vec<Value> = body.as_str().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0]["token"].is_string());
    assert_eq!((&lines[1]["line"], lines[1]["error"]["code"].as_str()), (&json!(2), Some("invalid_request")));
    assert!(lines[2]["token"].is_string() && lines[3]["token"].is_string(), "lines after it are issued");
    assert_eq!(lines[3]["line"], 4, "the last line needs no newline");
    assert_eq!(lines[4], json!({"done": true, "issued": 3, "rejected": 1}));
}

async fn rotation_keeps_old_vouchers_valid(b: Backend) {
    let app = test_app(b).await;
    let old = issue(&app, request("hh-old")).await;
    let (s, k) = app.post("/v1/keys/vouchers/rotate", ADMIN, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{k}");
    let new = issue(&app, request("hh-new")).await;
    assert_eq!(parts(old["token"].as_str().unwrap()).0["kid"], "vouchers.v1");
    assert_eq!(parts(new["token"].as_str().unwrap()).0["kid"], "vouchers.v2");
    let keys = jwks(&app).await;
    for v in [&old, &new] {
        VoucherValidator::new().validate(v["token"].as_str().unwrap(), &keys, now()).unwrap();
        assert_eq!(redeem(&app, v["token"].as_str().unwrap(), MERCHANT).await.0, StatusCode::OK);
    }
    // Disabling a version stops its vouchers.
    let other = issue(&app, request("hh-new-2")).await;
    let (s, _) = app.post("/v1/keys/vouchers/rotate", ADMIN, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.post("/v1/keys/vouchers/versions/2/state", ADMIN, json!({"state":"disabled"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = redeem(&app, other["token"].as_str().unwrap(), MERCHANT).await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "unknown_kid"));
}

async fn bad_issue_requests_get_a_clear_4xx(b: Backend) {
    let app = test_app(b).await;
    let cases = [
        (json!({"sub":"a","aud":"b","amount":"1.5","currency":"kes"}), "currency"),
        (json!({"sub":"a","aud":"b","amount":"01","currency":"KES"}), "amount"),
        (json!({"sub":"a","aud":"b","amount":1500,"currency":"KES"}), "amount"),
        (json!({"sub":"","aud":"b","amount":"1","currency":"KES"}), "sub"),
        (json!({"sub":"a","aud":"b","amount":"1","currency":"KES","claims":{"exp":1}}), "registered"),
        (json!({"sub":"a","aud":"b","amount":"1","currency":"KES","claims":{"status":{}}}), "registered"),
        (json!({"sub":"a","aud":"b","amount":"1","currency":"KES","expires_in":999_999_999}), "expires_in"),
        (json!({"sub":"a","aud":"b","amount":"1","currency":"KES","expires_in":0}), "expires_in"),
        (json!({"sub":"a","aud":"b","amount":"1","currency":"KES","jti":"mine"}), "jti"),
        (json!({"sub":"a","aud":"b","amount":"1","currency":"KES","claims":{"x":"y".repeat(5000)}}), "4096"),
    ];
    for (body, needle) in cases {
        let (s, v) = app.post("/v1/vouchers", ISSUER, body.clone()).await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let (s, v) = app.call("POST", "/v1/vouchers", Some(ISSUER), None).await;
    assert_eq!(s.as_u16() / 100, 4, "{v}");
    let (s, v) = app.call("POST", "/v1/vouchers", None, Some(request("x"))).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    let (s, v) = app.post("/v1/vouchers", MERCHANT, request("x")).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = app.post("/v1/vouchers/redeem", ISSUER, json!({"token":"x"})).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    // Extras the caller may add are carried.
    let v = issue(
        &app,
        json!({"sub":"a","aud":"b","amount":"1","currency":"KES","claims":{"cycle":"2026-11","items":["maize"]}}),
    )
    .await;
    assert_eq!(parts(v["token"].as_str().unwrap()).1["cycle"], "2026-11");
    let audit = app.audit().await;
    assert_eq!(audit.iter().filter(|e| e["action"] == "vouchers.issue" && e["outcome"] == "ok").count(), 1);
    let (_, a) = app.get("/v1/audit?limit=1000", AUDITOR).await;
    assert!(!a.to_string().contains("1500.00\",\"sub"), "audit carries no tokens");
}

async fn fifty_redemptions_race_one_wins(b: Backend) {
    let app = std::sync::Arc::new(test_app(b).await);
    let token = issue(&app, request("hh-race")).await["token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(
            async move { redeem(&app, &token, if i % 2 == 0 { MERCHANT } else { MERCHANT2 }).await },
        ));
    }
    let mut wins = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            StatusCode::OK => wins += 1,
            StatusCode::CONFLICT => assert_eq!(code(&v), "already_redeemed"),
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(wins, 1);
}

macro_rules! suite {
    ($backend:ident) => {
        #[allow(non_snake_case)]
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn issue_verify_redeem_once() {
                super::issue_verify_redeem_once(Backend::$backend).await;
            }
            #[tokio::test]
            async fn every_bad_voucher_is_refused_with_its_code() {
                super::every_bad_voucher_is_refused_with_its_code(Backend::$backend).await;
            }
            #[tokio::test]
            async fn revocation_reaches_status_lists() {
                super::revocation_reaches_status_lists(Backend::$backend).await;
            }
            #[tokio::test]
            async fn batches_and_streams() {
                super::batches_and_streams(Backend::$backend).await;
            }
            #[tokio::test]
            async fn rotation_keeps_old_vouchers_valid() {
                super::rotation_keeps_old_vouchers_valid(Backend::$backend).await;
            }
            #[tokio::test]
            async fn bad_issue_requests_get_a_clear_4xx() {
                super::bad_issue_requests_get_a_clear_4xx(Backend::$backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_redemptions_race_one_wins() {
                super::fifty_redemptions_race_one_wins(Backend::$backend).await;
            }
        }
    };
}

suite!(SqliteSoft);
suite!(PostgresSoft);
suite!(SqliteSoftHsm);

/// 50 redemptions of one voucher spread over two server instances on one PostgreSQL: exactly one
/// wins, the others learn when.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_redemptions_across_two_instances_on_postgres() {
    let url = common::postgres_database().await;
    let a = std::sync::Arc::new(common::app_on(Backend::PostgresSoft, &url, None).await);
    let b = std::sync::Arc::new(common::app_on(Backend::PostgresSoft, &url, None).await);
    let token = issue(&a, request("hh-race")).await["token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = token.clone();
        tasks.push(tokio::spawn(async move { redeem(&app, &token, MERCHANT).await }));
    }
    let mut wins = 0;
    let mut times = HashSet::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            StatusCode::OK => {
                wins += 1;
                times.insert(v["redeemed_at"].as_str().unwrap().to_string());
            }
            StatusCode::CONFLICT => {
                assert_eq!(code(&v), "already_redeemed");
                times.insert(v["error"]["redeemed_at"].as_str().unwrap().to_string());
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(times.len(), 1, "every loser is told the winner's time");
    let check = a.state.db().verify_audit_chain().await.unwrap();
    assert!(matches!(check, vouchsafe_server::db::ChainCheck::Intact { .. }), "{check:?}");
}

/// Two instances issuing batches at once on one PostgreSQL, with small status lists: lists fill
/// and new ones start, and no (list, index) is ever given twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_indices_stay_unique_across_instances_and_lists() {
    let url = common::postgres_database().await;
    let mut config = Config::default();
    config.vouchers.status_list_size = 1024;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let app = common::app_with(Backend::PostgresSoft, &url, None, config.clone()).await;
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for round in 0..3 {
                let items: Vec<Value> = (0..300).map(|j| request(&format!("i{i}-r{round}-{j}"))).collect();
                let (s, v) = app.post("/v1/vouchers/batch", ISSUER, json!({ "items": items })).await;
                assert_eq!(s, StatusCode::CREATED, "{v}");
                let single = issue(&app, request("single")).await;
                for t in v["items"].as_array().unwrap().iter().chain([&single]) {
                    let st = &parts(t["token"].as_str().unwrap()).1["status"]["status_list"];
                    seen.push((st["uri"].as_str().unwrap().to_string(), st["idx"].as_u64().unwrap()));
                }
            }
            seen
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for pos in t.await.unwrap() {
            assert!(pos.1 < 1024);
            assert!(all.insert(pos.clone()), "{pos:?} given twice");
        }
    }
    assert_eq!(all.len(), 4 * 3 * 301);
    let lists: HashSet<&String> = all.iter().map(|(u, _)| u).collect();
    assert!(lists.len() >= 4, "{} lists", lists.len());
}

/// A key with the voucher key's name but the wrong type is a clear error, not a signature.
#[tokio::test]
async fn a_misconfigured_voucher_key_is_named() {
    let mut config = Config::default();
    config.vouchers.key = "pii".into();
    let app = test_app_with(Backend::SqliteSoft, config).await;
    app.create_key("pii", "aes256-gcm").await;
    let (s, v) = app.post("/v1/vouchers", ISSUER, request("x")).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    assert!(v["error"]["message"].as_str().unwrap().contains("ecdsa-p256"), "{v}");
    // A stream that cannot issue anything is refused with the error's status, not a 201.
    let req = Request::post("/v1/vouchers/batch")
        .header("authorization", format!("Bearer {ISSUER}"))
        .header("content-type", "application/x-ndjson")
        .body(Body::from(format!("{}\n", request("x"))))
        .unwrap();
    let (s, _, v) = app.send(req).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    // A caller without the permission learns nothing about a malformed id.
    let (s, v) = app.post(&format!("/v1/vouchers/{}/revoke", "x".repeat(300)), MERCHANT, json!({})).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
}

/// Status lists with a StatusRef: the claim layout is the IETF one.
#[test]
fn status_claim_layout() {
    let c = VoucherClaims {
        iss: "i".into(),
        sub: "s".into(),
        aud: "a".into(),
        jti: "j".into(),
        iat: 1,
        nbf: 1,
        exp: 2,
        amount: "1".into(),
        currency: "KES".into(),
        status: Some(StatusRef { idx: 5, uri: "u".into() }),
        extra: Default::default(),
    };
    let v: Value = serde_json::from_slice(&c.to_json().unwrap()).unwrap();
    assert_eq!(v["status"], json!({"status_list": {"idx": 5, "uri": "u"}}));
}
