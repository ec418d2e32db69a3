//! Configuration: one struct, TOML with unknown keys refused, `VOUCHSAFE_*` environment
//! overrides, defaults that run a development server with no file at all.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use vouchsafe_keystore::KeystoreConfig;

/// Top-level keys the environment may override (`VOUCHSAFE_LISTEN`, `VOUCHSAFE_KEYSTORE__MODULE`).
const SECTIONS: [&str; 7] = ["listen", "database_url", "issuer", "keystore", "auth", "vouchers", "web"];
/// The only settings that are not strings; every other value from the environment stays a
/// string, so a PIN of digits is a string and never appears in a type error.
const NON_STRING_KEYS: [&str; 3] = ["max_sessions", "inline_below_us", "status_list_size"];
/// The settings that are booleans (`true`/`false`, `1`/`0` from the environment).
const BOOL_KEYS: [&str; 1] = ["enabled"];

/// The server's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://path` (relative to the working directory) or `postgres://…`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// The `iss` of vouchers and status lists.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Where keys live.
    #[serde(default)]
    pub keystore: KeystoreConfig,
    /// Who may call the API.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Voucher issuance and status lists.
    #[serde(default)]
    pub vouchers: VoucherConfig,
    /// The web apps.
    #[serde(default)]
    pub web: WebConfig,
}

/// `[web]`: the web apps at `/portal/`, `/admin/` and `/verifier/`, and the npm package's
/// browser build they import, at `/vendor/vouchsafe/`. Paths are relative to the working
/// directory (`scripts/serve` runs from the repository, after `scripts/build-web`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the apps (and create the portal's keys `pii` and `pii-seal` at start if missing).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The apps' directory.
    #[serde(default = "default_web_dir")]
    pub dir: std::path::PathBuf,
    /// The npm package's browser build (`index.js` and `pkg/`).
    #[serde(default = "default_package_dir")]
    pub package_dir: std::path::PathBuf,
}

fn yes() -> bool {
    true
}
fn default_web_dir() -> std::path::PathBuf {
    "web".into()
}
fn default_package_dir() -> std::path::PathBuf {
    "npm/web".into()
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { enabled: true, dir: default_web_dir(), package_dir: default_package_dir() }
    }
}

/// `[vouchers]`. Durations are seconds or humantime strings (`"30d"`, `"5m"`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherConfig {
    /// The `ecdsa-p256` key that signs vouchers and status lists; created at first use if missing.
    #[serde(default = "default_voucher_key")]
    pub key: String,
    /// Validity of a voucher whose request gives no `expires_in`.
    #[serde(default = "default_expires_in", deserialize_with = "duration_secs")]
    pub default_expires_in: u64,
    /// The longest validity a request may ask for.
    #[serde(default = "default_max_expires_in", deserialize_with = "duration_secs")]
    pub max_expires_in: u64,
    /// Entries per new status list (a multiple of 8, 1 024 to 8 388 608).
    #[serde(default = "default_status_list_size")]
    pub status_list_size: u64,
    /// A status list token's `ttl`: how often verifiers should fetch it again.
    #[serde(default = "default_status_ttl", deserialize_with = "duration_secs")]
    pub status_list_ttl: u64,
    /// A status list token's lifetime (`exp` − `iat`): how long an offline verifier may rely on
    /// its last copy.
    #[serde(default = "default_status_lifetime", deserialize_with = "duration_secs")]
    pub status_list_lifetime: u64,
    /// Public base URL of this server for status list URIs; defaults to `issuer`.
    pub public_url: Option<String>,
}

fn default_voucher_key() -> String {
    "vouchers".into()
}
fn default_expires_in() -> u64 {
    30 * 86_400
}
fn default_max_expires_in() -> u64 {
    400 * 86_400
}
fn default_status_list_size() -> u64 {
    1 << 17
}
fn default_status_ttl() -> u64 {
    300
}
fn default_status_lifetime() -> u64 {
    14 * 86_400
}

impl Default for VoucherConfig {
    fn default() -> Self {
        VoucherConfig {
            key: default_voucher_key(),
            default_expires_in: default_expires_in(),
            max_expires_in: default_max_expires_in(),
            status_list_size: default_status_list_size(),
            status_list_ttl: default_status_ttl(),
            status_list_lifetime: default_status_lifetime(),
            public_url: None,
        }
    }
}

