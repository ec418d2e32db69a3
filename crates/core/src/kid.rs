//! Key ids: `<name>.v<version>` (ARCHITECTURE.md, key hierarchy).

use alloc::format;
use alloc::string::String;

/// Formats the kid of version `version` of key `name`.
pub fn format(name: &str, version: u32) -> String {
    format!("{name}.v{version}")
}

/// Splits a kid into key name and version; `None` unless it is `<name>.v<positive integer>`
/// with a valid key name.
pub fn parse(kid: &str) -> Option<(&str, u32)> {
    let (name, v) = kid.rsplit_once(".v")?;
    if !valid_name(name) || v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((name, v.parse().ok()?))
}

/// Whether `name` is a valid key name: 1–64 of `a-z`, `0-9`, `-`, `_`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_round_trip_and_reject_odd_forms() {
        assert_eq!(format("pii", 3), "pii.v3");
        assert_eq!(parse("pii.v3"), Some(("pii", 3)));
        assert_eq!(parse("pii-seal.v12"), Some(("pii-seal", 12)));
        for bad in ["pii", "pii.v", "pii.v0", "pii.v01", "Pii.v1", ".v1", "pii.v1x", "pii.v-1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
