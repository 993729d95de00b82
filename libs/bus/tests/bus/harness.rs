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

impl RedisHarness {
    /// Runs `test` with a harness on a fresh prefix and deletes the prefix's
    /// keys afterwards, also when the test panics.
    pub async fn run<F, Fut>(name: &str, test: F)
    where
        F: FnOnce(Arc<RedisHarness>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let config = redis_config(name);
        let cleaner = connect(config.clone()).await;
        let harness = Arc::new(RedisHarness { config });
        let outcome = tokio::spawn(test(harness)).await;
        cleaner.delete_all_keys().await.expect("delete test keys");
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
