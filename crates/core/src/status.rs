//! IETF OAuth Token Status List (draft-ietf-oauth-status-list): each token has an index into a
//! bit string with `bits` bits per entry, published zlib-compressed and base64url-encoded in a
//! signed `statuslist+jwt`, so offline verifiers can check revocation after a sync.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use serde_json::{Value, json};

use crate::Error;
use crate::encoding::{StrictObject, b64d, b64e};
use crate::jwk::Jwks;
use crate::jws;
use crate::keys::Signer;
use crate::voucher::media_type_is;

/// The `typ` of a status list token.
pub const STATUS_LIST_TYP: &str = "statuslist+jwt";
/// Status 0: valid.
pub const STATUS_VALID: u8 = 0;
/// Status 1: invalid (revoked).
pub const STATUS_INVALID: u8 = 1;
/// Status 2: suspended.
pub const STATUS_SUSPENDED: u8 = 2;
/// Largest decompressed list accepted (a 16 MiB list holds 134 million 1-bit entries); a
/// bigger one is a decompression bomb.
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// A status list: `bits` bits per entry, entry 0 in the least significant bits of byte 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Vec<u8>,
}

impl StatusList {
    /// A list of `entries` entries, all valid. `bits` is 1, 2, 4 or 8.
    pub fn new(bits: u8, entries: usize) -> Result<Self, Error> {
        check_bits(bits)?;
        let len = (entries * bits as usize).div_ceil(8);
        if len > MAX_LIST_BYTES {
            return Err(Error::TooLarge);
        }
        Ok(StatusList { bits, bytes: vec![0; len] })
    }

    /// Bits per entry.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() * 8 / self.bits as usize
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn locate(&self, idx: u64) -> Option<(usize, u32)> {
        let bit = idx.checked_mul(u64::from(self.bits))?;
        let byte = usize::try_from(bit / 8).ok()?;
        (byte < self.bytes.len()).then_some((byte, (bit % 8) as u32))
    }

    /// The status of entry `idx`; `None` past the end.
    pub fn get(&self, idx: u64) -> Option<u8> {
        let (byte, shift) = self.locate(idx)?;
        let mask = ((1u16 << self.bits) - 1) as u8;
        Some((self.bytes[byte] >> shift) & mask)
    }

    /// Sets the status of entry `idx`.
    pub fn set(&mut self, idx: u64, status: u8) -> Result<(), Error> {
        let mask = ((1u16 << self.bits) - 1) as u8;
        if status > mask {
            return Err(Error::InvalidArgument("status does not fit the list's bits per entry"));
        }
        let (byte, shift) = self.locate(idx).ok_or(Error::InvalidArgument("index past the end of the status list"))?;
        self.bytes[byte] = (self.bytes[byte] & !(mask << shift)) | (status << shift);
        Ok(())
    }

    /// The `status_list` claim: `{"bits": n, "lst": base64url(zlib(bytes))}`.
    pub fn to_claim(&self) -> Value {
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&self.bytes, 9);
        json!({ "bits": self.bits, "lst": b64e(&compressed) })
    }

    /// Reads a `status_list` claim; refuses bad `bits`, bad zlib and lists over
    /// [`MAX_LIST_BYTES`] once decompressed.
    pub fn from_claim(claim: &Value) -> Result<Self, Error> {
        let bits = claim.get("bits").and_then(Value::as_u64).ok_or(Error::InvalidClaim("status_list"))?;
        let bits = u8::try_from(bits).map_err(|_| Error::InvalidClaim("status_list"))?;
        check_bits(bits).map_err(|_| Error::InvalidClaim("status_list"))?;
        let lst = claim.get("lst").and_then(Value::as_str).ok_or(Error::InvalidClaim("status_list"))?;
        let compressed = b64d(lst, "lst")?;
        let bytes = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, MAX_LIST_BYTES).map_err(
            |e| match e.status {
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => Error::TooLarge,
                _ => Error::Malformed("lst is not zlib data"),
            },
        )?;
        Ok(StatusList { bits, bytes })
    }

    /// Signs the list as a `statuslist+jwt` for `uri` (its `sub`), issued at `iat`, optionally
    /// expiring at `exp` and suggesting a re-fetch after `ttl` seconds.
    pub fn sign<S: Signer + ?Sized>(
        &self,
        uri: &str,
        iat: i64,
        exp: Option<i64>,
        ttl: Option<u64>,
        kid: &str,
        signer: &S,
    ) -> Result<String, S::Error> {
        let mut claims = json!({ "sub": uri, "iat": iat, "status_list": self.to_claim() });
        if let Some(exp) = exp {
            claims["exp"] = exp.into();
        }
        if let Some(ttl) = ttl {
            claims["ttl"] = ttl.into();
        }
        let payload = serde_json::to_vec(&claims).map_err(|_| Error::Malformed("claims"))?;
        jws::sign(STATUS_LIST_TYP, kid, &payload, signer)
    }
}

fn check_bits(bits: u8) -> Result<(), Error> {
    if matches!(bits, 1 | 2 | 4 | 8) { Ok(()) } else { Err(Error::InvalidArgument("bits per entry is 1, 2, 4 or 8")) }
}

/// A status list whose token verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedStatusList {
    /// The list's URI (`sub`), which vouchers' `status.status_list.uri` name.
    pub uri: String,
    /// When it was issued.
    pub iat: i64,
    /// When it expires, if it says.
    pub exp: Option<i64>,
    /// Suggested seconds before fetching again, if it says.
    pub ttl: Option<u64>,
    /// The statuses.
    pub list: StatusList,
}

impl VerifiedStatusList {
    /// Verifies a `statuslist+jwt` with keys from `jwks` (ES256, key by `kid`, header only
    /// `alg`/`typ`/`kid`) and, when given, checks its `sub` is `expected_uri`. An expired list
    /// is refused: a verifier must not trust stale revocation data past its stated life.
    pub fn from_token(token: &str, jwks: &Jwks, expected_uri: Option<&str>, now: i64) -> Result<Self, Error> {
        let verified = jws::verify(token, jwks)?;
        if verified.header.0.keys().any(|k| !matches!(k.as_str(), "alg" | "typ" | "kid")) {
            return Err(Error::UnsupportedHeader("a status list header has only alg, typ and kid"));
        }
        if !verified.typ().is_some_and(|t| media_type_is(t, STATUS_LIST_TYP)) {
            return Err(Error::BadType);
        }
        let claims = StrictObject::parse(&verified.payload, "claims")?;
        let uri = claims.opt_str("sub").map_err(|_| Error::InvalidClaim("sub"))?.ok_or(Error::MissingClaim("sub"))?;
        if expected_uri.is_some_and(|e| e != uri) {
            return Err(Error::InvalidClaim("sub"));
        }
        let iat = claims.0.get("iat").ok_or(Error::MissingClaim("iat"))?.as_i64().ok_or(Error::InvalidClaim("iat"))?;
        let exp = match claims.0.get("exp") {
            None => None,
            Some(v) => Some(v.as_i64().ok_or(Error::InvalidClaim("exp"))?),
        };
        if exp.is_some_and(|e| now >= e) {
            return Err(Error::Expired);
        }
        let ttl = match claims.0.get("ttl") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(Error::InvalidClaim("ttl"))?),
        };
        let list = StatusList::from_claim(claims.0.get("status_list").ok_or(Error::MissingClaim("status_list"))?)?;
        Ok(VerifiedStatusList { uri: uri.into(), iat, exp, ttl, list })
    }
}
