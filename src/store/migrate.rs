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

/// Billing: one balance row per account (its rate plan, and the money and free seconds held
/// by open leases), the leases, the append-only ledger and idempotency keys. The CHECKs are
/// the invariants: nothing held below zero, and never more held than the balance plus the
/// overdraft covers.
const BILLING: &str = "CREATE TABLE balances (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id),
        balance BIGINT NOT NULL DEFAULT 0,
        reserved BIGINT NOT NULL DEFAULT 0,
        overdraft BIGINT NOT NULL DEFAULT 0,
        rate_per_minute BIGINT NOT NULL DEFAULT 0,
        increment_s BIGINT NOT NULL DEFAULT 1,
        free_seconds BIGINT NOT NULL DEFAULT 0,
        free_used BIGINT NOT NULL DEFAULT 0,
        free_held BIGINT NOT NULL DEFAULT 0,
        free_resets_at BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        CHECK (reserved >= 0),
        CHECK (free_held >= 0),
        CHECK (overdraft >= 0),
        CHECK (increment_s >= 1),
        CHECK (balance - reserved + overdraft >= 0)
    );
    CREATE TABLE leases (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        call_id TEXT,
        state TEXT NOT NULL,
        granted_s BIGINT NOT NULL,
        used_s BIGINT NOT NULL DEFAULT 0,
        held BIGINT NOT NULL,
        free_held BIGINT NOT NULL,
        cost BIGINT NOT NULL DEFAULT 0,
        free_charged BIGINT NOT NULL DEFAULT 0,
        final_units BIGINT NOT NULL DEFAULT 0,
        rate_per_minute BIGINT NOT NULL,
        increment_s BIGINT NOT NULL,
        validity_s BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        CHECK (held >= 0),
        CHECK (free_held >= 0)
    );
    CREATE INDEX leases_open ON leases (state, expires_at);
    CREATE INDEX leases_account ON leases (account_id, created_at);
    CREATE TABLE ledger (
        id SERIAL_ID,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        lease_id TEXT,
        kind TEXT NOT NULL,
        amount BIGINT NOT NULL,
        hold BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX ledger_account ON ledger (account_id, id);
    CREATE TABLE idempotency (
        account_id TEXT NOT NULL,
        key TEXT NOT NULL,
        operation TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (account_id, key)
    )";

const MIGRATIONS: &[Migration] = &[
    both(
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
    ),
    both(2, "billing", BILLING),
    both(
        3,
        "agents and numbers",
        "CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX agents_account ON agents (account_id);
    CREATE TABLE numbers (
        number TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        agent_id TEXT REFERENCES agents(id),
        created_at BIGINT NOT NULL
    );
    CREATE INDEX numbers_account ON numbers (account_id);
    CREATE INDEX numbers_agent ON numbers (agent_id)",
    ),
    both(
        4,
        "call detail records",
        "CREATE TABLE cdrs (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        agent_id TEXT,
        call_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        channel TEXT NOT NULL,
        from_uri TEXT NOT NULL,
        to_uri TEXT NOT NULL,
        number TEXT,
        started_at BIGINT NOT NULL,
        answered_at BIGINT,
        ended_at BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        billable_s BIGINT NOT NULL,
        cost BIGINT NOT NULL,
        hangup_cause TEXT NOT NULL,
        hangup_side TEXT NOT NULL,
        final_code BIGINT NOT NULL,
        codec TEXT,
        packets_lost BIGINT NOT NULL,
        loss_percent DOUBLE PRECISION NOT NULL,
        jitter_ms DOUBLE PRECISION NOT NULL,
        mos DOUBLE PRECISION,
        turns TEXT NOT NULL,
        recording TEXT
    );
    CREATE INDEX cdrs_account_started ON cdrs (account_id, started_at, id);
    CREATE INDEX cdrs_number ON cdrs (account_id, number, started_at)",
    ),
    both(
        5,
        "webhooks",
        "CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        deleted_at BIGINT
    );
    CREATE INDEX webhooks_account ON webhooks (account_id);
    CREATE TABLE webhook_deliveries (
        id SERIAL_ID,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id),
        account_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_status BIGINT,
        last_error TEXT,
        next_attempt_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        delivered_at BIGINT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (account_id, webhook_id, id);
    CREATE TABLE webhook_attempts (
        id SERIAL_ID,
        delivery_id BIGINT NOT NULL,
        at BIGINT NOT NULL,
        status BIGINT,
        error TEXT,
        duration_ms BIGINT NOT NULL
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id)",
    ),
    both(
        6,
        "call transcripts and trunks",
        "ALTER TABLE cdrs ADD COLUMN transcript TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE cdrs ADD COLUMN trunk TEXT",
    ),
    both(
        7,
        "per-account concurrent call limits",
        "ALTER TABLE accounts ADD COLUMN max_concurrent_calls BIGINT",
    ),
    both(
        8,
        "billing debt",
        "ALTER TABLE balances ADD COLUMN debt BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE leases ADD COLUMN debt_s BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE leases ADD COLUMN debt BIGINT NOT NULL DEFAULT 0",
    ),
    both(9, "contacts, messages and their timeline", TEXT_CHANNELS),
    both(
        10,
        "the node that held each call",
        "ALTER TABLE cdrs ADD COLUMN node TEXT",
    ),
    both(
        11,
        "browser call tokens",
        "CREATE TABLE call_tokens (
        hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        contact_id TEXT NOT NULL REFERENCES contacts(id),
        address TEXT NOT NULL,
        agent_id TEXT,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX call_tokens_expiry ON call_tokens (expires_at)",
    ),
];

