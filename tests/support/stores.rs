//! Fresh stores on each available backend: SQLite always, PostgreSQL when
//! `PARLEY_TEST_DATABASE_URL` names one (in a schema of its own, dropped afterwards).

use parley::store::{Backend, Store};

/// A PostgreSQL URL whose connections use a fresh schema, and that schema's name.
pub async fn pg_schema(base: &str) -> (String, String) {
    sqlx::any::install_default_drivers();
    let schema = parley::store::random_id("parley_test_", 10);
    let admin = sqlx::AnyPool::connect(base)
        .await
        .unwrap_or_else(|e| panic!("PARLEY_TEST_DATABASE_URL={base} is set but unreachable: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    (
        format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        schema,
    )
}

pub async fn drop_schema(base: &str, schema: &str) {
    let admin = sqlx::AnyPool::connect(base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// Runs `check` against a fresh store of each available backend.
pub async fn on_each_backend<F, Fut>(check: F)
where
    F: Fn(Store, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open("", dir.path()).await.unwrap();
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    check(sqlite, dir.path().to_path_buf()).await;
    match std::env::var("PARLEY_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let (url, schema) = pg_schema(&base).await;
            let pg = Store::open(&url, dir.path()).await.unwrap();
            assert_eq!(pg.backend(), Backend::Postgres);
            check(pg, dir.path().to_path_buf()).await;
            drop_schema(&base, &schema).await;
        }
        _ => eprintln!("PARLEY_TEST_DATABASE_URL not set: PostgreSQL store tests skipped"),
    }
}

/// Two stores on one fresh PostgreSQL schema: two Parley nodes sharing their database.
/// Skipped when `PARLEY_TEST_DATABASE_URL` is not set (SQLite is one node's file).
pub async fn on_two_postgres_nodes<F, Fut>(check: F)
where
    F: FnOnce(Store, Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let base = match std::env::var("PARLEY_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => base,
        _ => {
            eprintln!("PARLEY_TEST_DATABASE_URL not set: the two-node test is skipped");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema(&base).await;
    let one = Store::open(&url, dir.path()).await.unwrap();
    let two = Store::open(&url, dir.path()).await.unwrap();
    check(one, two).await;
    drop_schema(&base, &schema).await;
}
