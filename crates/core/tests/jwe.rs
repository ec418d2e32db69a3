//! JWE round trips in both modes and a negative test for every rule of CONTRACT §1.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rng;
use serde_json::{Value, json};
use vouchsafe_core::jwe::{MAX_PLAINTEXT, gcmkw_unwrap, gcmkw_wrap};
use vouchsafe_core::p256::SecretKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::{DataKey, Dek, Error, Jwe, Jwks, KeyUse, PublicJwk, WrappedDek, b64d, b64e, seal_to_public_key};

const KEK: [u8; 32] = [7u8; 32];

fn data_key() -> DataKey {
    let dek = Dek::generate(&mut rng());
    let wrapped = gcmkw_wrap(&KEK, "pii.v3", [1u8; 12], &dek);
    DataKey::new(dek, wrapped)
}

fn seal_key() -> (SecretKey, PublicJwk) {
    let sk = SecretKey::generate_from_rng(&mut rng());
    let jwk = PublicJwk::new(sk.public_key()).with_kid("pii-seal.v1").with_use(KeyUse::Enc);
    (sk, jwk)
}

fn parts(jwe: &str) -> Vec<String> {
    jwe.split('.').map(String::from).collect()
}

fn header_of(jwe: &str) -> serde_json::Map<String, Value> {
    serde_json::from_slice(&b64d(&parts(jwe)[0], "h").unwrap()).unwrap()
}

/// Replaces the protected header (which also breaks the AAD, as an attacker's edit would).
fn with_header(jwe: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut h = header_of(jwe);
    edit(&mut h);
    let mut p = parts(jwe);
    p[0] = b64e(serde_json::to_string(&h).unwrap().as_bytes());
    p.join(".")
}

#[test]
fn online_mode_round_trip_with_and_without_context() {
    let dk = data_key();
    let jwe = dk.seal(b"0712 345 678", Some("registrant/123/phone"), &mut rng()).unwrap();
    let h = header_of(&jwe);
    assert_eq!(h["alg"], "A256GCMKW");
    assert_eq!(h["enc"], "A256GCM");
    assert_eq!(h["kid"], "pii.v3");
    assert_eq!(h["ctx"], "registrant/123/phone");
    assert_eq!(parts(&jwe).len(), 5);
    assert_eq!(dk.open(&jwe, Some("registrant/123/phone")).unwrap(), b"0712 345 678");
    assert_eq!(dk.open(&jwe, None).unwrap(), b"0712 345 678", "no expectation, no check");

    // Through the unwrap callback, as the key server does with the KEK in a keystore.
    let parsed = Jwe::parse(&jwe).unwrap();
    let out = parsed.open_with_unwrap(Some("registrant/123/phone"), |w: &WrappedDek| gcmkw_unwrap(&KEK, w)).unwrap();
    assert_eq!(out, b"0712 345 678");

    let plain = dk.seal(b"", None, &mut rng()).unwrap();
    assert_eq!(dk.open(&plain, None).unwrap(), b"");
    assert!(!header_of(&plain).contains_key("ctx"));
}

#[test]
fn each_seal_uses_a_fresh_iv() {
    let dk = data_key();
    let a = dk.seal(b"same", None, &mut rng()).unwrap();
    let b = dk.seal(b"same", None, &mut rng()).unwrap();
    assert_ne!(parts(&a)[2], parts(&b)[2]);
    assert_ne!(a, b);
}

#[test]
fn offline_mode_round_trip() {
    let (sk, jwk) = seal_key();
    let jwe = seal_to_public_key(&jwk, b"{\"name\":\"Amina\"}", Some("registrant/9"), &mut rng()).unwrap();
    let h = header_of(&jwe);
    assert_eq!(h["alg"], "ECDH-ES+A256KW");
    assert_eq!(h["kid"], "pii-seal.v1");
    assert_eq!(h["epk"]["crv"], "P-256");
    assert!(h["epk"].get("d").is_none());
    assert_eq!(b64d(&parts(&jwe)[1], "ek").unwrap().len(), 40);
    let out = Jwe::parse(&jwe).unwrap().open_with_agreement(&sk, Some("registrant/9")).unwrap();
    assert_eq!(out, b"{\"name\":\"Amina\"}");
}

