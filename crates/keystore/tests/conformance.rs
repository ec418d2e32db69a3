//! One conformance suite, run against every keystore provider: `soft` and `pkcs11` on SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use vouchsafe_core::p256::SecretKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{
    Dek, Jwe, Jwks, KeyAgreement, VoucherClaims, VoucherValidator, WrappedDek, b64d, b64e, seal_to_public_key,
};
use vouchsafe_keystore::{KeyHandle, KeyKind, KeyRef, KeyStore, KeystoreAgreement, KeystoreError, KeystoreSigner};

const RESTART_ENV: &str = "VOUCHSAFE_RESTART_CHECK";

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn key<'a>(kid: &'a str, kind: KeyKind, handle: &'a KeyHandle) -> KeyRef<'a> {
    KeyRef { kid, kind, handle }
}

fn claims() -> VoucherClaims {
    VoucherClaims {
        iss: "https://keys.example.org".into(),
        sub: "beneficiary-7".into(),
        aud: "food-2026".into(),
        jti: "v-1".into(),
        iat: 1_790_000_000,
        nbf: 1_790_000_000,
        exp: 1_790_086_400,
        amount: "25.50".into(),
        currency: "KES".into(),
        status: None,
        extra: Default::default(),
    }
}

fn aes_round_trip(ks: Arc<dyn KeyStore>) {
    let h = ks.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let k = key("pii.v1", KeyKind::Aes256Gcm, &h);
    let dek = Dek::generate(&mut rng());
    let w1 = ks.wrap_dek(k, &dek).unwrap();
    let w2 = ks.wrap_dek(k, &dek).unwrap();
    assert_eq!(w1.kid, "pii.v1");
    assert_ne!(w1.iv, w2.iv, "fresh IV per wrap");
    assert_ne!(w1.encrypted_key, *dek.expose_secret());
    assert_eq!(ks.unwrap_dek(k, &w1).unwrap(), dek);
    assert_eq!(ks.unwrap_dek(k, &w2).unwrap(), dek);
}

fn new_dek_is_fresh_and_unwraps(ks: Arc<dyn KeyStore>) {
    let h = ks.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let k = key("pii.v1", KeyKind::Aes256Gcm, &h);
    let (d1, w1) = ks.new_dek(k).unwrap();
    let (d2, w2) = ks.new_dek(k).unwrap();
    assert_eq!(w1.kid, "pii.v1");
    assert_ne!(d1, d2, "fresh DEK per call");
    assert_ne!(w1.iv, w2.iv, "fresh IV per wrap");
    // The IV is not taken from the DEK's bytes (both come from one draw).
    assert!(!d1.expose_secret().windows(12).any(|w| w == w1.iv));
    assert_eq!(ks.unwrap_dek(k, &w1).unwrap(), d1);
    assert_eq!(ks.unwrap_dek(k, &w2).unwrap(), d2);
    // What an ordinary wrap of the same DEK gives opens the same way.
    assert_eq!(ks.unwrap_dek(k, &ks.wrap_dek(k, &d1).unwrap()).unwrap(), d1);
    let ec = ks.generate("s.v1", KeyKind::EcdsaP256).unwrap();
    assert!(matches!(ks.new_dek(key("s.v1", KeyKind::EcdsaP256, &ec)), Err(KeystoreError::WrongKeyType)));
    let bogus = KeyHandle(vec![7; 16]);
    assert!(matches!(ks.new_dek(key("pii.v9", KeyKind::Aes256Gcm, &bogus)), Err(KeystoreError::KeyNotFound)));
}

fn unwrap_refuses_tampering_and_other_keys(ks: Arc<dyn KeyStore>) {
    let h = ks.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let other = ks.generate("pii.v2", KeyKind::Aes256Gcm).unwrap();
    let k = key("pii.v1", KeyKind::Aes256Gcm, &h);
    let w = ks.wrap_dek(k, &Dek::generate(&mut rng())).unwrap();
    let mutations: [fn(&mut WrappedDek); 3] = [|w| w.encrypted_key[0] ^= 1, |w| w.iv[11] ^= 1, |w| w.tag[15] ^= 0x80];
    for m in mutations {
        let mut bad = w.clone();
        m(&mut bad);
        assert!(matches!(ks.unwrap_dek(k, &bad), Err(KeystoreError::DecryptFailed)));
    }
    let wrong = ks.unwrap_dek(key("pii.v2", KeyKind::Aes256Gcm, &other), &w);
    assert!(matches!(wrong, Err(KeystoreError::DecryptFailed)), "{wrong:?}");
}

