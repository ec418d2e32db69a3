//! Voucher signing and strict verification: every JWT attack class has its test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rng;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vouchsafe_core::jws::{self, PreparedJws};
use vouchsafe_core::p256::ecdsa::SigningKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::{Error, Jwks, KeyUse, PublicJwk, Signer, VoucherClaims, VoucherValidator, b64d, b64e};

const NOW: i64 = 1_790_000_000;
const ISS: &str = "https://keys.example.org";

struct Fixture {
    key: SigningKey,
    jwks: Jwks,
    validator: VoucherValidator,
}

fn fixture() -> Fixture {
    let key = SigningKey::generate_from_rng(&mut rng());
    let jwk = PublicJwk::new((*key.verifying_key()).into()).with_kid("vouchers.v2").with_use(KeyUse::Sig);
    let jwks = Jwks::new(vec![jwk]).unwrap();
    let validator = VoucherValidator::new().with_issuer(ISS).with_audience("food-2026").with_leeway(60).unwrap();
    Fixture { key, jwks, validator }
}

fn claims() -> VoucherClaims {
    VoucherClaims {
        iss: ISS.into(),
        sub: "beneficiary-42".into(),
        aud: "food-2026".into(),
        jti: "01J9Z8-0001".into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 86_400,
        amount: "1500.00".into(),
        currency: "KES".into(),
        status: Some(vouchsafe_core::StatusRef { idx: 17, uri: "https://keys.example.org/v1/status/1".into() }),
        extra: [("household_size".to_string(), json!(5))].into_iter().collect(),
    }
}

/// Signs arbitrary header and payload JSON with ES256, as an attacker holding a key (or a
/// confused issuer) could.
fn es256_token(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let input = format!("{}.{}", b64e(header.to_string().as_bytes()), b64e(payload.to_string().as_bytes()));
    let sig = key.sign_digest(&Sha256::digest(input.as_bytes()).into()).unwrap();
    format!("{input}.{}", b64e(&sig))
}

fn voucher_header() -> Value {
    json!({"alg":"ES256","typ":"voucher+jwt","kid":"vouchers.v2"})
}

fn payload() -> Value {
    serde_json::from_slice(&claims().to_json().unwrap()).unwrap()
}

#[test]
fn signed_voucher_verifies_and_round_trips_claims() {
    let f = fixture();
    let token = claims().sign("vouchers.v2", &f.key).unwrap();
    let header: Value = serde_json::from_slice(&b64d(token.split('.').next().unwrap(), "h").unwrap()).unwrap();
    assert_eq!(header, voucher_header(), "header is alg, typ, kid and nothing else");
    assert_eq!(f.validator.validate(&token, &f.jwks, NOW).unwrap(), claims());
    let p: Value = serde_json::from_slice(&b64d(token.split('.').nth(1).unwrap(), "p").unwrap()).unwrap();
    assert_eq!(p["status"], json!({"status_list":{"idx":17,"uri":"https://keys.example.org/v1/status/1"}}));
    assert_eq!(p["household_size"], 5);
}

