//! OIDC bearer JWTs (Keycloak is the reference IdP), validated with jsonwebtoken against the
//! provider's JWKS. The algorithm comes from the key the `kid` selects (RSA → RS256, P-256 →
//! ES256), never from the token; issuer, audience and expiry are always checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::auth::{Caller, Permission};
use crate::config::OidcConfig;

/// The soonest the JWKS is fetched again because a token named an unknown `kid`.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The JWKS is fetched again at least this often, so keys the provider withdraws stop being
/// trusted.
const MAX_KEY_AGE: Duration = Duration::from_secs(600);
/// Clock skew tolerated on `exp`/`nbf`.
const LEEWAY_SECONDS: u64 = 60;

enum Source {
    File(PathBuf),
    Url(String),
}

/// Verifies OIDC access tokens.
pub struct OidcVerifier {
    issuer: String,
    audience: String,
    source: Source,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    last_fetch: Mutex<Option<Instant>>,
    refresh_interval: Duration,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier").field("issuer", &self.issuer).field("audience", &self.audience).finish()
    }
}

/// Why a token was refused (safe to show the caller).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Not a JWT, or a header/claim of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not the one the selected key allows.
    #[error("token algorithm not accepted")]
    Algorithm,
    /// No key with the token's `kid`.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// Signature, issuer, audience or time checks failed.
    #[error("token rejected: {0}")]
    Invalid(String),
}

fn parse_jwks(text: &str) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
            _ => continue, // other key types are not accepted for access tokens
        };
        // Keys marked for encryption never verify tokens.
        if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, (alg, key));
        }
    }
    Ok(keys)
}

impl OidcVerifier {
    /// Loads the provider's keys (fails start-up if they cannot be read).
    pub async fn new(config: &OidcConfig) -> Result<Self, String> {
        let source = if config.jwks.starts_with("http://") || config.jwks.starts_with("https://") {
            Source::Url(config.jwks.clone())
        } else {
            Source::File(PathBuf::from(&config.jwks))
        };
        // TLS for https JWKS URLs: ring as rustls's provider (a no-op if one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let v = OidcVerifier {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            source,
            http,
            keys: RwLock::default(),
            last_fetch: Mutex::new(None),
            refresh_interval: REFRESH_INTERVAL,
        };
        let keys = v.fetch().await?;
        if keys.is_empty() {
            return Err(format!("auth.oidc.jwks ({}) holds no RSA or P-256 signing key", config.jwks));
        }
        *v.keys.write().map_err(|_| "lock poisoned")? = keys;
        *v.last_fetch.lock().await = Some(Instant::now());
        Ok(v)
    }

    /// Sets the soonest the JWKS is fetched again for an unknown `kid` (default 30 s).
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    async fn fetch(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
        let text = match &self.source {
            Source::File(p) => {
                std::fs::read_to_string(p).map_err(|e| format!("auth.oidc.jwks {}: {e}", p.display()))?
            }
            Source::Url(u) => {
                let resp = self.http.get(u).send().await.map_err(|e| format!("auth.oidc.jwks {u}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("auth.oidc.jwks {u}: HTTP {}", resp.status()));
                }
                resp.text().await.map_err(|e| format!("auth.oidc.jwks {u}: {e}"))?
            }
        };
        parse_jwks(&text)
    }

    /// Fetches the JWKS again if the last fetch is old enough (a provider that rotated keys).
    async fn refresh(&self, min_age: Duration) -> bool {
        // Never queue behind a fetch in progress (it can take seconds): that caller refreshes.
        let Ok(mut last) = self.last_fetch.try_lock() else { return false };
        if last.is_some_and(|t| t.elapsed() < min_age) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) if !keys.is_empty() => {
                if let Ok(mut k) = self.keys.write() {
                    *k = keys;
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the identity provider's JWKS");
                false
            }
        }
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Validates `token` and turns its claims into a caller.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        let kid = header.kid.ok_or(OidcError::UnknownKey)?;
        self.refresh(MAX_KEY_AGE).await;
        let found = match self.key(&kid) {
            Some(k) => Some(k),
            None if self.refresh(self.refresh_interval).await => self.key(&kid),
            None => None,
        };
        let (alg, key) = found.ok_or(OidcError::UnknownKey)?;
        if header.alg != alg {
            return Err(OidcError::Algorithm);
        }
        // An access token, not an ID token or anything else the provider signs.
        if header.typ.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("JWT") && !t.eq_ignore_ascii_case("at+jwt")) {
            return Err(OidcError::Invalid("not an access token".into()));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            OidcError::Invalid(
                match e.kind() {
                    K::ExpiredSignature => "expired",
                    K::ImmatureSignature => "not yet valid",
                    K::InvalidIssuer => "wrong issuer",
                    K::InvalidAudience => "wrong audience",
                    K::InvalidSignature => "bad signature",
                    K::MissingRequiredClaim(_) => "missing claim",
                    _ => "invalid",
                }
                .into(),
            )
        })?;
        // Keycloak marks its tokens with a `typ` claim: "Bearer" for access tokens, "ID" for ID
        // tokens (whose audience is the client id, so they would otherwise pass).
        if data.claims["typ"].as_str().is_some_and(|t| !t.eq_ignore_ascii_case("Bearer")) {
            return Err(OidcError::Invalid("not an access token".into()));
        }
        // Callers are told apart by `sub` in the audit log and for idempotent retries.
        if data.claims["sub"].as_str().is_none_or(str::is_empty) {
            return Err(OidcError::Invalid("sub must be a non-empty string".into()));
        }
        Ok(self.caller(&data.claims))
    }

    /// Permissions from `scope` (space-separated), Keycloak `realm_access.roles` and
    /// `resource_access.<audience>.roles`; strings that are not vouchsafe permissions are ignored.
    fn caller(&self, claims: &Value) -> Caller {
        let mut names: Vec<&str> = claims["scope"].as_str().map(|s| s.split_whitespace().collect()).unwrap_or_default();
        for holder in [&claims["realm_access"], &claims["resource_access"][self.audience.as_str()]] {
            if let Some(roles) = holder["roles"].as_array() {
                names.extend(roles.iter().filter_map(Value::as_str));
            }
        }
        let mut permissions: Vec<Permission> = names.into_iter().filter_map(Permission::parse).collect();
        permissions.dedup();
        // `sub` is the provider's stable id for the user; names users can edit stay out of the log.
        let sub = claims["sub"].as_str().unwrap_or_default();
        Caller { name: format!("oidc:{sub}"), permissions }
    }
}