/// A duration as whole seconds, or a humantime string (`"30d"`, `"12h"`).
fn duration_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(s),
        Raw::Text(t) => {
            t.trim().parse::<u64>().or_else(|_| humantime::parse_duration(&t).map(|d| d.as_secs())).map_err(|_| {
                serde::de::Error::custom(format!("'{t}' is not a duration (seconds, or e.g. \"30d\", \"5m\")"))
            })
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: static API tokens.
    #[serde(default)]
    pub tokens: Vec<StaticToken>,
    /// `[auth.oidc]`: OIDC bearer JWTs.
    pub oidc: Option<OidcConfig>,
}

/// One static API token. Give `sha256` (hex of the token's SHA-256) rather than `token` so the
/// configuration holds no secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// Who this token is, in the audit log.
    pub name: String,
    /// The token itself.
    pub token: Option<SecretString>,
    /// Hex SHA-256 of the token.
    pub sha256: Option<String>,
    /// Permissions, e.g. `keys:encrypt:pii`, `keys:decrypt:*`, `vouchers:issue`.
    pub permissions: Vec<String>,
}

/// `[auth.oidc]`: bearer JWTs from an OpenID Connect provider (Keycloak is the reference).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// The provider's JWKS: an `http(s)://` URL or a file path.
    pub jwks: String,
    /// Expected `aud` (also the Keycloak client whose `resource_access` roles count).
    pub audience: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_database_url() -> String {
    "sqlite://data/vouchsafe.db".into()
}

fn default_issuer() -> String {
    "http://127.0.0.1:8080".into()
}

