//! The soft keystore: key material encrypted under a master key (AES-256-GCM, AAD = kid) and
//! stored by the server as the key handle; RustCrypto in process. The embedded default, for
//! development and small deployments — it is not HSM-backed, and says so.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64ct::{Base64UrlUnpadded, Encoding};
use getrandom::SysRng;
use vouchsafe_core::jwe::{gcm_open, gcm_seal, gcmkw_unwrap, gcmkw_wrap};
use vouchsafe_core::p256::ecdsa::SigningKey;
use vouchsafe_core::p256::elliptic_curve::Generate;
use vouchsafe_core::p256::{PublicKey, SecretKey};
use vouchsafe_core::rand_core::TryRng;
use vouchsafe_core::{Dek, KeyAgreement, PublicJwk, SharedSecret, Signer, WrappedDek};
use zeroize::Zeroizing;

use crate::{
    Health, KeyHandle, KeyKind, KeyRef, KeyStore, KeystoreError, SoftConfig, dek_and_iv, expect_kind, key_use,
    os_random,
};

const HANDLE_MAGIC: &[u8; 4] = b"VSK1";
const HANDLE_LEN: usize = 4 + 12 + 1 + 32 + 16;
const DEFAULT_MASTER_KEY_FILE: &str = "data/master.key";

enum SoftKey {
    Aes(Zeroizing<[u8; 32]>),
    Ecdsa(SigningKey),
    Ecdh(SecretKey),
}

/// Decrypted keys by (kid, handle).
type KeyCache = HashMap<(String, Vec<u8>), Arc<SoftKey>>;

/// The soft keystore.
pub struct SoftKeyStore {
    master: Zeroizing<[u8; 32]>,
    source: String,
    // Decrypted keys by (kid, handle): decrypting a handle is cheap, but deriving a P-256 public
    // key for a SigningKey is a scalar multiplication per call without it.
    cache: RwLock<KeyCache>,
}

impl fmt::Debug for SoftKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftKeyStore").field("master", &"[redacted]").field("source", &self.source).finish()
    }
}

impl SoftKeyStore {
    /// A keystore over the given master key (tests, or keys from elsewhere).
    pub fn from_master_key(master: [u8; 32], source: impl Into<String>) -> Self {
        Self::with_master(Zeroizing::new(master), source.into())
    }

    fn with_master(master: Zeroizing<[u8; 32]>, source: String) -> Self {
        SoftKeyStore { master, source, cache: RwLock::default() }
    }

    /// Opens the keystore configured by `config`: the master key from `master_key_env` if set,
    /// else from `master_key_file` (default `./data/master.key`), created with mode 0600 on
    /// first start.
    pub fn open(config: &SoftConfig) -> Result<Self, KeystoreError> {
        if let Some(var) = &config.master_key_env {
            let value = Zeroizing::new(std::env::var(var).map_err(|_| {
                KeystoreError::Config(format!("master_key_env: environment variable {var} is not set"))
            })?);
            let key = decode_master(value.trim())
                .ok_or_else(|| KeystoreError::Config(format!("{var} must hold 32 bytes, base64url")))?;
            return Ok(Self::with_master(key, format!("environment variable {var}")));
        }
        let path = config.master_key_file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_MASTER_KEY_FILE));
        let key = load_or_create_master_file(&path)?;
        Ok(Self::with_master(key, format!("file {}", path.display())))
    }

    fn key(&self, key: &KeyRef<'_>) -> Result<Arc<SoftKey>, KeystoreError> {
        let cache_key = (key.kid.to_string(), key.handle.0.clone());
        if let Some(k) = self.cache.read().map_err(poisoned)?.get(&cache_key) {
            // The kind is sealed in the handle; a cache hit must honour it as a miss would.
            return if k.kind() == key.kind { Ok(k.clone()) } else { Err(KeystoreError::WrongKeyType) };
        }
        let h = &key.handle.0;
        if h.len() != HANDLE_LEN || &h[..4] != HANDLE_MAGIC {
            return Err(KeystoreError::KeyNotFound);
        }
        let iv: [u8; 12] = h[4..16].try_into().map_err(|_| KeystoreError::KeyNotFound)?;
        let tag: [u8; 16] = h[49..65].try_into().map_err(|_| KeystoreError::KeyNotFound)?;
        let mut body = Zeroizing::new([0u8; 33]);
        body.copy_from_slice(&h[16..49]);
        // A handle from another master key or kid fails here: the key does not exist for us.
        gcm_open(&self.master, &iv, key.kid.as_bytes(), &mut body[..], &tag).map_err(|_| KeystoreError::KeyNotFound)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&body[1..]);
        let soft = match (body[0], key.kind) {
            (0, KeyKind::Aes256Gcm) => SoftKey::Aes(secret),
            (1, KeyKind::EcdhP256) => {
                SoftKey::Ecdh(SecretKey::from_slice(&secret[..]).map_err(|_| KeystoreError::KeyNotFound)?)
            }
            (2, KeyKind::EcdsaP256) => {
                SoftKey::Ecdsa(SigningKey::from_slice(&secret[..]).map_err(|_| KeystoreError::KeyNotFound)?)
            }
            _ => return Err(KeystoreError::WrongKeyType),
        };
        let soft = Arc::new(soft);
        self.cache.write().map_err(poisoned)?.insert(cache_key, soft.clone());
        Ok(soft)
    }
}

