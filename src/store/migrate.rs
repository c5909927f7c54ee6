//! Schema migrations for both backends, applied in order at start, each in its own
//! transaction and recorded in `schema_migrations`. A migration is one SQL text that both
//! dialects accept (TEXT, BIGINT, integer flags and times), or a pair when they must differ.

use sqlx::Executor;

use super::{Backend, Store, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Statements shared by both dialects.
const fn both(version: i64, name: &'static str, sql: &'static str) -> Migration {
    Migration {
        version,
        name,
        sqlite: sql,
        postgres: sql,
    }
}

const MIGRATIONS: &[Migration] = &[both(
    1,
    "accounts and api keys",
    "CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        operator BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        hash TEXT NOT NULL,
        prefix TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX api_keys_account ON api_keys (account_id);",
)];

/// Applies every migration the database has not seen yet.
pub(super) async fn apply(store: &Store) -> Result<(), StoreError> {
    let pool = store.writer();
    pool.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .await?;
    for m in MIGRATIONS {
        let mut tx = pool.begin().await?;
        if store.backend() == Backend::Postgres {
            // Nodes starting together take turns; the lock ends with the transaction.
            (&mut *tx)
                .execute("SELECT pg_advisory_xact_lock(1885434476)")
                .await?;
        }
        let seen = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?;
        if seen.is_some() {
            continue;
        }
        let sql = match store.backend() {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let fail = |source| StoreError::Migration {
            version: m.version,
            source,
        };
        // Statement by statement: the Any driver prepares what it executes.
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            (&mut *tx).execute(statement).await.map_err(fail)?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(super::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied a database migration"
        );
    }
    Ok(())
}
