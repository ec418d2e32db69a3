//! P-256 public JWKs (RFC 7517/7518 §6.2), JWK sets and RFC 7638 thumbprints.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use p256::PublicKey;
use p256::elliptic_curve::sec1::ToSec1Point;
use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::encoding::{StrictObject, b64d_fixed, b64e};

/// What a key in a key set is for (`use`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    /// `"sig"`: ES256 voucher and status-list signatures.
    Sig,
    /// `"enc"`: ECDH-ES+A256KW sealing.
    Enc,
}

impl KeyUse {
    /// The JWK `use` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Sig => "sig",
            KeyUse::Enc => "enc",
        }
    }

    /// The only `alg` a key of this use may carry in vouchsafe's profile.
    pub fn alg(self) -> &'static str {
        match self {
            KeyUse::Sig => "ES256",
            KeyUse::Enc => "ECDH-ES+A256KW",
        }
    }
}

/// A P-256 public key with its JWK metadata.
///
/// Only `kty` `EC` with `crv` `P-256` is representable; the point is validated (on the curve, not
/// the identity) when parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicJwk {
    key: PublicKey,
    kid: Option<String>,
    key_use: Option<KeyUse>,
    alg: Option<String>,
}

impl PublicJwk {
    /// Wraps a public key; add metadata with the `with_*` builders.
    pub fn new(key: PublicKey) -> Self {
        PublicJwk { key, kid: None, key_use: None, alg: None }
    }

    /// Builds the key from the SEC1 uncompressed (`04‖x‖y`) or compressed encoding.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, Error> {
        PublicKey::from_sec1_bytes(bytes).map(Self::new).map_err(|_| Error::InvalidKey("not a valid P-256 point"))
    }

    /// Sets `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sets `use` and the matching `alg` (`ES256` or `ECDH-ES+A256KW`).
    pub fn with_use(mut self, key_use: KeyUse) -> Self {
        self.key_use = Some(key_use);
        self.alg = Some(key_use.alg().to_string());
        self
    }

    /// Parses one JWK from JSON text.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let obj = StrictObject::parse(json.as_bytes(), "jwk")?;
        Self::from_object(&obj)
    }

    /// Parses one JWK from a JSON value (as found inside a JWKS or an `epk` header).
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        let Value::Object(map) = v else {
            return Err(Error::Malformed("jwk"));
        };
        let obj = StrictObject(map.clone().into_iter().collect());
        Self::from_object(&obj)
    }

    pub(crate) fn from_object(obj: &StrictObject) -> Result<Self, Error> {
        if obj.has("d") {
            return Err(Error::InvalidKey("private key material where a public key belongs"));
        }
        if obj.opt_str("kty")? != Some("EC") {
            return Err(Error::InvalidKey("kty must be EC"));
        }
        if obj.opt_str("crv")? != Some("P-256") {
            return Err(Error::InvalidKey("crv must be P-256"));
        }
        let x: [u8; 32] = b64d_fixed(obj.opt_str("x")?.ok_or(Error::InvalidKey("x missing"))?, "x")
            .map_err(|_| Error::InvalidKey("x must be 32 bytes"))?;
        let y: [u8; 32] = b64d_fixed(obj.opt_str("y")?.ok_or(Error::InvalidKey("y missing"))?, "y")
            .map_err(|_| Error::InvalidKey("y must be 32 bytes"))?;
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(&x);
        sec1[33..].copy_from_slice(&y);
        let mut jwk = Self::from_sec1(&sec1)?;
        jwk.kid = obj.opt_str("kid")?.map(String::from);
        jwk.key_use = match obj.opt_str("use")? {
            None => None,
            Some("sig") => Some(KeyUse::Sig),
            Some("enc") => Some(KeyUse::Enc),
            Some(_) => return Err(Error::InvalidKey("unknown use")),
        };
        jwk.alg = obj.opt_str("alg")?.map(String::from);
        Ok(jwk)
    }

    /// The key itself.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// `kid`, if set.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// `use`, if set.
    pub fn key_use(&self) -> Option<KeyUse> {
        self.key_use
    }

    /// `alg`, if set.
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// The affine coordinates `(x, y)`, 32 bytes each.
    pub fn coordinates(&self) -> ([u8; 32], [u8; 32]) {
        let point = self.key.to_sec1_point(false);
        let bytes = point.as_bytes();
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        // An uncompressed SEC1 P-256 point is always 65 bytes: 0x04 ‖ x ‖ y.
        x.copy_from_slice(&bytes[1..33]);
        y.copy_from_slice(&bytes[33..65]);
        (x, y)
    }

    /// The SEC1 uncompressed encoding `04‖x‖y` (what PKCS#11 `CKA_EC_POINT` wraps).
    pub fn to_sec1_uncompressed(&self) -> [u8; 65] {
        let (x, y) = self.coordinates();
        let mut out = [0u8; 65];
        out[0] = 0x04;
        out[1..33].copy_from_slice(&x);
        out[33..].copy_from_slice(&y);
        out
    }

    /// RFC 7638 thumbprint: SHA-256 over `{"crv","kty","x","y"}` in that order, no spaces.
    pub fn thumbprint(&self) -> [u8; 32] {
        let (x, y) = self.coordinates();
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64e(&x), b64e(&y));
        Sha256::digest(canonical.as_bytes()).into()
    }

    /// The thumbprint, base64url encoded (the usual form of a thumbprint `kid`).
    pub fn thumbprint_b64(&self) -> String {
        b64e(&self.thumbprint())
    }

    /// Serialises to JSON text.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for PublicJwk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (x, y) = self.coordinates();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kty", "EC")?;
        m.serialize_entry("crv", "P-256")?;
        m.serialize_entry("x", &b64e(&x))?;
        m.serialize_entry("y", &b64e(&y))?;
        if let Some(kid) = &self.kid {
            m.serialize_entry("kid", kid)?;
        }
        if let Some(u) = self.key_use {
            m.serialize_entry("use", u.as_str())?;
        }
        if let Some(alg) = &self.alg {
            m.serialize_entry("alg", alg)?;
        }
        m.end()
    }
}

