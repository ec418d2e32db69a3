//! The PKCS#11 keystore (cryptoki): keys are token objects, sensitive and never extractable.
//!
//! One session per concurrent operation, pooled; the token is found by label (slot ids change
//! when tokens are re-initialised); a lost session or a removed token makes operations fail with
//! [`KeystoreError::Unavailable`] and the next operation reconnects, so the server recovers when
//! the token is back without a restart.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::SecretString;
use vouchsafe_core::p256::PublicKey;
use vouchsafe_core::{Dek, PublicJwk, SharedSecret, WrappedDek};
use zeroize::Zeroizing;

use crate::{
    Health, KeyHandle, KeyKind, KeyRef, KeyStore, KeystoreError, Pkcs11Config, dek_and_iv, expect_kind, key_use,
    os_random,
};

/// DER of the prime256v1 OID, the `CKA_EC_PARAMS` of a P-256 key.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// What vouchsafe needs from a token, with the names an operator will find in HSM docs.
const REQUIRED_MECHANISMS: [(MechanismType, &str); 5] = [
    (MechanismType::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
    (MechanismType::AES_GCM, "CKM_AES_GCM"),
    (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
    (MechanismType::ECDSA, "CKM_ECDSA"),
    (MechanismType::ECDH1_DERIVE, "CKM_ECDH1_DERIVE"),
];

/// A module is initialised once per process and shared by every keystore that names it:
/// PKCS#11 allows one `C_Initialize` per process, and tests open many keystores.
fn module(path: &Path) -> Result<Pkcs11, KeystoreError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Mutex::default).lock().map_err(|_| internal("module registry"))?;
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| KeystoreError::Config(format!("cannot load PKCS#11 module {}: {e}", path.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(KeystoreError::Config(format!("C_Initialize of {}: {}", path.display(), ck_name(&e)))),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn internal(what: &str) -> KeystoreError {
    KeystoreError::Internal(format!("{what} lock poisoned"))
}

/// `C_Sign: SessionHandleInvalid` rather than the library's paragraph-long descriptions.
fn ck_name(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// Errors that mean "this session (or the token behind it) is gone": reconnect and retry.
fn is_connection_error(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::SlotIdInvalid,
            _
        )
    )
}

/// Whether `s` still has the user logged in. Tokens report some failures of a logged-out session
/// only as `CKR_GENERAL_ERROR`, so ambiguous failures are checked against this.
fn logged_in(s: &Session) -> bool {
    s.get_session_info().is_ok_and(|i| matches!(i.session_state(), SessionState::RwUser | SessionState::RoUser))
}

/// Errors that mean a cached object handle went stale: look the object up again.
fn is_stale_object(e: &CkError) -> bool {
    matches!(e, CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _))
}

enum OpError {
    Ck(CkError),
    Ks(KeystoreError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}
impl From<KeystoreError> for OpError {
    fn from(e: KeystoreError) -> Self {
        OpError::Ks(e)
    }
}

/// A session on loan from the pool. Dropping it gives the session back, or, once marked broken,
/// closes it and resets the pool, so neither a panic nor an early return leaks a slot.
struct Lease<'a> {
    store: &'a Pkcs11KeyStore,
    session: Option<Session>,
    generation: u64,
    slot: Slot,
    broken: bool,
}

impl Lease<'_> {
    #[allow(clippy::expect_used)]
    fn session(&self) -> &Session {
        // Invariant: `session` is Some from checkout until drop; only Drop takes it.
        self.session.as_ref().expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.store.release(session, self.generation, self.broken);
        }
    }
}

struct Pool {
    idle: Vec<Session>,
    open: usize,
    slot: Option<Slot>,
    /// Bumped on every reconnect; sessions and object handles from an older generation are
    /// never reused.
    generation: u64,
    /// Threads waiting for a session. Notifying a condition variable is a system call even when
    /// nobody waits, and would otherwise happen on every operation.
    waiters: usize,
}

/// (CKA_ID, class tag) → (pool generation, handle).
type ObjectCache = HashMap<(Vec<u8>, u8), (u64, ObjectHandle)>;

/// `inline_below_us` by default: SoftHSM2 answers a wrap or a signature in 20–50 µs.
const DEFAULT_INLINE_BELOW_US: u64 = 250;

