//! Voucher claims (CONTRACT §1.2) and their strict validator.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;

use crate::Error;
use crate::encoding::StrictObject;
use crate::jwk::Jwks;
use crate::jws;
use crate::keys::Signer;

/// The `typ` of a voucher JWS.
pub const VOUCHER_TYP: &str = "voucher+jwt";
/// The largest clock leeway a validator accepts, in seconds.
pub const MAX_LEEWAY_SECONDS: u64 = 600;
/// Claim names vouchsafe defines; caller extras may not use them.
pub const REGISTERED_CLAIMS: [&str; 10] =
    ["iss", "sub", "aud", "jti", "iat", "nbf", "exp", "amount", "currency", "status"];
/// Longest string accepted for `iss`, `sub`, `aud`, `jti`.
const MAX_ID_LEN: usize = 256;

/// Where a voucher's revocation bit lives (IETF Token Status List: `status.status_list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRef {
    /// Index of the voucher's bit in the list.
    pub idx: u64,
    /// URI of the status list token.
    pub uri: String,
}

/// The claims of a voucher.
#[derive(Clone, Debug, PartialEq)]
pub struct VoucherClaims {
    /// The issuing key server.
    pub iss: String,
    /// The beneficiary.
    pub sub: String,
    /// The programme.
    pub aud: String,
    /// Unique voucher id.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Decimal amount, e.g. `"1500.00"`.
    pub amount: String,
    /// ISO 4217 code, e.g. `"KES"`.
    pub currency: String,
    /// Revocation status reference.
    pub status: Option<StatusRef>,
    /// Caller-defined claims (never one of [`REGISTERED_CLAIMS`]).
    pub extra: BTreeMap<String, Value>,
}

impl VoucherClaims {
    /// Checks every rule a voucher's claims must satisfy on their own (no clock, no keys).
    pub fn check(&self) -> Result<(), Error> {
        for (name, v) in [("iss", &self.iss), ("sub", &self.sub), ("aud", &self.aud), ("jti", &self.jti)] {
            if v.is_empty() || v.len() > MAX_ID_LEN {
                return Err(Error::InvalidClaim(name));
            }
        }
        if !valid_amount(&self.amount) {
            return Err(Error::InvalidClaim("amount"));
        }
        if !(self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(Error::InvalidClaim("currency"));
        }
        if self.exp <= self.nbf || self.exp <= self.iat {
            return Err(Error::InvalidClaim("exp"));
        }
        if let Some(name) = self.extra.keys().find(|k| REGISTERED_CLAIMS.contains(&k.as_str())) {
            return Err(Error::InvalidClaim(registered_name(name)));
        }
        Ok(())
    }

    /// The JSON payload.
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        self.check()?;
        serde_json::to_vec(self).map_err(|_| Error::Malformed("claims"))
    }

    /// Prepares the voucher JWS for signing with key version `kid`; see [`jws::PreparedJws`].
    pub fn prepare(&self, kid: &str) -> Result<jws::PreparedJws, Error> {
        Ok(jws::PreparedJws::new(VOUCHER_TYP, kid, &self.to_json()?))
    }

    /// Signs the voucher with `signer`, the key version `kid`.
    pub fn sign<S: Signer + ?Sized>(&self, kid: &str, signer: &S) -> Result<String, S::Error> {
        let prepared = self.prepare(kid)?;
        let sig = signer.sign_digest(prepared.digest())?;
        Ok(prepared.finish(&sig)?)
    }

    /// Reads claims from a JWS payload (checks shape and [`check`](Self::check), not time).
    pub fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let mut obj = StrictObject::parse(payload, "claims")?.0;
        let mut string = |name: &'static str| match obj.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Error::InvalidClaim(name)),
            None => Err(Error::MissingClaim(name)),
        };
        let (iss, sub, aud, jti) = (string("iss")?, string("sub")?, string("aud")?, string("jti")?);
        let (amount, currency) = (string("amount")?, string("currency")?);
        let mut date = |name: &'static str, required: bool| match obj.remove(name) {
            Some(Value::Number(n)) => n.as_i64().ok_or(Error::InvalidClaim(name)),
            Some(_) => Err(Error::InvalidClaim(name)),
            None if required => Err(Error::MissingClaim(name)),
            None => Ok(i64::MIN),
        };
        let exp = date("exp", true)?;
        let iat = date("iat", true)?;
        let nbf = date("nbf", false)?;
        let nbf = if nbf == i64::MIN { iat } else { nbf };
        let status = match obj.remove("status") {
            None => None,
            Some(v) => Some(parse_status(&v).ok_or(Error::InvalidClaim("status"))?),
        };
        let claims = VoucherClaims { iss, sub, aud, jti, iat, nbf, exp, amount, currency, status, extra: obj };
        claims.check()?;
        Ok(claims)
    }
}

