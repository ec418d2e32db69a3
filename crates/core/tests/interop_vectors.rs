//! Tokens made by an independent JOSE implementation (PyPI jwcrypto; see
//! tests/vectors/generate_jwcrypto.py) open and verify here. The JS tests read the same file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vouchsafe_core::jwe::gcmkw_unwrap;
use vouchsafe_core::p256::SecretKey;
use vouchsafe_core::{Error, Jwe, Jwks, VoucherClaims, VoucherValidator, WrappedDek, b64d};

const VECTORS: &str = include_str!("../../../tests/vectors/jwcrypto.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

#[test]
fn jwcrypto_a256gcmkw_opens_through_the_unwrap_path() {
    let v = vectors();
    let kek: [u8; 32] = b64d(v["kek"]["k"].as_str().unwrap(), "k").unwrap().try_into().unwrap();
    let jwe = Jwe::parse(v["jwe_a256gcmkw"].as_str().unwrap()).unwrap();
    assert_eq!(jwe.header().kid(), Some("pii.v3"));
    let ctx = v["ctx"].as_str();
    let out = jwe.clone().open_with_unwrap(ctx, |w: &WrappedDek| gcmkw_unwrap(&kek, w)).unwrap();
    assert_eq!(out, v["plaintext_utf8"].as_str().unwrap().as_bytes());
    assert_eq!(
        jwe.open_with_unwrap(Some("registrant/999/phone"), |w: &WrappedDek| gcmkw_unwrap(&kek, w)).unwrap_err(),
        Error::ContextMismatch
    );
}

#[test]
fn jwcrypto_ecdh_es_a256kw_opens_with_the_private_key() {
    let v = vectors();
    let d = b64d(v["seal_private_jwk"]["d"].as_str().unwrap(), "d").unwrap();
    let sk = SecretKey::from_slice(&d).unwrap();
    let jwe = Jwe::parse(v["jwe_ecdh_es_a256kw"].as_str().unwrap()).unwrap();
    let out = jwe.open_with_agreement(&sk, v["ctx"].as_str()).unwrap();
    assert_eq!(out, v["plaintext_utf8"].as_str().unwrap().as_bytes());
}

#[test]
fn jwcrypto_voucher_verifies_strictly() {
    let v = vectors();
    let jwks = Jwks::from_json(&v["jwks"].to_string()).unwrap();
    let validator = VoucherValidator::new().with_issuer("https://keys.example.org").with_audience("food-2026");
    let now = v["voucher_valid_at"].as_i64().unwrap();
    let claims = validator.validate(v["voucher"].as_str().unwrap(), &jwks, now).unwrap();
    let expected = VoucherClaims::from_payload(v["voucher_claims"].to_string().as_bytes()).unwrap();
    assert_eq!(claims, expected);
    assert_eq!(claims.status.unwrap().idx, 17);
}
