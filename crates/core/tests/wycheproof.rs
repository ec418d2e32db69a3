//! Wycheproof vectors run through vouchsafe-core's own entry points: the AES-256-GCM used for
//! content and key wrapping, the ES256 verifier, P-256 point parsing + key agreement, and AES-KW.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vouchsafe_core::jwe::{gcm_open, gcm_seal, kw_unwrap, kw_wrap};
use vouchsafe_core::jws::es256_verify;
use vouchsafe_core::p256::SecretKey;
use vouchsafe_core::{Dek, KeyAgreement, PublicJwk};
use wycheproof::TestResult;

/// One line per vector file, as RustCrypto's `new_test!` macros do.
macro_rules! wycheproof_test {
    ($name:ident, $module:ident, $set:ident, $check:ident, min = $min:expr) => {
        #[test]
        fn $name() {
            let set = wycheproof::$module::TestSet::load(wycheproof::$module::TestName::$set).unwrap();
            let (mut ran, mut failures) = (0usize, Vec::new());
            for group in &set.test_groups {
                for t in &group.tests {
                    if let Some(ok) = $check(group, t) {
                        ran += 1;
                        let expected = match t.result {
                            TestResult::Valid => true,
                            TestResult::Invalid => false,
                            // "Acceptable" vectors may go either way by policy.
                            _ => continue,
                        };
                        if ok != expected {
                            failures.push((t.tc_id, t.comment.clone()));
                        }
                    }
                }
            }
            assert!(ran >= $min, "only {ran} vectors applied");
            assert!(failures.is_empty(), "{} of {ran} failed: {failures:?}", failures.len());
        }
    };
}

/// AES-256-GCM with a 96-bit IV and 128-bit tag, the only shape vouchsafe uses; other shapes are
/// skipped because the API cannot express them.
fn aes_gcm(g: &wycheproof::aead::TestGroup, t: &wycheproof::aead::Test) -> Option<bool> {
    if g.key_size != 256 || g.nonce_size != 96 || g.tag_size != 128 {
        return None;
    }
    let key: [u8; 32] = t.key[..].try_into().ok()?;
    let iv: [u8; 12] = t.nonce[..].try_into().ok()?;
    let tag: [u8; 16] = t.tag[..].try_into().ok()?;
    let mut buf = t.pt.to_vec();
    let sealed_tag = gcm_seal(&key, &iv, &t.aad, &mut buf);
    let seal_ok = buf[..] == t.ct[..] && sealed_tag == tag;
    let mut buf = t.ct.to_vec();
    let open_ok = gcm_open(&key, &iv, &t.aad, &mut buf, &tag).is_ok() && buf[..] == t.pt[..];
    Some(if t.result == TestResult::Valid { seal_ok && open_ok } else { open_ok })
}

fn ecdsa_p1363(g: &wycheproof::ecdsa::TestGroup, t: &wycheproof::ecdsa::Test) -> Option<bool> {
    let Ok(key) = PublicJwk::from_sec1(&g.key.key) else {
        return Some(false);
    };
    Some(es256_verify(key.public_key(), &t.msg, &t.sig).is_ok())
}

/// The `ecpoint` file gives the peer's key as a raw SEC1 point: exactly what an `epk` becomes.
fn ecdh_point(_g: &wycheproof::ecdh::TestGroup, t: &wycheproof::ecdh::Test) -> Option<bool> {
    let Ok(peer) = PublicJwk::from_sec1(&t.public_key) else {
        return Some(false);
    };
    // Private keys are big-endian integers, sometimes with a leading zero byte.
    let d = &t.private_key[t.private_key.len().saturating_sub(32)..];
    let mine = SecretKey::from_slice(d).ok()?;
    let z = mine.agree(None, peer.public_key()).ok()?;
    Some(z.expose_secret()[..] == t.shared_secret[..])
}

fn aes_kw(g: &wycheproof::keywrap::TestGroup, t: &wycheproof::keywrap::Test) -> Option<bool> {
    if g.key_size != 256 || t.pt.len() != 32 && t.ct.len() != 40 {
        return None;
    }
    let kek: [u8; 32] = t.key[..].try_into().ok()?;
    let opened = kw_unwrap(&kek, &t.ct);
    let ok = match (&opened, Dek::from_slice(&t.pt)) {
        (Ok(dek), Ok(pt)) => *dek == pt && kw_wrap(&kek, &pt)[..] == t.ct[..],
        _ => false,
    };
    Some(ok)
}

wycheproof_test!(aes_256_gcm, aead, AesGcm, aes_gcm, min = 50);
wycheproof_test!(ecdsa_p256_sha256_p1363, ecdsa, EcdsaSecp256r1Sha256P1363, ecdsa_p1363, min = 250);
wycheproof_test!(ecdh_p256_ecpoint, ecdh, EcdhSecp256r1Ecpoint, ecdh_point, min = 100);
wycheproof_test!(aes_kw_256, keywrap, AesKeyWrap, aes_kw, min = 16);
