//! base64url and strict JSON helpers shared by every format.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use base64ct::{Base64UrlUnpadded, Encoding};
use core::fmt;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::Error;

/// Encodes as base64url without padding (RFC 7515 §2).
pub fn b64e(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Decodes base64url without padding; padding, other alphabets and non-canonical trailing bits
/// are rejected.
pub fn b64d(s: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    Base64UrlUnpadded::decode_vec(s).map_err(|_| Error::Malformed(what))
}

/// Decodes base64url into exactly `N` bytes.
pub fn b64d_fixed<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    let decoded = Base64UrlUnpadded::decode(s, &mut out).map_err(|_| Error::Malformed(what))?;
    if decoded.len() != N {
        return Err(Error::Malformed(what));
    }
    Ok(out)
}

/// A JSON object whose member names are unique.
///
/// JSON parsers disagree on duplicate names (first wins, last wins, error); a token whose header
/// says `"alg":"ES256"` to one parser and `"alg":"none"` to another is a known attack, so
/// duplicates are refused outright.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StrictObject(pub BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom("duplicate member name"));
                    }
                    out.insert(k, v);
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl StrictObject {
    /// Parses `bytes` as one JSON object with unique member names.
    pub fn parse(bytes: &[u8], what: &'static str) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|_| Error::Malformed(what))
    }

    /// The member `name` as a string: `Ok(None)` when absent, an error when of another type.
    pub fn opt_str(&self, name: &'static str) -> Result<Option<&str>, Error> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Error::Malformed(name)),
        }
    }

    /// Whether `name` is present, whatever its value.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64e(b"\xfb\xff"), "-_8");
        assert_eq!(b64d("-_8", "x").unwrap(), b"\xfb\xff");
        assert!(b64d("-_8=", "x").is_err(), "padding");
        assert!(b64d("+/8", "x").is_err(), "standard alphabet");
        assert!(b64d("-_9", "x").is_err(), "non-canonical trailing bits");
        assert!(b64d("a", "x").is_err(), "impossible length");
        assert!(b64d_fixed::<2>("AAAA", "x").is_err(), "wrong fixed length");
    }

    #[test]
    fn duplicate_members_are_refused() {
        assert!(StrictObject::parse(br#"{"alg":"ES256","alg":"none"}"#, "h").is_err());
        assert!(StrictObject::parse(br#"[1]"#, "h").is_err());
        assert!(StrictObject::parse(br#"{"a":1} x"#, "h").is_err());
        let o = StrictObject::parse(br#"{"a":"b","n":1}"#, "h").unwrap();
        assert_eq!(o.opt_str("a").unwrap(), Some("b"));
        assert!(o.opt_str("n").is_err());
        assert_eq!(o.opt_str("zz").unwrap(), None);
    }
}
