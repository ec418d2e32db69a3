//! IETF Token Status List: the draft's own examples, round trips at every width, refusal of
//! decompression bombs and bad tokens, and voucher revocation end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::json;
use vouchsafe_core::p256::ecdsa::SigningKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::status::{STATUS_INVALID, STATUS_SUSPENDED};
use vouchsafe_core::{
    Error, Jwks, KeyUse, PublicJwk, StatusList, StatusRef, VerifiedStatusList, VoucherClaims, VoucherValidator, b64e,
};

const URI: &str = "https://keys.example.org/v1/status/1";
const NOW: i64 = 1_790_000_000;

#[test]
fn draft_example_one_bit() {
    // draft-ietf-oauth-status-list, 1-bit example: statuses 1,0,0,1,1,1,0,1, 1,1,0,0,0,1,0,1.
    let list = StatusList::from_claim(&json!({"bits": 1, "lst": "eNrbuRgAAhcBXQ"})).unwrap();
    let expected = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
    assert_eq!(list.len(), 16);
    for (i, s) in expected.iter().enumerate() {
        assert_eq!(list.get(i as u64), Some(*s), "index {i}");
    }
    assert_eq!(list.get(16), None);
}

#[test]
fn draft_example_two_bits() {
    // The 2-bit example: statuses 1,2,0,3,0,1,0,1,1,2,3,3.
    let list = StatusList::from_claim(&json!({"bits": 2, "lst": "eNo76fITAAPfAgc"})).unwrap();
    let expected = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
    for (i, s) in expected.iter().enumerate() {
        assert_eq!(list.get(i as u64), Some(*s), "index {i}");
    }
    // Our encoder reproduces lists that decode to the same statuses.
    let mut ours = StatusList::new(2, 12).unwrap();
    for (i, s) in expected.iter().enumerate() {
        ours.set(i as u64, *s).unwrap();
    }
    assert_eq!(StatusList::from_claim(&ours.to_claim()).unwrap(), list);
}

#[test]
fn every_width_round_trips_and_rejects_what_does_not_fit() {
    for bits in [1u8, 2, 4, 8] {
        let mut l = StatusList::new(bits, 1000).unwrap();
        let max = ((1u16 << bits) - 1) as u8;
        for i in (0..1000u64).step_by(7) {
            l.set(i, (i as u8) & max).unwrap();
        }
        let back = StatusList::from_claim(&l.to_claim()).unwrap();
        for i in 0..1000u64 {
            let want = if i % 7 == 0 { (i as u8) & max } else { 0 };
            assert_eq!(back.get(i), Some(want), "bits {bits} index {i}");
        }
        if bits < 8 {
            assert!(matches!(l.set(0, max + 1), Err(Error::InvalidArgument(_))));
        }
        assert!(matches!(l.set(l.len() as u64, 0), Err(Error::InvalidArgument(_))));
        assert!(l.set(u64::MAX, 0).is_err());
    }
    for bits in [0u8, 3, 5, 16] {
        assert!(StatusList::new(bits, 8).is_err());
        assert!(StatusList::from_claim(&json!({"bits": bits, "lst": "eNrbuRgAAhcBXQ"})).is_err());
    }
    // 100 000 vouchers in 1 bit each compress to almost nothing while all are valid.
    let big = StatusList::new(1, 100_000).unwrap();
    assert!(big.to_claim()["lst"].as_str().unwrap().len() < 200);
}

#[test]
fn decompression_bombs_and_garbage_are_refused() {
    let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 32 << 20], 9);
    assert!(bomb.len() < 100_000, "a small input…");
    let err = StatusList::from_claim(&json!({"bits": 1, "lst": b64e(&bomb)})).unwrap_err();
    assert_eq!(err, Error::TooLarge, "…that would inflate past 16 MiB");
    for lst in ["", "AAAA", "not base64!", "eNrbuRgAAhcBXX"] {
        assert!(StatusList::from_claim(&json!({"bits": 1, "lst": lst})).is_err(), "{lst:?}");
    }
    assert!(StatusList::from_claim(&json!({"bits": "1", "lst": "eNrbuRgAAhcBXQ"})).is_err());
}