impl SoftKey {
    fn kind(&self) -> KeyKind {
        match self {
            SoftKey::Aes(_) => KeyKind::Aes256Gcm,
            SoftKey::Ecdh(_) => KeyKind::EcdhP256,
            SoftKey::Ecdsa(_) => KeyKind::EcdsaP256,
        }
    }
}

fn kind_byte(kind: KeyKind) -> u8 {
    match kind {
        KeyKind::Aes256Gcm => 0,
        KeyKind::EcdhP256 => 1,
        KeyKind::EcdsaP256 => 2,
    }
}

fn poisoned<T>(_: T) -> KeystoreError {
    KeystoreError::Internal("soft keystore cache lock poisoned".into())
}

fn no_rng(e: getrandom::Error) -> KeystoreError {
    KeystoreError::Unavailable(format!("OS random number generator: {e}"))
}

fn decode_master(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    let n = Base64UrlUnpadded::decode(text, &mut out[..]).ok()?.len();
    (n == 32).then_some(out)
}

fn load_or_create_master_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let cfg = |what: String| KeystoreError::Config(format!("master key file {}: {what}", path.display()));
    match fs::metadata(path) {
        Ok(_) => {
            // Check the permissions of the file actually opened (fstat), not of the path.
            let mut f = fs::File::open(path).map_err(|e| cfg(e.kind().to_string()))?;
            let meta = f.metadata().map_err(|e| cfg(e.kind().to_string()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(cfg("must not be readable by group or others (chmod 600)".into()));
            }
            let mut text = Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut f, &mut text).map_err(|e| cfg(e.kind().to_string()))?;
            decode_master(text.trim()).ok_or_else(|| cfg("must hold 32 bytes, base64url".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| cfg(format!("cannot create its directory: {e}")))?;
            }
            let mut key = Zeroizing::new([0u8; 32]);
            SysRng.try_fill_bytes(&mut key[..]).map_err(|e| cfg(format!("no randomness: {e}")))?;
            let text = Zeroizing::new(Base64UrlUnpadded::encode_string(&key[..]));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| cfg(format!("cannot create: {e}")))?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.write_all(b"\n"))
                .and_then(|_| f.sync_all())
                .map_err(|e| cfg(format!("cannot write: {e}")))?;
            tracing::warn!(path = %path.display(), "created a new soft-keystore master key; back it up — without it no key can be used");
            Ok(key)
        }
        Err(e) => Err(cfg(e.to_string())),
    }
}

