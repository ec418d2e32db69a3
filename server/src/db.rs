//! Storage on SQLite (default) or PostgreSQL, chosen by the URL scheme. Every query is written
//! once with `$N` parameters, which both engines accept; only locking differs.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Postgres, Row, Sqlite, Transaction};
use vouchsafe_keystore::{KeyHandle, KeyKind};

use crate::error::{AppError, AppResult};

/// A connection pool to one of the two engines.
#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite, WAL mode.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// An open transaction on either engine.
pub enum Tx {
    /// SQLite (`BEGIN IMMEDIATE`: the write lock is taken up front).
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

/// Runs the same code against whichever pool or transaction is in use; `$c` is the executor.
macro_rules! on_db {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            Db::Sqlite($c) => $body,
            Db::Postgres($c) => $body,
        }
    };
}
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

mod registrations;
mod vouchers;
pub use registrations::{RegistrationRow, RegistrationSummaryRow};
pub use vouchers::{IndexRange, VoucherRecord, VoucherRow};

/// State of a key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState {
    /// Encrypts (if current), decrypts, signs, verifies.
    Active,
    /// Decrypts and verifies; never encrypts or signs again.
    Retired,
    /// Refuses everything; kept so it can be re-enabled (versions are never deleted).
    Disabled,
}

impl VersionState {
    /// The API/database name.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Active => "active",
            VersionState::Retired => "retired",
            VersionState::Disabled => "disabled",
        }
    }

    /// Parses the API/database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(VersionState::Active),
            "retired" => Some(VersionState::Retired),
            "disabled" => Some(VersionState::Disabled),
            _ => None,
        }
    }
}

/// One stored key version.
#[derive(Clone, Debug)]
pub struct VersionRecord {
    /// 1, 2, …
    pub version: u32,
    /// `<name>.v<version>`.
    pub kid: String,
    /// Its state.
    pub state: VersionState,
    /// What the keystore needs to find it.
    pub handle: KeyHandle,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stored key with all its versions (oldest first).
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// Key name.
    pub name: String,
    /// Key kind.
    pub kind: KeyKind,
    /// The version new encryptions and signatures use.
    pub current_version: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Every version, oldest first.
    pub versions: Vec<VersionRecord>,
}

impl KeyRecord {
    /// The current version.
    pub fn current(&self) -> Option<&VersionRecord> {
        self.version(self.current_version)
    }

    /// Version `v`.
    pub fn version(&self, v: u32) -> Option<&VersionRecord> {
        self.versions.iter().find(|r| r.version == v)
    }
}

/// One audit entry as the caller describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Who: token name, or `oidc:<sub>`, or `anonymous`.
    pub actor: String,
    /// What, e.g. `keys.datakey`.
    pub action: String,
    /// On what, e.g. `pii.v3`.
    pub target: String,
    /// `ok`, `denied`, or `error:<code>`.
    pub outcome: String,
    /// Extra facts (counts, first/last ids). Never secrets.
    pub detail: Option<Value>,
}

/// An audit entry as stored, with its place in the chain.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditRow {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix milliseconds.
    pub ts: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Result.
    pub outcome: String,
    /// Extra facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Row counts of multi-row INSERT statements. Every statement is prepared once per connection
/// and cached, so only these few shapes exist: a statement per batch size made each connection
/// cache dozens of large statements (megabytes), and a row per statement costs a round trip each.
const INSERT_BLOCKS: [usize; 4] = [64, 16, 4, 1];

/// Splits `n` rows into consecutive ranges whose lengths are all in [`INSERT_BLOCKS`].
pub(crate) fn insert_blocks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = n - start;
        let size = INSERT_BLOCKS.into_iter().find(|b| *b <= left)?;
        start += size;
        Some(start - size..start)
    })
}

/// The chain's starting `prev_hash`.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `hash = SHA-256(prev_hash ‖ "\n" ‖ JSON [seq, ts, actor, action, target, outcome, detail])`,
/// hex. A JSON array leaves no ambiguity about where one field ends.
#[allow(clippy::expect_used)]
pub fn audit_hash(prev_hash: &str, seq: i64, ts: i64, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    // The JSON is written straight into the hash; a tuple serialises as the same compact array
    // as `json!([...])` would, without building it first.
    let body = (seq, ts, &e.actor, &e.action, &e.target, &e.outcome, &e.detail);
    // Invariant: serialising strings, integers and a `Value` cannot fail, and hashing never does.
    serde_json::to_writer(HashWriter(&mut h), &body).expect("audit entry serialises");
    hex(&h.finalize())
}

