//! Behaviour specific to the PKCS#11 provider, on SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use vouchsafe_core::Dek;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_keystore::{KeyKind, KeyRef, KeyStore, KeystoreError, Pkcs11Config, Pkcs11KeyStore};

/// PKCS#11 login state belongs to the whole application (process): a logout in one test, or a
/// wrong-PIN check while another test is logged in, would see each other. One at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// Another handle on the module, as a second application in the process would have.
fn raw() -> (Pkcs11, Slot) {
    let ctx = Pkcs11::new(common::module_path()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label().trim_end() == common::token_label()))
        .unwrap();
    (ctx, slot)
}

fn logged_in(ctx: &Pkcs11, slot: Slot) -> Session {
    let s = ctx.open_ro_session(slot).unwrap();
    match s.login(UserType::User, Some(&common::PIN.to_string().into())) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn keys_are_sensitive_never_extractable_and_labelled_by_kid() {
    let _serial = serial();
    let ks = common::softhsm();
    ks.generate("pii.v7", KeyKind::Aes256Gcm).unwrap();
    ks.generate("vouchers.v7", KeyKind::EcdsaP256).unwrap();
    ks.generate("pii-seal.v7", KeyKind::EcdhP256).unwrap();
    let (ctx, slot) = raw();
    let s = logged_in(&ctx, slot);
    for kid in ["pii.v7", "vouchers.v7", "pii-seal.v7"] {
        let objects = s.find_objects(&[Attribute::Label(kid.as_bytes().to_vec()), Attribute::Private(true)]).unwrap();
        assert_eq!(objects.len(), 1, "{kid}: one private/secret object labelled with the kid");
        let attrs = s
            .get_attributes(
                objects[0],
                &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::Token, AttributeType::Value],
            )
            .unwrap();
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{kid}: {attrs:?}");
        assert!(attrs.contains(&Attribute::Extractable(false)), "{kid}: {attrs:?}");
        assert!(attrs.contains(&Attribute::Token(true)), "{kid}: {attrs:?}");
        // A sensitive attribute is not returned at all (SoftHSM omits it rather than erroring).
        assert!(!attrs.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty())), "{kid}: value readable");
    }
}

#[test]
fn lost_sessions_and_logins_are_recovered_without_restart() {
    let _serial = serial();
    let ks = common::softhsm();
    let h = ks.generate("pii.v1", KeyKind::Aes256Gcm).unwrap();
    let k = KeyRef { kid: "pii.v1", kind: KeyKind::Aes256Gcm, handle: &h };
    let dek = Dek::generate(&mut rng());
    let w = ks.wrap_dek(k, &dek).unwrap();
    let (ctx, slot) = raw();
    for round in 0..3 {
        // The application's login ends under the pooled sessions (what an HSM that restarted or
        // timed out its sessions looks like): they answer CKR_USER_NOT_LOGGED_IN from now on.
        logged_in(&ctx, slot).logout().unwrap();
        assert_eq!(ks.unwrap_dek(k, &w).unwrap(), dek, "round {round}");
        ks.health().unwrap();
    }
}

#[test]
fn start_up_errors_say_what_is_wrong() {
    let _serial = serial();
    common::token_label();
    let base = common::pkcs11_config();
    let msg = |c: Pkcs11Config| Pkcs11KeyStore::open(&c).unwrap_err().to_string();

    let wrong_pin = msg(Pkcs11Config { pin: Some("0000".to_string().into()), ..base.clone() });
    assert!(wrong_pin.contains("PIN") && wrong_pin.contains("wrong"), "{wrong_pin}");
    assert!(!wrong_pin.contains("0000"));

    let no_token = msg(Pkcs11Config { token_label: "no-such-token".into(), ..base.clone() });
    assert!(no_token.contains("no-such-token"), "{no_token}");

    let no_module = msg(Pkcs11Config { module: "/nonexistent/libpkcs11.so".into(), ..base.clone() });
    assert!(no_module.contains("/nonexistent/libpkcs11.so"), "{no_module}");

    let no_pin = msg(Pkcs11Config { pin: None, pin_env: None, ..base.clone() });
    assert!(no_pin.contains("pin_env"), "{no_pin}");
    let unset_env = msg(Pkcs11Config { pin: None, pin_env: Some("VOUCHSAFE_TEST_UNSET_PIN_VAR".into()), ..base });
    assert!(unset_env.contains("VOUCHSAFE_TEST_UNSET_PIN_VAR"), "{unset_env}");
}

#[test]
fn debug_output_never_shows_the_pin() {
    let _serial = serial();
    let ks = Pkcs11KeyStore::open(&common::pkcs11_config()).unwrap();
    let dbg = format!("{ks:?}");
    assert!(dbg.contains("[redacted]") && !dbg.contains(common::PIN), "{dbg}");
    let h = ks.health().unwrap();
    assert!(h.hsm_backed && h.detail.contains(common::token_label()) && h.detail.contains("SoftHSM"), "{h:?}");
}

#[test]
fn a_pool_of_one_session_serves_many_threads() {
    let _serial = serial();
    let ks = std::sync::Arc::new(
        Pkcs11KeyStore::open(&Pkcs11Config { max_sessions: Some(1), ..common::pkcs11_config() }).unwrap(),
    );
    let h = ks.generate("one.v1", KeyKind::EcdsaP256).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (ks, h) = (ks.clone(), h.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    ks.sign_digest(KeyRef { kid: "one.v1", kind: KeyKind::EcdsaP256, handle: &h }, &[3; 32]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let err = ks.sign_digest(KeyRef { kid: "one.v1", kind: KeyKind::Aes256Gcm, handle: &h }, &[3; 32]);
    assert!(matches!(err, Err(KeystoreError::WrongKeyType)));
}