fn keys() -> (SigningKey, Jwks) {
    let key = SigningKey::generate_from_rng(&mut common::rng());
    let jwks =
        Jwks::new(vec![PublicJwk::new((*key.verifying_key()).into()).with_kid("vouchers.v1").with_use(KeyUse::Sig)])
            .unwrap();
    (key, jwks)
}

#[test]
fn status_list_tokens_verify_strictly() {
    let (key, jwks) = keys();
    let mut list = StatusList::new(1, 64).unwrap();
    list.set(5, STATUS_INVALID).unwrap();
    let token = list.sign(URI, NOW, Some(NOW + 86_400), Some(3600), "vouchers.v1", &key).unwrap();
    let v = VerifiedStatusList::from_token(&token, &jwks, Some(URI), NOW).unwrap();
    assert_eq!((v.uri.as_str(), v.iat, v.exp, v.ttl), (URI, NOW, Some(NOW + 86_400), Some(3600)));
    assert_eq!(v.list.get(5), Some(1));
    assert_eq!(
        VerifiedStatusList::from_token(&token, &jwks, Some("https://other/list"), NOW).unwrap_err(),
        Error::InvalidClaim("sub")
    );
    assert_eq!(VerifiedStatusList::from_token(&token, &jwks, None, NOW + 86_400).unwrap_err(), Error::Expired);
    // A voucher is not a status list, even signed by the same key.
    let voucher = voucher(None).sign("vouchers.v1", &key).unwrap();
    assert_eq!(VerifiedStatusList::from_token(&voucher, &jwks, None, NOW).unwrap_err(), Error::BadType);
    // Forged with another key.
    let (other, _) = keys();
    let forged = list.sign(URI, NOW, None, None, "vouchers.v1", &other).unwrap();
    assert_eq!(VerifiedStatusList::from_token(&forged, &jwks, None, NOW).unwrap_err(), Error::BadSignature);
}

fn voucher(status: Option<StatusRef>) -> VoucherClaims {
    VoucherClaims {
        iss: "https://keys.example.org".into(),
        sub: "beneficiary-42".into(),
        aud: "food-2026".into(),
        jti: "v-9".into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 86_400,
        amount: "20.00".into(),
        currency: "KES".into(),
        status,
        extra: Default::default(),
    }
}

#[test]
fn revoked_and_suspended_vouchers_are_refused() {
    let (key, jwks) = keys();
    let token = voucher(Some(StatusRef { idx: 5, uri: URI.into() })).sign("vouchers.v1", &key).unwrap();
    let validator = VoucherValidator::new().with_audience("food-2026");
    let mut list = StatusList::new(2, 64).unwrap();
    let verified = |l: &StatusList| {
        VerifiedStatusList::from_token(
            &l.sign(URI, NOW, None, None, "vouchers.v1", &key).unwrap(),
            &jwks,
            Some(URI),
            NOW,
        )
        .unwrap()
    };
    assert!(validator.validate_with_status(&token, &jwks, NOW, &[verified(&list)]).is_ok());
    list.set(5, STATUS_INVALID).unwrap();
    let err = validator.validate_with_status(&token, &jwks, NOW, &[verified(&list)]).unwrap_err();
    assert_eq!((err, err.code()), (Error::Revoked, "revoked"));
    list.set(5, STATUS_SUSPENDED).unwrap();
    assert_eq!(validator.validate_with_status(&token, &jwks, NOW, &[verified(&list)]).unwrap_err(), Error::Revoked);
    // A list for another URI says nothing about this voucher; an index past the end is invalid.
    let mut elsewhere = verified(&list);
    elsewhere.uri = "https://keys.example.org/v1/status/2".into();
    assert!(validator.validate_with_status(&token, &jwks, NOW, &[elsewhere]).is_ok());
    let short = StatusList::new(1, 0).unwrap();
    let err = validator.validate_with_status(&token, &jwks, NOW, &[verified(&short)]).unwrap_err();
    assert_eq!(err, Error::InvalidClaim("status"));
}
