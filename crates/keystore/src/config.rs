use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// `[keystore]` in the server's configuration: which provider, and its settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum KeystoreConfig {
    /// `provider = "soft"`: keys encrypted under a master key, RustCrypto in process.
    Soft(SoftConfig),
    /// `provider = "pkcs11"`: keys as non-extractable objects on a PKCS#11 token.
    Pkcs11(Pkcs11Config),
}

impl Default for KeystoreConfig {
    fn default() -> Self {
        KeystoreConfig::Soft(SoftConfig::default())
    }
}

/// Settings of the soft keystore. With neither set, `./data/master.key` is used (created 0600 on
/// first start).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftConfig {
    /// A file holding the 32-byte master key, base64url; created with mode 0600 if missing.
    pub master_key_file: Option<PathBuf>,
    /// An environment variable holding the master key, base64url (takes precedence).
    pub master_key_env: Option<String>,
}

/// Settings of the PKCS#11 keystore.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// Label of the token holding vouchsafe's keys (slots are found by label: ids can change).
    pub token_label: String,
    /// The user PIN. Prefer `pin_env`.
    pub pin: Option<SecretString>,
    /// An environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// Most sessions open at once (one per concurrent operation); default 2 × CPUs, at least 4.
    pub max_sessions: Option<usize>,
    /// While the token's calls take less than this many microseconds on average, the server
    /// runs one call at a time on the request's own thread instead of handing it to a blocking
    /// thread (an HSM on the same machine answers faster than a hand-off costs). Default 250;
    /// 0 always hands calls off (for a network HSM whose calls may stall).
    pub inline_below_us: Option<u64>,
}