/// Feeds written bytes to a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn key_kind(s: &str) -> AppResult<KeyKind> {
    KeyKind::parse(s).ok_or_else(|| AppError::internal(format!("unknown key kind in database: {s}")))
}

impl Db {
    /// Connects (creating a SQLite file and its directory if needed) and applies migrations.
    pub async fn connect(url: &str) -> AppResult<Self> {
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| AppError::internal(format!("database_url: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                // Bounded caches: memory must not grow with the number of vouchers streamed
                // (docs/BENCHMARKS.md). 128 KiB of pages and 16 statements per connection.
                .pragma("cache_size", "-128")
                .statement_cache_capacity(16);
            if let Some(dir) = opts.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| AppError::internal(format!("cannot create {}: {e}", dir.display())))?;
            }
            // One writer at a time whatever the pool size. The audit writer keeps one connection
            // for itself; four more leave room for readers and the other writers.
            // No ping before each use: a SQLite connection is a local file handle that does not go
            // stale, and the ping is one more round trip to its worker thread on every query (a
            // failed worker still surfaces as `WorkerCrashed`, a 503).
            let pool =
                SqlitePoolOptions::new().max_connections(5).test_before_acquire(false).connect_with(opts).await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(AppError::internal)?;
            Db::Sqlite(pool)
        } else {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(3)).connect(url).await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(AppError::internal)?;
            Db::Postgres(pool)
        };
        Ok(db)
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// A write transaction.
    pub async fn begin(&self) -> AppResult<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Readiness probe.
    pub async fn ping(&self) -> AppResult<()> {
        on_db!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// A key with its versions.
    pub async fn key(&self, name: &str) -> AppResult<Option<KeyRecord>> {
        let row: Option<(String, String, i64, i64)> = on_db!(self, p => {
            match sqlx::query("SELECT name, kind, current_version, created_at FROM keys WHERE name = $1")
                .bind(name).fetch_optional(p).await? {
                Some(r) => Some((r.try_get("name")?, r.try_get("kind")?, r.try_get("current_version")?, r.try_get("created_at")?)),
                None => None,
            }
        });
        let Some((name, kind, current_version, created_at)) = row else { return Ok(None) };
        let versions: Vec<(i64, String, String, Vec<u8>, i64)> = on_db!(self, p => {
            let rows = sqlx::query("SELECT version, kid, state, handle, created_at FROM key_versions WHERE name = $1 ORDER BY version")
                .bind(&name).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get("version")?, r.try_get("kid")?, r.try_get("state")?, r.try_get("handle")?, r.try_get("created_at")?));
            }
            out
        });
        let mut rec = KeyRecord {
            name,
            kind: key_kind(&kind)?,
            current_version: current_version as u32,
            created_at,
            versions: Vec::with_capacity(versions.len()),
        };
        for (version, kid, state, handle, created_at) in versions {
            rec.versions.push(VersionRecord {
                version: version as u32,
                kid,
                state: VersionState::parse(&state).ok_or_else(|| AppError::internal("bad state in database"))?,
                handle: KeyHandle(handle),
                created_at,
            });
        }
        Ok(Some(rec))
    }

    /// Names of every key, sorted.
    pub async fn key_names(&self) -> AppResult<Vec<String>> {
        Ok(on_db!(self, p => {
            let rows = sqlx::query("SELECT name FROM keys ORDER BY name").fetch_all(p).await?;
            rows.iter().map(|r| r.try_get::<String, _>("name")).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// Audit entries with `seq > after`, at most `limit`, in order.
    pub async fn audit_after(&self, after: i64, limit: i64) -> AppResult<Vec<AuditRow>> {
        Ok(on_db!(self, p => {
            let rows = sqlx::query(
                "SELECT seq, ts, actor, action, target, outcome, detail, prev_hash, hash FROM audit_log \
                 WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after).bind(limit).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let detail: Option<String> = r.try_get("detail")?;
                out.push(AuditRow {
                    seq: r.try_get("seq")?,
                    ts: r.try_get("ts")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    detail: detail.and_then(|d| serde_json::from_str::<Value>(&d).ok()),
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                });
            }
            out
        }))
    }

    /// Stored API tokens (development tokens created at first start): name, hex SHA-256, permissions.
    pub async fn api_tokens(&self) -> AppResult<Vec<(String, String, Vec<String>)>> {
        Ok(on_db!(self, p => {
            let rows = sqlx::query("SELECT name, sha256, permissions FROM api_tokens ORDER BY name").fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let perms: String = r.try_get("permissions")?;
                out.push((r.try_get("name")?, r.try_get("sha256")?, serde_json::from_str(&perms).unwrap_or_default()));
            }
            out
        }))
    }
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> AppResult<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Inserts a new key and its first version; a taken name is a conflict.
    pub async fn insert_key(&mut self, name: &str, kind: KeyKind, v: &VersionRecord) -> AppResult<()> {
        let inserted = on_tx!(self, c => sqlx::query(
            "INSERT INTO keys (name, kind, current_version, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING")
            .bind(name).bind(kind.as_str()).bind(v.version as i64).bind(v.created_at).execute(c).await?.rows_affected());
        if inserted == 0 {
            return Err(AppError::conflict(format!("key '{name}' already exists")));
        }
        self.insert_version(name, v).await
    }

    /// Adds a version and makes it current. The caller chose `v.version` as current + 1 inside
    /// this transaction; the primary key refuses a concurrent duplicate.
    pub async fn add_current_version(&mut self, name: &str, v: &VersionRecord) -> AppResult<()> {
        self.insert_version(name, v).await?;
        on_tx!(self, c => sqlx::query("UPDATE keys SET current_version = $1 WHERE name = $2")
            .bind(v.version as i64).bind(name).execute(c).await?.rows_affected());
        Ok(())
    }

    async fn insert_version(&mut self, name: &str, v: &VersionRecord) -> AppResult<()> {
        let res: Result<u64, sqlx::Error> = on_tx!(self, c => sqlx::query(
            "INSERT INTO key_versions (name, version, kid, state, handle, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(name).bind(v.version as i64).bind(&v.kid).bind(v.state.as_str()).bind(&v.handle.0).bind(v.created_at)
            .execute(c).await.map(|r| r.rows_affected()));
        res.map_err(|e| match e {
            sqlx::Error::Database(ref d) if d.is_unique_violation() => {
                AppError::conflict("a concurrent change created this version first; retry")
            }
            other => other.into(),
        })?;
        Ok(())
    }

    /// The current version of `name`, read inside the transaction (and, on PostgreSQL, locked).
    pub async fn current_version_for_update(&mut self, name: &str) -> AppResult<Option<u32>> {
        let v: Option<i64> = match self {
            Tx::Sqlite(t) => match sqlx::query("SELECT current_version FROM keys WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **t)
                .await?
            {
                Some(r) => Some(r.try_get("current_version")?),
                None => None,
            },
            Tx::Postgres(t) => {
                match sqlx::query("SELECT current_version FROM keys WHERE name = $1 FOR UPDATE")
                    .bind(name)
                    .fetch_optional(&mut **t)
                    .await?
                {
                    Some(r) => Some(r.try_get("current_version")?),
                    None => None,
                }
            }
        };
        Ok(v.map(|v| v as u32))
    }

    /// Sets a version's state.
    pub async fn set_version_state(&mut self, name: &str, version: u32, state: VersionState) -> AppResult<()> {
        on_tx!(self, c => sqlx::query("UPDATE key_versions SET state = $1 WHERE name = $2 AND version = $3")
            .bind(state.as_str()).bind(name).bind(version as i64).execute(c).await?.rows_affected());
        Ok(())
    }

    /// Stores an API token's hash.
    pub async fn insert_api_token(&mut self, name: &str, sha256_hex: &str, permissions: &[String]) -> AppResult<()> {
        let perms = serde_json::to_string(permissions).map_err(AppError::internal)?;
        on_tx!(self, c => sqlx::query("INSERT INTO api_tokens (name, sha256, permissions, created_at) VALUES ($1, $2, $3, $4)")
            .bind(name).bind(sha256_hex).bind(perms).bind(now_ms() / 1000).execute(c).await?.rows_affected());
        Ok(())
    }

    /// Appends entries to the audit chain: locks the head, links each entry to the one before,
    /// moves the head. Commits with the rest of the transaction or not at all.
    pub async fn append_audit(&mut self, entries: &[AuditEntry]) -> AppResult<()> {
        self.append_audit_after(None, entries).await.map(|_| ())
    }

    /// [`Tx::append_audit`] from a head the caller remembers (SQLite only; on PostgreSQL the head
    /// is always read and locked, as other instances append too). Returns the new head. A stale
    /// head fails with [`AUDIT_HEAD_STALE`] and changes nothing.
    pub async fn append_audit_after(
        &mut self,
        head: Option<&AuditHead>,
        entries: &[AuditEntry],
    ) -> AppResult<AuditHead> {
        let head = match (&mut *self, head) {
            (Tx::Sqlite(_), Some(h)) => h.clone(),
            // `BEGIN IMMEDIATE` holds SQLite's write lock already.
            (Tx::Sqlite(t), None) => AuditHead::from_row(&sqlx::query(SELECT_HEAD).fetch_one(&mut **t).await?)?,
            (Tx::Postgres(t), _) => AuditHead::from_row(
                &sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_HEAD} FOR UPDATE"))).fetch_one(&mut **t).await?,
            )?,
        };
        let ts = now_ms();
        let (rows, new_head) = link(&head, ts, entries);
        match self {
            // One statement whatever the count; the trigger moves the head (migration 0005).
            Tx::Sqlite(t) => sqlite_insert_audit(&mut **t, ts, &rows).await?,
            Tx::Postgres(t) => {
                // Multi-row INSERTs in a few fixed shapes: every statement is a round trip.
                for block in insert_blocks(rows.len()) {
                    let chunk = &rows[block];
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, detail, prev_hash, hash) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.seq)
                            .push_bind(ts)
                            .push_bind(r.entry.actor.as_str())
                            .push_bind(r.entry.action.as_str())
                            .push_bind(r.entry.target.as_str())
                            .push_bind(r.entry.outcome.as_str())
                            .push_bind(r.detail.as_deref())
                            .push_bind(r.prev_hash.as_str())
                            .push_bind(r.hash.as_str());
                    });
                    q.build().execute(&mut **t).await?;
                }
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(new_head.seq)
                    .bind(&new_head.hash)
                    .execute(&mut **t)
                    .await?;
            }
        }
        Ok(new_head)
    }
}

