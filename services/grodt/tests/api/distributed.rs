//! A service against the real Redis and Postgres of distributed mode: ready
//! while both answer, not ready (naming the dependency) once one is gone.

use grodt_kit::Infra;
use grodt_kit::config::Secret;
use grodt_store::testing::TestDb;

use crate::helpers::{http_get, spawn};

fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn readiness_follows_real_redis_and_postgres() {
    let db = TestDb::postgres().await;
    let member = &grodt::up::members()[3];
    let mut common = (member.defaults)().common;
    common.redis.url = Secret::new(redis_url());
    common.redis.key_prefix = format!("test-{}:", std::process::id());
    common.database.url = Secret::new(db.url().to_owned());
    let infra = Infra::connect(&common)
        .await
        .unwrap_or_else(|e| panic!("Redis at {} and Postgres must be running: {e}", redis_url()));
    let store = infra.store.clone();
    let svc = spawn(member, infra).await;

    let (code, body) = http_get(svc.http, "/readyz").await;
    assert_eq!(code, 200, "ready against live Redis and Postgres: {body}");

    store.close().await;
    let (code, body) = http_get(svc.http, "/readyz").await;
    assert_eq!(code, 503, "not ready once the database is gone");
    assert!(
        body.contains("database"),
        "the failing check is named: {body}"
    );

    svc.stop().await;
}