/// Migration 9: the people an account talks to, their timeline across channels, SMS in and
/// out (with every provider callback kept as received), and web chat tokens.
const TEXT_CHANNELS: &str = "CREATE TABLE contacts (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        address TEXT NOT NULL,
        kind TEXT NOT NULL,
        language TEXT,
        language_confidence DOUBLE PRECISION,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX contacts_address ON contacts (account_id, address);
    CREATE INDEX contacts_account ON contacts (account_id, created_at, id);
    CREATE TABLE timeline (
        id SERIAL_ID,
        account_id TEXT NOT NULL,
        contact_id TEXT NOT NULL REFERENCES contacts(id),
        channel TEXT NOT NULL,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        ref_id TEXT,
        detail TEXT,
        at BIGINT NOT NULL
    );
    CREATE INDEX timeline_contact ON timeline (contact_id, id);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        contact_id TEXT,
        direction TEXT NOT NULL,
        source TEXT NOT NULL,
        from_number TEXT NOT NULL,
        to_number TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        status_rank BIGINT NOT NULL,
        error_code BIGINT,
        error_message TEXT,
        provider_sid TEXT,
        segments BIGINT NOT NULL,
        encoding TEXT NOT NULL,
        idempotency_key TEXT,
        raw TEXT,
        attempts BIGINT NOT NULL DEFAULT 0,
        send_after BIGINT,
        claimed_until BIGINT,
        handled_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX messages_sid ON messages (provider_sid);
    CREATE UNIQUE INDEX messages_idempotency ON messages (account_id, idempotency_key);
    CREATE INDEX messages_account ON messages (account_id, created_at, id);
    CREATE INDEX messages_due ON messages (status, send_after);
    CREATE TABLE message_events (
        id SERIAL_ID,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        error_code BIGINT,
        raw TEXT NOT NULL,
        applied BIGINT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX message_events_message ON message_events (message_id, id);
    ALTER TABLE accounts ADD COLUMN messaging TEXT;
    CREATE TABLE chat_tokens (
        hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        contact_id TEXT NOT NULL REFERENCES contacts(id),
        agent_id TEXT,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )";

/// Written in place of `SERIAL_ID`: an ever-increasing integer key, the one column type the
/// dialects spell differently.
fn serial_id(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    }
}

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
        }
        .replace("SERIAL_ID", serial_id(store.backend()));
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
