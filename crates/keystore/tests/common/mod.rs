//! Test set-up for SoftHSM2: a private configuration under target/softhsm (cargo's [env] points
//! SOFTHSM2_CONF at it) and one freshly initialised token per test process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use vouchsafe_keystore::{KeyStore, Pkcs11Config, Pkcs11KeyStore, SoftKeyStore};

pub const PIN: &str = "4321-test-pin";
/// Set by a parent test process that re-runs this binary to check a real restart.
pub const TOKEN_ENV: &str = "VOUCHSAFE_TEST_TOKEN";

pub fn module_path() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("VOUCHSAFE_PKCS11_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into()),
    );
    assert!(
        p.exists(),
        "PKCS#11 module {} not found: install SoftHSM2 (scripts/setup does: apt-get install softhsm2)",
        p.display()
    );
    p
}

fn conf_path() -> PathBuf {
    PathBuf::from(std::env::var("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set by .cargo/config.toml"))
}

/// The token label this process uses; created (with its config) on first call.
pub fn token_label() -> &'static str {
    static LABEL: OnceLock<String> = OnceLock::new();
    LABEL.get_or_init(|| {
        if let Ok(label) = std::env::var(TOKEN_ENV) {
            return label;
        }
        let conf = conf_path();
        let dir = conf.parent().unwrap().to_path_buf();
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        if !conf.exists() {
            std::fs::write(
                &conf,
                format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
            )
            .unwrap();
        }
        remove_stale_tokens(&tokens);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
        let label = format!("vs-{}-{nanos}", std::process::id());
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label, "--pin", PIN, "--so-pin", "8765-test-so"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs (scripts/setup installs softhsm2)");
        assert!(out.status.success(), "softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr));
        label
    })
}

/// Token directories left by earlier test runs (older than an hour) are removed so the
/// directory does not grow without end on a developer's machine.
fn remove_stale_tokens(tokens: &Path) {
    let Ok(entries) = std::fs::read_dir(tokens) else { return };
    for e in entries.flatten() {
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_some_and(|age| age > Duration::from_secs(3600)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn pkcs11_config() -> Pkcs11Config {
    Pkcs11Config {
        module: module_path(),
        token_label: token_label().to_string(),
        pin: Some(PIN.to_string().into()),
        pin_env: None,
        max_sessions: Some(8),
        inline_below_us: None,
    }
}

pub fn softhsm() -> Arc<dyn KeyStore> {
    Arc::new(Pkcs11KeyStore::open(&pkcs11_config()).expect("SoftHSM keystore opens"))
}

pub const TEST_MASTER: [u8; 32] = [0x4d; 32];

pub fn soft() -> Arc<dyn KeyStore> {
    Arc::new(SoftKeyStore::from_master_key(TEST_MASTER, "test"))
}