fn signatures_verify_with_core_and_jsonwebtoken(ks: Arc<dyn KeyStore>) {
    let h = ks.generate("vouchers.v1", KeyKind::EcdsaP256).unwrap();
    let k = key("vouchers.v1", KeyKind::EcdsaP256, &h);
    let jwk = ks.public_key(k).unwrap();
    assert_eq!(jwk.kid(), Some("vouchers.v1"));
    assert_eq!(jwk.alg(), Some("ES256"));
    let signer = KeystoreSigner { store: &*ks, key: k };
    let jwks = Jwks::new(vec![jwk.clone()]).unwrap();
    let validator = VoucherValidator::new().with_issuer("https://keys.example.org").with_audience("food-2026");
    let n_half = hex("7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8");
    for i in 0..20 {
        let mut c = claims();
        c.jti = format!("v-{i}");
        let token = c.sign("vouchers.v1", &signer).unwrap();
        assert_eq!(validator.validate(&token, &jwks, 1_790_000_100).unwrap().jti, c.jti);
        let sig = b64d(token.rsplit('.').next().unwrap(), "s").unwrap();
        assert!(sig[32..] <= n_half[..], "low-S");

        let (x, y) = jwk.coordinates();
        let dk = jsonwebtoken::DecodingKey::from_ec_components(&b64e(&x), &b64e(&y)).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["food-2026"]);
        v.set_issuer(&["https://keys.example.org"]);
        v.validate_exp = false; // the fixed test time is in the past for jsonwebtoken's clock
        let data = jsonwebtoken::decode::<Value>(&token, &dk, &v).unwrap();
        assert_eq!(data.claims["amount"], "25.50");
        assert_eq!(data.header.kid.as_deref(), Some("vouchers.v1"));
    }
    // Batch signing gives valid, distinct signatures too.
    let digests: Vec<[u8; 32]> = (0..10u8).map(|i| [i; 32]).collect();
    let sigs = ks.sign_digests(k, &digests).unwrap();
    assert_eq!(sigs.len(), 10);
    for (d, s) in digests.iter().zip(&sigs) {
        let prehash_ok = vouchsafe_core::p256::ecdsa::VerifyingKey::from(jwk.public_key());
        use vouchsafe_core::p256::ecdsa::signature::hazmat::PrehashVerifier;
        let sig = vouchsafe_core::p256::ecdsa::Signature::from_slice(s).unwrap();
        prehash_ok.verify_prehash(d, &sig).unwrap();
    }
}

fn ecdh_agrees_with_a_software_peer(ks: Arc<dyn KeyStore>) {
    let h = ks.generate("pii-seal.v1", KeyKind::EcdhP256).unwrap();
    let k = key("pii-seal.v1", KeyKind::EcdhP256, &h);
    let jwk = ks.public_key(k).unwrap();
    assert_eq!(jwk.alg(), Some("ECDH-ES+A256KW"));
    let peer = SecretKey::generate_from_rng(&mut rng());
    let z_hsm = ks.ecdh(k, &peer.public_key()).unwrap();
    let z_peer = peer.agree(None, jwk.public_key()).unwrap();
    assert_eq!(z_hsm.expose_secret(), z_peer.expose_secret());
    // A whole offline JWE: sealed to the public key, opened through the keystore.
    let jwe = seal_to_public_key(&jwk, b"national id 12345678", Some("registrant/1/nid"), &mut rng()).unwrap();
    let agreement = KeystoreAgreement { store: &*ks, key: k };
    let out = Jwe::parse(&jwe).unwrap().open_with_agreement(&agreement, Some("registrant/1/nid")).unwrap();
    assert_eq!(out, b"national id 12345678");
}