/// How long an operation waits for a free session before the keystore counts as unavailable.
const SESSION_WAIT: Duration = Duration::from_secs(30);

/// The PKCS#11 keystore.
pub struct Pkcs11KeyStore {
    ctx: Pkcs11,
    module_path: PathBuf,
    token_label: String,
    pin: AuthPin,
    max_sessions: usize,
    inline_below: Option<Duration>,
    pool: Mutex<Pool>,
    freed: Condvar,
    /// Object handles by (CKA_ID, class), tagged with the pool generation they were found in.
    objects: RwLock<ObjectCache>,
    publics: RwLock<HashMap<Vec<u8>, PublicKey>>,
    /// Set once the token refuses the PIN: logging in again and again would lock the user PIN.
    pin_rejected: AtomicBool,
}

impl fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("module", &self.module_path)
            .field("token_label", &self.token_label)
            .field("pin", &"[redacted]")
            .field("max_sessions", &self.max_sessions)
            .field("inline_below", &self.inline_below)
            .finish()
    }
}

impl Pkcs11KeyStore {
    /// Loads the module, finds the token by label, logs in and checks the mechanisms vouchsafe
    /// needs; any failure names what is wrong.
    pub fn open(config: &Pkcs11Config) -> Result<Self, KeystoreError> {
        let pin: SecretString = match (&config.pin_env, &config.pin) {
            (Some(var), _) => std::env::var(var)
                .map(SecretString::from)
                .map_err(|_| KeystoreError::Config(format!("pin_env: environment variable {var} is not set")))?,
            (None, Some(pin)) => pin.clone(),
            (None, None) => return Err(KeystoreError::Config("pkcs11 needs `pin` or `pin_env`".into())),
        };
        let ctx = module(&config.module)?;
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let store = Pkcs11KeyStore {
            ctx,
            module_path: config.module.clone(),
            token_label: config.token_label.clone(),
            pin,
            max_sessions: config.max_sessions.unwrap_or((2 * cpus).max(4)).max(1),
            inline_below: match config.inline_below_us.unwrap_or(DEFAULT_INLINE_BELOW_US) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
            pool: Mutex::new(Pool { idle: Vec::new(), open: 0, slot: None, generation: 0, waiters: 0 }),
            freed: Condvar::new(),
            objects: RwLock::default(),
            publics: RwLock::default(),
            pin_rejected: AtomicBool::new(false),
        };
        let as_config = |e: KeystoreError| match e {
            KeystoreError::Unavailable(m) => KeystoreError::Config(m),
            other => other,
        };
        let slot = store.find_slot().map_err(as_config)?;
        let mechanisms = store
            .ctx
            .get_mechanism_list(slot)
            .map_err(|e| KeystoreError::Config(format!("C_GetMechanismList: {}", ck_name(&e))))?;
        for (mech, name) in REQUIRED_MECHANISMS {
            if !mechanisms.contains(&mech) {
                return Err(KeystoreError::MissingMechanism(name));
            }
        }
        // Log in now so a wrong PIN fails start-up, not the first request.
        drop(store.checkout().map_err(as_config)?);
        tracing::info!(module = %config.module.display(), token = %config.token_label, "PKCS#11 keystore ready (HSM-backed)");
        Ok(store)
    }

