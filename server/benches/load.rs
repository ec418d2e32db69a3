//! Load test of the key server over loopback HTTP: datakey, unwrap and decrypt requests per
//! second with p50/p99 latency at 1, 16 and 64 connections, on the soft keystore and on
//! SoftHSM2, with the audit log on, next to the raw keystore wrap rate measured in the same run.
//!
//! `cargo bench -p vouchsafe-server --bench load` (5 s per cell); `-- --test` for a smoke run.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../crates/keystore/tests/common/mod.rs"]
mod softhsm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use vouchsafe_core::DataKey;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_keystore::{KeyKind, KeyRef, KeyStore};
use vouchsafe_server::auth::{Permission, TokenTable, token_hash};
use vouchsafe_server::db::Db;
use vouchsafe_server::{AppState, Config, app};

const TOKEN: &str = "bench-token";

struct Cell {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `conns` keep-alive connections, each sending `body` to `path` back to back for `dur`.
async fn load(addr: std::net::SocketAddr, path: &'static str, body: Bytes, conns: usize, dur: Duration) -> Cell {
    let deadline = Instant::now() + dur;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let (mut lat, mut errors) = (Vec::with_capacity(100_000), 0u64);
            while Instant::now() < deadline {
                let req = Request::post(path)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.unwrap();
                let ok = resp.status().is_success();
                resp.into_body().collect().await.unwrap();
                lat.push(t.elapsed().as_micros() as u32);
                errors += u64::from(!ok);
            }
            (lat, errors)
        }));
    }
    let start = Instant::now();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64().max(dur.as_secs_f64());
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    Cell { rps: all.len() as f64 / secs, p50_ms: pct(0.50), p99_ms: pct(0.99), errors }
}

/// Raw DEK generations + wraps per second on one thread (the ceiling the server is compared with).
fn raw_wraps(ks: &Arc<dyn KeyStore>, handle: &vouchsafe_keystore::KeyHandle, dur: Duration) -> f64 {
    let k = KeyRef { kid: "pii.v1", kind: KeyKind::Aes256Gcm, handle };
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < dur {
        // DEK generation and wrap: what a datakey request asks of the keystore.
        ks.new_dek(k).unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn run(provider: &str, ks: Arc<dyn KeyStore>, dur: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.unwrap();
    let mut tokens = TokenTable::default();
    let perms =
        ["keys:admin", "keys:encrypt:*", "keys:decrypt:*"].iter().map(|p| Permission::parse(p).unwrap()).collect();
    tokens.add("bench".into(), token_hash(TOKEN), perms);
    let state = AppState::new(Config::default(), db, ks.clone(), tokens);
    let caller = vouchsafe_server::auth::Caller { name: "bench".into(), permissions: vec![Permission::KeysAdmin] };
    vouchsafe_server::routes::keys::create_key(&state, &caller, "pii", "aes256-gcm").await.unwrap();
    let handle = state.key("pii").await.unwrap().versions[0].handle.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app(state)).into_future());

    // Bodies for unwrap and decrypt, from a real datakey response.
    let http = |path: &'static str, body: serde_json::Value| async move {
        let c = load_once(addr, path, Bytes::from(body.to_string())).await;
        serde_json::from_slice::<serde_json::Value>(&c).unwrap()
    };
    let dk = http("/v1/keys/pii/datakey", json!({})).await;
    let datakey = DataKey::from_response_json(&dk.to_string()).unwrap();
    let jwe = datakey.seal(&[0x42; 1024], Some("registrant/1/phone"), &mut UnwrapErr(getrandom::SysRng)).unwrap();
    let unwrap_body = json!({ "header": dk["header"], "encrypted_key": dk["encrypted_key"] }).to_string();
    let decrypt_body = json!({ "jwe": jwe, "ctx": "registrant/1/phone" }).to_string();

    // Each cell against the raw rate measured right before and right after it (1 s each): this
    // machine's speed drifts over minutes, and a ceiling taken once at the start would credit or
    // blame the server for the drift.
    let raw = |secs: f64| {
        let (ks, handle) = (ks.clone(), handle.clone());
        let d = Duration::from_secs_f64(secs).min(dur);
        async move { tokio::task::spawn_blocking(move || raw_wraps(&ks, &handle, d)).await.unwrap() }
    };
    let ceiling = raw(dur.as_secs_f64()).await;
    println!("| {provider} | raw keystore DEK generate + wrap, 1 thread | {ceiling:.0} ops/s | | | |");
    for (op, path, body) in [
        ("datakey", "/v1/keys/pii/datakey", "{}".to_string()),
        ("unwrap", "/v1/keys/pii/unwrap", unwrap_body),
        ("decrypt 1 KiB", "/v1/keys/pii/decrypt", decrypt_body),
    ] {
        // VOUCHSAFE_BENCH_OP=datakey and VOUCHSAFE_BENCH_CONNS=16 narrow the run (for profiling).
        if std::env::var("VOUCHSAFE_BENCH_OP").is_ok_and(|o| !op.starts_with(o.as_str())) {
            continue;
        }
        let conns_only = std::env::var("VOUCHSAFE_BENCH_CONNS").ok().and_then(|c| c.parse::<usize>().ok());
        for conns in [1, 16, 64].into_iter().filter(|c| conns_only.is_none_or(|o| o == *c)) {
            let before = raw(1.0).await;
            let c = load(addr, path, Bytes::from(body.clone()), conns, dur).await;
            let after = raw(1.0).await;
            assert_eq!(c.errors, 0, "{provider} {op} at {conns}: non-2xx responses");
            println!(
                "| {provider} | {op} | {:.0} req/s ({:.0}% of raw {:.0}/{:.0}k before/after) | {conns} | {:.2} ms | {:.2} ms |",
                c.rps,
                200.0 * c.rps / (before + after),
                before / 1e3,
                after / 1e3,
                c.p50_ms,
                c.p99_ms
            );
        }
    }
}

async fn load_once(addr: std::net::SocketAddr, path: &'static str, body: Bytes) -> Bytes {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    sender.send_request(req).await.unwrap().into_body().collect().await.unwrap().to_bytes()
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let dur = if smoke { Duration::from_millis(100) } else { Duration::from_secs(5) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("| keystore | operation | throughput | connections | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    // VOUCHSAFE_BENCH_ONLY=soft|softhsm runs one keystore (for profiling).
    let only = std::env::var("VOUCHSAFE_BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "soft" {
            run("soft", softhsm::soft(), dur).await;
        }
        if only.is_empty() || only == "softhsm" {
            run("SoftHSM2", softhsm::softhsm(), dur).await;
        }
    });
    if smoke {
        println!("server load bench smoke run: 1 passed, 0 failed");
    }
}