/// Reads the audit chain's head.
const SELECT_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";

/// The code of the error an append from a stale audit head fails with.
pub const AUDIT_HEAD_STALE: &str = "audit_head_stale";

/// The end of the audit chain: the last entry's `seq` and `hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    /// The last entry's position (0 before the first).
    pub seq: i64,
    /// The last entry's hash ([`GENESIS_HASH`] before the first).
    pub hash: String,
}

impl AuditHead {
    fn from_row<R: Row>(r: &R) -> AppResult<Self>
    where
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> &'a str: sqlx::ColumnIndex<R>,
    {
        Ok(AuditHead { seq: r.try_get("seq")?, hash: r.try_get("hash")? })
    }
}

/// An entry linked into the chain, ready to store.
struct LinkedEntry<'a> {
    seq: i64,
    entry: &'a AuditEntry,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

/// Links `entries` after `head`, all stamped `ts`; returns them and the new head.
fn link<'a>(head: &AuditHead, ts: i64, entries: &'a [AuditEntry]) -> (Vec<LinkedEntry<'a>>, AuditHead) {
    let (mut seq, mut prev) = (head.seq, head.hash.clone());
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let hash = audit_hash(&prev, seq, ts, entry);
        let prev_hash = std::mem::replace(&mut prev, hash.clone());
        rows.push(LinkedEntry { seq, entry, detail: entry.detail.as_ref().map(|d| d.to_string()), prev_hash, hash });
    }
    (rows, AuditHead { seq, hash: prev })
}

