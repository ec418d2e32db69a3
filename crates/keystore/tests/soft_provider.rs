//! Behaviour specific to the soft keystore: the master key's file and environment sources, and
//! handles bound to their kid and master key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use vouchsafe_core::Dek;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_keystore::{KeyKind, KeyRef, KeyStore, KeystoreConfig, KeystoreError, SoftConfig, SoftKeyStore};

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn file_config(path: &std::path::Path) -> SoftConfig {
    SoftConfig { master_key_file: Some(path.to_path_buf()), master_key_env: None }
}

#[test]
fn master_key_file_is_created_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/master.key");
    let first = SoftKeyStore::open(&file_config(&path)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let h = first.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let k = KeyRef { kid: "pii.v1", kind: KeyKind::Aes256Gcm, handle: &h };
    let dek = Dek::generate(&mut rng());
    let w = first.wrap_dek(k, &dek).unwrap();
    drop(first);
    let second = SoftKeyStore::open(&file_config(&path)).unwrap();
    assert_eq!(second.unwrap_dek(k, &w).unwrap(), dek);
    let health = second.health().unwrap();
    assert!(!health.hsm_backed && health.detail.contains("not HSM-backed"), "{health:?}");
}

#[test]
fn loose_permissions_and_bad_contents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    SoftKeyStore::open(&file_config(&path)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SoftKeyStore::open(&file_config(&path)).unwrap_err();
    assert!(matches!(err, KeystoreError::Config(ref m) if m.contains("chmod 600")), "{err}");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, "too-short").unwrap();
    let err = SoftKeyStore::open(&file_config(&path)).unwrap_err();
    assert!(err.to_string().contains("32 bytes"), "{err}");
    assert!(!err.to_string().contains("too-short"), "contents never echoed");
}

#[test]
fn master_key_from_an_environment_variable() {
    // Only a name that no other test uses; reading the environment needs no unsafe code.
    let missing = SoftKeyStore::open(&SoftConfig {
        master_key_file: None,
        master_key_env: Some("VOUCHSAFE_TEST_NO_SUCH_MASTER".into()),
    })
    .unwrap_err();
    assert!(missing.to_string().contains("VOUCHSAFE_TEST_NO_SUCH_MASTER"), "{missing}");
    // `PATH` is set everywhere and is not a 32-byte base64url value.
    let bad =
        SoftKeyStore::open(&SoftConfig { master_key_file: None, master_key_env: Some("PATH".into()) }).unwrap_err();
    assert!(bad.to_string().contains("32 bytes") && !bad.to_string().contains("/usr"), "{bad}");
}

#[test]
fn handles_are_bound_to_their_kid_and_master_key() {
    let a = SoftKeyStore::from_master_key([1; 32], "a");
    let b = SoftKeyStore::from_master_key([2; 32], "b");
    let h = a.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let dek = Dek::generate(&mut rng());
    let other_kid = a.wrap_dek(KeyRef { kid: "pii.v2", kind: KeyKind::Aes256Gcm, handle: &h }, &dek);
    assert!(matches!(other_kid, Err(KeystoreError::KeyNotFound)));
    let other_master = b.wrap_dek(KeyRef { kid: "pii.v1", kind: KeyKind::Aes256Gcm, handle: &h }, &dek);
    assert!(matches!(other_master, Err(KeystoreError::KeyNotFound)));
    let mut flipped = h.clone();
    flipped.0[20] ^= 1;
    let tampered = a.wrap_dek(KeyRef { kid: "pii.v1", kind: KeyKind::Aes256Gcm, handle: &flipped }, &dek);
    assert!(matches!(tampered, Err(KeystoreError::KeyNotFound)));
    // The kind is sealed inside the handle too.
    let wrong_kind = a.sign_digest(KeyRef { kid: "pii.v1", kind: KeyKind::EcdsaP256, handle: &h }, &[0; 32]);
    assert!(matches!(wrong_kind, Err(KeystoreError::WrongKeyType)));
    assert!(!format!("{a:?}").contains("1, 1, 1"), "master key never in Debug");
    assert!(!format!("{h:?}").contains(&format!("{:?}", &h.0[..4])), "handle bytes not in Debug");
}

#[test]
fn config_chooses_the_provider_by_name_and_rejects_unknown_keys() {
    let soft: KeystoreConfig = serde_json::from_str(r#"{"provider":"soft","master_key_file":"/tmp/x"}"#).unwrap();
    assert!(matches!(soft, KeystoreConfig::Soft(_)));
    let hsm: KeystoreConfig = serde_json::from_str(
        r#"{"provider":"pkcs11","module":"/usr/lib/softhsm/libsofthsm2.so","token_label":"vouchsafe","pin_env":"HSM_PIN"}"#,
    )
    .unwrap();
    assert!(matches!(hsm, KeystoreConfig::Pkcs11(ref c) if c.token_label == "vouchsafe"));
    assert!(serde_json::from_str::<KeystoreConfig>(r#"{"provider":"soft","master_key_fle":"/tmp/x"}"#).is_err());
    assert!(serde_json::from_str::<KeystoreConfig>(r#"{"provider":"vault"}"#).is_err());
    assert!(serde_json::from_str::<KeystoreConfig>(r#"{"provider":"pkcs11","token_label":"x"}"#).is_err());
    let dir = tempfile::tempdir().unwrap();
    let cfg = KeystoreConfig::Soft(file_config(&dir.path().join("m.key")));
    let ks = vouchsafe_keystore::open(&cfg).unwrap();
    assert_eq!(ks.provider(), "soft");
}