/// A JWK set as published at `/.well-known/jwks.json`.
///
/// Keys of other types (RSA, Ed25519, other curves) are kept out of the set rather than failing
/// the parse, so a set shared with other services still works; a private key, a malformed P-256
/// key or two keys with the same `kid` and `use` fail it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<PublicJwk>,
}

impl Jwks {
    /// A set of the given keys.
    pub fn new(keys: Vec<PublicJwk>) -> Result<Self, Error> {
        for (i, a) in keys.iter().enumerate() {
            if keys[..i].iter().any(|b| b.kid.is_some() && b.kid == a.kid && b.key_use == a.key_use) {
                return Err(Error::InvalidKey("duplicate kid in key set"));
            }
        }
        Ok(Jwks { keys })
    }

    /// Parses `{"keys":[…]}`; a bare JWK object is accepted as a set of one.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let obj = StrictObject::parse(json.as_bytes(), "jwks")?;
        match obj.0.get("keys") {
            Some(Value::Array(items)) => {
                let mut keys = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(m) = item else {
                        return Err(Error::Malformed("jwks"));
                    };
                    if m.contains_key("d") {
                        return Err(Error::InvalidKey("private key material where a public key belongs"));
                    }
                    let is_p256 = m.get("kty").and_then(Value::as_str) == Some("EC")
                        && m.get("crv").and_then(Value::as_str) == Some("P-256");
                    if is_p256 {
                        keys.push(PublicJwk::from_value(item)?);
                    }
                }
                Self::new(keys)
            }
            Some(_) => Err(Error::Malformed("jwks")),
            None => Self::new(alloc::vec![PublicJwk::from_object(&obj)?]),
        }
    }

    /// The keys in the set.
    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }

    /// The key with exactly this `kid` that may be used for `key_use`: its `use`, if set, must
    /// match, and its `alg`, if set, must be the one algorithm of that use.
    pub fn find(&self, kid: &str, key_use: KeyUse) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| {
            k.kid.as_deref() == Some(kid)
                && k.key_use.is_none_or(|u| u == key_use)
                && k.alg.as_deref().is_none_or(|a| a == key_use.alg())
        })
    }

    /// The newest version of key `name` for `key_use`: among kids `name.v<N>`, the highest `N`.
    pub fn current(&self, name: &str, key_use: KeyUse) -> Option<&PublicJwk> {
        self.keys
            .iter()
            .filter(|k| k.key_use.is_none_or(|u| u == key_use) && k.alg.as_deref().is_none_or(|a| a == key_use.alg()))
            .filter_map(|k| Some((crate::kid::parse(k.kid.as_deref()?)?, k)))
            .filter(|((n, _), _)| *n == name)
            .max_by_key(|((_, v), _)| *v)
            .map(|(_, k)| k)
    }

    /// Serialises to `{"keys":[…]}`.
    pub fn to_json(&self) -> String {
        // Serialising keys of strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for Jwks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("keys", &self.keys)?;
        m.end()
    }
}