fn operations_check_the_key_kind(ks: Arc<dyn KeyStore>) {
    let aes = ks.generate("a.v1", KeyKind::Aes256Gcm).unwrap();
    let ec = ks.generate("s.v1", KeyKind::EcdsaP256).unwrap();
    let dh = ks.generate("d.v1", KeyKind::EcdhP256).unwrap();
    let dek = Dek::generate(&mut rng());
    assert!(matches!(
        ks.sign_digest(key("a.v1", KeyKind::Aes256Gcm, &aes), &[1; 32]),
        Err(KeystoreError::WrongKeyType)
    ));
    assert!(matches!(ks.wrap_dek(key("s.v1", KeyKind::EcdsaP256, &ec), &dek), Err(KeystoreError::WrongKeyType)));
    assert!(matches!(ks.public_key(key("a.v1", KeyKind::Aes256Gcm, &aes)), Err(KeystoreError::WrongKeyType)));
    let peer = SecretKey::generate_from_rng(&mut rng()).public_key();
    assert!(matches!(ks.ecdh(key("s.v1", KeyKind::EcdsaP256, &ec), &peer), Err(KeystoreError::WrongKeyType)));
    assert!(matches!(ks.sign_digest(key("d.v1", KeyKind::EcdhP256, &dh), &[1; 32]), Err(KeystoreError::WrongKeyType)));
}

fn unknown_handles_are_not_found(ks: Arc<dyn KeyStore>) {
    let bogus = KeyHandle(vec![7; 16]);
    let r = ks.wrap_dek(key("pii.v9", KeyKind::Aes256Gcm, &bogus), &Dek::generate(&mut rng()));
    assert!(matches!(r, Err(KeystoreError::KeyNotFound)), "{r:?}");
    // Empty and odd-sized handles, while other keys of every kind exist on the same token.
    let _others =
        [KeyKind::Aes256Gcm, KeyKind::EcdsaP256, KeyKind::EcdhP256].map(|k| ks.generate("other.v1", k).unwrap());
    for h in [vec![], vec![0u8; 3], vec![7u8; 200]] {
        let r = ks.sign_digest(key("v.v9", KeyKind::EcdsaP256, &KeyHandle(h.clone())), &[0; 32]);
        assert!(matches!(r, Err(KeystoreError::KeyNotFound)), "{} bytes: {r:?}", h.len());
        let r = ks.ecdh(
            key("d.v9", KeyKind::EcdhP256, &KeyHandle(h.clone())),
            &SecretKey::generate_from_rng(&mut rng()).public_key(),
        );
        assert!(matches!(r, Err(KeystoreError::KeyNotFound)), "{} bytes: {r:?}", h.len());
    }
}

fn random_and_health(ks: Arc<dyn KeyStore>) {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    ks.random(&mut a).unwrap();
    ks.random(&mut b).unwrap();
    assert_ne!(a, b);
    let h = ks.health().unwrap();
    assert_eq!(h.provider, ks.provider());
    assert_eq!(h.hsm_backed, ks.hsm_backed());
    assert!(!h.detail.is_empty());
}

