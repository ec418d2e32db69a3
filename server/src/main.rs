//! `vouchsafe`: the key server and its admin commands. Parses configuration and serves; the
//! behaviour lives in the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vouchsafe_keystore::{KeyKind, KeystoreConfig};
use vouchsafe_server::auth::{Caller, Permission, TokenTable, parse_hash, token_hash};
use vouchsafe_server::config::ConfigError;
use vouchsafe_server::db::{AuditEntry, ChainCheck, Db, hex};
use vouchsafe_server::{AppState, Config, app};

#[derive(Parser)]
#[command(name = "vouchsafe", version, about = "Key manager for social-protection registries and voucher programmes")]
struct Cli {
    /// Configuration file (TOML). Without one, development defaults apply; VOUCHSAFE_* variables override either.
    #[arg(long, global = true, env = "VOUCHSAFE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Manage keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage API tokens stored in the database.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key: aes256-gcm (wraps data keys), ecdh-p256 (offline sealing), ecdsa-p256 (vouchers).
    Create {
        name: String,
        #[arg(long = "type")]
        kind: String,
    },
    /// List keys and their versions.
    List,
    /// Add a new current version.
    Rotate { name: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; exits 1 at the first broken link.
    Verify,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token; it is printed once and only its SHA-256 is stored.
    New {
        name: String,
        /// e.g. keys:encrypt:pii (repeat for more)
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
}

/// glibc's malloc gives threads arenas of their own (up to 8 per core) and each arena keeps what
/// was freed in it; over a long voucher stream the arenas fill one by one, and peak memory grew
/// ~30 % from a 10 000 to a 200 000 voucher stream. One arena, with glibc's per-thread caches in
/// front of it, keeps that growth near 10 %. With a PKCS#11 module two: the module allocates on
/// every call from the threads that sign in parallel (SoftHSM's OpenSSL rebuilds the curve on
/// each C_SignInit), and behind one arena's lock batch signing lost a quarter of its rate; the
/// module's own libraries are most of that process's memory, so its growth stays near 10 % too
/// (docs/BENCHMARKS.md). An arena limit the operator set (`MALLOC_ARENA_MAX`, or
/// `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) is left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn bound_malloc_arenas(arenas: i32) {
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tuned {
        // SAFETY: `mallopt` only sets a malloc tunable; it runs first thing in `main`, before
        // any other thread exists, with a documented parameter and a valid value.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas(_arenas: i32) {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Loaded before any thread exists, for the arena count; an error is reported by `run`.
    let config = Config::load(cli.config.as_deref(), std::env::vars());
    bound_malloc_arenas(if config.as_ref().is_ok_and(|c| matches!(c.keystore, KeystoreConfig::Pkcs11(_))) {
        2
    } else {
        1
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn run(cli: Cli, config: Result<Config, ConfigError>) -> Fallible<std::process::ExitCode> {
    let config = config?;
    let db = Db::connect(&config.database_url).await.map_err(|e| format!("database: {}", e.message))?;
    match cli.command {
        Command::Serve => serve(config, db).await,
        Command::Audit { command: AuditCommand::Verify } => {
            match db.verify_audit_chain().await.map_err(|e| e.message)? {
                ChainCheck::Intact { entries } => {
                    println!("audit chain intact: {entries} entries");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                ChainCheck::Broken { seq, reason } => {
                    println!("audit chain BROKEN at entry {seq}: {reason}");
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        Command::Token { command: TokenCommand::New { name, permissions } } => {
            for p in &permissions {
                Permission::parse(p).ok_or_else(|| format!("unknown permission '{p}'"))?;
            }
            let token = new_token()?;
            let mut tx = db.begin().await.map_err(|e| e.message)?;
            tx.insert_api_token(&name, &hex(&token_hash(&token)), &permissions).await.map_err(|e| e.message)?;
            tx.append_audit(&[cli_entry("tokens.create", &name)]).await.map_err(|e| e.message)?;
            tx.commit().await.map_err(|e| e.message)?;
            println!("{token}");
            eprintln!("token '{name}' created with {}; it is shown only now", permissions.join(", "));
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Keys { command } => {
            let state = state(config, db).await?;
            let cli_caller = Caller { name: "cli".into(), permissions: vec![Permission::KeysAdmin] };
            let shown = match command {
                KeysCommand::Create { name, kind } => {
                    vec![
                        vouchsafe_server::routes::keys::create_key(&state, &cli_caller, &name, &kind)
                            .await
                            .map_err(|e| e.message)?,
                    ]
                }
                KeysCommand::Rotate { name } => {
                    vec![
                        vouchsafe_server::routes::keys::rotate_key(&state, &cli_caller, &name)
                            .await
                            .map_err(|e| e.message)?,
                    ]
                }
                KeysCommand::List => {
                    let mut all = Vec::new();
                    for n in state.db().key_names().await.map_err(|e| e.message)? {
                        all.push(state.key(&n).await.map_err(|e| e.message)?);
                    }
                    all
                }
            };
            for k in shown {
                println!("{}", serde_json::to_string(&vouchsafe_server::routes::key_view(&k))?);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn cli_entry(action: &str, target: &str) -> AuditEntry {
    AuditEntry { actor: "cli".into(), action: action.into(), target: target.into(), outcome: "ok".into(), detail: None }
}

/// 32 random bytes, base64url, with a prefix that makes leaked tokens easy to grep for.
fn new_token() -> Fallible<String> {
    let mut b = [0u8; 32];
    vouchsafe_core::rand_core::TryRng::try_fill_bytes(&mut getrandom::SysRng, &mut b)
        .map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(format!("vsk_{}", vouchsafe_core::b64e(&b)))
}

async fn state(config: Config, db: Db) -> Fallible<AppState> {
    let ks_config = config.keystore.clone();
    let keystore = tokio::task::spawn_blocking(move || vouchsafe_keystore::open(&ks_config)).await??;
    let mut tokens = TokenTable::default();
    for t in &config.auth.tokens {
        let hash = match (&t.token, &t.sha256) {
            (Some(tok), _) => token_hash(secrecy::ExposeSecret::expose_secret(tok)),
            (None, Some(h)) => parse_hash(h).ok_or("bad sha256")?,
            (None, None) => return Err("token without secret".into()),
        };
        tokens.add(t.name.clone(), hash, t.permissions.iter().filter_map(|p| Permission::parse(p)).collect());
    }
    for (name, sha, perms) in db.api_tokens().await.map_err(|e| e.message)? {
        if let Some(hash) = parse_hash(&sha) {
            tokens.add(name, hash, perms.iter().filter_map(|p| Permission::parse(p)).collect());
        }
    }
    let oidc = match &config.auth.oidc {
        Some(o) => Some(vouchsafe_server::oidc::OidcVerifier::new(o).await?),
        None => None,
    };
    Ok(AppState::with_oidc(config, db, keystore, tokens, oidc))
}

/// The permissions of the development token printed at first start.
const DEV_PERMISSIONS: [&str; 9] = [
    "keys:admin",
    "keys:encrypt:*",
    "keys:decrypt:*",
    "vouchers:issue",
    "vouchers:redeem",
    "vouchers:revoke",
    "audit:read",
    "registrations:submit",
    "registrations:read",
];

async fn serve(config: Config, db: Db) -> Fallible<std::process::ExitCode> {
    // First start with no token anywhere: create a development token, print it once.
    // Only on a loopback address: an all-permission token printed by a server others can reach
    // is an open door.
    let no_tokens = config.auth.tokens.is_empty()
        && config.auth.oidc.is_none()
        && db.api_tokens().await.map_err(|e| e.message)?.is_empty();
    if no_tokens && !config.listen.ip().is_loopback() {
        return Err(format!(
            "no API tokens are configured and {} is not a loopback address: configure [[auth.tokens]] or [auth.oidc] \
             (see docs/configuration.md), or create one with `vouchsafe token new`",
            config.listen
        )
        .into());
    }
    if no_tokens {
        let token = new_token()?;
        let perms: Vec<String> = DEV_PERMISSIONS.iter().map(|s| s.to_string()).collect();
        let mut tx = db.begin().await.map_err(|e| e.message)?;
        tx.insert_api_token("dev-admin", &hex(&token_hash(&token)), &perms).await.map_err(|e| e.message)?;
        tx.append_audit(&[cli_entry("tokens.create", "dev-admin")]).await.map_err(|e| e.message)?;
        tx.commit().await.map_err(|e| e.message)?;
        println!("\nDevelopment token (all permissions; shown only now — keep it):\n\n    {token}\n");
        println!("Use it as: Authorization: Bearer {token}\n");
    }
    let listen = config.listen;
    let engine = db.engine();
    let state = state(config, db).await?;
    let health = state.keystore_call("health", |ks| ks.health()).await.map_err(|e| e.message)?;
    tracing::info!(%listen, database = engine, keystore = %health.detail, "vouchsafe ready");
    if !health.hsm_backed {
        println!(
            "Keys: {}. For an HSM set [keystore] provider = \"pkcs11\" with module, token_label and pin_env;\n\
             to scale out set database_url = \"postgres://…\" (see docs/configuration.md).",
            health.detail
        );
    }
    // The voucher key exists from the start, so verifiers' first JWKS already has it. If the
    // keystore or database is down now, issuance creates it later.
    match vouchsafe_server::vouchers::signing_key(&state).await {
        Ok(k) => tracing::info!(kid = %k.kid, "vouchers are signed with this key"),
        Err(e) => tracing::warn!(code = e.code, message = %e.message, "voucher key not ready"),
    }
    let web = &state.config().web;
    if web.enabled && web.dir.join("portal").join("index.html").is_file() {
        // The portal seals with data keys of `pii` online and to `pii-seal`'s public key offline;
        // made only where the apps are actually served.
        for (name, kind) in [("pii", KeyKind::Aes256Gcm), ("pii-seal", KeyKind::EcdhP256)] {
            if let Err(e) = vouchsafe_server::routes::keys::ensure_key(&state, name, kind, "the web portal").await {
                tracing::warn!(key = name, code = e.code, message = %e.message, "portal key not ready");
            }
        }
    }
    for m in vouchsafe_server::web::missing(&state.config().web) {
        tracing::warn!(file = %m, "web apps incomplete: run scripts/build-web (or set [web] enabled = false)");
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    if state.config().web.enabled {
        println!("Web apps: http://{listen}/portal/  http://{listen}/admin/  http://{listen}/verifier/");
    }
    println!("vouchsafe listening on http://{listen}");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