impl KeyStore for SoftKeyStore {
    fn provider(&self) -> &'static str {
        "soft"
    }

    fn hsm_backed(&self) -> bool {
        false
    }

    fn blocking(&self) -> bool {
        // AES-GCM on 32 bytes and in-memory P-256: no I/O, at most a fraction of a millisecond.
        false
    }

    fn generate(&self, kid: &str, kind: KeyKind) -> Result<KeyHandle, KeystoreError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        match kind {
            KeyKind::Aes256Gcm => os_random(&mut secret[..])?,
            KeyKind::EcdhP256 => {
                secret.copy_from_slice(&SecretKey::try_generate_from_rng(&mut SysRng).map_err(no_rng)?.to_bytes())
            }
            KeyKind::EcdsaP256 => {
                secret.copy_from_slice(&SigningKey::try_generate_from_rng(&mut SysRng).map_err(no_rng)?.to_bytes())
            }
        }
        let mut body = Zeroizing::new([0u8; 33]);
        body[0] = kind_byte(kind);
        body[1..].copy_from_slice(&secret[..]);
        let mut iv = [0u8; 12];
        os_random(&mut iv)?;
        let tag = gcm_seal(&self.master, &iv, kid.as_bytes(), &mut body[..]);
        let mut handle = Vec::with_capacity(HANDLE_LEN);
        handle.extend_from_slice(HANDLE_MAGIC);
        handle.extend_from_slice(&iv);
        handle.extend_from_slice(&body[..]);
        handle.extend_from_slice(&tag);
        Ok(KeyHandle(handle))
    }

    fn wrap_dek(&self, key: KeyRef<'_>, dek: &Dek) -> Result<WrappedDek, KeystoreError> {
        expect_kind(&key, KeyKind::Aes256Gcm)?;
        let SoftKey::Aes(kek) = &*self.key(&key)? else { return Err(KeystoreError::WrongKeyType) };
        let mut iv = [0u8; 12];
        os_random(&mut iv)?;
        Ok(gcmkw_wrap(kek, key.kid, iv, dek))
    }

    fn new_dek(&self, key: KeyRef<'_>) -> Result<(Dek, WrappedDek), KeystoreError> {
        expect_kind(&key, KeyKind::Aes256Gcm)?;
        let SoftKey::Aes(kek) = &*self.key(&key)? else { return Err(KeystoreError::WrongKeyType) };
        let (dek, iv) = dek_and_iv()?;
        let wrapped = gcmkw_wrap(kek, key.kid, iv, &dek);
        Ok((dek, wrapped))
    }

    fn unwrap_dek(&self, key: KeyRef<'_>, wrapped: &WrappedDek) -> Result<Dek, KeystoreError> {
        expect_kind(&key, KeyKind::Aes256Gcm)?;
        let SoftKey::Aes(kek) = &*self.key(&key)? else { return Err(KeystoreError::WrongKeyType) };
        Ok(gcmkw_unwrap(kek, wrapped)?)
    }

    fn sign_digest(&self, key: KeyRef<'_>, digest: &[u8; 32]) -> Result<[u8; 64], KeystoreError> {
        expect_kind(&key, KeyKind::EcdsaP256)?;
        let SoftKey::Ecdsa(sk) = &*self.key(&key)? else { return Err(KeystoreError::WrongKeyType) };
        let sig = sk.sign_digest(digest)?;
        Ok(vouchsafe_core::jws::normalize_signature(&sig)?)
    }

    fn public_key(&self, key: KeyRef<'_>) -> Result<PublicJwk, KeystoreError> {
        let public: PublicKey = match &*self.key(&key)? {
            SoftKey::Ecdsa(sk) => (*sk.verifying_key()).into(),
            SoftKey::Ecdh(sk) => sk.public_key(),
            SoftKey::Aes(_) => return Err(KeystoreError::WrongKeyType),
        };
        let jwk = PublicJwk::new(public).with_kid(key.kid);
        Ok(match key_use(key.kind) {
            Some(u) => jwk.with_use(u),
            None => jwk,
        })
    }

    fn ecdh(&self, key: KeyRef<'_>, peer: &PublicKey) -> Result<SharedSecret, KeystoreError> {
        expect_kind(&key, KeyKind::EcdhP256)?;
        let SoftKey::Ecdh(sk) = &*self.key(&key)? else { return Err(KeystoreError::WrongKeyType) };
        Ok(sk.agree(Some(key.kid), peer)?)
    }

    fn random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        os_random(out)
    }

    fn health(&self) -> Result<Health, KeystoreError> {
        Ok(Health {
            provider: "soft",
            hsm_backed: false,
            detail: format!("soft keystore (not HSM-backed), master key from {}", self.source),
        })
    }
}