#[test]
fn emitted_signatures_are_low_s_and_high_s_still_verifies() {
    let f = fixture();
    let n = hex_be("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let half_n = shr1(&n);
    for _ in 0..32 {
        let token = claims().sign("vouchers.v2", &f.key).unwrap();
        let sig = b64d(token.rsplit('.').next().unwrap(), "s").unwrap();
        assert!(sig[32..] <= half_n[..], "s must be ≤ n/2");
        // Flip to the high-S twin (n - s): still a valid signature per RFC 7518.
        let high = sub(&n, &sig[32..]);
        let mut twin = sig.clone();
        twin[32..].copy_from_slice(&high);
        let (input, _) = token.rsplit_once('.').unwrap();
        let twin_token = format!("{input}.{}", b64e(&twin));
        assert!(f.validator.validate(&twin_token, &f.jwks, NOW).is_ok());
    }
}

#[test]
fn prepared_signing_matches_direct_signing_path() {
    let f = fixture();
    let prepared: PreparedJws = claims().prepare("vouchers.v2").unwrap();
    let sig = f.key.sign_digest(prepared.digest()).unwrap();
    let token = prepared.finish(&sig).unwrap();
    assert!(f.validator.validate(&token, &f.jwks, NOW).is_ok());
    // A zero signature from a broken signer is refused, not emitted.
    let prepared = claims().prepare("vouchers.v2").unwrap();
    assert_eq!(prepared.finish(&[0; 64]).unwrap_err(), Error::BadSignature);
}

#[test]
fn alg_none_and_hs256_key_confusion_are_refused() {
    let f = fixture();
    let body = b64e(payload().to_string().as_bytes());
    let none = format!("{}.{body}.", b64e(br#"{"alg":"none","typ":"voucher+jwt","kid":"vouchers.v2"}"#));
    assert_eq!(f.validator.validate(&none, &f.jwks, NOW).unwrap_err(), Error::UnsupportedAlg);

    // HS256 with the public key (JWK JSON and SEC1 bytes) as the HMAC secret.
    let jwk = &f.jwks.keys()[0];
    for secret in [jwk.to_json().into_bytes(), jwk.to_sec1_uncompressed().to_vec()] {
        let input = format!("{}.{body}", b64e(br#"{"alg":"HS256","typ":"voucher+jwt","kid":"vouchers.v2"}"#));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64e(&mac.finalize().into_bytes()));
        assert_eq!(f.validator.validate(&token, &f.jwks, NOW).unwrap_err(), Error::UnsupportedAlg);
    }
    for alg in ["RS256", "ES384", "ES256K", "EdDSA", "es256", "PS256"] {
        let h = json!({"alg":alg,"typ":"voucher+jwt","kid":"vouchers.v2"});
        assert_eq!(
            f.validator.validate(&es256_token(&f.key, &h, &payload()), &f.jwks, NOW).unwrap_err(),
            Error::UnsupportedAlg,
            "{alg}"
        );
    }
}

#[test]
fn embedded_keys_and_critical_headers_are_refused() {
    let f = fixture();
    let attacker = SigningKey::generate_from_rng(&mut rng());
    let attacker_jwk = serde_json::to_value(PublicJwk::new((*attacker.verifying_key()).into())).unwrap();
    for (name, value) in [
        ("jwk", attacker_jwk),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
        ("crit", json!(["exp"])),
        ("b64", json!(false)),
    ] {
        let mut h = voucher_header();
        h[name] = value;
        // Signed by the attacker's key that the header points to…
        let token = es256_token(&attacker, &h, &payload());
        assert!(
            matches!(f.validator.validate(&token, &f.jwks, NOW).unwrap_err(), Error::UnsupportedHeader(_)),
            "{name}"
        );
        // …and even by the real key: the header member alone is enough to refuse.
        let token = es256_token(&f.key, &h, &payload());
        assert!(
            matches!(f.validator.validate(&token, &f.jwks, NOW).unwrap_err(), Error::UnsupportedHeader(_)),
            "{name}"
        );
    }
    let mut h = voucher_header();
    h["cty"] = "JWT".into();
    assert!(matches!(
        f.validator.validate(&es256_token(&f.key, &h, &payload()), &f.jwks, NOW),
        Err(Error::UnsupportedHeader(_))
    ));
}

#[test]
fn forged_and_tampered_tokens_are_bad_signatures() {
    let f = fixture();
    let token = claims().sign("vouchers.v2", &f.key).unwrap();
    // Re-signed with an unknown key under the real kid.
    let other = SigningKey::generate_from_rng(&mut rng());
    assert_eq!(
        f.validator.validate(&claims().sign("vouchers.v2", &other).unwrap(), &f.jwks, NOW).unwrap_err(),
        Error::BadSignature
    );
    // Tampered claims: a bigger amount, same signature.
    let mut p = payload();
    p["amount"] = "9500.00".into();
    let (h, rest) = token.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let tampered = format!("{h}.{}.{sig}", b64e(p.to_string().as_bytes()));
    assert_eq!(f.validator.validate(&tampered, &f.jwks, NOW).unwrap_err(), Error::BadSignature);
    // r = s = 0, r = 0, s = n, truncated and oversized signatures.
    let input = token.rsplit_once('.').unwrap().0;
    let n = hex_be("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let real = b64d(sig, "s").unwrap();
    let mut r0 = real.clone();
    r0[..32].fill(0);
    let mut s_n = real.clone();
    s_n[32..].copy_from_slice(&n);
    for bad in [vec![0u8; 64], r0, s_n, real[..63].to_vec(), [real.clone(), vec![0]].concat(), vec![]] {
        let t = format!("{input}.{}", b64e(&bad));
        assert_eq!(f.validator.validate(&t, &f.jwks, NOW).unwrap_err(), Error::BadSignature);
    }
    // Every single-character change in the signing input fails.
    for i in (0..input.len()).step_by(7) {
        let mut chars: Vec<char> = token.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let t: String = chars.into_iter().collect();
        assert!(f.validator.validate(&t, &f.jwks, NOW).is_err(), "position {i}");
    }
}

#[test]
fn kid_must_name_a_signing_key_in_the_set() {
    let f = fixture();
    assert_eq!(
        f.validator.validate(&claims().sign("vouchers.v9", &f.key).unwrap(), &f.jwks, NOW).unwrap_err(),
        Error::UnknownKid
    );
    let mut h = voucher_header();
    h.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        f.validator.validate(&es256_token(&f.key, &h, &payload()), &f.jwks, NOW).unwrap_err(),
        Error::UnknownKid
    );
    // The same key published only for encryption cannot verify.
    let enc_only =
        Jwks::new(vec![PublicJwk::new((*f.key.verifying_key()).into()).with_kid("vouchers.v2").with_use(KeyUse::Enc)])
            .unwrap();
    assert_eq!(
        f.validator.validate(&claims().sign("vouchers.v2", &f.key).unwrap(), &enc_only, NOW).unwrap_err(),
        Error::UnknownKid
    );
}

#[test]
fn time_rules_with_leeway() {
    let f = fixture();
    let token = claims().sign("vouchers.v2", &f.key).unwrap();
    let exp = claims().exp;
    assert!(f.validator.validate(&token, &f.jwks, exp + 59).is_ok(), "within leeway");
    assert_eq!(f.validator.validate(&token, &f.jwks, exp + 60).unwrap_err(), Error::Expired);
    let strict = VoucherValidator::new();
    assert_eq!(strict.validate(&token, &f.jwks, exp).unwrap_err(), Error::Expired);
    assert!(strict.validate(&token, &f.jwks, exp - 1).is_ok());

    let mut future = claims();
    future.nbf = NOW + 3600;
    let t = future.sign("vouchers.v2", &f.key).unwrap();
    assert_eq!(f.validator.validate(&t, &f.jwks, NOW).unwrap_err(), Error::NotYetValid);
    assert!(f.validator.validate(&t, &f.jwks, NOW + 3600 - 60).is_ok());
    let mut issued_later = claims();
    issued_later.iat = NOW + 600;
    issued_later.nbf = NOW - 10;
    let t = issued_later.sign("vouchers.v2", &f.key).unwrap();
    assert_eq!(f.validator.validate(&t, &f.jwks, NOW).unwrap_err(), Error::NotYetValid);

    assert!(VoucherValidator::new().with_leeway(600).is_ok());
    assert_eq!(VoucherValidator::new().with_leeway(601).unwrap_err().code(), "invalid_argument");
}

#[test]
fn missing_and_ill_typed_claims() {
    let f = fixture();
    for claim in ["exp", "iss", "sub", "aud", "jti", "iat", "amount", "currency"] {
        let mut p = payload();
        p.as_object_mut().unwrap().remove(claim);
        let err = f.validator.validate(&es256_token(&f.key, &voucher_header(), &p), &f.jwks, NOW).unwrap_err();
        assert_eq!(err, Error::MissingClaim(leak(claim)), "{claim}");
    }
    for (claim, value) in [
        ("exp", json!("tomorrow")),
        ("exp", json!(1.5e300)),
        ("aud", json!(["food-2026"])),
        ("amount", json!(1500)),
        ("amount", json!("-5")),
        ("currency", json!("kes")),
        ("status", json!({"status_list":{"idx":-1}})),
    ] {
        let mut p = payload();
        p[claim] = value;
        let err = f.validator.validate(&es256_token(&f.key, &voucher_header(), &p), &f.jwks, NOW).unwrap_err();
        assert_eq!(err.code(), "invalid_claim", "{claim}");
    }
    // Duplicate claim names.
    let raw = payload().to_string().replacen('{', "{\"amount\":\"1.00\",", 1);
    let input = format!("{}.{}", b64e(voucher_header().to_string().as_bytes()), b64e(raw.as_bytes()));
    let sig = f.key.sign_digest(&Sha256::digest(input.as_bytes()).into()).unwrap();
    let token = format!("{input}.{}", b64e(&sig));
    assert!(matches!(f.validator.validate(&token, &f.jwks, NOW), Err(Error::Malformed(_))));
}

#[test]
fn issuer_audience_and_type_are_checked() {
    let f = fixture();
    let mut other_iss = claims();
    other_iss.iss = "https://evil.example".into();
    assert_eq!(
        f.validator.validate(&other_iss.sign("vouchers.v2", &f.key).unwrap(), &f.jwks, NOW).unwrap_err(),
        Error::WrongIssuer
    );
    let mut other_aud = claims();
    other_aud.aud = "cash-2026".into();
    let t = other_aud.sign("vouchers.v2", &f.key).unwrap();
    assert_eq!(f.validator.validate(&t, &f.jwks, NOW).unwrap_err(), Error::WrongAudience);
    let two = VoucherValidator::new().with_audience("food-2026").with_audience("cash-2026");
    assert!(two.validate(&t, &f.jwks, NOW).is_ok(), "a merchant can accept several programmes");
    assert!(VoucherValidator::new().validate(&t, &f.jwks, NOW).is_ok(), "unconfigured means unchecked");

    for typ in [json!("JWT"), json!("statuslist+jwt"), json!("at+jwt"), json!(1)] {
        let mut h = voucher_header();
        h["typ"] = typ.clone();
        assert_eq!(
            f.validator.validate(&es256_token(&f.key, &h, &payload()), &f.jwks, NOW).unwrap_err(),
            Error::BadType,
            "{typ}"
        );
    }
    let mut h = voucher_header();
    h.as_object_mut().unwrap().remove("typ");
    assert_eq!(f.validator.validate(&es256_token(&f.key, &h, &payload()), &f.jwks, NOW).unwrap_err(), Error::BadType);
    h["typ"] = "application/voucher+jwt".into();
    assert!(f.validator.validate(&es256_token(&f.key, &h, &payload()), &f.jwks, NOW).is_ok());
}

#[test]
fn shape_and_size_limits() {
    let f = fixture();
    let token = claims().sign("vouchers.v2", &f.key).unwrap();
    let big = format!("{token}{}", "A".repeat(jws::MAX_JWS_LEN));
    assert_eq!(f.validator.validate(&big, &f.jwks, NOW).unwrap_err(), Error::TooLarge);
    for bad in ["", "a.b", "a.b.c.d", "a.b.c.d.e", "...", "e30.e30.", "!!.e30.AA"] {
        assert!(matches!(f.validator.validate(bad, &f.jwks, NOW), Err(Error::Malformed(_))), "{bad:?}");
    }
    let mut shadow = claims();
    shadow.extra.insert("exp".into(), json!(9_999_999_999i64));
    assert_eq!(shadow.sign("vouchers.v2", &f.key).unwrap_err(), Error::InvalidClaim("exp"));
    let mut bad_amount = claims();
    bad_amount.amount = "1,500".into();
    assert_eq!(bad_amount.sign("vouchers.v2", &f.key).unwrap_err(), Error::InvalidClaim("amount"));
    let mut backwards = claims();
    backwards.exp = backwards.nbf;
    assert_eq!(backwards.sign("vouchers.v2", &f.key).unwrap_err(), Error::InvalidClaim("exp"));
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn hex_be(s: &str) -> Vec<u8> {
    common::hex(s)
}

fn shr1(v: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; v.len()];
    let mut carry = 0u8;
    for (i, b) in v.iter().enumerate() {
        out[i] = (b >> 1) | (carry << 7);
        carry = b & 1;
    }
    out
}

fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = (d < 0) as i16;
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

#[test]
fn a_signature_checked_elsewhere_gives_the_same_answers() {
    let f = fixture();
    let token = claims().sign("vouchers.v2", &f.key).unwrap();
    let unchecked = jws::UncheckedJws::parse(&token, &f.jwks).unwrap();
    let (h, p) = (token.split('.').next().unwrap(), token.split('.').nth(1).unwrap());
    assert_eq!(unchecked.signing_input(), format!("{h}.{p}").as_bytes());
    assert_eq!(unchecked.signature().len(), 64);
    assert_eq!(unchecked.key(), f.jwks.find("vouchers.v2", KeyUse::Sig).unwrap());
    // The other verifier's verdict decides the signature; every other rule still applies.
    let verified = unchecked.clone().with_signature_checked(true).unwrap();
    assert_eq!(f.validator.check_verified(verified, NOW).unwrap(), claims());
    assert_eq!(unchecked.clone().with_signature_checked(false).unwrap_err(), Error::BadSignature);
    let verified = unchecked.clone().with_signature_checked(true).unwrap();
    assert_eq!(f.validator.check_verified(verified, NOW + 90_000).unwrap_err(), Error::Expired);
    assert_eq!(unchecked.verify().unwrap().kid, "vouchers.v2", "checked here");
    // A truncated signature is refused even if the other verifier says yes.
    let short = format!("{h}.{p}.{}", b64e(&[1u8; 63]));
    let unchecked = jws::UncheckedJws::parse(&short, &f.jwks).unwrap();
    assert_eq!(unchecked.with_signature_checked(true).unwrap_err(), Error::BadSignature);
    // Header rules are parse's: no key by another route, no other algorithm.
    let none = format!("{}.{p}.", b64e(br#"{"alg":"none","typ":"voucher+jwt","kid":"vouchers.v2"}"#));
    assert_eq!(jws::UncheckedJws::parse(&none, &f.jwks).unwrap_err(), Error::UnsupportedAlg);
    let jku = es256_token(&f.key, &json!({"alg":"ES256","kid":"vouchers.v2","jku":"https://x"}), &payload());
    assert!(matches!(jws::UncheckedJws::parse(&jku, &f.jwks).unwrap_err(), Error::UnsupportedHeader(_)));
    let stranger = es256_token(&f.key, &json!({"alg":"ES256","kid":"vouchers.v9"}), &payload());
    assert_eq!(jws::UncheckedJws::parse(&stranger, &f.jwks).unwrap_err(), Error::UnknownKid);
}
