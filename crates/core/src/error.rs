use core::fmt;

/// Every way a vouchsafe-core operation can fail.
///
/// Each variant has a stable [`code`](Error::code) that the server's JSON errors and the npm
/// package's `VouchsafeError.code` carry unchanged. Decryption and signature failures are single
/// opaque variants: they never say whether the key, the tag or the ciphertext was wrong.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input is not well-formed (bad base64url, JSON, part count, field type or length).
    Malformed(&'static str),
    /// The input is larger than the limit for its kind (1 MiB of plaintext or ciphertext).
    TooLarge,
    /// `alg` or `enc` is not one this profile accepts (e.g. `none`, `HS256`, `RSA1_5`).
    UnsupportedAlg,
    /// A header that vouchsafe always refuses is present (`crit`, `zip`, `jku`, `jwk`, `x5u`, `x5c`)
    /// or, for vouchers, any header besides `alg`, `typ` and `kid`. The value names the header.
    UnsupportedHeader(&'static str),
    /// A key is unusable: not P-256, not on the curve, wrong length, or carries private material
    /// where only a public key belongs.
    InvalidKey(&'static str),
    /// Authenticated decryption failed. Deliberately says nothing more.
    DecryptFailed,
    /// The sealed data's `ctx` is not the context the caller expected.
    ContextMismatch,
    /// The signature does not verify.
    BadSignature,
    /// No key with the token's `kid` (and the right `use`) is in the caller's key set.
    UnknownKid,
    /// `typ` is missing or is not the expected media type.
    BadType,
    /// The token's `exp` has passed (beyond the leeway).
    Expired,
    /// The token's `nbf` (or `iat`) lies in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not contain a configured audience.
    WrongAudience,
    /// A required claim is absent. The value names it.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an invalid value. The value names it.
    InvalidClaim(&'static str),
    /// The caller passed an argument outside what the API allows. The value says which.
    InvalidArgument(&'static str),
    /// The token has been revoked according to its status list.
    Revoked,
    /// A signing or key-agreement backend failed (used by in-memory key implementations).
    KeyOperation,
}

impl Error {
    /// The stable, snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::TooLarge => "too_large",
            Error::UnsupportedAlg => "unsupported_alg",
            Error::UnsupportedHeader(_) => "unsupported_header",
            Error::InvalidKey(_) => "invalid_key",
            Error::DecryptFailed => "decrypt_failed",
            Error::ContextMismatch => "context_mismatch",
            Error::BadSignature => "bad_signature",
            Error::UnknownKid => "unknown_kid",
            Error::BadType => "bad_type",
            Error::Expired => "expired",
            Error::NotYetValid => "not_yet_valid",
            Error::WrongIssuer => "wrong_issuer",
            Error::WrongAudience => "wrong_audience",
            Error::MissingClaim(_) => "missing_claim",
            Error::InvalidClaim(_) => "invalid_claim",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Revoked => "revoked",
            Error::KeyOperation => "key_operation_failed",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "malformed input: {what}"),
            Error::TooLarge => f.write_str("input exceeds the 1 MiB limit"),
            Error::UnsupportedAlg => f.write_str("unsupported algorithm"),
            Error::UnsupportedHeader(h) => write!(f, "header \"{h}\" is not accepted"),
            Error::InvalidKey(what) => write!(f, "invalid key: {what}"),
            Error::DecryptFailed => f.write_str("decryption failed"),
            Error::ContextMismatch => f.write_str("context does not match"),
            Error::BadSignature => f.write_str("signature verification failed"),
            Error::UnknownKid => f.write_str("no key with this kid in the key set"),
            Error::BadType => f.write_str("unexpected token type"),
            Error::Expired => f.write_str("token has expired"),
            Error::NotYetValid => f.write_str("token is not yet valid"),
            Error::WrongIssuer => f.write_str("unexpected issuer"),
            Error::WrongAudience => f.write_str("unexpected audience"),
            Error::MissingClaim(c) => write!(f, "required claim \"{c}\" is missing"),
            Error::InvalidClaim(c) => write!(f, "claim \"{c}\" is invalid"),
            Error::InvalidArgument(a) => write!(f, "invalid argument: {a}"),
            Error::Revoked => f.write_str("token has been revoked"),
            Error::KeyOperation => f.write_str("key operation failed"),
        }
    }
}

impl core::error::Error for Error {}