#[test]
fn one_mebibyte_is_the_limit_both_ways() {
    let dk = data_key();
    let big = vec![0x5a; MAX_PLAINTEXT];
    let jwe = dk.seal(&big, None, &mut rng()).unwrap();
    assert_eq!(dk.open(&jwe, None).unwrap().len(), MAX_PLAINTEXT);
    assert_eq!(dk.seal(&vec![0; MAX_PLAINTEXT + 1], None, &mut rng()).unwrap_err(), Error::TooLarge);

    // A ciphertext one byte over, and a compact string far over, are refused before decrypting.
    let mut p = parts(&jwe);
    p[3] = b64e(&vec![0; MAX_PLAINTEXT + 1]);
    assert_eq!(Jwe::parse(&p.join(".")).unwrap_err(), Error::TooLarge);
    let huge = "a".repeat(2 << 20);
    assert_eq!(Jwe::parse(&huge).unwrap_err(), Error::TooLarge);
}

#[test]
fn wrong_context_is_refused_and_cannot_be_edited_in() {
    let dk = data_key();
    let jwe = dk.seal(b"x", Some("registrant/123/phone"), &mut rng()).unwrap();
    assert_eq!(dk.open(&jwe, Some("registrant/124/phone")).unwrap_err(), Error::ContextMismatch);
    let no_ctx = dk.seal(b"x", None, &mut rng()).unwrap();
    assert_eq!(dk.open(&no_ctx, Some("registrant/123/phone")).unwrap_err(), Error::ContextMismatch);
    // Moving a sealed value to another record by rewriting ctx breaks the AAD.
    let moved = with_header(&jwe, |h| {
        h.insert("ctx".into(), "registrant/124/phone".into());
    });
    assert_eq!(dk.open(&moved, Some("registrant/124/phone")).unwrap_err(), Error::DecryptFailed);
    let long = "c".repeat(1025);
    assert!(matches!(dk.seal(b"x", Some(&long), &mut rng()), Err(Error::InvalidArgument(_))));
}

#[test]
fn tampering_anywhere_fails_opaquely() {
    let dk = data_key();
    let (sk, jwk) = seal_key();
    for jwe in [
        dk.seal(b"secret value", None, &mut rng()).unwrap(),
        seal_to_public_key(&jwk, b"secret value", None, &mut rng()).unwrap(),
    ] {
        let open = |s: &str| match Jwe::parse(s) {
            Ok(j) if j.header().alg() == "A256GCMKW" => j.open_with_dek(dk.dek(), None),
            Ok(j) => j.open_with_agreement(&sk, None),
            Err(e) => Err(e),
        };
        assert!(open(&jwe).is_ok());
        for part in 1..5 {
            let mut p = parts(&jwe);
            let mut bytes = b64d(&p[part], "p").unwrap();
            if bytes.is_empty() {
                continue;
            }
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
            p[part] = b64e(&bytes);
            let tampered = p.join(".");
            let online = header_of(&jwe)["alg"] == "A256GCMKW";
            let err = if part == 1 && online {
                // With the DEK in hand the encrypted key is never read; the server's unwrap path
                // is where a tampered wrapped key must fail.
                Jwe::parse(&tampered)
                    .unwrap()
                    .open_with_unwrap(None, |w: &WrappedDek| gcmkw_unwrap(&KEK, w))
                    .unwrap_err()
            } else {
                open(&tampered).unwrap_err()
            };
            assert_eq!(err, Error::DecryptFailed, "part {part}");
        }
        // Header edits (an added harmless member) break the AAD.
        let edited = with_header(&jwe, |h| {
            h.insert("x-note".into(), "hi".into());
        });
        assert_eq!(open(&edited).unwrap_err(), Error::DecryptFailed);
        // Truncation at every part boundary.
        let p = parts(&jwe);
        for n in 1..5 {
            assert!(matches!(open(&p[..n].join(".")), Err(Error::Malformed(_))), "{n} parts");
        }
        assert!(matches!(open(&format!("{jwe}.AA")), Err(Error::Malformed(_))));
        assert!(matches!(open(&jwe[..jwe.len() - 3]), Err(Error::Malformed(_)) | Err(Error::DecryptFailed)));
    }
}

