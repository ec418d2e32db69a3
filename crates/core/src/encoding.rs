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

struct StrictObjectVisitor;

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_any`, not `deserialize_map`, and every `visit_*` answered below: serde's
        // "invalid type" errors format the offending value, which pulls float formatting (~14 KB)
        // into the WebAssembly build. A plain message says the same here.
        d.deserialize_any(StrictObjectVisitor)
    }
}

fn not_an_object<E: de::Error, T>() -> Result<T, E> {
    Err(E::custom("expected a JSON object"))
}

impl<'de> Visitor<'de> for StrictObjectVisitor {
    type Value = StrictObject;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, StrictValue>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom("duplicate member name"));
            }
            out.insert(k, v.0);
        }
        Ok(StrictObject(out))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<StrictObject, E> {
        not_an_object()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<StrictObject, E> {
        not_an_object()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<StrictObject, E> {
        not_an_object()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrictObject, E> {
        not_an_object()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<StrictObject, E> {
        not_an_object()
    }
    fn visit_unit<E: de::Error>(self) -> Result<StrictObject, E> {
        not_an_object()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<StrictObject, A::Error> {
        not_an_object()
    }
}

/// A JSON value in which no object, at any depth, repeats a member name (an `epk`, a JWKS key,
/// a `status` claim are objects inside objects).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
                Ok(StrictValue(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)))
            }
            fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.into())))
            }
            fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_none<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
                let mut out = alloc::vec::Vec::new();
                while let Some(StrictValue(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(StrictValue(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrictValue, A::Error> {
                let obj = StrictObjectVisitor.visit_map(map)?;
                Ok(StrictValue(Value::Object(obj.0.into_iter().collect())))
            }
        }
        d.deserialize_any(V)
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
        assert!(StrictObject::parse(br#"{"epk":{"x":"a","x":"b"}}"#, "h").is_err(), "nested");
        assert!(StrictObject::parse(br#"{"a":[{"k":1,"k":2}]}"#, "h").is_err(), "inside arrays");
        let deep = StrictObject::parse(br#"{"a":[1,-2,1.5,true,null,"s",{"b":{}}]}"#, "h").unwrap();
        assert_eq!(deep.0["a"][6]["b"], serde_json::json!({}));
        for not_object in [&br#"[1]"#[..], b"1", b"-1", b"1.5", br#""s""#, b"null", b"true", b""] {
            assert!(StrictObject::parse(not_object, "h").is_err(), "{}", String::from_utf8_lossy(not_object));
        }
        assert!(StrictObject::parse(br#"{"a":1} x"#, "h").is_err());
        let o = StrictObject::parse(br#"{"a":"b","n":1}"#, "h").unwrap();
        assert_eq!(o.opt_str("a").unwrap(), Some("b"));
        assert!(o.opt_str("n").is_err());
        assert_eq!(o.opt_str("zz").unwrap(), None);
    }
}
