//! Redis with an ACL user: the password comes from `redis.password_file`;
//! the right one connects, a wrong one stops the service at start with an
//! error naming redis. Against the Redis at `GRODT_TEST_REDIS_URL` (an ACL
//! user with a unique name is created and deleted; the default user is untouched).

use grodt_kit::config::{CommonConfig, Secret};
use grodt_kit::infra::Infra;

fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn database_url() -> String {
    std::env::var("GRODT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// An ACL user that exists for the test's lifetime.
struct AclUser {
    conn: redis::aio::MultiplexedConnection,
    name: String,
}

impl AclUser {
    async fn create(password: &str) -> Self {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("Redis at {} must be running: {e}", redis_url()));
        let name = format!("grodt-test-{}", std::process::id());
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut conn)
            .await
            .expect("ACL SETUSER");
        Self { conn, name }
    }

    async fn delete(mut self) {
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&self.name)
            .query_async(&mut self.conn)
            .await
            .expect("ACL DELUSER");
    }
}

fn common(user: &str, password_file: &std::path::Path) -> CommonConfig {
    let mut common = CommonConfig::with_ports(0, 0);
    common.redis.url = Secret::new(redis_url());
    common.redis.username = user.to_owned();
    common.redis.password_file = password_file.to_path_buf();
    common.redis.key_prefix = format!("kit-redis-auth-{}:", std::process::id());
    common.database.url = Secret::new(database_url());
    common.redis.apply_password_file().expect("password file");
    common
}

#[tokio::test]
async fn the_right_password_connects_and_a_wrong_one_names_redis() {
    let user = AclUser::create("right-password-0123").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, "right-password-0123\n").expect("write");
    std::fs::write(&wrong, "wrong-password-0123\n").expect("write");

    let ok = Infra::connect(&common(&user.name, &right)).await;
    let refused = Infra::connect(&common(&user.name, &wrong)).await;
    user.delete().await;

    ok.expect("the ACL user with its password connects");
    let err = refused
        .expect_err("a wrong password must not connect")
        .to_string();
    assert!(err.starts_with("redis.url:"), "{err}");
    assert!(
        !err.contains("wrong-password"),
        "the error prints the password: {err}"
    );
}
