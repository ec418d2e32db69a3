//! Voucher throughput over loopback HTTP, audit on, next to the raw keystore ECDSA signing rate
//! measured in the same run, on the soft keystore and on SoftHSM2:
//! - single issuance (`POST /v1/vouchers`) at 16 connections, with p50/p99;
//! - batch issuance: a 10 000-item JSON batch and a 100 000-line NDJSON stream;
//! - redemptions at 16 connections (every request a different voucher).
//!
//! Then peak memory (VmHWM) of the real `vouchsafe` binary (soft keystore, and SoftHSM2)
//! streaming 10 000 and then up to 200 000 vouchers, each in a fresh process.
//!
//! `cargo bench -p vouchsafe-server --bench vouchers`; `-- --test` for a smoke run.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../crates/keystore/tests/common/mod.rs"]
mod softhsm;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::Request;
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use vouchsafe_keystore::{KeyKind, KeyRef, KeyStore};
use vouchsafe_server::auth::{Permission, TokenTable, token_hash};
use vouchsafe_server::db::Db;
use vouchsafe_server::{AppState, Config, app};

const TOKEN: &str = "bench-token";

fn voucher(i: usize) -> Value {
    json!({"sub": format!("hh-{i:07}"), "aud": "cash-transfer-2026", "amount": "1500.00", "currency": "KES"})
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn full(b: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn post(
    s: &mut Sender,
    path: &str,
    ctype: &str,
    body: http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
) -> (u16, hyper::body::Incoming) {
    let req = Request::post(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", ctype)
        .body(body)
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    (resp.status().as_u16(), resp.into_body())
}

struct Lat {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn summarise(mut lat: Vec<u32>, secs: f64) -> Lat {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    Lat { rps: lat.len() as f64 / secs, p50: pct(0.5), p99: pct(0.99) }
}

/// `conns` connections each sending single issuance requests for `dur`.
async fn issue_load(addr: std::net::SocketAddr, conns: usize, dur: Duration) -> Lat {
    let deadline = Instant::now() + dur;
    let body = Bytes::from(voucher(1).to_string());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, b) = post(&mut s, "/v1/vouchers", "application/json", full(body.clone())).await;
                b.collect().await.unwrap();
                assert_eq!(status, 201);
                lat.push(t.elapsed().as_micros() as u32);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    summarise(all, start.elapsed().as_secs_f64())
}

/// `conns` connections redeeming distinct vouchers from `tokens` until they run out or `dur` ends.
async fn redeem_load(addr: std::net::SocketAddr, tokens: Arc<Vec<String>>, conns: usize, dur: Duration) -> Lat {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (tokens, next) = (tokens.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = tokens.get(i) else { break };
                let body = json!({ "token": t }).to_string();
                let t0 = Instant::now();
                let (status, b) = post(&mut s, "/v1/vouchers/redeem", "application/json", full(body)).await;
                b.collect().await.unwrap();
                assert_eq!(status, 200);
                lat.push(t0.elapsed().as_micros() as u32);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    summarise(all, start.elapsed().as_secs_f64())
}

/// Raw keystore ECDSA signatures per second on one thread, 1 000 digests per call (the batch
/// path's unit), and one digest per call.
fn raw_signs(ks: &Arc<dyn KeyStore>, kid: &str, handle: &vouchsafe_keystore::KeyHandle, dur: Duration) -> (f64, f64) {
    let k = KeyRef { kid, kind: KeyKind::EcdsaP256, handle };
    let digests = vec![[7u8; 32]; 1000];
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < dur {
        n += ks.sign_digests(k, &digests).unwrap().len() as u64;
    }
    let bulk = n as f64 / start.elapsed().as_secs_f64();
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < dur / 2 {
        ks.sign_digest(k, &[7u8; 32]).unwrap();
        n += 1;
    }
    (bulk, n as f64 / start.elapsed().as_secs_f64())
}

async fn run(provider: &str, ks: Arc<dyn KeyStore>, smoke: bool) {
    let dur = if smoke { Duration::from_millis(200) } else { Duration::from_secs(5) };
    let (batch_n, stream_n) = if smoke { (200, 1000) } else { (10_000, 100_000) };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.unwrap();
    let mut tokens = TokenTable::default();
    let perms = ["vouchers:issue", "vouchers:redeem"].iter().map(|p| Permission::parse(p).unwrap()).collect();
    tokens.add("bench".into(), token_hash(TOKEN), perms);
    let state = AppState::new(Config::default(), db, ks.clone(), tokens);
    let key = vouchsafe_server::vouchers::signing_key(&state).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app(state)).into_future());

    let (ks2, key2) = (ks.clone(), key.clone());
    let (bulk, single) =
        tokio::task::spawn_blocking(move || raw_signs(&ks2, &key2.kid, &key2.handle, dur)).await.unwrap();
    println!("| {provider} | raw keystore ECDSA sign, 1 thread, 1 000 per call | {bulk:.0} /s | | | |");
    println!("| {provider} | raw keystore ECDSA sign, 1 thread, 1 per call | {single:.0} /s | | | |");

    let l = issue_load(addr, 16, dur).await;
    println!(
        "| {provider} | issue, single requests | {:.0} vouchers/s ({:.0}% of raw) | 16 | {:.2} ms | {:.2} ms |",
        l.rps,
        100.0 * l.rps / bulk,
        l.p50,
        l.p99
    );

    // Batches against the raw rate measured right before and right after each one (1 s each):
    // this machine's speed drifts over minutes, and a ceiling taken once at the start would
    // credit or blame the server for the drift. The JSON batch runs three times.
    let raw_bulk = |secs: f64| {
        let (ks, kid, handle) = (ks.clone(), key.kid.clone(), key.handle.clone());
        let d = if smoke { Duration::from_millis(100) } else { Duration::from_secs_f64(secs) };
        async move { tokio::task::spawn_blocking(move || raw_signs(&ks, &kid, &handle, d).0).await.unwrap() }
    };
    let mut s = connect(addr).await;
    let items: Vec<Value> = (0..batch_n).map(voucher).collect();
    let body = json!({ "items": items }).to_string();
    let mut issued = Vec::new();
    for _ in 0..3 {
        let before = raw_bulk(1.0).await;
        let t = Instant::now();
        let (status, b) = post(&mut s, "/v1/vouchers/batch", "application/json", full(body.clone())).await;
        let out: Value = serde_json::from_slice(&b.collect().await.unwrap().to_bytes()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let after = raw_bulk(1.0).await;
        assert_eq!(status, 201, "{out}");
        issued = out["items"].as_array().unwrap().iter().map(|v| v["token"].as_str().unwrap().to_string()).collect();
        assert_eq!(issued.len(), batch_n);
        let rate = batch_n as f64 / secs;
        println!(
            "| {provider} | issue, JSON batch of {batch_n} | {rate:.0} vouchers/s ({:.0}% of raw {before:.0}/{after:.0} before/after), {secs:.2} s | 1 | | |",
            200.0 * rate / (before + after)
        );
    }

    let before = raw_bulk(2.0).await;
    let (n, took) = stream_with_token(addr, stream_n, TOKEN).await;
    let after = raw_bulk(2.0).await;
    assert_eq!(n, stream_n);
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "| {provider} | issue, NDJSON stream of {stream_n} | {rate:.0} vouchers/s ({:.0}% of raw {before:.0}/{after:.0} before/after), {:.2} s | 1 | | |",
        200.0 * rate / (before + after),
        took.as_secs_f64()
    );

    let l = redeem_load(addr, Arc::new(issued), 16, dur).await;
    println!("| {provider} | redeem | {:.0} req/s | 16 | {:.2} ms | {:.2} ms |", l.rps, l.p50, l.p99);
}

/// Vouchers streamed through a server before a warm measurement.
const WARM_UP: usize = 10_000;

/// `vouchsafe serve` (the real binary, as shipped) in `dir` with extra
/// environment `env`, and a token for it that may issue vouchers.
async fn spawn_server(
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> (std::process::Child, std::net::SocketAddr, String) {
    let bin = env!("CARGO_BIN_EXE_vouchsafe");
    let made = std::process::Command::new(bin)
        .args(["token", "new", "bench", "--permission", "vouchers:issue"])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token =
        String::from_utf8_lossy(&made.stdout).split_whitespace().find(|w| w.starts_with("vsk_")).unwrap().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new(bin)
        .arg("serve")
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("VOUCHSAFE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, addr, token)
}

/// Settings that point the real binary at this process's SoftHSM token.
fn softhsm_env() -> Vec<(&'static str, String)> {
    vec![
        ("VOUCHSAFE_KEYSTORE__PROVIDER", "pkcs11".to_string()),
        ("VOUCHSAFE_KEYSTORE__MODULE", softhsm::module_path().display().to_string()),
        ("VOUCHSAFE_KEYSTORE__TOKEN_LABEL", softhsm::token_label().to_string()),
        ("VOUCHSAFE_KEYSTORE__PIN_ENV", "VOUCHSAFE_BENCH_HSM_PIN".to_string()),
        ("VOUCHSAFE_BENCH_HSM_PIN", softhsm::PIN.to_string()),
    ]
}

/// Peak memory of fresh and warmed-up processes streaming each of `sizes`, against the first.
async fn memory_table(what: &str, env: &[(&str, String)], sizes: &[usize]) {
    for warm in [false, true] {
        let mut peaks = Vec::new();
        for &n in sizes {
            peaks.push((n, peak_memory(n, warm, env).await));
        }
        let base = peaks[0].1 as f64;
        println!();
        for (n, kib) in peaks {
            println!(
                "peak RSS of `vouchsafe serve` ({what}; {}) streaming {n} vouchers: {:.1} MiB ({:+.0}% vs {})",
                if warm { "warm, after a 10 000 warm-up" } else { "cold, fresh process" },
                kib as f64 / 1024.0,
                100.0 * (kib as f64 - base) / base,
                sizes[0]
            );
        }
    }
}

/// The real binary on this process's SoftHSM token streaming `n` vouchers from this process
/// (an outside client), against the raw signing rate on the same token right before and after.
async fn real_binary_stream_softhsm(ks: Arc<dyn KeyStore>, n: usize, smoke: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, token) = spawn_server(dir.path(), &softhsm_env()).await;
    let raw = |secs: f64| {
        let ks = ks.clone();
        let d = if smoke { Duration::from_millis(100) } else { Duration::from_secs_f64(secs) };
        async move {
            tokio::task::spawn_blocking(move || {
                let h = ks.generate("raw-bench.v1", KeyKind::EcdsaP256).unwrap();
                raw_signs(&ks, "raw-bench.v1", &h, d).0
            })
            .await
            .unwrap()
        }
    };
    // A first short stream makes the server create its voucher key and warm up.
    assert_eq!(stream_with_token(addr, 1_000, &token).await.0, 1_000);
    let before = raw(2.0).await;
    let (got, took) = stream_with_token(addr, n, &token).await;
    let after = raw(2.0).await;
    assert_eq!(got, n);
    child.kill().unwrap();
    child.wait().unwrap();
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "| SoftHSM2 | issue, NDJSON stream of {n}, real binary (two malloc arenas), outside client | {rate:.0} vouchers/s ({:.0}% of raw {before:.0}/{after:.0} before/after), {:.2} s | 1 | | |",
        200.0 * rate / (before + after),
        took.as_secs_f64()
    );
}

/// Peak resident memory (KiB) of `vouchsafe serve` (SQLite, the keystore `env` sets up) while it
/// streams `n` vouchers: in a fresh process (`warm` false), or after a warm-up stream of
/// [`WARM_UP`].
async fn peak_memory(n: usize, warm: bool, env: &[(&str, String)]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, token) = spawn_server(dir.path(), env).await;
    let hwm = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Cold: the first stream a fresh process serves (pool connections, threads and SQLite's
    // page cache start empty, so part of the peak is the server warming up).
    let (got, _) = stream_with_token(addr, if warm { WARM_UP } else { n }, &token).await;
    assert_eq!(got, if warm { WARM_UP } else { n });
    if !warm {
        let kib = hwm(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        return kib;
    }
    // Warm: after a warm-up stream, reset the peak (clear_refs 5) and measure this stream alone.
    std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5").unwrap();
    let (got, _) = stream_with_token(addr, n, &token).await;
    assert_eq!(got, n);
    let kib = hwm(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    kib
}

/// Streams `n` NDJSON voucher requests and counts the tokens that come back, holding neither.
async fn stream_with_token(addr: std::net::SocketAddr, n: usize, token: &str) -> (usize, Duration) {
    let mut s = connect(addr).await;
    let lines = futures_util::stream::iter(0..n).chunks(500).map(|c| {
        let mut text = String::new();
        for i in c {
            text.push_str(&voucher(i).to_string());
            text.push('\n');
        }
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(text)))
    });
    let req = Request::post("/v1/vouchers/batch")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-ndjson")
        .body(BodyExt::boxed(StreamBody::new(lines)))
        .unwrap();
    let t = Instant::now();
    let resp = s.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let mut body = resp.into_body();
    // Count whole lines (a frame may end mid-line); keep only the unfinished one.
    let (mut tokens, mut partial, mut last) = (0, Vec::new(), Vec::new());
    while let Some(f) = body.frame().await {
        if let Some(d) = f.unwrap().data_ref() {
            partial.extend_from_slice(d);
            while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                tokens += usize::from(line.windows(9).any(|w| w == b"\"token\":\""));
                last = line;
            }
        }
    }
    let last = String::from_utf8_lossy(&last);
    assert!(last.contains("\"done\":true"), "stream did not finish: {last}");
    (tokens, t.elapsed())
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("| keystore | operation | throughput | connections | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    let only = std::env::var("VOUCHSAFE_BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "soft" {
            run("soft", softhsm::soft(), smoke).await;
        }
        if only.is_empty() || only == "softhsm" {
            run("SoftHSM2", softhsm::softhsm(), smoke).await;
        }
        // VOUCHSAFE_BENCH_ONLY=binary: only the real binary's stream (for profiling it).
        if only.is_empty() || only == "softhsm" || only == "binary" {
            real_binary_stream_softhsm(softhsm::softhsm(), if smoke { 1_000 } else { 100_000 }, smoke).await;
        }
        if only.is_empty() || only == "memory" {
            let sizes: &[usize] = if smoke { &[500, 2_000] } else { &[10_000, 50_000, 100_000, 200_000] };
            memory_table("soft keystore, one malloc arena", &[], sizes).await;
            // With a PKCS#11 module the binary keeps two malloc arenas (see its `main`).
            let sizes: &[usize] = if smoke { &[500, 2_000] } else { &[10_000, 200_000] };
            memory_table("SoftHSM2, two malloc arenas", &softhsm_env(), sizes).await;
        }
    });
    if smoke {
        println!("voucher bench smoke run: 1 passed, 0 failed");
    }
}
