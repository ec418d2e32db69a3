//! A keystore or database outage is a 503 with its own code, never a 500 or a hang, and the
//! server recovers by itself when the database is back. Separate binary: the SoftHSM token
//! removed here is gone for the rest of the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use axum::http::StatusCode;
use common::{ADMIN, Backend, ENCRYPTOR};
use serde_json::json;

fn script(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/pg-throwaway")).args(args).output().unwrap();
    assert!(out.status.success(), "pg-throwaway {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn pg_ctl(dir: &str, action: &str) {
    let bin = std::fs::read_dir("/usr/lib/postgresql").unwrap().flatten().next().unwrap().path().join("bin/pg_ctl");
    let port = std::fs::read_to_string(format!("{dir}/data/postmaster.opts")).ok();
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    cmd.args(["-D", &format!("{dir}/data"), "-w", "-m", "fast", "-l", &format!("{dir}/server.log")]);
    if action == "start" {
        let opts = port.unwrap_or_default();
        let opts = opts.split_once(' ').map(|(_, o)| o.to_string()).unwrap_or_default();
        cmd.args(["-o", &opts.replace('"', "")]);
    }
    let status =
        cmd.arg(action).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().unwrap();
    assert!(status.success(), "pg_ctl {action}");
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

#[tokio::test]
async fn database_outage_is_503_and_recovers() {
    let env = script(&["start"]);
    let get = |k: &str| env.lines().find_map(|l| l.strip_prefix(&format!("export {k}=")).map(String::from)).unwrap();
    let (url, dir) = (get("DATABASE_URL"), get("PG_THROWAWAY_DIR"));
    let app = common::app_on(Backend::PostgresSoft, &url, None).await;
    app.create_key("pii", "aes256-gcm").await;
    assert_eq!(app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await.0, StatusCode::OK);

    pg_ctl(&dir, "stop");
    app.state.invalidate_key("pii");
    let (s, v) = app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable")),
        "{v}"
    );
    let (s, v) = app.post("/v1/keys", ADMIN, json!({"name":"new","type":"aes256-gcm"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable")),
        "{v}"
    );
    let (s, v) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((s, v["database"]["ok"].as_bool()), (StatusCode::SERVICE_UNAVAILABLE, Some(false)));

    pg_ctl(&dir, "start");
    let mut recovered = false;
    for _ in 0..50 {
        if app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the server reconnects by itself");
    // Nothing committed was lost, and the audit chain is whole.
    let (_, k) = app.get("/v1/keys/pii", ADMIN).await;
    assert_eq!(k["versions"][0]["kid"], "pii.v1");
    assert!(matches!(
        app.state.db().verify_audit_chain().await.unwrap(),
        vouchsafe_server::db::ChainCheck::Intact { .. }
    ));
    script(&["stop", &dir]);
}

#[tokio::test]
async fn keystore_outage_is_503() {
    let app = common::test_app(Backend::SqliteSoftHsm).await;
    app.create_key("pii", "aes256-gcm").await;
    assert_eq!(app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await.0, StatusCode::OK);
    let conf = std::env::var("SOFTHSM2_CONF").unwrap();
    let tokens = PathBuf::from(conf).parent().unwrap().join("tokens");
    let label = common::softhsm::token_label();
    let dir = std::fs::read_dir(tokens)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::read(p.join("token.object")).is_ok_and(|b| b.windows(label.len()).any(|w| w == label.as_bytes()))
        })
        .unwrap();
    let away = dir.with_extension("removed");
    std::fs::rename(&dir, &away).unwrap();
    let (s, v) = app.post("/v1/keys/pii/datakey", ENCRYPTOR, json!({})).await;
    let (r, rv) = app.call("GET", "/readyz", None, None).await;
    std::fs::rename(&away, &dir).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("keystore_unavailable")),
        "{v}"
    );
    assert!(!v.to_string().contains(label), "no internals in the client message");
    assert_eq!((r, rv["keystore"]["ok"].as_bool()), (StatusCode::SERVICE_UNAVAILABLE, Some(false)), "{rv}");
}
