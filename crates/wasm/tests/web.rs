//! The facade as WebAssembly, through `wasm-bindgen-test`: in Node, and in headless Chromium
//! with `WASM_BINDGEN_USE_BROWSER=1` (scripts/test-wasm runs both). Vouchers and status lists
//! are signed here with core's signer; the jwcrypto vectors are the Rust and JS tests' file.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use js_sys::{JSON, Object, Reflect, Uint8Array};
use serde_json::{Value, json};
use vouchsafe_core::p256::ecdsa::SigningKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{KeyUse, PublicJwk, StatusList as CoreStatusList, VoucherClaims, b64e};
use vouchsafe_wasm::{DataKey, StatusList, VoucherVerifier, seal_to_public_key};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

const VECTORS: &str = include_str!("../../../tests/vectors/jwcrypto.json");
const ISS: &str = "https://keys.example.org";

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn js(v: &Value) -> JsValue {
    JSON::parse(&v.to_string()).unwrap()
}

fn opts(v: Value) -> Option<Object> {
    Some(js(&v).into())
}

fn from_js(v: &JsValue) -> Value {
    serde_json::from_str(&JSON::stringify(v).unwrap().as_string().unwrap()).unwrap()
}

/// The `code` of a thrown or rejected error.
fn code(e: JsValue) -> String {
    Reflect::get(&e, &"code".into()).unwrap().as_string().unwrap()
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn data_key() -> DataKey {
    let response = json!({
        "kid": "pii.v1",
        "plaintext": b64e(&[9u8; 32]),
        "header": {"alg": "A256GCMKW", "enc": "A256GCM", "kid": "pii.v1", "iv": "AAAAAAAAAAAAAAAA", "tag": "AAAAAAAAAAAAAAAAAAAAAA"},
        "encrypted_key": b64e(&[0u8; 32]),
    });
    DataKey::from_response(js(&response)).unwrap()
}

#[wasm_bindgen_test]
fn a_data_key_seals_and_opens_text_and_bytes_with_context() {
    let mut dk = data_key();
    assert_eq!(dk.kid().unwrap(), "pii.v1");
    let jwe = dk.seal("0712 345 678".into(), opts(json!({"ctx": "registrant/1/phone"}))).unwrap();
    let out = dk.open(&jwe, opts(json!({"ctx": "registrant/1/phone"}))).unwrap();
    assert_eq!(out.as_string().unwrap(), "0712 345 678");
    assert_eq!(code(dk.open(&jwe, opts(json!({"ctx": "registrant/2/phone"}))).unwrap_err()), "context_mismatch");
    let bytes = dk.seal(Uint8Array::from(&[1u8, 2, 3][..]).into(), None).unwrap();
    assert_eq!(Uint8Array::new(&dk.open(&bytes, None).unwrap()).to_vec(), vec![1, 2, 3]);
    assert_eq!(code(dk.seal(JsValue::from_f64(1.0), None).unwrap_err()), "invalid_argument");
    dk.dispose();
    assert!(dk.disposed());
    assert_eq!(code(dk.open(&jwe, None).unwrap_err()), "disposed");
}

/// What `sealAsync` does in the package's JS, with core's AES-GCM standing in for WebCrypto's.
#[wasm_bindgen_test]
fn a_prepared_seal_finished_elsewhere_gives_what_open_reads() {
    let dk = data_key();
    let raw = dk.raw_key().unwrap().to_vec();
    assert_eq!(raw, [9u8; 32], "the DEK handed to WebCrypto's importKey");
    let mut job = dk.prepare_seal("Amina".into(), opts(json!({"ctx": "registrant/1/name"}))).unwrap();
    let (iv, aad, mut buf) = (job.iv().unwrap().to_vec(), job.aad().unwrap().to_vec(), job.data().to_vec());
    assert_eq!(buf, b"Amina");
    let tag = vouchsafe_core::jwe::gcm_seal(&[9u8; 32], &iv.try_into().unwrap(), &aad, &mut buf);
    assert_eq!(code(job.finish(&buf).unwrap_err()), "key_operation_failed", "no tag");
    buf.extend_from_slice(&tag);
    let jwe = job.finish(&buf).unwrap();
    assert_eq!(code(job.finish(&buf).unwrap_err()), "invalid_argument", "finished once");
    let out = dk.open(&jwe, opts(json!({"ctx": "registrant/1/name"}))).unwrap();
    assert_eq!(out.as_string().unwrap(), "Amina");
    assert_eq!(code(dk.prepare_seal(JsValue::NULL, None).map(|_| ()).unwrap_err()), "invalid_argument");
    let mut dk = dk;
    dk.dispose();
    assert_eq!(code(dk.prepare_seal("x".into(), None).map(|_| ()).unwrap_err()), "disposed");
    assert_eq!(code(dk.raw_key().unwrap_err()), "disposed");
}

/// What `verifyAsync` does in the package's JS: every rule in core, the signature's verdict
/// from elsewhere (here: given).
fn verify_with(verifier: &VoucherVerifier, token: &str, o: Option<Object>, valid: bool) -> Result<JsValue, JsValue> {
    let mut job = verifier.prepare_verify(token, o)?;
    assert_eq!(job.signature().unwrap().length(), 64);
    assert_eq!(job.signing_input().unwrap().to_vec(), token.rsplit_once('.').unwrap().0.as_bytes());
    let jwk: Value = serde_json::from_str(&job.jwk().unwrap()).unwrap();
    assert_eq!(jwk["kid"], job.kid().unwrap());
    let out = job.finish(valid);
    assert_eq!(code(job.finish(valid).unwrap_err()), "invalid_argument", "finished once");
    out
}

#[wasm_bindgen_test]
fn seal_to_public_key_uses_the_newest_enc_version() {
    let v = vectors();
    let jwe = seal_to_public_key(js(&v["jwks"]), "pii-seal", "x".into(), None).unwrap();
    let header: Value =
        serde_json::from_slice(&vouchsafe_core::b64d(jwe.split('.').next().unwrap(), "h").unwrap()).unwrap();
    assert_eq!(header["kid"], "pii-seal.v1");
    assert_eq!(header["alg"], "ECDH-ES+A256KW");
    let err = seal_to_public_key(js(&v["jwks"]), "other", "x".into(), None).unwrap_err();
    assert_eq!(code(err), "unknown_kid");
}

#[wasm_bindgen_test]
fn the_jwcrypto_voucher_verifies_both_ways() {
    let v = vectors();
    let verifier = VoucherVerifier::new(js(&v["jwks"]), opts(json!({"issuer": ISS, "audience": "food-2026"}))).unwrap();
    let at = json!({"now": v["voucher_valid_at"]});
    let token = v["voucher"].as_str().unwrap();
    assert_eq!(from_js(&verifier.verify(token, opts(at.clone())).unwrap()), v["voucher_claims"]);
    let claims = verify_with(&verifier, token, opts(at.clone()), true).unwrap();
    assert_eq!(from_js(&claims), v["voucher_claims"]);
    let expired = json!({"now": v["voucher_claims"]["exp"].as_i64().unwrap() + 1});
    assert_eq!(code(verifier.verify(token, opts(expired.clone())).unwrap_err()), "expired");
    assert_eq!(code(verify_with(&verifier, token, opts(expired), true).unwrap_err()), "expired");
    let mut forged = String::from(token);
    forged.truncate(token.len() - 2);
    forged.push_str(if token.ends_with("AA") { "BA" } else { "AA" });
    assert_eq!(code(verifier.verify(&forged, opts(at.clone())).unwrap_err()), "bad_signature");
    assert_eq!(code(verify_with(&verifier, token, opts(at.clone()), false).unwrap_err()), "bad_signature");
    assert_eq!(code(verifier.prepare_verify("a.b", opts(at)).map(|_| ()).unwrap_err()), "malformed");
}

#[wasm_bindgen_test]
fn a_revoked_voucher_is_refused_with_the_signed_list() {
    let key = SigningKey::generate_from_rng(&mut rng());
    let jwk = PublicJwk::new((*key.verifying_key()).into()).with_kid("vouchers.v1").with_use(KeyUse::Sig);
    let jwks = js(&json!({"keys": [serde_json::from_str::<Value>(&jwk.to_json()).unwrap()]}));
    let now = (js_sys::Date::now() / 1000.0) as i64;
    let uri = format!("{ISS}/v1/status/1");
    let claims = VoucherClaims {
        iss: ISS.into(),
        sub: "hh-1".into(),
        aud: "cash-2026".into(),
        jti: "v-1".into(),
        iat: now,
        nbf: now,
        exp: now + 3600,
        amount: "10.00".into(),
        currency: "KES".into(),
        status: Some(vouchsafe_core::StatusRef { idx: 3, uri: uri.clone() }),
        extra: Default::default(),
    };
    let token = claims.sign("vouchers.v1", &key).unwrap();
    let mut bits = CoreStatusList::new(1, 64).unwrap();
    bits.set(3, 1).unwrap();
    let list_token = bits.sign(&uri, now, Some(now + 600), Some(60), "vouchers.v1", &key).unwrap();
    let list = StatusList::from_token(&list_token, jwks.clone(), opts(json!({"uri": uri}))).unwrap();
    assert_eq!((list.get(3), list.get(2), list.size(), list.ttl()), (Some(1), Some(0), 64, Some(60.0)));
    let verifier = VoucherVerifier::new(jwks, None).unwrap();
    assert_eq!(from_js(&verifier.verify(&token, None).unwrap())["jti"], "v-1");
    let with_list = Object::new();
    Reflect::set(&with_list, &"statusList".into(), &JsValue::from(list)).unwrap();
    assert_eq!(code(verifier.verify(&token, Some(with_list.clone())).unwrap_err()), "revoked");
    assert_eq!(code(verify_with(&verifier, &token, Some(with_list), true).unwrap_err()), "revoked");
}
