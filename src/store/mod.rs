//! The store: accounts and API keys, billing (balances, leases, ledger), agents and numbers,
//! call records, webhook subscriptions and their outbox, contacts and their timelines, text
//! messages (the SMS outbox among them) and web chat tokens. SQLite by default (a WAL-mode
//! file in the data directory), PostgreSQL when `database.url` names one. One set of queries
//! serves both, through sqlx's `Any` driver: they use `$1` placeholders (numbered in the
//! order they appear, each used once: SQLite numbers parameters by first appearance) and the
//! SQL both dialects share; times are integer milliseconds since the Unix epoch, money
//! integer micro-units.
//!
//! SQLite allows one writer at a time, and a deferred transaction that reads before it
//! writes fails rather than waits when another writer got in first. So on SQLite writes go
//! through a pool of one connection (they queue in the pool, never fail on the lock) while
//! reads use their own pool; PostgreSQL uses one pool and row locks.

pub mod accounts;
pub mod billing;
pub mod cdr;
pub mod chat;
pub mod clock;
pub mod contacts;
pub mod directory;
pub mod messages;
mod migrate;
pub mod webhooks;
pub mod webrtc;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store error: the database failed or refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported database URL {0:?} (sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    #[error("migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the balance cannot cover any of the requested units")]
    Insufficient,
}

/// The control plane's database.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Writes (one connection on SQLite).
    write: AnyPool,
    /// Reads (the same pool on PostgreSQL).
    read: AnyPool,
    /// Turns on accounts' balance rows (see [`Store::hot_row`]).
    hot_rows: Arc<[tokio::sync::Mutex<()>]>,
    /// Accounts' queues of lease operations, committed in batches (billing/batch.rs).
    lanes: Arc<billing::Lanes>,
    /// Keys checked lately (see [`Store::authenticate`]).
    pub(crate) auth_cache: Arc<accounts::AuthCache>,
}

/// Striped locks for [`Store::hot_row`]: enough that unrelated accounts rarely share one.
const HOT_ROW_STRIPES: usize = 256;

fn hot_rows() -> Arc<[tokio::sync::Mutex<()>]> {
    (0..HOT_ROW_STRIPES)
        .map(|_| tokio::sync::Mutex::new(()))
        .collect()
}

/// Milliseconds since the Unix epoch, the store's time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens `url` (empty: `<data_dir>/parley.db`), creating the SQLite file when missing,
    /// and applies the migrations.
    pub async fn open(url: &str, data_dir: &Path) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = if url.is_empty() {
            let path = data_dir.join("parley.db");
            format!("sqlite://{}?mode=rwc", path.display())
        } else {
            url.to_string()
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url));
        };
        let store = match backend {
            Backend::Sqlite => {
                let options = || {
                    AnyPoolOptions::new()
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                // WAL: readers never block the writer; NORMAL sync is durable
                                // across process crashes (the WAL is fsynced at checkpoints).
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                };
                let write = options().max_connections(1).connect(&url).await?;
                let read = options().max_connections(4).connect(&url).await?;
                Store {
                    backend,
                    write,
                    read,
                    hot_rows: hot_rows(),
                    lanes: Arc::default(),
                    auth_cache: Arc::default(),
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(32)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await?;
                Store {
                    backend,
                    write: pool.clone(),
                    read: pool,
                    hot_rows: hot_rows(),
                    lanes: Arc::default(),
                    auth_cache: Arc::default(),
                }
            }
        };
        migrate::apply(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for writes and for reads that must see the latest writes.
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.write
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// This node's turn on an account's balance row, taken just before the statement that
    /// updates the row and held until the commit. The database's own lock keeps the row
    /// right across nodes; this keeps a node's concurrent calls of one account from piling
    /// up as waiters on that lock (on PostgreSQL each commit wakes them all, and that herd
    /// cost more CPU than the work itself: docs/benchmarks.md). Lease operations of a busy
    /// account come here one batch at a time (billing/batch.rs). Release it before taking
    /// another connection: the tasks waiting for it may hold the rest of the pool.
    pub(crate) fn hot_row(&self, account_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        account_id.hash(&mut h);
        &self.hot_rows[h.finish() as usize % self.hot_rows.len()]
    }

    /// True when the database answers (for /readyz).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }
}

/// Reads an integer column that SQLite may hand back as any integer width.
pub(crate) fn int(row: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<i64, _>(column)
}

/// A random identifier: `prefix` then `len` characters of [0-9a-z].
pub fn random_id(prefix: &str, len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    for _ in 0..len {
        id.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    id
}
