//! JWS compact serialisation (RFC 7515) with ES256 only.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use p256::PublicKey;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::encoding::{StrictObject, b64d, b64e};
use crate::jwk::{Jwks, KeyUse, PublicJwk};
use crate::keys::Signer;

/// Largest compact JWS accepted (1 MiB).
pub const MAX_JWS_LEN: usize = 1 << 20;

/// Header members that would let a token choose its own key or demand extensions; a token that
/// carries any of them is refused before anything else is looked at.
const FORBIDDEN_HEADERS: [&str; 6] = ["jwk", "jku", "x5u", "x5c", "crit", "b64"];

/// A JWS header and payload ready to be signed: the digest goes to a [`Signer`] (possibly an
/// HSM, possibly in another thread), the signature comes back to [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct PreparedJws {
    signing_input: String,
    digest: [u8; 32],
}

impl PreparedJws {
    /// Prepares `{"alg":"ES256","typ":typ,"kid":kid}` over `payload`.
    pub fn new(typ: &str, kid: &str, payload: &[u8]) -> Self {
        let header = serde_json::json!({ "alg": "ES256", "typ": typ, "kid": kid });
        let header = serde_json::to_string(&header).unwrap_or_default();
        let signing_input = format!("{}.{}", b64e(header.as_bytes()), b64e(payload));
        let digest = Sha256::digest(signing_input.as_bytes()).into();
        PreparedJws { signing_input, digest }
    }

    /// The SHA-256 digest of the signing input.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Appends the signature (normalised to low-S) and returns the compact JWS.
    pub fn finish(mut self, raw_sig: &[u8; 64]) -> Result<String, Error> {
        let sig = normalize_signature(raw_sig)?;
        self.signing_input.push('.');
        self.signing_input.push_str(&b64e(&sig));
        Ok(self.signing_input)
    }
}

/// Signs `payload` as a compact ES256 JWS with the given `typ` and `kid`.
pub fn sign<S: Signer + ?Sized>(typ: &str, kid: &str, payload: &[u8], signer: &S) -> Result<String, S::Error> {
    let prepared = PreparedJws::new(typ, kid, payload);
    let sig = signer.sign_digest(prepared.digest())?;
    Ok(prepared.finish(&sig)?)
}

/// Checks `r` and `s` are in `[1, n-1]` and returns the low-S form of an `r‖s` signature.
pub fn normalize_signature(raw: &[u8; 64]) -> Result<[u8; 64], Error> {
    let sig = Signature::from_slice(raw).map_err(|_| Error::BadSignature)?;
    Ok(sig.normalize_s().to_bytes().into())
}

/// Verifies an ES256 `r‖s` signature over `msg` (SHA-256 is applied here). High-S signatures are
/// accepted, as RFC 7518 requires; `r` or `s` of zero or ≥ n, and any length but 64, are not.
pub fn es256_verify(key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), Error> {
    if sig.len() != 64 {
        return Err(Error::BadSignature);
    }
    let sig = Signature::from_slice(sig).map_err(|_| Error::BadSignature)?;
    let digest = Sha256::digest(msg);
    VerifyingKey::from(key).verify_prehash(&digest, &sig).map_err(|_| Error::BadSignature)
}

/// A JWS whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    /// The protected header (unique member names; `alg` is `ES256`; no forbidden members).
    pub header: StrictObject,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The `kid` that selected the key.
    pub kid: String,
}

impl VerifiedJws {
    /// The header's `typ`, if it is a string.
    pub fn typ(&self) -> Option<&str> {
        self.header.0.get("typ").and_then(Value::as_str)
    }
}

/// A compact JWS whose header passed every rule of [`verify`] and whose key was found by `kid`,
/// with its signature not yet checked. [`verify`](Self::verify) checks it here; a caller with
/// another ES256 implementation (WebCrypto in the npm package) checks [`signature`]
/// (`r‖s`) over [`signing_input`] with [`key`] and hands the answer to
/// [`with_signature_checked`](Self::with_signature_checked).
///
/// [`signature`]: Self::signature
/// [`signing_input`]: Self::signing_input
/// [`key`]: Self::key
#[derive(Debug, Clone)]
pub struct UncheckedJws {
    header: StrictObject,
    signing_input: String,
    signature: Vec<u8>,
    key: PublicJwk,
    kid: String,
}

impl UncheckedJws {
    /// Parses `token` and checks its header against a key set the caller trusts.
    ///
    /// The algorithm is pinned to ES256 and the key is chosen only by `kid` among the set's
    /// signature keys; `jwk`, `jku`, `x5u`, `x5c`, `crit` and `b64` in the header are refused.
    pub fn parse(token: &str, jwks: &Jwks) -> Result<Self, Error> {
        if token.len() > MAX_JWS_LEN {
            return Err(Error::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Malformed("a compact JWS has three parts"));
        };
        let header = StrictObject::parse(&b64d(h64, "header")?, "header")?;
        match header.0.get("alg") {
            Some(Value::String(a)) if a == "ES256" => {}
            Some(Value::String(_)) => return Err(Error::UnsupportedAlg),
            _ => return Err(Error::Malformed("alg")),
        }
        if let Some(h) = FORBIDDEN_HEADERS.iter().find(|h| header.has(h)) {
            return Err(Error::UnsupportedHeader(h));
        }
        let kid = header.opt_str("kid")?.ok_or(Error::UnknownKid)?;
        let key = jwks.find(kid, KeyUse::Sig).ok_or(Error::UnknownKid)?.clone();
        let kid = String::from(kid);
        let signature = b64d(s64, "signature")?;
        let signing_input = String::from(&token[..h64.len() + 1 + p64.len()]);
        Ok(UncheckedJws { header, signing_input, signature, key, kid })
    }

    /// The bytes the signature covers: `BASE64URL(header) '.' BASE64URL(payload)`.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// The signature as sent (64 bytes `r‖s` when well-formed).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The key the header's `kid` selected.
    pub fn key(&self) -> &PublicJwk {
        &self.key
    }

    /// Checks the signature here.
    pub fn verify(self) -> Result<VerifiedJws, Error> {
        es256_verify(self.key.public_key(), self.signing_input.as_bytes(), &self.signature)?;
        self.into_verified()
    }

    /// Takes the verdict of another ES256 verifier that checked exactly [`signature`] over
    /// [`signing_input`] with [`key`]. `false`, or a signature that is not 64 bytes, is
    /// [`Error::BadSignature`].
    ///
    /// [`signature`]: Self::signature
    /// [`signing_input`]: Self::signing_input
    /// [`key`]: Self::key
    pub fn with_signature_checked(self, valid: bool) -> Result<VerifiedJws, Error> {
        if !valid || self.signature.len() != 64 {
            return Err(Error::BadSignature);
        }
        self.into_verified()
    }

    fn into_verified(self) -> Result<VerifiedJws, Error> {
        let p64 = self.signing_input.split('.').nth(1).unwrap_or_default();
        let payload = b64d(p64, "payload")?;
        Ok(VerifiedJws { header: self.header, payload, kid: self.kid })
    }
}

/// Verifies a compact ES256 JWS against a key set the caller trusts (see
/// [`UncheckedJws::parse`] for the header rules).
pub fn verify(token: &str, jwks: &Jwks) -> Result<VerifiedJws, Error> {
    UncheckedJws::parse(token, jwks)?.verify()
}