fn registered_name(name: &str) -> &'static str {
    REGISTERED_CLAIMS.iter().find(|r| **r == name).copied().unwrap_or("extra")
}

fn parse_status(v: &Value) -> Option<StatusRef> {
    let list = v.as_object()?.get("status_list")?.as_object()?;
    Some(StatusRef { idx: list.get("idx")?.as_u64()?, uri: list.get("uri")?.as_str()?.into() })
}

/// A positive decimal: digits without leading zeros, optionally `.` and 1–6 fraction digits.
fn valid_amount(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let int_ok = digits(int) && int.len() <= 15 && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| digits(f) && f.len() <= 6);
    let nonzero = s.bytes().any(|b| (b'1'..=b'9').contains(&b));
    int_ok && frac_ok && nonzero
}

impl Serialize for VoucherClaims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("iss", &self.iss)?;
        m.serialize_entry("sub", &self.sub)?;
        m.serialize_entry("aud", &self.aud)?;
        m.serialize_entry("jti", &self.jti)?;
        m.serialize_entry("iat", &self.iat)?;
        m.serialize_entry("nbf", &self.nbf)?;
        m.serialize_entry("exp", &self.exp)?;
        m.serialize_entry("amount", &self.amount)?;
        m.serialize_entry("currency", &self.currency)?;
        if let Some(st) = &self.status {
            let status = serde_json::json!({ "status_list": { "idx": st.idx, "uri": st.uri } });
            m.serialize_entry("status", &status)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Verifies vouchers strictly: ES256 only, key by `kid` from the caller's key set, header exactly
/// `alg`/`typ`/`kid` with `typ` `voucher+jwt`, `exp` required, issuer and audience checked when
/// configured, leeway at most 600 s, `now` always given by the caller.
#[derive(Clone, Debug, Default)]
pub struct VoucherValidator {
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
}

impl VoucherValidator {
    /// A validator with no issuer or audience constraint and zero leeway.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `iss` to equal `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts vouchers for `audience`; call again to accept several programmes.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Tolerates this much clock difference; more than [`MAX_LEEWAY_SECONDS`] is refused.
    pub fn with_leeway(mut self, seconds: u64) -> Result<Self, Error> {
        if seconds > MAX_LEEWAY_SECONDS {
            return Err(Error::InvalidArgument("leeway is at most 600 seconds"));
        }
        self.leeway = seconds;
        Ok(self)
    }

    /// Verifies `token` at time `now` (seconds since the epoch) and returns its claims.
    pub fn validate(&self, token: &str, jwks: &Jwks, now: i64) -> Result<VoucherClaims, Error> {
        self.check_verified(jws::verify(token, jwks)?, now)
    }

    /// The voucher rules for a JWS whose signature was checked (by [`jws::verify`], or by
    /// another ES256 verifier through [`jws::UncheckedJws::with_signature_checked`]).
    pub fn check_verified(&self, verified: jws::VerifiedJws, now: i64) -> Result<VoucherClaims, Error> {
        if verified.header.0.keys().any(|k| !matches!(k.as_str(), "alg" | "typ" | "kid")) {
            return Err(Error::UnsupportedHeader("a voucher header has only alg, typ and kid"));
        }
        if !verified.typ().is_some_and(|t| media_type_is(t, VOUCHER_TYP)) {
            return Err(Error::BadType);
        }
        let claims = VoucherClaims::from_payload(&verified.payload)?;
        let leeway = self.leeway as i64;
        if now >= claims.exp.saturating_add(leeway) {
            return Err(Error::Expired);
        }
        if now.saturating_add(leeway) < claims.nbf || now.saturating_add(leeway) < claims.iat {
            return Err(Error::NotYetValid);
        }
        if self.issuer.as_ref().is_some_and(|i| *i != claims.iss) {
            return Err(Error::WrongIssuer);
        }
        if !self.audiences.is_empty() && !self.audiences.contains(&claims.aud) {
            return Err(Error::WrongAudience);
        }
        Ok(claims)
    }
}

impl VoucherValidator {
    /// [`validate`](Self::validate), then the voucher's revocation status in whichever of
    /// `lists` has the URI its `status` claim names. A non-zero status (revoked, suspended, …)
    /// is [`Error::Revoked`]; an index past the end of the list is an invalid claim. A voucher
    /// whose list is not among `lists` passes this check: the caller decides whether a missing
    /// list is acceptable (see [`VoucherClaims::status`]).
    pub fn validate_with_status(
        &self,
        token: &str,
        jwks: &Jwks,
        now: i64,
        lists: &[crate::status::VerifiedStatusList],
    ) -> Result<VoucherClaims, Error> {
        let claims = self.validate(token, jwks, now)?;
        check_status(claims, lists.iter())
    }

    /// [`check_verified`](Self::check_verified), then the revocation status as in
    /// [`validate_with_status`](Self::validate_with_status).
    /// The lists are borrowed one by one, so a caller holding them elsewhere (shared, cached)
    /// need not copy their bits.
    pub fn check_verified_with_status<'a>(
        &self,
        verified: jws::VerifiedJws,
        now: i64,
        lists: impl IntoIterator<Item = &'a crate::status::VerifiedStatusList>,
    ) -> Result<VoucherClaims, Error> {
        check_status(self.check_verified(verified, now)?, lists)
    }
}

