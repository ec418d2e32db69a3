//! The `vouchsafe` binary as an operator runs it: real listener on 127.0.0.1, defaults, dev
//! token printed once, graceful shutdown, `audit verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vouchsafe_core::DataKey;
use vouchsafe_core::rand_core::UnwrapErr;

const BIN: &str = env!("CARGO_BIN_EXE_vouchsafe");

/// Kills the server if the test fails before stopping it, so a failing run leaves nothing behind.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `vouchsafe serve` in `dir`; returns the child, its port and every stdout line up to
/// "listening".
fn serve(dir: &std::path::Path) -> (Server, u16, Vec<String>) {
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("VOUCHSAFE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "server exited early: {lines:?}");
        lines.push(line.trim_end().to_string());
        if line.contains("listening on") {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start: {lines:?}");
    }
    (Server(Some(child)), port, lines)
}

fn stop(mut server: Server) {
    let Some(mut child) = server.0.take() else { return };
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "graceful shutdown exits 0, got {s}");
            return;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn operator_quick_start_on_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port, lines) = serve(dir.path());
    let token = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("vsk_").map(|t| format!("vsk_{t}")))
        .expect("dev token printed");
    assert!(lines.iter().any(|l| l.contains("pkcs11")), "says how to switch to an HSM: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("postgres")), "says how to switch to PostgreSQL");
    let mode = std::fs::metadata(dir.path().join("data/master.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);

    let base = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    // No web apps in this directory: the portal's keys are not made for nothing.
    let r = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&token)
        .json(&json!({"name":"pii","type":"aes256-gcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(lines.iter().any(|l| l.contains("/portal/")), "says where the web apps are: {lines:?}");
    let dk: Value = http
        .post(format!("{base}/v1/keys/pii/datakey"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dk = DataKey::from_response_json(&dk.to_string()).unwrap();
    let jwe = dk.seal(b"Amina", Some("r/1/name"), &mut UnwrapErr(getrandom::SysRng)).unwrap();
    let r = http
        .post(format!("{base}/v1/keys/pii/decrypt"))
        .bearer_auth(&token)
        .json(&json!({"jwe": jwe, "ctx": "r/1/name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["text"], "Amina");
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    stop(child);

    // A restart keeps the keys and does not print a token again.
    let (child, port2, lines) = serve(dir.path());
    assert!(!lines.iter().any(|l| l.contains("vsk_")), "the token is shown only once");
    let r = http
        .post(format!("http://127.0.0.1:{port2}/v1/keys/pii/decrypt"))
        .bearer_auth(&token)
        .json(&json!({"jwe": jwe, "ctx": "r/1/name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "data sealed before the restart opens after it");
    stop(child);

    let (ok, text) = audit_verify(dir.path());
    assert!(ok && text.contains("intact"), "{text}");

    // One entry altered behind the server's back: `audit verify` names it and fails.
    let url = format!("sqlite://{}", dir.path().join("data/vouchsafe.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").execute(&pool).await.unwrap();
    pool.close().await;
    let (ok, text) = audit_verify(dir.path());
    assert!(!ok && text.contains("BROKEN at entry 2"), "{text}");
}

/// `vouchsafe audit verify` in `dir` on the default database: whether it passed, and its output.
fn audit_verify(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN).args(["audit", "verify"]).current_dir(dir).env_remove("DATABASE_URL").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn cli_rejects_unknown_configuration_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "listen = \"127.0.0.1:1\"\nlisen = 2\n").unwrap();
    let out =
        Command::new(BIN).args(["--config", "c.toml", "audit", "verify"]).current_dir(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}
