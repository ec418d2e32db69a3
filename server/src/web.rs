//! The web apps (`web/`) and the npm package's browser build as static files: `/` (an index),
//! `/portal/`, `/admin/`, `/verifier/`, `/shared/`, `/vendor/jsQR.js` and `/vendor/vouchsafe/`.
//! Files are revalidated on every load (`no-cache`); the apps' service workers keep them for
//! offline use.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Redirect;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::WebConfig;

/// The apps under `web/`.
pub const APPS: [&str; 3] = ["portal", "admin", "verifier"];

/// The import map the portal and verifier pages carry inline, byte for byte: the only inline
/// script the Content-Security-Policy allows (by its hash).
pub const IMPORT_MAP: &str = r#"{ "imports": { "vouchsafe": "/vendor/vouchsafe/index.js" } }"#;

/// The apps' Content-Security-Policy: scripts and data from this origin only, WebAssembly
/// compilation, photos as blob: URLs, no framing, no plugins.
pub fn content_security_policy() -> String {
    use base64ct::Encoding;
    use sha2::Digest;
    let hash = base64ct::Base64::encode_string(&sha2::Sha256::digest(IMPORT_MAP.as_bytes()));
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'sha256-{hash}'; img-src 'self' blob: data:; \
         media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The static routes, or an empty router when `[web] enabled = false`.
pub fn router(config: &WebConfig) -> Router {
    if !config.enabled {
        return Router::new();
    }
    let dir = &config.dir;
    // ServeDir over `dir` sees the whole request path: /portal/x is dir/portal/x.
    let files = ServeDir::new(dir);
    let mut r = Router::new()
        .route_service("/", ServeFile::new(dir.join("index.html")))
        .route_service("/shared/{*path}", files.clone())
        .route_service("/vendor/jsQR.js", ServeFile::new(dir.join("vendor").join("jsQR.js")))
        .nest_service("/vendor/vouchsafe", ServeDir::new(&config.package_dir));
    for app in APPS {
        let slash = format!("/{app}/");
        r = r
            .route(&format!("/{app}"), get(move || async move { Redirect::permanent(&slash) }))
            .route_service(&format!("/{app}/"), files.clone())
            .route_service(&format!("/{app}/{{*path}}"), files.clone());
    }
    let csp =
        HeaderValue::from_str(&content_security_policy()).unwrap_or(HeaderValue::from_static("default-src 'self'"));
    r.layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, csp))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
}

/// What is missing for the apps to load, if anything (a warning at start-up, not an error: the
/// API works without them).
pub fn missing(config: &WebConfig) -> Vec<String> {
    let mut out = Vec::new();
    if !config.enabled {
        return out;
    }
    for app in APPS {
        let p = config.dir.join(app).join("index.html");
        if !p.is_file() {
            out.push(p.display().to_string());
        }
    }
    for p in [config.dir.join("vendor").join("jsQR.js"), config.package_dir.join("pkg").join("vouchsafe_wasm_bg.wasm")]
    {
        if !p.is_file() {
            out.push(p.display().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages' inline import map is exactly the one whose hash the policy allows.
    #[test]
    fn pages_carry_the_allowed_import_map() {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
        for app in ["portal", "verifier"] {
            let html = std::fs::read_to_string(web.join(app).join("index.html")).unwrap_or_default();
            assert!(html.contains(&format!(r#"<script type="importmap">{IMPORT_MAP}</script>"#)), "{app}");
        }
        let admin = std::fs::read_to_string(web.join("admin/index.html")).unwrap_or_default();
        assert!(!admin.contains("<script>") && !admin.contains("importmap"), "admin has no inline script");
        assert!(content_security_policy().contains("'wasm-unsafe-eval' 'sha256-"));
    }
}