impl Default for Config {
    fn default() -> Self {
        // An empty table always deserialises: every field has a default.
        Config {
            listen: default_listen(),
            database_url: default_database_url(),
            issuer: default_issuer(),
            keystore: KeystoreConfig::default(),
            auth: AuthConfig::default(),
            vouchers: VoucherConfig::default(),
            web: WebConfig::default(),
        }
    }
}

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `file` (if any), then applies `VOUCHSAFE_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                text.parse::<toml::Table>().map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError("database_url must start with sqlite: or postgres://".into()));
        }
        let v = &self.vouchers;
        if !vouchsafe_core::kid::valid_name(&v.key) {
            return Err(ConfigError("vouchers.key: a key name is 1–64 of a-z, 0-9, '-', '_'".into()));
        }
        if !v.status_list_size.is_multiple_of(8) || !(1024..=(8 << 20)).contains(&v.status_list_size) {
            return Err(ConfigError("vouchers.status_list_size: a multiple of 8 from 1024 to 8388608".into()));
        }
        if v.default_expires_in == 0 || v.default_expires_in > v.max_expires_in {
            return Err(ConfigError("vouchers.default_expires_in: more than 0 and at most max_expires_in".into()));
        }
        if v.status_list_lifetime == 0 {
            return Err(ConfigError("vouchers.status_list_lifetime must be more than 0".into()));
        }
        for t in &self.auth.tokens {
            if t.token.is_some() == t.sha256.is_some() {
                return Err(ConfigError(format!("auth.tokens '{}': give exactly one of token or sha256", t.name)));
            }
            if let Some(h) = &t.sha256
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(ConfigError(format!("auth.tokens '{}': sha256 must be 64 hex digits", t.name)));
            }
            for p in &t.permissions {
                crate::auth::Permission::parse(p)
                    .ok_or_else(|| ConfigError(format!("auth.tokens '{}': unknown permission '{p}'", t.name)))?;
            }
        }
        Ok(())
    }
}

/// `VOUCHSAFE_LISTEN=…` sets `listen`; `VOUCHSAFE_KEYSTORE__PIN_ENV=…` sets `keystore.pin_env`.
/// Values are strings, except for the few settings that are numbers.
/// Variables whose first segment is not a configuration key are left alone: they may be ones a
/// `*_env` setting names.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("VOUCHSAFE_") else { continue };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if !SECTIONS.contains(&path[0].as_str()) {
            continue;
        }
        if path.len() == 1 && matches!(path[0].as_str(), "keystore" | "auth") {
            return Err(ConfigError(format!("{name}: set a key inside the section, e.g. VOUCHSAFE_{}__<KEY>", rest)));
        }
        let last = path[path.len() - 1].as_str();
        let parsed = if BOOL_KEYS.contains(&last) {
            match value.as_str() {
                "true" | "1" => toml::Value::Boolean(true),
                "false" | "0" => toml::Value::Boolean(false),
                _ => return Err(ConfigError(format!("{name} must be true or false"))),
            }
        } else if NON_STRING_KEYS.contains(&last) {
            value
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| ConfigError(format!("{name} must be a number")))?
        } else {
            toml::Value::String(value)
        };
        let mut node = &mut *table;
        for seg in &path[..path.len() - 1] {
            node = node
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| ConfigError(format!("{name}: {seg} is not a section")))?;
        }
        node.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.starts_with("sqlite:"));
        assert!(matches!(c.keystore, KeystoreConfig::Soft(_)));
    }

    #[test]
    fn environment_overrides_and_nests() {
        let c = Config::load(
            None,
            env(&[
                ("VOUCHSAFE_LISTEN", "127.0.0.1:9999"),
                ("VOUCHSAFE_KEYSTORE__PROVIDER", "pkcs11"),
                ("VOUCHSAFE_KEYSTORE__MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
                ("VOUCHSAFE_KEYSTORE__TOKEN_LABEL", "vouchsafe"),
                ("VOUCHSAFE_KEYSTORE__PIN_ENV", "VOUCHSAFE_HSM_PIN"),
                ("VOUCHSAFE_HSM_PIN", "not a config key"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert!(matches!(c.keystore, KeystoreConfig::Pkcs11(ref p) if p.token_label == "vouchsafe"));
    }

    #[test]
    fn environment_values_stay_strings_and_are_never_echoed() {
        let c = Config::load(
            None,
            env(&[
                ("VOUCHSAFE_KEYSTORE__PROVIDER", "pkcs11"),
                ("VOUCHSAFE_KEYSTORE__MODULE", "/m.so"),
                ("VOUCHSAFE_KEYSTORE__TOKEN_LABEL", "1234"),
                ("VOUCHSAFE_KEYSTORE__PIN", "246810"),
                ("VOUCHSAFE_KEYSTORE__MAX_SESSIONS", "6"),
            ]),
        )
        .unwrap();
        let KeystoreConfig::Pkcs11(p) = c.keystore else { panic!() };
        assert_eq!(
            (p.token_label.as_str(), p.max_sessions),
            ("1234", Some(6)),
            "digits stay a string where one is expected"
        );
        let e = Config::load(None, env(&[("VOUCHSAFE_AUTH", "s3cret-value")])).unwrap_err();
        assert!(!e.to_string().contains("s3cret-value"), "{e}");
        let e = Config::load(None, env(&[("VOUCHSAFE_KEYSTORE__MAX_SESSIONS", "many")])).unwrap_err();
        assert!(e.to_string().contains("number"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");
        std::fs::write(&path, "[auth]\n[[auth.tokens]]\nname = \"x\"\ntoken = \"t\"\npermissions = [\"keys:fly\"]\n")
            .unwrap();
        assert!(Config::load(Some(&path), env(&[])).unwrap_err().to_string().contains("keys:fly"));
        std::fs::write(&path, "database_url = \"mysql://x\"\n").unwrap();
        assert!(Config::load(Some(&path), env(&[])).is_err());
        assert!(Config::load(None, env(&[("VOUCHSAFE_KEYSTORE__PROVIDR", "soft")])).is_err());
    }

    #[test]
    fn voucher_settings_take_durations() {
        let c = Config::load(
            None,
            env(&[
                ("VOUCHSAFE_VOUCHERS__DEFAULT_EXPIRES_IN", "7d"),
                ("VOUCHSAFE_VOUCHERS__STATUS_LIST_TTL", "60"),
                ("VOUCHSAFE_VOUCHERS__STATUS_LIST_SIZE", "2048"),
            ]),
        )
        .unwrap();
        assert_eq!((c.vouchers.default_expires_in, c.vouchers.status_list_ttl), (7 * 86_400, 60));
        assert_eq!(c.vouchers.status_list_size, 2048);
        assert_eq!(c.vouchers.key, "vouchers");
        assert!(Config::load(None, env(&[("VOUCHSAFE_VOUCHERS__STATUS_LIST_SIZE", "1000")])).is_err());
        assert!(Config::load(None, env(&[("VOUCHSAFE_VOUCHERS__DEFAULT_EXPIRES_IN", "soon")])).is_err());
        assert!(Config::load(None, env(&[("VOUCHSAFE_VOUCHERS__DEFAULT_EXPIRES_IN", "1000d")])).is_err());
    }
}