fn concurrent_use_from_many_threads(ks: Arc<dyn KeyStore>) {
    let aes = ks.generate("c.v1", KeyKind::Aes256Gcm).unwrap();
    let ec = ks.generate("cs.v1", KeyKind::EcdsaP256).unwrap();
    let jwk = ks.public_key(key("cs.v1", KeyKind::EcdsaP256, &ec)).unwrap();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (ks, aes, ec, jwk) = (ks.clone(), aes.clone(), ec.clone(), jwk.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let dek = Dek::generate(&mut rng());
                    let k = key("c.v1", KeyKind::Aes256Gcm, &aes);
                    let w = ks.wrap_dek(k, &dek).unwrap();
                    assert_eq!(ks.unwrap_dek(k, &w).unwrap(), dek);
                    let msg = format!("{t}-{i}");
                    let sig = ks.sign_digest(key("cs.v1", KeyKind::EcdsaP256, &ec), &sha256(msg.as_bytes())).unwrap();
                    vouchsafe_core::jws::es256_verify(jwk.public_key(), msg.as_bytes(), &sig).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Keys generated and data wrapped by one process are usable by the next: the test re-runs
/// itself as a child process, which opens a new keystore and checks everything.
fn handles_survive_a_process_restart(make: fn() -> Arc<dyn KeyStore>, test_name: &str) {
    if let Ok(path) = std::env::var(RESTART_ENV) {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let ks = make();
        let handle = |n: &str| KeyHandle(b64d(v[n].as_str().unwrap(), "h").unwrap());
        let (aes, ec, dh) = (handle("aes"), handle("ecdsa"), handle("ecdh"));
        let wrapped = WrappedDek::from_header(&v["header"], v["encrypted_key"].as_str().unwrap()).unwrap();
        let dek = ks.unwrap_dek(key("r.v1", KeyKind::Aes256Gcm, &aes), &wrapped).unwrap();
        assert_eq!(b64e(dek.expose_secret()), v["dek"].as_str().unwrap());
        let pubkey = ks.public_key(key("rs.v1", KeyKind::EcdsaP256, &ec)).unwrap();
        assert_eq!(pubkey.thumbprint_b64(), v["ecdsa_thumbprint"].as_str().unwrap());
        let sig = ks.sign_digest(key("rs.v1", KeyKind::EcdsaP256, &ec), &sha256(b"after restart")).unwrap();
        vouchsafe_core::jws::es256_verify(pubkey.public_key(), b"after restart", &sig).unwrap();
        let ecdh_pub = ks.public_key(key("rd.v1", KeyKind::EcdhP256, &dh)).unwrap();
        assert_eq!(ecdh_pub.thumbprint_b64(), v["ecdh_thumbprint"].as_str().unwrap());
        return;
    }
    let ks = make();
    let aes = ks.generate("r.v1", KeyKind::Aes256Gcm).unwrap();
    let ec = ks.generate("rs.v1", KeyKind::EcdsaP256).unwrap();
    let dh = ks.generate("rd.v1", KeyKind::EcdhP256).unwrap();
    let dek = Dek::generate(&mut rng());
    let w = ks.wrap_dek(key("r.v1", KeyKind::Aes256Gcm, &aes), &dek).unwrap();
    let state = json!({
        "aes": b64e(&aes.0), "ecdsa": b64e(&ec.0), "ecdh": b64e(&dh.0),
        "header": w.header(), "encrypted_key": w.encrypted_key_b64(), "dek": b64e(dek.expose_secret()),
        "ecdsa_thumbprint": ks.public_key(key("rs.v1", KeyKind::EcdsaP256, &ec)).unwrap().thumbprint_b64(),
        "ecdh_thumbprint": ks.public_key(key("rd.v1", KeyKind::EcdhP256, &dh)).unwrap().thumbprint_b64(),
    });
    drop(ks);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, state.to_string()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(RESTART_ENV, &path)
        .env(common::TOKEN_ENV, common::token_label())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "restarted process failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

macro_rules! conformance {
    ($provider:ident, $make:path) => {
        mod $provider {
            use super::*;

            #[test]
            fn aes_round_trip() {
                super::aes_round_trip($make());
            }
            #[test]
            fn new_dek_is_fresh_and_unwraps() {
                super::new_dek_is_fresh_and_unwraps($make());
            }
            #[test]
            fn unwrap_refuses_tampering_and_other_keys() {
                super::unwrap_refuses_tampering_and_other_keys($make());
            }
            #[test]
            fn signatures_verify_with_core_and_jsonwebtoken() {
                super::signatures_verify_with_core_and_jsonwebtoken($make());
            }
            #[test]
            fn ecdh_agrees_with_a_software_peer() {
                super::ecdh_agrees_with_a_software_peer($make());
            }
            #[test]
            fn operations_check_the_key_kind() {
                super::operations_check_the_key_kind($make());
            }
            #[test]
            fn unknown_handles_are_not_found() {
                super::unknown_handles_are_not_found($make());
            }
            #[test]
            fn random_and_health() {
                super::random_and_health($make());
            }
            #[test]
            fn concurrent_use_from_many_threads() {
                super::concurrent_use_from_many_threads($make());
            }
            #[test]
            fn handles_survive_a_process_restart() {
                let name = concat!(stringify!($provider), "::handles_survive_a_process_restart");
                super::handles_survive_a_process_restart($make, name);
            }
        }
    };
}

conformance!(soft, common::soft);
conformance!(softhsm, common::softhsm);

#[test]
fn suite_covers_both_providers() {
    let names: HashSet<&str> = [common::soft().provider(), common::softhsm().provider()].into();
    assert_eq!(names, HashSet::from(["soft", "pkcs11"]));
}