/// Inserts linked entries into SQLite's audit log with one statement of one shape whatever their
/// number: the rows travel as one JSON array. A trigger (migration 0005) refuses, and so rolls
/// back the whole statement, any row that does not extend the stored head: the head the entries
/// were linked from was stale.
async fn sqlite_insert_audit<'c, E>(c: E, ts: i64, rows: &[LinkedEntry<'_>]) -> AppResult<()>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let array: Vec<_> = rows
        .iter()
        .map(|r| {
            let e = r.entry;
            (r.seq, &e.actor, &e.action, &e.target, &e.outcome, &r.detail, &r.prev_hash, &r.hash)
        })
        .collect();
    let json = serde_json::to_string(&array).map_err(AppError::internal)?;
    let res = sqlx::query(
        "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, detail, prev_hash, hash) \
         SELECT value ->> 0, $1, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                value ->> 6, value ->> 7 \
         FROM json_each($2) ORDER BY key",
    )
    .bind(ts)
    .bind(json)
    .execute(c)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() || d.message().contains(AUDIT_HEAD_STALE) => {
            Err(AppError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                AUDIT_HEAD_STALE,
                "the audit chain moved on while this entry was being linked; retry",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

impl Db {
    /// The audit chain's head.
    pub async fn audit_head(&self) -> AppResult<AuditHead> {
        on_db!(self, p => AuditHead::from_row(&sqlx::query(SELECT_HEAD).fetch_one(p).await?))
    }

    /// A connection for [`AppendConn::append`]; `None` on PostgreSQL, where every append reads
    /// and locks the head in a transaction ([`Tx::append_audit`]).
    pub async fn append_conn(&self) -> AppResult<Option<AppendConn>> {
        Ok(match self {
            Db::Sqlite(p) => Some(AppendConn(p.acquire().await?)),
            Db::Postgres(_) => None,
        })
    }
}

/// A SQLite connection the audit writer keeps for its single-statement appends: one round trip
/// to the connection's worker thread per batch, without the pool's acquire and release (sqlx
/// pings a connection each time it goes back to the pool).
pub struct AppendConn(sqlx::pool::PoolConnection<Sqlite>);

impl AppendConn {
    /// Appends `entries` after `head` without a transaction of its own (a single SQLite
    /// statement is atomic) and returns the new head. A stale head fails with
    /// [`AUDIT_HEAD_STALE`] and changes nothing.
    pub async fn append(&mut self, head: &AuditHead, entries: &[AuditEntry]) -> AppResult<AuditHead> {
        let ts = now_ms();
        let (rows, new_head) = link(head, ts, entries);
        sqlite_insert_audit(&mut *self.0, ts, &rows).await?;
        Ok(new_head)
    }
}

/// Where the chain breaks, if it does.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every entry links to the previous one and hashes to its stored hash; the head agrees.
    Intact {
        /// Number of entries checked.
        entries: i64,
    },
    /// The first entry that does not fit, and why.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

impl Db {
    /// Walks the whole audit log and checks every link.
    pub async fn verify_audit_chain(&self) -> AppResult<ChainCheck> {
        let mut prev = GENESIS_HASH.to_string();
        let mut expected_seq = 1i64;
        loop {
            let rows = self.audit_after(expected_seq - 1, 1000).await?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                if r.seq != expected_seq {
                    return Ok(ChainCheck::Broken {
                        seq: expected_seq,
                        reason: format!("entry {expected_seq} is missing"),
                    });
                }
                if r.prev_hash != prev {
                    return Ok(ChainCheck::Broken {
                        seq: r.seq,
                        reason: "prev_hash does not match the previous entry".into(),
                    });
                }
                let entry = AuditEntry {
                    actor: r.actor.clone(),
                    action: r.action.clone(),
                    target: r.target.clone(),
                    outcome: r.outcome.clone(),
                    detail: r.detail.clone(),
                };
                if audit_hash(&prev, r.seq, r.ts, &entry) != r.hash {
                    return Ok(ChainCheck::Broken {
                        seq: r.seq,
                        reason: "contents do not match the stored hash".into(),
                    });
                }
                prev = r.hash;
                expected_seq += 1;
            }
        }
        let AuditHead { seq: head_seq, hash: head_hash } = self.audit_head().await?;
        if head_seq != expected_seq - 1 || head_hash != prev {
            return Ok(ChainCheck::Broken {
                seq: head_seq.min(expected_seq),
                reason: "the chain head does not match the last entry (entries removed from the end?)".into(),
            });
        }
        Ok(ChainCheck::Intact { entries: expected_seq - 1 })
    }
}

#[cfg(test)]
mod tests {
    /// The streamed hash input is byte for byte the `json!` array the chain was defined with.
    #[test]
    fn audit_hash_hashes_the_json_array() {
        use sha2::{Digest, Sha256};
        let detail = serde_json::json!({ "count": 3, "first_jti": "a\u{e9}\"b", "nested": [1, null] });
        for detail in [None, Some(detail)] {
            let e = super::AuditEntry {
                actor: "oidc:\u{fc}ser \"x\"".into(),
                action: "keys.datakey".into(),
                target: "pii.v3".into(),
                outcome: "error:forbidden".into(),
                detail,
            };
            let body = serde_json::json!([42, 1_700_000_000_123i64, e.actor, e.action, e.target, e.outcome, e.detail]);
            let mut h = Sha256::new();
            h.update(format!("{}\n{body}", super::GENESIS_HASH).as_bytes());
            let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(super::audit_hash(super::GENESIS_HASH, 42, 1_700_000_000_123, &e), want);
        }
    }

    #[test]
    fn insert_blocks_cover_every_row_in_few_shapes() {
        for n in 0..600 {
            let blocks: Vec<_> = super::insert_blocks(n).collect();
            assert_eq!(blocks.iter().map(|b| b.len()).sum::<usize>(), n);
            assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
            assert!(blocks.iter().all(|b| super::INSERT_BLOCKS.contains(&b.len())));
            assert!(blocks.len() <= n / 64 + 9, "{n}: {}", blocks.len());
        }
    }
}
