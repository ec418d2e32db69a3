#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod error;
mod pkcs11;
mod soft;

use std::fmt;
use std::sync::Arc;

use vouchsafe_core::p256::PublicKey;
use vouchsafe_core::{Dek, PublicJwk, SharedSecret, WrappedDek};

pub use config::{KeystoreConfig, Pkcs11Config, SoftConfig};
pub use error::KeystoreError;
pub use pkcs11::Pkcs11KeyStore;
pub use soft::SoftKeyStore;

/// The three kinds of key the server keeps (ARCHITECTURE.md, key hierarchy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `aes256-gcm`: a KEK that wraps DEKs; never leaves the keystore.
    Aes256Gcm,
    /// `ecdh-p256`: the private half of the key clients seal to offline.
    EcdhP256,
    /// `ecdsa-p256`: the voucher signing key (ES256).
    EcdsaP256,
}

impl KeyKind {
    /// The type name used in the HTTP API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Aes256Gcm => "aes256-gcm",
            KeyKind::EcdhP256 => "ecdh-p256",
            KeyKind::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// Parses the type name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aes256-gcm" => Some(KeyKind::Aes256Gcm),
            "ecdh-p256" => Some(KeyKind::EcdhP256),
            "ecdsa-p256" => Some(KeyKind::EcdsaP256),
            _ => None,
        }
    }
}

/// What the server stores for one key version so the keystore can find it again: a PKCS#11
/// `CKA_ID`, or for the soft keystore the key itself encrypted under the master key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyHandle(pub Vec<u8>);

impl fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A soft handle is ciphertext, a PKCS#11 handle an id; neither is secret, but neither is
        // useful in a log either.
        write!(f, "KeyHandle({} bytes)", self.0.len())
    }
}

/// One key version as a keystore operation names it.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    /// `<name>.v<version>`.
    pub kid: &'a str,
    /// The key's kind; operations check it.
    pub kind: KeyKind,
    /// The handle `generate` returned.
    pub handle: &'a KeyHandle,
}

/// What a health probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `soft` or `pkcs11`.
    pub provider: &'static str,
    /// Whether keys are in hardware (or a PKCS#11 token at least).
    pub hsm_backed: bool,
    /// A human-readable line: token label and model, or where the master key came from.
    pub detail: String,
}