    fn lock_pool(&self) -> Result<MutexGuard<'_, Pool>, KeystoreError> {
        self.pool.lock().map_err(|_| internal("session pool"))
    }

    fn find_slot(&self) -> Result<Slot, KeystoreError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| KeystoreError::Unavailable(format!("C_GetSlotList: {}", ck_name(&e))))?;
        for slot in slots {
            if let Ok(info) = self.ctx.get_token_info(slot)
                && info.label().trim_end() == self.token_label
            {
                return Ok(slot);
            }
        }
        Err(KeystoreError::Unavailable(format!("no PKCS#11 token labelled '{}' is present", self.token_label)))
    }

    /// Takes an idle session, or opens and logs in a new one if fewer than `max_sessions` are
    /// open, or waits (at most [`SESSION_WAIT`]) for one to come back.
    fn checkout(&self) -> Result<Lease<'_>, KeystoreError> {
        if self.pin_rejected.load(Ordering::Relaxed) {
            return Err(self.pin_error());
        }
        let deadline = Instant::now() + SESSION_WAIT;
        let mut pool = self.lock_pool()?;
        loop {
            if let Some(session) = pool.idle.pop() {
                let slot = pool.slot.ok_or_else(|| KeystoreError::Internal("idle session without a slot".into()))?;
                return Ok(Lease {
                    store: self,
                    session: Some(session),
                    generation: pool.generation,
                    slot,
                    broken: false,
                });
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                let (slot, generation) = (pool.slot, pool.generation);
                drop(pool);
                let opened = self.open_session(slot);
                let mut pool = self.lock_pool()?;
                return match opened {
                    Ok((session, slot)) => {
                        if pool.generation == generation {
                            pool.slot = Some(slot);
                        }
                        Ok(Lease { store: self, session: Some(session), generation, slot, broken: false })
                    }
                    Err(e) => {
                        pool.open -= 1;
                        if pool.waiters > 0 {
                            self.freed.notify_one();
                        }
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(KeystoreError::Unavailable(format!(
                    "all {} PKCS#11 sessions stayed busy for {} s",
                    self.max_sessions,
                    SESSION_WAIT.as_secs()
                )));
            }
            pool.waiters += 1;
            let waited = self.freed.wait_timeout(pool, deadline - now);
            pool = waited.map_err(|_| internal("session pool"))?.0;
            pool.waiters -= 1;
        }
    }

    fn pin_error(&self) -> KeystoreError {
        KeystoreError::Config(format!(
            "the token '{}' refused the PIN (wrong or locked); fix the configuration and restart — not retrying, so the PIN does not lock",
            self.token_label
        ))
    }

    fn open_session(&self, slot: Option<Slot>) -> Result<(Session, Slot), KeystoreError> {
        let slot = match slot {
            Some(s) => s,
            None => self.find_slot()?,
        };
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| KeystoreError::Unavailable(format!("C_OpenSession: {}", ck_name(&e))))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok((session, slot)),
            Err(CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange | RvError::PinLocked,
                _,
            )) => {
                self.pin_rejected.store(true, Ordering::Relaxed);
                tracing::error!(token = %self.token_label, "the token refused the PIN; no further login attempts");
                Err(self.pin_error())
            }
            Err(e) => Err(KeystoreError::Unavailable(format!("C_Login: {}", ck_name(&e)))),
        }
    }

    /// Returns a session to the pool; a broken one instead resets the pool (every idle session
    /// shares its fate) so the next checkout reconnects from scratch. Sessions are closed after
    /// the lock is released: closing one on a dead device can block.
    fn release(&self, session: Session, generation: u64, broken: bool) {
        let mut to_close = Vec::new();
        {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if generation != pool.generation {
                pool.open = pool.open.saturating_sub(1);
                to_close.push(session);
            } else if broken {
                pool.generation += 1;
                to_close = std::mem::take(&mut pool.idle);
                pool.open = pool.open.saturating_sub(1 + to_close.len());
                pool.slot = None;
                to_close.push(session);
            } else {
                pool.idle.push(session);
            }
            if pool.waiters > 0 {
                self.freed.notify_all();
            }
        }
        if broken {
            self.forget_objects();
        }
        drop(to_close);
    }

    fn forget_objects(&self) {
        self.objects.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Runs `op` on a pooled session. A connection-class failure reconnects and retries; a stale
    /// object handle is looked up again and retried; at most three attempts.
    fn with_session<T>(&self, op: impl Fn(&Session, u64) -> Result<T, OpError>) -> Result<T, KeystoreError> {
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut lease = self.checkout()?;
            match op(lease.session(), lease.generation) {
                Ok(v) => return Ok(v),
                Err(OpError::Ck(e))
                    if is_connection_error(&e)
                        || (matches!(e, CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _))
                            && !logged_in(lease.session())) =>
                {
                    tracing::warn!(error = %ck_name(&e), "PKCS#11 session lost; reconnecting");
                    last = ck_name(&e);
                    lease.broken = true;
                }
                Err(OpError::Ck(e)) if is_stale_object(&e) => {
                    last = ck_name(&e);
                    self.forget_objects();
                }
                // Logged in but an uninformative failure: SoftHSM's file store gives these now
                // and then under concurrent use. Try again; persistent ones end as Unavailable.
                Err(OpError::Ck(e))
                    if matches!(e, CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)) =>
                {
                    last = ck_name(&e);
                }
                Err(OpError::Ck(e)) => return Err(KeystoreError::Internal(ck_name(&e))),
                Err(OpError::Ks(KeystoreError::KeyNotFound)) => {
                    // A missing object may mean the token itself went away or came back in
                    // another slot: ask the slot list before calling the key missing.
                    match self.find_slot() {
                        Ok(slot) if slot == lease.slot => return Err(KeystoreError::KeyNotFound),
                        Ok(_) => {
                            last = "token moved to another slot".into();
                            lease.broken = true;
                        }
                        Err(e) => {
                            lease.broken = true;
                            return Err(e);
                        }
                    }
                }
                Err(OpError::Ks(e)) => return Err(e),
            }
        }
        Err(KeystoreError::Unavailable(last))
    }

    /// AES-GCM wrap of `dek` under the token key `key` with the given fresh IV.
    fn wrap_with_iv(&self, key: KeyRef<'_>, dek: &Dek, iv: [u8; 12]) -> Result<WrappedDek, KeystoreError> {
        expect_kind(&key, KeyKind::Aes256Gcm)?;
        let out = self.with_session(|s, g| {
            let kek = self.object(s, g, &key.handle.0, ObjectClass::SECRET_KEY)?;
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, &[], 128.into())?;
            Ok(s.encrypt(&Mechanism::AesGcm(params), kek, dek.expose_secret())?)
        })?;
        let (ct, tag) =
            out.split_at_checked(32).ok_or_else(|| KeystoreError::Internal("short AES-GCM output".into()))?;
        Ok(WrappedDek {
            kid: key.kid.to_string(),
            iv,
            tag: tag.try_into().map_err(|_| KeystoreError::Internal("AES-GCM tag is not 16 bytes".into()))?,
            encrypted_key: ct.try_into().map_err(|_| KeystoreError::Internal("wrapped DEK is not 32 bytes".into()))?,
        })
    }

    fn object(&self, s: &Session, generation: u64, id: &[u8], class: ObjectClass) -> Result<ObjectHandle, OpError> {
        // Handles this provider makes are 16 random bytes. Anything else names no key of ours,
        // and must never reach C_FindObjects: an empty CKA_ID template can match other objects.
        if id.len() != ID_LEN {
            return Err(KeystoreError::KeyNotFound.into());
        }
        // ObjectClass is not Hash; the three classes used here get a tag each.
        let tag = if class == ObjectClass::SECRET_KEY {
            0
        } else if class == ObjectClass::PRIVATE_KEY {
            1
        } else {
            2
        };
        let key = (id.to_vec(), tag);
        if let Some((g, h)) = self.objects.read().map_err(|_| internal("object cache"))?.get(&key)
            && *g == generation
        {
            return Ok(*h);
        }
        let found = s.find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])?;
        let [h] = found[..] else {
            // Private objects are invisible to a session that lost its login: that is a lost
            // connection to recover from, not a missing key.
            if found.is_empty() && !logged_in(s) {
                return Err(CkError::Pkcs11(RvError::UserNotLoggedIn, Function::FindObjects).into());
            }
            return Err(KeystoreError::KeyNotFound.into());
        };
        self.objects.write().map_err(|_| internal("object cache"))?.insert(key, (generation, h));
        Ok(h)
    }

    fn read_public(&self, s: &Session, generation: u64, id: &[u8]) -> Result<PublicKey, OpError> {
        if let Some(p) = self.publics.read().map_err(|_| internal("public key cache"))?.get(id) {
            return Ok(*p);
        }
        let h = self.object(s, generation, id, ObjectClass::PUBLIC_KEY)?;
        let attrs = s.get_attributes(h, &[AttributeType::EcPoint])?;
        let Some(Attribute::EcPoint(der)) = attrs.into_iter().next() else {
            return Err(KeystoreError::Internal("public key has no CKA_EC_POINT".into()).into());
        };
        // CKA_EC_POINT is a DER OCTET STRING (04 41 ‖ point); some tokens give the raw point.
        let point = match der.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
            raw if raw.len() == 65 => raw,
            _ => return Err(KeystoreError::Internal("unexpected CKA_EC_POINT encoding".into()).into()),
        };
        let public = *PublicJwk::from_sec1(point).map_err(KeystoreError::from)?.public_key();
        self.publics.write().map_err(|_| internal("public key cache"))?.insert(id.to_vec(), public);
        Ok(public)
    }
}

