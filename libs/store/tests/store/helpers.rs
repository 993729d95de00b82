//! Tests of the `testing` helpers themselves and of what lives outside one
//! store's lifetime (files, databases).

use grodt_store::testing::TestDb;
use grodt_store::{Backend, Store};
use serde_json::json;
use sqlx::Connection;

fn admin_url() -> String {
    std::env::var(grodt_store::testing::DATABASE_URL_VAR)
        .unwrap_or_else(|_| grodt_store::testing::DEFAULT_DATABASE_URL.into())
}

async fn database_exists(name: &str) -> bool {
    let mut admin = sqlx::PgConnection::connect(&admin_url())
        .await
        .expect("admin connection");
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_postgres_database_is_dropped_with_the_guard() {
    let db = TestDb::postgres().await;
    let name = db
        .url()
        .rsplit('/')
        .next()
        .expect("database name")
        .to_owned();
    assert!(name.starts_with("grodt_test_"), "{name}");
    assert!(database_exists(&name).await);
    // An open pooled connection does not stop the drop (WITH (FORCE)).
    db.store().ping().await.expect("ping");
    let other = Store::connect(db.url()).await.expect("second pool");
    other.ping().await.expect("ping");
    drop(db);
    assert!(!database_exists(&name).await, "{name} still exists");
    assert!(
        other.ping().await.is_err(),
        "its connections were terminated"
    );
}

#[tokio::test]
#[should_panic(expected = "unreachable")]
async fn test_postgres_fails_loudly_when_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    TestDb::postgres_at(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
}

#[tokio::test]
async fn sqlite_file_survives_a_restart() {
    let db = TestDb::sqlite().await;
    db.store()
        .settings()
        .put("risk", "limits", &json!({ "max": "10.5" }))
        .await
        .expect("put");
    db.store().close().await;
    let reopened = Store::connect(db.url()).await.expect("reopen");
    assert_eq!(reopened.backend(), Backend::Sqlite);
    reopened.migrate().await.expect("migrate is a no-op");
    let limits = reopened
        .settings()
        .get("risk", "limits")
        .await
        .expect("get");
    assert_eq!(limits.value, json!({ "max": "10.5" }));
}
