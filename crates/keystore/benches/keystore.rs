//! Raw keystore throughput: operations per second on 1 and 2 threads for each provider. These are
//! the ceilings the server's own throughput is measured against (docs/BENCHMARKS.md).
//!
//! `cargo bench -p vouchsafe-keystore` measures for 3 s per cell; `-- --test` (the CI smoke run)
//! runs each cell for a moment only to prove it works.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vouchsafe_core::Dek;
use vouchsafe_core::p256::SecretKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_keystore::{KeyHandle, KeyKind, KeyRef, KeyStore};

type Op = Arc<dyn Fn(&dyn KeyStore) + Send + Sync>;

fn measure(ks: &Arc<dyn KeyStore>, threads: usize, dur: Duration, op: &Op) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (ks, op, stop, count) = (ks.clone(), op.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(&*ks);
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn ops(ks: &Arc<dyn KeyStore>) -> Vec<(&'static str, Op)> {
    let aes = ks.generate("bench.v1", KeyKind::Aes256Gcm).unwrap();
    let ec = ks.generate("bench-sig.v1", KeyKind::EcdsaP256).unwrap();
    let dh = ks.generate("bench-seal.v1", KeyKind::EcdhP256).unwrap();
    let wrapped = ks
        .wrap_dek(KeyRef { kid: "bench.v1", kind: KeyKind::Aes256Gcm, handle: &aes }, &Dek::from_array([5; 32]))
        .unwrap();
    let peer = SecretKey::generate_from_rng(&mut UnwrapErr(getrandom::SysRng)).public_key();
    let r = |h: &KeyHandle, kid: &'static str, kind| (h.clone(), kid, kind);
    let (a1, a2, e, d) = (
        r(&aes, "bench.v1", KeyKind::Aes256Gcm),
        r(&aes, "bench.v1", KeyKind::Aes256Gcm),
        r(&ec, "bench-sig.v1", KeyKind::EcdsaP256),
        r(&dh, "bench-seal.v1", KeyKind::EcdhP256),
    );
    vec![
        (
            "DEK generate+wrap",
            Arc::new(move |ks: &dyn KeyStore| {
                // What a datakey request asks of the keystore.
                ks.new_dek(KeyRef { kid: a1.1, kind: a1.2, handle: &a1.0 }).unwrap();
            }) as Op,
        ),
        (
            "unwrap",
            Arc::new(move |ks: &dyn KeyStore| {
                ks.unwrap_dek(KeyRef { kid: a2.1, kind: a2.2, handle: &a2.0 }, &wrapped).unwrap();
            }),
        ),
        (
            "ECDSA sign",
            Arc::new(move |ks: &dyn KeyStore| {
                ks.sign_digest(KeyRef { kid: e.1, kind: e.2, handle: &e.0 }, &[7; 32]).unwrap();
            }),
        ),
        (
            "ECDH",
            Arc::new(move |ks: &dyn KeyStore| {
                ks.ecdh(KeyRef { kid: d.1, kind: d.2, handle: &d.0 }, &peer).unwrap();
            }),
        ),
    ]
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let dur = if smoke { Duration::from_millis(50) } else { Duration::from_secs(3) };
    let stores: Vec<(&str, Arc<dyn KeyStore>)> =
        vec![("soft", common::soft()), ("pkcs11 (SoftHSM2)", common::softhsm())];
    println!("| provider | operation | 1 thread (ops/s) | 2 threads (ops/s) |");
    println!("|---|---|---|---|");
    for (name, ks) in &stores {
        for (op_name, op) in ops(ks) {
            let one = measure(ks, 1, dur, &op);
            let two = measure(ks, 2, dur, &op);
            assert!(one > 0.0 && two > 0.0, "{name} {op_name} made no progress");
            println!("| {name} | {op_name} | {one:.0} | {two:.0} |");
        }
    }
    if smoke {
        println!("keystore bench smoke run: 1 passed, 0 failed");
    }
}
