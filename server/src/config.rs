//! Configuration: one struct, TOML with unknown keys refused, `VOUCHSAFE_*` environment
//! overrides, defaults that run a development server with no file at all.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use vouchsafe_keystore::KeystoreConfig;

/// Top-level keys the environment may override (`VOUCHSAFE_LISTEN`, `VOUCHSAFE_KEYSTORE__MODULE`).
const SECTIONS: [&str; 5] = ["listen", "database_url", "issuer", "keystore", "auth"];
/// The only settings that are not strings; every other value from the environment stays a
/// string, so a PIN of digits is a string and never appears in a type error.
const NON_STRING_KEYS: [&str; 1] = ["max_sessions"];

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
        let parsed = if NON_STRING_KEYS.contains(&last) {
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
}
