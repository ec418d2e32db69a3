//! Secret key types and the traits through which keys that never leave an HSM are used.

use core::fmt;
use p256::PublicKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// A 256-bit data encryption key (the JWE content encryption key, CEK).
///
/// Wiped from memory when dropped; `Debug` prints no key material; equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Dek([u8; 32]);

impl Dek {
    /// Size in bytes.
    pub const LEN: usize = 32;

    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Dek(k)
    }

    /// Takes ownership of raw key bytes.
    pub fn from_array(bytes: [u8; 32]) -> Self {
        Dek(bytes)
    }

    /// Copies raw key bytes; anything but 32 bytes is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidKey("a DEK is 32 bytes"))?;
        Ok(Dek(arr))
    }

    /// The raw key bytes (to hand to a keystore for wrapping, or to an authorised caller).
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([redacted])")
    }
}

impl PartialEq for Dek {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Dek {}

/// The x-coordinate output of a P-256 Diffie-Hellman exchange (`Z` in RFC 7518 §4.6).
pub struct SharedSecret(Zeroizing<[u8; 32]>);

impl SharedSecret {
    /// Wraps the 32-byte shared x-coordinate (what PKCS#11 `CKM_ECDH1_DERIVE` yields).
    pub fn from_array(z: [u8; 32]) -> Self {
        SharedSecret(Zeroizing::new(z))
    }

    /// Copies a shared secret; anything but 32 bytes is refused.
    pub fn from_slice(z: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 32] = z.try_into().map_err(|_| Error::InvalidKey("a P-256 shared secret is 32 bytes"))?;
        Ok(Self::from_array(arr))
    }

    /// The raw bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret([redacted])")
    }
}

/// Signs a SHA-256 digest with a P-256 key, wherever that key lives.
///
/// An HSM implementation hashes nothing itself: it gets the digest, runs `CKM_ECDSA` and returns
/// the 64-byte `r‖s`. vouchsafe-core normalises the result to low-S, so implementations need not.
pub trait Signer {
    /// The implementation's error; core errors convert into it.
    type Error: From<Error>;
    /// Returns the raw `r‖s` signature of `digest`.
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<[u8; 64], Self::Error>;
}

/// In-memory signing with RustCrypto (the `soft` keystore and tests).
impl Signer for p256::ecdsa::SigningKey {
    type Error = Error;
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<[u8; 64], Error> {
        let sig: p256::ecdsa::Signature = self.sign_prehash(digest).map_err(|_| Error::KeyOperation)?;
        Ok(sig.to_bytes().into())
    }
}

/// P-256 Diffie-Hellman with a private key, wherever that key lives.
pub trait KeyAgreement {
    /// The implementation's error; core errors convert into it.
    type Error: From<Error>;
    /// Computes `Z` with the private key named by `kid` (if the implementation holds several)
    /// and the peer's public key, which core has already checked to be a valid P-256 point.
    fn agree(&self, kid: Option<&str>, peer: &PublicKey) -> Result<SharedSecret, Self::Error>;
}

/// In-memory key agreement with RustCrypto (the `soft` keystore and tests).
impl KeyAgreement for p256::SecretKey {
    type Error = Error;
    fn agree(&self, _kid: Option<&str>, peer: &PublicKey) -> Result<SharedSecret, Error> {
        let shared = p256::ecdh::diffie_hellman(self.to_nonzero_scalar(), peer.as_affine());
        SharedSecret::from_slice(shared.raw_secret_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn secrets_do_not_print() {
        let d = Dek::from_array([0x41; 32]);
        assert_eq!(format!("{d:?}"), "Dek([redacted])");
        let z = SharedSecret::from_array([0x41; 32]);
        assert!(!format!("{z:?}").contains("41"));
        assert!(Dek::from_slice(&[0; 31]).is_err());
        assert_eq!(Dek::from_array([1; 32]), Dek::from_slice(&[1; 32]).unwrap());
        assert_ne!(Dek::from_array([1; 32]), Dek::from_array([2; 32]));
    }
}