#[test]
fn wrong_keys_fail_opaquely() {
    let dk = data_key();
    let jwe = dk.seal(b"x", None, &mut rng()).unwrap();
    assert_eq!(
        Jwe::parse(&jwe).unwrap().open_with_dek(&Dek::from_array([9; 32]), None).unwrap_err(),
        Error::DecryptFailed
    );
    let e = Jwe::parse(&jwe).unwrap().open_with_unwrap(None, |w: &WrappedDek| gcmkw_unwrap(&[8u8; 32], w)).unwrap_err();
    assert_eq!(e, Error::DecryptFailed);

    let (_, jwk) = seal_key();
    let (other, _) = seal_key();
    let sealed = seal_to_public_key(&jwk, b"x", None, &mut rng()).unwrap();
    assert_eq!(Jwe::parse(&sealed).unwrap().open_with_agreement(&other, None).unwrap_err(), Error::DecryptFailed);
    // Each mode refuses the other's opener with a clear argument error.
    assert!(matches!(
        Jwe::parse(&sealed).unwrap().open_with_unwrap(None, |w: &WrappedDek| gcmkw_unwrap(&KEK, w)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(Jwe::parse(&jwe).unwrap().open_with_agreement(&other, None), Err(Error::InvalidArgument(_))));
}

#[test]
fn refused_headers_have_distinct_codes() {
    let dk = data_key();
    let jwe = dk.seal(b"x", None, &mut rng()).unwrap();
    let code = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let edited = with_header(&jwe, |h| edit(h));
        Jwe::parse(&edited).unwrap_err()
    };
    for alg in [
        "none",
        "dir",
        "RSA1_5",
        "RSA-OAEP",
        "A128KW",
        "A256KW",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "PBES2-HS256+A128KW",
        "a256gcmkw",
    ] {
        assert_eq!(
            code(&|h| {
                h.insert("alg".into(), alg.into());
            }),
            Error::UnsupportedAlg,
            "{alg}"
        );
    }
    for enc in ["A128GCM", "A256CBC-HS512", "A128CBC-HS256", ""] {
        assert_eq!(
            code(&|h| {
                h.insert("enc".into(), enc.into());
            }),
            Error::UnsupportedAlg,
            "{enc}"
        );
    }
    assert!(matches!(
        code(&|h| {
            h.remove("alg");
        }),
        Error::Malformed("alg")
    ));
    assert!(matches!(
        code(&|h| {
            h.insert("alg".into(), json!(1));
        }),
        Error::Malformed("alg")
    ));
    for (name, value) in [
        ("zip", json!("DEF")),
        ("crit", json!(["exp"])),
        ("jku", json!("https://attacker.example/jwks")),
        ("x5u", json!("https://attacker.example/cert")),
        ("jwk", json!({"kty":"oct","k":"AAAA"})),
        ("x5c", json!(["MIIB"])),
    ] {
        let err = code(&|h| {
            h.insert(name.into(), value.clone());
        });
        assert_eq!(
            err,
            Error::UnsupportedHeader(match name {
                "zip" => "zip",
                "crit" => "crit",
                "jku" => "jku",
                "x5u" => "x5u",
                "jwk" => "jwk",
                _ => "x5c",
            })
        );
        assert_eq!(err.code(), "unsupported_header");
    }
    assert!(matches!(
        code(&|h| {
            h.insert("iv".into(), "AAAA".into());
        }),
        Error::Malformed("iv")
    ));
    assert!(matches!(
        code(&|h| {
            h.insert("ctx".into(), json!(5));
        }),
        Error::Malformed("ctx")
    ));

    // Duplicate member names (parser-differential attack).
    let mut p = parts(&jwe);
    let raw = String::from_utf8(b64d(&p[0], "h").unwrap()).unwrap();
    p[0] = b64e(raw.replacen('{', "{\"alg\":\"dir\",", 1).as_bytes());
    assert!(matches!(Jwe::parse(&p.join(".")), Err(Error::Malformed("header"))));
}

#[test]
fn hostile_epk_is_refused() {
    let (_, jwk) = seal_key();
    let sealed = seal_to_public_key(&jwk, b"x", None, &mut rng()).unwrap();
    let epk_case = |epk: Value| {
        let edited = with_header(&sealed, |h| {
            h.insert("epk".into(), epk);
        });
        Jwe::parse(&edited).unwrap_err()
    };
    let good = header_of(&sealed)["epk"].clone();
    // Off-curve: y + 1.
    let mut y = b64d(good["y"].as_str().unwrap(), "y").unwrap();
    y[31] ^= 1;
    let mut off = good.clone();
    off["y"] = b64e(&y).into();
    assert_eq!(epk_case(off).code(), "invalid_key");
    // The identity / all-zero point.
    let zero = json!({"kty":"EC","crv":"P-256","x":b64e(&[0;32]),"y":b64e(&[0;32])});
    assert_eq!(epk_case(zero).code(), "invalid_key");
    // Other curves and key types.
    let mut p384 = good.clone();
    p384["crv"] = "P-384".into();
    assert_eq!(epk_case(p384).code(), "invalid_key");
    assert_eq!(epk_case(json!({"kty":"OKP","crv":"X25519","x":"AAAA"})).code(), "invalid_key");
    // Short coordinates; private material.
    let mut short = good.clone();
    short["x"] = b64e(&[1; 31]).into();
    assert_eq!(epk_case(short).code(), "invalid_key");
    let mut with_d = good.clone();
    with_d["d"] = b64e(&[1; 32]).into();
    assert_eq!(epk_case(with_d).code(), "invalid_key");
    assert_eq!(epk_case(json!("not an object")).code(), "malformed");
    let missing = with_header(&sealed, |h| {
        h.remove("epk");
    });
    assert!(matches!(Jwe::parse(&missing), Err(Error::Malformed("epk"))));
}

#[test]
fn datakey_response_parsing() {
    let dk = data_key();
    let w = dk.wrapped();
    let resp = json!({
        "kid": w.kid, "plaintext": b64e(dk.dek().expose_secret()),
        "header": w.header(), "encrypted_key": w.encrypted_key_b64(),
    });
    let parsed = DataKey::from_response_json(&resp.to_string()).unwrap();
    assert_eq!(parsed.dek(), dk.dek());
    assert_eq!(parsed.wrapped(), dk.wrapped());
    let jwe = parsed.seal(b"v", None, &mut rng()).unwrap();
    assert_eq!(dk.open(&jwe, None).unwrap(), b"v");

    let mut no_plain = resp.clone();
    no_plain.as_object_mut().unwrap().remove("plaintext");
    assert!(matches!(DataKey::from_response_json(&no_plain.to_string()), Err(Error::Malformed("plaintext"))));
    let mut short = resp.clone();
    short["plaintext"] = b64e(&[0; 16]).into();
    assert!(DataKey::from_response_json(&short.to_string()).is_err());
    let mut wrong_alg = resp;
    wrong_alg["header"]["alg"] = "ECDH-ES+A256KW".into();
    assert!(DataKey::from_response_json(&wrong_alg.to_string()).is_err());
}

#[test]
fn key_set_selection_is_by_kid_and_use_only() {
    let (_, enc1) = seal_key();
    let enc2 = PublicJwk::new(SecretKey::generate_from_rng(&mut rng()).public_key())
        .with_kid("pii-seal.v2")
        .with_use(KeyUse::Enc);
    let sig = PublicJwk::new(SecretKey::generate_from_rng(&mut rng()).public_key())
        .with_kid("vouchers.v1")
        .with_use(KeyUse::Sig);
    let set = Jwks::new(vec![enc1.clone(), enc2.clone(), sig.clone()]).unwrap();
    let text = set.to_json();
    let back = Jwks::from_json(&text).unwrap();
    assert_eq!(back, set);
    assert_eq!(back.current("pii-seal", KeyUse::Enc), Some(&enc2));
    assert_eq!(back.current("pii-seal", KeyUse::Sig), None);
    assert_eq!(back.current("pii", KeyUse::Enc), None);
    assert_eq!(back.find("vouchers.v1", KeyUse::Sig), Some(&sig));
    assert_eq!(back.find("vouchers.v1", KeyUse::Enc), None, "a sig key never seals");
    assert_eq!(back.find("pii-seal.v1", KeyUse::Sig), None, "an enc key never verifies");

    // Foreign key types are skipped; private keys and duplicate kids fail the set.
    let mixed = json!({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa1"}, serde_json::to_value(&sig).unwrap()]});
    assert_eq!(Jwks::from_json(&mixed.to_string()).unwrap().keys().len(), 1);
    let mut private = serde_json::to_value(&sig).unwrap();
    private["d"] = b64e(&[1; 32]).into();
    assert_eq!(Jwks::from_json(&json!({"keys":[private]}).to_string()).unwrap_err().code(), "invalid_key");
    assert!(Jwks::new(vec![sig.clone(), sig.clone()]).is_err());
    assert!(Jwks::from_json("{\"keys\":{}}").is_err());
    assert_eq!(Jwks::from_json(&sig.to_json()).unwrap().keys().len(), 1, "a bare JWK is a set of one");
}

#[test]
fn sealed_text_is_marked_so_openers_can_return_a_string() {
    let secret = SecretKey::from_slice(&[9u8; 32]).unwrap();
    let jwk = PublicJwk::new(secret.public_key()).with_kid("pii-seal.v1");
    let jwe = vouchsafe_core::seal_text_to_public_key(&jwk, "Amina", None, &mut rng()).unwrap();
    let parsed = Jwe::parse(&jwe).unwrap();
    assert_eq!(parsed.header().cty(), Some(vouchsafe_core::jwe::CTY_TEXT));
    assert!(parsed.header().is_text());
    let bytes = seal_to_public_key(&jwk, b"Amina", None, &mut rng()).unwrap();
    assert!(!Jwe::parse(&bytes).unwrap().header().is_text(), "bytes carry no cty");
}

#[test]
fn a_prepared_seal_encrypted_elsewhere_opens_like_a_seal() {
    let dk = data_key();
    let plaintext = "Amina Wanjiru".as_bytes();
    let prepared = dk.prepare_seal(plaintext.len(), Some("registrant/1/name"), true, &mut rng()).unwrap();
    // "Elsewhere": AES-256-GCM with the DEK, the prepared IV and AAD (WebCrypto in the browser).
    let mut buf = plaintext.to_vec();
    let tag = vouchsafe_core::jwe::gcm_seal(dk.dek().expose_secret(), prepared.iv(), prepared.aad(), &mut buf);
    let (aad, iv) = (prepared.aad().to_vec(), *prepared.iv());
    let jwe = prepared.finish(&buf, &tag);
    assert_eq!(header_of(&jwe)["cty"], "text/plain;charset=utf-8");
    assert_eq!(header_of(&jwe)["ctx"], "registrant/1/name");
    assert_eq!(header_of(&jwe)["kid"], "pii.v3");
    assert_eq!(dk.open(&jwe, Some("registrant/1/name")).unwrap(), plaintext);
    assert_eq!(dk.open(&jwe, Some("registrant/2/name")).unwrap_err(), Error::ContextMismatch);
    // A wrong tag from the other implementation is caught when opening.
    let bad = prepared_with_tag(&dk, plaintext, [0u8; 16]);
    assert_eq!(dk.open(&bad, None).unwrap_err(), Error::DecryptFailed);
    // The same limits as seal: size and ctx length.
    assert_eq!(dk.prepare_seal(MAX_PLAINTEXT + 1, None, false, &mut rng()).unwrap_err(), Error::TooLarge);
    assert!(dk.prepare_seal(1, Some(&"x".repeat(1025)), false, &mut rng()).is_err());
    let bytes = dk.prepare_seal(3, None, false, &mut rng()).unwrap();
    assert!(bytes.aad() != aad.as_slice() && *bytes.iv() != iv, "fresh IV, no cty");
}

fn prepared_with_tag(dk: &DataKey, plaintext: &[u8], tag: [u8; 16]) -> String {
    let prepared = dk.prepare_seal(plaintext.len(), None, false, &mut rng()).unwrap();
    let mut buf = plaintext.to_vec();
    let _ = vouchsafe_core::jwe::gcm_seal(dk.dek().expose_secret(), prepared.iv(), prepared.aad(), &mut buf);
    prepared.finish(&buf, &tag)
}