/// Creates the token object(s) of a new key: sensitive, never extractable, labelled with the kid.
fn create_key_objects(s: &Session, kind: KeyKind, label: &[u8], id: &[u8]) -> Result<(), CkError> {
    let common = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    match kind {
        KeyKind::Aes256Gcm => {
            let mut t = common.to_vec();
            t.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ]);
            s.generate_key(&Mechanism::AesKeyGen, &t)?;
        }
        KeyKind::EcdsaP256 | KeyKind::EcdhP256 => {
            let sign = kind == KeyKind::EcdsaP256;
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::EcParams(P256_EC_PARAMS.to_vec()),
                Attribute::Verify(sign),
                Attribute::Label(label.to_vec()),
                Attribute::Id(id.to_vec()),
            ];
            let mut private = common.to_vec();
            private.extend([Attribute::Sign(sign), Attribute::Derive(!sign)]);
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
        }
    }
    Ok(())
}

/// Length of the `CKA_ID` this provider gives each key.
const ID_LEN: usize = 16;

fn new_id() -> Result<Vec<u8>, KeystoreError> {
    let mut id = vec![0u8; ID_LEN];
    os_random(&mut id)?;
    Ok(id)
}

impl KeyStore for Pkcs11KeyStore {
    fn provider(&self) -> &'static str {
        "pkcs11"
    }

    fn hsm_backed(&self) -> bool {
        true
    }

    fn inline_below(&self) -> Option<Duration> {
        self.inline_below
    }

    fn generate(&self, kid: &str, kind: KeyKind) -> Result<KeyHandle, KeystoreError> {
        let label = kid.as_bytes().to_vec();
        // Creating token objects concurrently makes SoftHSM's file store fail now and then with
        // CKR_GENERAL_ERROR; key generation is rare, so it is done one at a time in-process.
        static CREATE: Mutex<()> = Mutex::new(());
        let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.with_session(|s, _| {
            // SoftHSM's file store can also fail a creation that races other sessions reading the
            // token, with the same uninformative code. While still logged in, such a failure is
            // retried, each time with a fresh id: had a failed call in fact created its object,
            // that object keeps its own id and is merely unused.
            let mut attempts = 0;
            loop {
                let id = new_id()?;
                match create_key_objects(s, kind, &label, &id) {
                    Ok(()) => return Ok(id),
                    Err(CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, f))
                        if attempts < 4 && logged_in(s) =>
                    {
                        attempts += 1;
                        tracing::warn!(function = ?f, attempts, "token refused to create a key; retrying");
                        std::thread::sleep(Duration::from_millis(5 * attempts));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })?;
        Ok(KeyHandle(id))
    }

    fn wrap_dek(&self, key: KeyRef<'_>, dek: &Dek) -> Result<WrappedDek, KeystoreError> {
        let mut iv = [0u8; 12];
        os_random(&mut iv)?;
        self.wrap_with_iv(key, dek, iv)
    }

    fn new_dek(&self, key: KeyRef<'_>) -> Result<(Dek, WrappedDek), KeystoreError> {
        let (dek, iv) = dek_and_iv()?;
        let wrapped = self.wrap_with_iv(key, &dek, iv)?;
        Ok((dek, wrapped))
    }

    fn unwrap_dek(&self, key: KeyRef<'_>, wrapped: &WrappedDek) -> Result<Dek, KeystoreError> {
        expect_kind(&key, KeyKind::Aes256Gcm)?;
        let mut input = [0u8; 48];
        input[..32].copy_from_slice(&wrapped.encrypted_key);
        input[32..].copy_from_slice(&wrapped.tag);
        let plain = self.with_session(|s, g| {
            let kek = self.object(s, g, &key.handle.0, ObjectClass::SECRET_KEY)?;
            let mut iv = wrapped.iv;
            let params = GcmParams::new(&mut iv, &[], 128.into())?;
            match s.decrypt(&Mechanism::AesGcm(params), kek, &input) {
                Ok(p) => Ok(Zeroizing::new(p)),
                // Tag mismatch: tokens differ in which code they use for it.
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange | RvError::DataInvalid,
                    _,
                )) => Err(KeystoreError::DecryptFailed.into()),
                // SoftHSM reports a GCM tag mismatch this way, and also an operation attempted
                // after the login was lost; the session state tells the two apart.
                Err(e @ CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)) if logged_in(s) => {
                    let _ = e;
                    Err(KeystoreError::DecryptFailed.into())
                }
                Err(e) => Err(e.into()),
            }
        })?;
        Dek::from_slice(&plain).map_err(|_| KeystoreError::DecryptFailed)
    }

    fn sign_digest(&self, key: KeyRef<'_>, digest: &[u8; 32]) -> Result<[u8; 64], KeystoreError> {
        Ok(self.sign_digests(key, std::slice::from_ref(digest))?[0])
    }

    fn sign_digests(&self, key: KeyRef<'_>, digests: &[[u8; 32]]) -> Result<Vec<[u8; 64]>, KeystoreError> {
        expect_kind(&key, KeyKind::EcdsaP256)?;
        let raw = self.with_session(|s, g| {
            let sk = self.object(s, g, &key.handle.0, ObjectClass::PRIVATE_KEY)?;
            digests.iter().map(|d| Ok(s.sign(&Mechanism::Ecdsa, sk, d)?)).collect::<Result<Vec<Vec<u8>>, OpError>>()
        })?;
        raw.iter()
            .map(|sig| {
                let sig: &[u8; 64] = sig
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeystoreError::Internal("ECDSA signature is not 64 bytes".into()))?;
                Ok(vouchsafe_core::jws::normalize_signature(sig)?)
            })
            .collect()
    }

    fn public_key(&self, key: KeyRef<'_>) -> Result<PublicJwk, KeystoreError> {
        let Some(key_use) = key_use(key.kind) else { return Err(KeystoreError::WrongKeyType) };
        let public = self.with_session(|s, g| self.read_public(s, g, &key.handle.0))?;
        Ok(PublicJwk::new(public).with_kid(key.kid).with_use(key_use))
    }

    fn ecdh(&self, key: KeyRef<'_>, peer: &PublicKey) -> Result<SharedSecret, KeystoreError> {
        expect_kind(&key, KeyKind::EcdhP256)?;
        let point = PublicJwk::new(*peer).to_sec1_uncompressed();
        let z = self.with_session(|s, g| {
            let sk = self.object(s, g, &key.handle.0, ObjectClass::PRIVATE_KEY)?;
            let params = Ecdh1DeriveParams::new(EcKdf::null(), &point);
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(32.into()),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ];
            let derived = s.derive_key(&Mechanism::Ecdh1Derive(params), sk, &template)?;
            let value = s.get_attributes(derived, &[AttributeType::Value]);
            // The derived session object is removed whatever happened to the read.
            let _ = s.destroy_object(derived);
            match value?.into_iter().next() {
                Some(Attribute::Value(z)) => Ok(Zeroizing::new(z)),
                _ => Err(KeystoreError::Internal("derived secret has no CKA_VALUE".into()).into()),
            }
        })?;
        Ok(SharedSecret::from_slice(&z)?)
    }

    fn random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        let len = out.len();
        if len > 1 << 20 {
            return Err(KeystoreError::InvalidInput("at most 1 MiB of random bytes per call"));
        }
        let bytes = self.with_session(|s, _| Ok(Zeroizing::new(s.generate_random_vec(len as u32)?)))?;
        out.copy_from_slice(&bytes);
        Ok(())
    }

    fn health(&self) -> Result<Health, KeystoreError> {
        let slot = self.find_slot()?;
        let info = self
            .ctx
            .get_token_info(slot)
            .map_err(|e| KeystoreError::Unavailable(format!("C_GetTokenInfo: {}", ck_name(&e))))?;
        // A round trip through a logged-in session proves more than the slot list does.
        let mut probe = [0u8; 8];
        self.random(&mut probe)?;
        Ok(Health {
            provider: "pkcs11",
            hsm_backed: true,
            detail: format!(
                "token '{}' ({} {})",
                info.label().trim_end(),
                info.manufacturer_id().trim_end(),
                info.model().trim_end()
            ),
        })
    }
}
