//! The demo registry behind the web portal (`/v1/registrations`): sealed records in, listed and
//! fetched for the admin view, every field bound to its record and name by `ctx` — on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{ADMIN, Backend, NOBODY, RECORDS, REGISTRAR, TestApp, test_app};
use serde_json::{Value, json};
use vouchsafe_core::DataKey;
use vouchsafe_core::rand_core::UnwrapErr;

async fn data_key(app: &TestApp) -> DataKey {
    let (s, v) = app.post("/v1/keys/pii/datakey", REGISTRAR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    DataKey::from_response_json(&v.to_string()).unwrap()
}

fn record(dk: &DataKey, id: &str, fields: &[(&str, &str)]) -> Value {
    let mut sealed = serde_json::Map::new();
    for (name, value) in fields {
        let ctx = format!("registration/{id}/{name}");
        sealed
            .insert((*name).into(), dk.seal_text(value, Some(&ctx), &mut UnwrapErr(getrandom::SysRng)).unwrap().into());
    }
    json!({"id": id, "created_at": "2026-11-23T10:00:00Z", "mode": "online", "kid": "pii.v1", "fields": sealed,
           "meta": {"photo_type": "image/jpeg"}})
}

async fn submit_list_show(backend: Backend) {
    let app = test_app(backend).await;
    app.create_key("pii", "aes256-gcm").await;
    let dk = data_key(&app).await;
    let r1 = record(&dk, "hh-001", &[("given_name", "Amina"), ("phone", "0712 345 678")]);

    let (s, v) = app.post("/v1/registrations", REGISTRAR, r1.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["id"], "hh-001");
    let first = v["received_at"].clone();
    // A retry whose answer was lost is acknowledged again, with the first receipt.
    let (s, v) = app.post("/v1/registrations", REGISTRAR, r1.clone()).await;
    assert_eq!((s, &v["received_at"]), (StatusCode::OK, &first));
    // The same id with other content is a conflict, not an overwrite.
    let other = record(&dk, "hh-001", &[("given_name", "Someone else")]);
    let (s, v) = app.post("/v1/registrations", REGISTRAR, other).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));

    let r2 = record(&dk, "hh-002", &[("family_name", "Otieno")]);
    assert_eq!(app.post("/v1/registrations", REGISTRAR, r2).await.0, StatusCode::CREATED);

    let (s, v) = app.get("/v1/registrations", RECORDS).await;
    assert_eq!(s, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let one = items.iter().find(|i| i["id"] == "hh-001").unwrap();
    assert_eq!(one["fields"], json!(["given_name", "phone"]), "the list names fields, without their JWEs");
    assert_eq!(one["submitted_by"], "registrar");
    assert!(!v.to_string().contains("eyJ"), "no sealed data in the list");

    let (s, v) = app.get("/v1/registrations/hh-001", RECORDS).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["fields"], r1["fields"], "stored exactly as sent");
    assert_eq!(v["meta"]["photo_type"], "image/jpeg");
    // What the registry holds opens with the key server's decrypt, with the ctx it was bound to.
    let jwe = v["fields"]["phone"].as_str().unwrap();
    let (s, d) = app.post("/v1/keys/pii/decrypt", ADMIN, json!({"jwe": jwe, "ctx": "registration/hh-001/phone"})).await;
    assert_eq!((s, d["text"].as_str()), (StatusCode::OK, Some("0712 345 678")));

    assert_eq!(app.get("/v1/registrations/hh-404", RECORDS).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/registrations/..%2F..", RECORDS).await.0, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/v1/registrations?limit=0", RECORDS).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let audit = app.audit().await;
    let actions: Vec<(&str, &str)> =
        audit.iter().map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap())).collect();
    assert!(actions.contains(&("registrations.submit", "hh-001")));
    assert!(actions.contains(&("registrations.read", "hh-001")));
    let submits = actions.iter().filter(|a| a.0 == "registrations.submit").count();
    assert_eq!(submits, 4, "two stored, a retry and a conflict: {actions:?}");
    assert!(actions.contains(&("registrations.list", "registrations")), "listing is audited");
    assert!(
        audit.iter().any(|e| e["action"] == "registrations.read" && e["target"] == "hh-404" && e["outcome"] != "ok")
    );
}

async fn bad_records_are_refused(backend: Backend) {
    let app = test_app(backend).await;
    app.create_key("pii", "aes256-gcm").await;
    let dk = data_key(&app).await;
    let good = record(&dk, "hh-010", &[("given_name", "Amina")]);
    let mut cases: Vec<(&str, Value)> = Vec::new();
    // A field sealed for another record, or under another name, cannot be slipped in.
    let moved = record(&dk, "hh-011", &[("given_name", "Amina")]);
    let mut swapped = good.clone();
    swapped["fields"]["given_name"] = moved["fields"]["given_name"].clone();
    cases.push(("ctx of another record", swapped));
    let mut renamed = good.clone();
    renamed["fields"]["family_name"] = good["fields"]["given_name"].clone();
    cases.push(("ctx of another field", renamed));
    let mut plain = good.clone();
    plain["fields"]["given_name"] = json!("Amina");
    cases.push(("a plain value", plain));
    let mut bad_id = good.clone();
    bad_id["id"] = json!("hh/../x");
    cases.push(("an id with a slash", bad_id));
    let mut mode = good.clone();
    mode["mode"] = json!("sideways");
    cases.push(("an unknown mode", mode));
    let mut empty = good.clone();
    empty["fields"] = json!({});
    cases.push(("no fields", empty));
    let mut extra = good.clone();
    extra["surprise"] = json!(1);
    cases.push(("an unknown member", extra));
    let mut meta = good.clone();
    meta["meta"] = json!({"note": "x".repeat(200)});
    cases.push(("a long meta value", meta));
    let mut svg = good.clone();
    svg["meta"] = json!({"photo_type": "image/svg+xml"});
    cases.push(("an SVG photo (it can carry script)", svg));
    let mut nested = good.clone();
    nested["meta"] = json!({"photo": {"type": "image/png"}});
    cases.push(("a non-string meta value", nested));
    for (what, body) in cases {
        let (s, v) = app.post("/v1/registrations", REGISTRAR, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{what}");
    }
    // Permissions: submitting and reading are separate, and refusals are audited.
    assert_eq!(app.post("/v1/registrations", RECORDS, good.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/registrations", REGISTRAR).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/registrations/hh-010", NOBODY).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/registrations", "no-such-token").await.0, StatusCode::UNAUTHORIZED);
    let denied = app.audit().await.iter().filter(|e| e["outcome"] == "denied").count();
    assert!(denied >= 3);
    let (s, v) = app.get("/v1/registrations", RECORDS).await;
    assert_eq!((s, v["items"].as_array().unwrap().len()), (StatusCode::OK, 0), "nothing was stored");
}

macro_rules! suite {
    ($backend:ident) => {
        #[allow(non_snake_case)]
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn submit_list_show() {
                super::submit_list_show(Backend::$backend).await;
            }
            #[tokio::test]
            async fn bad_records_are_refused() {
                super::bad_records_are_refused(Backend::$backend).await;
            }
        }
    };
}

suite!(SqliteSoft);
suite!(PostgresSoft);
