//! A token that disappears makes every operation and the health probe fail with
//! `Unavailable` (HTTP 503), never "key not found". Its own test binary: SoftHSM never re-admits
//! a token directory it saw vanish, so this process's token is unusable afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use vouchsafe_core::Dek;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_keystore::{KeyKind, KeyRef, KeystoreError};

fn token_dir() -> PathBuf {
    let conf = std::env::var("SOFTHSM2_CONF").unwrap();
    let tokens = PathBuf::from(conf).parent().unwrap().join("tokens");
    let label = common::token_label();
    for e in std::fs::read_dir(tokens).unwrap().flatten() {
        let obj = e.path().join("token.object");
        if std::fs::read(&obj).is_ok_and(|b| b.windows(label.len()).any(|w| w == label.as_bytes())) {
            return e.path();
        }
    }
    panic!("token directory for {label} not found");
}

#[test]
fn removed_token_is_unavailable_not_missing_keys() {
    let ks = common::softhsm();
    let aes = ks.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let ec = ks.generate("vouchers.v1", KeyKind::EcdsaP256).unwrap();
    let k = KeyRef { kid: "pii.v1", kind: KeyKind::Aes256Gcm, handle: &aes };
    let s = KeyRef { kid: "vouchers.v1", kind: KeyKind::EcdsaP256, handle: &ec };
    let dek = Dek::generate(&mut UnwrapErr(getrandom::SysRng));
    let w = ks.wrap_dek(k, &dek).unwrap();
    ks.sign_digest(s, &[1; 32]).unwrap();

    let dir = token_dir();
    let away = dir.with_extension("removed");
    std::fs::rename(&dir, &away).unwrap();
    let results = [
        ks.unwrap_dek(k, &w).map(|_| ()),
        ks.wrap_dek(k, &dek).map(|_| ()),
        ks.sign_digest(s, &[2; 32]).map(|_| ()),
        ks.generate("pii.v2", KeyKind::Aes256Gcm).map(|_| ()),
        ks.health().map(|_| ()),
    ];
    std::fs::rename(&away, &dir).unwrap();
    for (i, r) in results.iter().enumerate() {
        match r {
            Err(e @ KeystoreError::Unavailable(m)) => {
                assert_eq!(e.code(), "keystore_unavailable");
                assert!(m.contains(common::token_label()) || m.contains("Token") || m.contains("Session"), "{m}");
            }
            other => panic!("operation {i}: expected Unavailable, got {other:?}"),
        }
    }
}
