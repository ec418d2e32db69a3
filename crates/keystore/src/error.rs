use thiserror::Error;

/// Everything a keystore operation can fail with. Messages never contain key material or PINs.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum KeystoreError {
    /// The keystore cannot be reached or used right now (token removed, session lost, HSM down).
    /// The server answers 503 `keystore_unavailable`; the operation may be retried.
    #[error("keystore unavailable: {0}")]
    Unavailable(String),
    /// The keystore's configuration is wrong (bad module path, unknown token, bad master key).
    #[error("keystore configuration: {0}")]
    Config(String),
    /// The token lacks a mechanism vouchsafe needs; the value names it (e.g. `CKM_AES_GCM`).
    #[error("the token does not support {0}, which vouchsafe needs")]
    MissingMechanism(&'static str),
    /// The handle names no key in this keystore.
    #[error("key not found in the keystore")]
    KeyNotFound,
    /// The operation does not fit the key's kind (e.g. signing with an AES key).
    #[error("the key's type does not support this operation")]
    WrongKeyType,
    /// Unwrapping failed: wrong key, or the wrapped key or its IV/tag were altered.
    #[error("decryption failed")]
    DecryptFailed,
    /// An input was malformed (e.g. a peer point not on P-256).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The provider does not offer this operation.
    #[error("not supported by this keystore: {0}")]
    NotSupported(&'static str),
    /// An unexpected failure inside the provider.
    #[error("keystore error: {0}")]
    Internal(String),
}

impl KeystoreError {
    /// The stable code the server's error body carries.
    pub fn code(&self) -> &'static str {
        match self {
            KeystoreError::Unavailable(_) => "keystore_unavailable",
            KeystoreError::Config(_) => "keystore_config",
            KeystoreError::MissingMechanism(_) => "keystore_config",
            KeystoreError::KeyNotFound => "key_not_found",
            KeystoreError::WrongKeyType => "wrong_key_type",
            KeystoreError::DecryptFailed => "decrypt_failed",
            KeystoreError::InvalidInput(_) => "invalid_request",
            KeystoreError::NotSupported(_) => "not_supported",
            KeystoreError::Internal(_) => "keystore_error",
        }
    }

    /// Whether the failure is the keystore being unreachable (worth a retry, HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KeystoreError::Unavailable(_))
    }
}

impl From<vouchsafe_core::Error> for KeystoreError {
    fn from(e: vouchsafe_core::Error) -> Self {
        match e {
            vouchsafe_core::Error::DecryptFailed => KeystoreError::DecryptFailed,
            vouchsafe_core::Error::BadSignature => {
                KeystoreError::Internal("the token returned an invalid signature".into())
            }
            vouchsafe_core::Error::InvalidKey(what) => KeystoreError::InvalidInput(what),
            other => KeystoreError::Internal(other.to_string()),
        }
    }
}
