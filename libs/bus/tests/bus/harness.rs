//! One harness per backend for the conformance suite.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use grodt_bus::conformance::{self, Harness};
use grodt_bus::{EventBus, InProcessBus, RedisBus, RedisBusConfig};

pub struct InProcessHarness {
    bus: InProcessBus,
}

impl InProcessHarness {
    pub fn new() -> Self {
        let bus = InProcessBus::new(conformance::back_pressure(), conformance::MAX_LEN as usize)
            .expect("valid in-process bus config");
        Self { bus }
    }
}

#[async_trait]
impl Harness for InProcessHarness {
    async fn connect(&self) -> Arc<dyn EventBus> {
        Arc::new(self.bus.clone())
    }
}

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A config under a fresh key prefix, so tests run in parallel on one Redis.
pub fn redis_config(test: &str) -> RedisBusConfig {
    let mut config = RedisBusConfig::new(
        redis_url(),
        format!("grodt-test:{test}:{}:", uuid::Uuid::now_v7().simple()),
    );
    config.max_len = conformance::MAX_LEN;
    config.back_pressure = conformance::back_pressure();
    config
}

pub async fn connect(config: RedisBusConfig) -> RedisBus {
    let url = config.url.clone();
    RedisBus::connect(config).await.unwrap_or_else(|e| {
        panic!("Redis at {url} (GRODT_TEST_REDIS_URL) is unreachable; these tests need it: {e}")
    })
}

pub struct RedisHarness {
    config: RedisBusConfig,
}

/// The services' ACL rules (deploy/redis/acl-rules), one per line.
fn acl_rules() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/redis/acl-rules");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Creates an ACL user allowed exactly the services' commands
/// (deploy/redis/acl-rules) on the keys under `prefix`; returns its name
/// and password.
pub async fn narrowed_user(
    admin: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> (String, String) {
    let user = format!("grodt-test-{}", uuid::Uuid::now_v7().simple());
    let password = uuid::Uuid::now_v7().simple().to_string();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(&user)
        .arg("reset")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}*"));
    for rule in acl_rules() {
        cmd.arg(rule);
    }
    let () = cmd
        .query_async(admin)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER with deploy/redis/acl-rules: {e}"));
    (user, password)
}

pub async fn admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("GRODT_TEST_REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {} is unreachable; these tests need it: {e}",
                redis_url()
            )
        })
}

impl RedisHarness {
    /// Runs `test` with a harness on a fresh prefix, connected as a user
    /// allowed only the services' commands (deploy/redis/acl-rules) on that
    /// prefix's keys, and deletes the keys and the user afterwards, also when
    /// the test panics.
    pub async fn run<F, Fut>(name: &str, test: F)
    where
        F: FnOnce(Arc<RedisHarness>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut config = redis_config(name);
        let cleaner = connect(config.clone()).await;
        let mut admin = admin().await;
        let (user, password) = narrowed_user(&mut admin, &config.key_prefix).await;
        let url = redis_url();
        assert!(
            url.starts_with("redis://") && !url.contains('@'),
            "GRODT_TEST_REDIS_URL must be redis://host:port without credentials: {url}"
        );
        config.url = url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
        let harness = Arc::new(RedisHarness { config });
        let outcome = tokio::spawn(test(harness)).await;
        cleaner.delete_all_keys().await.expect("delete test keys");
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&user)
            .query_async(&mut admin)
            .await
            .expect("ACL DELUSER");
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[async_trait]
impl Harness for RedisHarness {
    async fn connect(&self) -> Arc<dyn EventBus> {
        Arc::new(connect(self.config.clone()).await)
    }
}
