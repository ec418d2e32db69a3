//! Who is calling, and what they may do. Static API tokens (only their SHA-256 is kept) and, in
//! a later step, OIDC bearer JWTs; permissions as CONTRACT §2 names them.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One permission. `*` as the last segment of a key permission matches every key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// `keys:admin`.
    KeysAdmin,
    /// `keys:encrypt:<key>`.
    KeysEncrypt(KeyPattern),
    /// `keys:decrypt:<key>`.
    KeysDecrypt(KeyPattern),
    /// `vouchers:issue`.
    VouchersIssue,
    /// `vouchers:redeem`.
    VouchersRedeem,
    /// `vouchers:revoke`.
    VouchersRevoke,
    /// `audit:read`.
    AuditRead,
    /// `registrations:submit` (the demo registry behind the web portal).
    RegistrationsSubmit,
    /// `registrations:read`.
    RegistrationsRead,
}

/// The key part of a key permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPattern {
    /// `*`.
    Any,
    /// One key name.
    Name(String),
}

impl KeyPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            KeyPattern::Any => true,
            KeyPattern::Name(n) => n == name,
        }
    }
}

impl Permission {
    /// Parses `keys:admin`, `keys:encrypt:pii`, `keys:decrypt:*`, `vouchers:issue`, …
    pub fn parse(s: &str) -> Option<Self> {
        let key = |k: &str| {
            if k == "*" {
                Some(KeyPattern::Any)
            } else if vouchsafe_core::kid::valid_name(k) {
                Some(KeyPattern::Name(k.into()))
            } else {
                None
            }
        };
        Some(match s.split(':').collect::<Vec<_>>()[..] {
            ["keys", "admin"] => Permission::KeysAdmin,
            ["keys", "encrypt", k] => Permission::KeysEncrypt(key(k)?),
            ["keys", "decrypt", k] => Permission::KeysDecrypt(key(k)?),
            ["vouchers", "issue"] => Permission::VouchersIssue,
            ["vouchers", "redeem"] => Permission::VouchersRedeem,
            ["vouchers", "revoke"] => Permission::VouchersRevoke,
            ["audit", "read"] => Permission::AuditRead,
            ["registrations", "submit"] => Permission::RegistrationsSubmit,
            ["registrations", "read"] => Permission::RegistrationsRead,
            _ => return None,
        })
    }

    /// Whether holding `self` grants `wanted` (a concrete permission, no wildcard).
    pub fn grants(&self, wanted: &Permission) -> bool {
        match (self, wanted) {
            (Permission::KeysEncrypt(p), Permission::KeysEncrypt(KeyPattern::Name(n)))
            | (Permission::KeysDecrypt(p), Permission::KeysDecrypt(KeyPattern::Name(n))) => p.matches(n),
            (a, b) => a == b,
        }
    }

    /// The permission's text form.
    pub fn to_text(&self) -> String {
        let k = |p: &KeyPattern| match p {
            KeyPattern::Any => "*".to_string(),
            KeyPattern::Name(n) => n.clone(),
        };
        match self {
            Permission::KeysAdmin => "keys:admin".into(),
            Permission::KeysEncrypt(p) => format!("keys:encrypt:{}", k(p)),
            Permission::KeysDecrypt(p) => format!("keys:decrypt:{}", k(p)),
            Permission::VouchersIssue => "vouchers:issue".into(),
            Permission::VouchersRedeem => "vouchers:redeem".into(),
            Permission::VouchersRevoke => "vouchers:revoke".into(),
            Permission::AuditRead => "audit:read".into(),
            Permission::RegistrationsSubmit => "registrations:submit".into(),
            Permission::RegistrationsRead => "registrations:read".into(),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Name in the audit log.
    pub name: String,
    /// What it may do.
    pub permissions: Vec<Permission>,
}

impl Caller {
    /// Whether the caller holds `wanted`.
    pub fn may(&self, wanted: &Permission) -> bool {
        self.permissions.iter().any(|p| p.grants(wanted))
    }
}

/// Static tokens known to the server: from the configuration and from the database.
#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    entries: Vec<(String, [u8; 32], Vec<Permission>)>,
}

/// SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenTable {
    /// Adds a token by the SHA-256 of its text.
    pub fn add(&mut self, name: String, hash: [u8; 32], permissions: Vec<Permission>) {
        self.entries.push((name, hash, permissions));
    }

    /// The caller a bearer token belongs to. Every entry is compared, in constant time, so the
    /// time taken says nothing about which (or whether a) token matched.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let h = token_hash(token);
        let mut found = None;
        for (name, hash, perms) in &self.entries {
            if bool::from(hash.ct_eq(&h)) && found.is_none() {
                found = Some(Caller { name: name.clone(), permissions: perms.clone() });
            }
        }
        found
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses hex SHA-256 text.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_and_match() {
        let any = Permission::parse("keys:decrypt:*").unwrap();
        let pii = Permission::parse("keys:encrypt:pii").unwrap();
        assert!(any.grants(&Permission::KeysDecrypt(KeyPattern::Name("pii".into()))));
        assert!(!any.grants(&Permission::KeysEncrypt(KeyPattern::Name("pii".into()))));
        assert!(pii.grants(&Permission::KeysEncrypt(KeyPattern::Name("pii".into()))));
        assert!(!pii.grants(&Permission::KeysEncrypt(KeyPattern::Name("pii-seal".into()))));
        for bad in ["keys", "keys:*", "keys:encrypt", "keys:encrypt:PII", "keys:encrypt:a:b", "audit", "admin"] {
            assert_eq!(Permission::parse(bad), None, "{bad}");
        }
        for good in
            ["keys:admin", "vouchers:issue", "vouchers:redeem", "vouchers:revoke", "audit:read", "keys:decrypt:*"]
        {
            assert_eq!(Permission::parse(good).unwrap().to_text(), good);
        }
    }

    #[test]
    fn tokens_authenticate_by_hash() {
        let mut t = TokenTable::default();
        t.add("officer".into(), token_hash("s3cret"), vec![Permission::AuditRead]);
        assert_eq!(t.authenticate("s3cret").unwrap().name, "officer");
        assert!(t.authenticate("s3cre").is_none());
        assert!(t.authenticate("").is_none());
        assert_eq!(parse_hash(&crate::db::hex(&token_hash("x"))), Some(token_hash("x")));
        assert_eq!(parse_hash("zz"), None);
    }
}
