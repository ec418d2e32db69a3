//! Known-answer tests from the RFCs that define vouchsafe's formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::hex;
use vouchsafe_core::jwe::{kw_unwrap, kw_wrap};
use vouchsafe_core::jws::es256_verify;
use vouchsafe_core::p256::SecretKey;
use vouchsafe_core::{Dek, Error, Jwks, KeyAgreement, PublicJwk, b64d, b64e, concat_kdf_sha256, jws};

/// RFC 7515 Appendix A.3: the ES256 example JWS and its key.
const RFC7515_A3_JWK: &str = r#"{"kty":"EC","crv":"P-256",
 "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
 "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
const RFC7515_A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

#[test]
fn rfc7515_a3_es256_verifies() {
    let jwk = PublicJwk::from_json(RFC7515_A3_JWK).unwrap();
    let (input, sig) = RFC7515_A3_JWS.rsplit_once('.').unwrap();
    es256_verify(jwk.public_key(), input.as_bytes(), &b64d(sig, "sig").unwrap()).unwrap();

    // One flipped bit anywhere fails.
    let mut tampered = input.as_bytes().to_vec();
    tampered[40] ^= 1;
    assert_eq!(es256_verify(jwk.public_key(), &tampered, &b64d(sig, "s").unwrap()), Err(Error::BadSignature));

    // The example has no kid, and vouchsafe chooses keys only by kid: the full verifier refuses it.
    let set = Jwks::new(vec![jwk.with_kid("k")]).unwrap();
    assert_eq!(jws::verify(RFC7515_A3_JWS, &set).unwrap_err(), Error::UnknownKid);
}

#[test]
fn rfc7518_appendix_c_concat_kdf() {
    // Alice is the sender (ephemeral key), Bob the recipient.
    let alice_d = b64d("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo", "d").unwrap();
    let bob = PublicJwk::from_json(
        r#"{"kty":"EC","crv":"P-256","x":"weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ","y":"e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"}"#,
    )
    .unwrap();
    let alice = SecretKey::from_slice(&alice_d).unwrap();
    assert_eq!(
        b64e(&PublicJwk::new(alice.public_key()).coordinates().0),
        "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0"
    );
    let z = alice.agree(None, bob.public_key()).unwrap();
    // The Z the RFC prints, as the ECDH step must produce it.
    let expected_z: [u8; 32] = [
        158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106,
        72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    assert_eq!(z.expose_secret(), &expected_z);
    let key = concat_kdf_sha256(z.expose_secret(), 128, b"A128GCM", b"Alice", b"Bob");
    assert_eq!(b64e(&key), "VqqN6vgjbSBcIijNcacQGg");

    // And the other way round: Bob's private key with Alice's public key gives the same Z.
    let bob_d = b64d("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw", "d").unwrap();
    let z2 = SecretKey::from_slice(&bob_d).unwrap().agree(None, &alice.public_key()).unwrap();
    assert_eq!(z2.expose_secret(), &expected_z);
}

#[test]
fn rfc3394_4_6_aes_kw_256_bit_data_256_bit_kek() {
    let kek: [u8; 32] = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").try_into().unwrap();
    let data = Dek::from_slice(&hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")).unwrap();
    let expected = hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
    assert_eq!(kw_wrap(&kek, &data).to_vec(), expected);
    assert_eq!(kw_unwrap(&kek, &expected).unwrap(), data);
    let mut bad = expected.clone();
    bad[0] ^= 1;
    assert_eq!(kw_unwrap(&kek, &bad).unwrap_err(), Error::DecryptFailed);
    assert_eq!(kw_unwrap(&kek, &expected[..32]).unwrap_err(), Error::DecryptFailed);
}

#[test]
fn rfc7638_style_thumbprint_matches_an_independent_computation() {
    // SHA-256 of {"crv":"P-256","kty":"EC","x":"f83O…","y":"x_FE…"}, computed with Python's
    // hashlib over the canonical string, so the member order and encoding are pinned.
    let jwk = PublicJwk::from_json(RFC7515_A3_JWK).unwrap();
    assert_eq!(jwk.thumbprint_b64(), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
}