/// Where wrapping and signing keys live. Private and secret keys never come out; only DEKs
/// (which are the caller's anyway), signatures, public keys and ECDH results do.
///
/// Calls block (an HSM round trip): async callers run them in `spawn_blocking`. Every
/// implementation is safe to use from many threads at once.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// `soft` or `pkcs11`.
    fn provider(&self) -> &'static str;

    /// Whether the keys are held by an HSM rather than in this process.
    fn hsm_backed(&self) -> bool;

    /// Whether calls may block on I/O (an HSM round trip). Async callers move blocking calls
    /// off the runtime and may run non-blocking ones (microseconds of CPU) in place.
    fn blocking(&self) -> bool {
        true
    }

    /// For a blocking keystore: the average call time below which an async caller may still run
    /// calls in place, one at a time (a local HSM answers in tens of microseconds, less than a
    /// hand-off to another thread costs). `None`: always move calls off the runtime.
    fn inline_below(&self) -> Option<std::time::Duration> {
        None
    }

    /// Creates a key of `kind` for version `kid` and returns the handle to store.
    fn generate(&self, kid: &str, kind: KeyKind) -> Result<KeyHandle, KeystoreError>;

    /// Wraps `dek` under the AES KEK `key` (AES-256-GCM, fresh 96-bit IV, RFC 7518 `A256GCMKW`).
    fn wrap_dek(&self, key: KeyRef<'_>, dek: &Dek) -> Result<WrappedDek, KeystoreError>;

    /// A fresh DEK and its wrap under the AES KEK `key`: what a `datakey` request hands out. The
    /// DEK and the wrap's IV come from one draw of the OS generator: a system call per value
    /// was a measurable share of a datakey request (docs/BENCHMARKS.md).
    fn new_dek(&self, key: KeyRef<'_>) -> Result<(Dek, WrappedDek), KeystoreError>;

    /// Unwraps a DEK; a wrong key or tampered input is [`KeystoreError::DecryptFailed`].
    fn unwrap_dek(&self, key: KeyRef<'_>, wrapped: &WrappedDek) -> Result<Dek, KeystoreError>;

    /// Signs a SHA-256 digest with an ECDSA key: 64-byte `r‖s`, low-S.
    fn sign_digest(&self, key: KeyRef<'_>, digest: &[u8; 32]) -> Result<[u8; 64], KeystoreError>;

    /// Signs many digests with one key; providers override it to amortise per-call costs.
    fn sign_digests(&self, key: KeyRef<'_>, digests: &[[u8; 32]]) -> Result<Vec<[u8; 64]>, KeystoreError> {
        digests.iter().map(|d| self.sign_digest(key, d)).collect()
    }

    /// The public key of an EC key pair, as a JWK with `kid`, `use` and `alg` set.
    fn public_key(&self, key: KeyRef<'_>) -> Result<PublicJwk, KeystoreError>;

    /// P-256 Diffie-Hellman with an ECDH key and a peer point (already validated by the caller's
    /// parser, and checked again here).
    fn ecdh(&self, key: KeyRef<'_>, peer: &PublicKey) -> Result<SharedSecret, KeystoreError>;

    /// Fills `out` from the keystore's random number generator.
    fn random(&self, out: &mut [u8]) -> Result<(), KeystoreError>;

    /// Probes the keystore (the server's `/readyz`).
    fn health(&self) -> Result<Health, KeystoreError>;
}

/// Opens the provider `config` names.
pub fn open(config: &KeystoreConfig) -> Result<Arc<dyn KeyStore>, KeystoreError> {
    Ok(match config {
        KeystoreConfig::Soft(c) => Arc::new(SoftKeyStore::open(c)?),
        KeystoreConfig::Pkcs11(c) => Arc::new(Pkcs11KeyStore::open(c)?),
    })
}

/// A keystore key used as vouchsafe-core's [`Signer`](vouchsafe_core::Signer).
#[derive(Clone, Copy, Debug)]
pub struct KeystoreSigner<'a> {
    /// The keystore.
    pub store: &'a dyn KeyStore,
    /// The ECDSA key version.
    pub key: KeyRef<'a>,
}

impl vouchsafe_core::Signer for KeystoreSigner<'_> {
    type Error = KeystoreError;
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<[u8; 64], KeystoreError> {
        self.store.sign_digest(self.key, digest)
    }
}

/// A keystore key used as vouchsafe-core's [`KeyAgreement`](vouchsafe_core::KeyAgreement).
#[derive(Clone, Copy, Debug)]
pub struct KeystoreAgreement<'a> {
    /// The keystore.
    pub store: &'a dyn KeyStore,
    /// The ECDH key version.
    pub key: KeyRef<'a>,
}

impl vouchsafe_core::KeyAgreement for KeystoreAgreement<'_> {
    type Error = KeystoreError;
    fn agree(&self, _kid: Option<&str>, peer: &PublicKey) -> Result<SharedSecret, KeystoreError> {
        self.store.ecdh(self.key, peer)
    }
}

/// The JWK `use` a public key of this kind is published with.
pub(crate) fn key_use(kind: KeyKind) -> Option<vouchsafe_core::KeyUse> {
    match kind {
        KeyKind::Aes256Gcm => None,
        KeyKind::EcdhP256 => Some(vouchsafe_core::KeyUse::Enc),
        KeyKind::EcdsaP256 => Some(vouchsafe_core::KeyUse::Sig),
    }
}

pub(crate) fn expect_kind(key: &KeyRef<'_>, kind: KeyKind) -> Result<(), KeystoreError> {
    if key.kind == kind { Ok(()) } else { Err(KeystoreError::WrongKeyType) }
}

/// A fresh DEK and a fresh 96-bit IV for its wrap, from one call to the OS generator.
pub(crate) fn dek_and_iv() -> Result<(Dek, [u8; 12]), KeystoreError> {
    let mut buf = zeroize::Zeroizing::new([0u8; 44]);
    os_random(&mut buf[..])?;
    let (key, iv) = buf.split_at(32);
    let dek = Dek::from_slice(key).map_err(|_| KeystoreError::Internal("DEK draw is not 32 bytes".into()))?;
    let iv = iv.try_into().map_err(|_| KeystoreError::Internal("IV draw is not 12 bytes".into()))?;
    Ok((dek, iv))
}

/// Fills `buf` from the operating system's generator (IVs, handles, soft key material).
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), KeystoreError> {
    use vouchsafe_core::rand_core::TryRng;
    getrandom::SysRng
        .try_fill_bytes(buf)
        .map_err(|e| KeystoreError::Unavailable(format!("OS random number generator: {e}")))
}