fn check_status<'a>(
    claims: VoucherClaims,
    lists: impl IntoIterator<Item = &'a crate::status::VerifiedStatusList>,
) -> Result<VoucherClaims, Error> {
    if let Some(st) = &claims.status
        && let Some(list) = lists.into_iter().find(|l| l.uri == st.uri)
    {
        match list.list.get(st.idx) {
            Some(0) => {}
            Some(_) => return Err(Error::Revoked),
            None => return Err(Error::InvalidClaim("status")),
        }
    }
    Ok(claims)
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, and `application/` may
/// be left out.
pub(crate) fn media_type_is(typ: &str, expected: &str) -> bool {
    let t = typ.strip_prefix("application/").or_else(|| typ.strip_prefix("APPLICATION/")).unwrap_or(typ);
    t.eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        for ok in ["1500.00", "1", "0.5", "10.123456", "999999999999999"] {
            assert!(valid_amount(ok), "{ok}");
        }
        for bad in ["", "0", "0.00", "-1", "01", "1.", ".5", "1.1234567", "1e3", "1,00", " 1", "1000000000000000"] {
            assert!(!valid_amount(bad), "{bad}");
        }
    }

    #[test]
    fn media_types() {
        assert!(media_type_is("voucher+jwt", VOUCHER_TYP));
        assert!(media_type_is("application/Voucher+JWT", VOUCHER_TYP));
        assert!(!media_type_is("JWT", VOUCHER_TYP));
        assert!(!media_type_is("voucher+jwt ", VOUCHER_TYP));
    }
}
