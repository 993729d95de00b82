//! The connections every service shares, the event bus and the store, built
//! from configuration (distributed) or handed in (embedded), with the
//! readiness checks that make `/readyz` follow them.

use std::sync::Arc;

use async_trait::async_trait;
use grodt_bus::{EventBus, RedisBus, RedisBusConfig, StreamName};
use grodt_store::Store;

use crate::config::CommonConfig;
use crate::{KitError, ReadinessCheck};

/// The bus and the store a service runs against. Cheap to clone.
#[derive(Clone)]
pub struct Infra {
    /// Redis Streams when distributed, the in-process bus when embedded.
    pub bus: Arc<dyn EventBus>,
    /// Postgres when distributed, SQLite when embedded.
    pub store: Store,
}

impl std::fmt::Debug for Infra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infra")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl Infra {
    /// Connects to the Redis at `redis.url` and the database at `database.url`.
    /// Migrations are not run here: `grodt migrate` (a Job or a Compose
    /// one-shot) owns the schema in distributed mode.
    pub async fn connect(common: &CommonConfig) -> Result<Self, KitError> {
        let mut bus_config = RedisBusConfig::new(
            common.redis.url.expose().clone(),
            common.redis.key_prefix.clone(),
        );
        bus_config.tls_ca = common.redis.tls_ca().map_err(KitError::Config)?;
        let bus = RedisBus::connect(bus_config)
            .await
            .map_err(|e| KitError::Dependency {
                key: "redis.url",
                reason: e.to_string(),
            })?;
        let store = Store::connect(common.database.url.expose())
            .await
            .map_err(|e| KitError::Dependency {
                key: "database.url",
                reason: e.to_string(),
            })?;
        Ok(Self {
            bus: Arc::new(bus),
            store,
        })
    }

    /// Readiness checks for both dependencies, for the server builder.
    pub fn readiness_checks(&self) -> (BusReady, StoreReady) {
        (BusReady(self.bus.clone()), StoreReady(self.store.clone()))
    }
}

/// Ready while the bus answers a round trip.
pub struct BusReady(Arc<dyn EventBus>);

#[async_trait]
impl ReadinessCheck for BusReady {
    fn name(&self) -> &str {
        "bus"
    }

    async fn check(&self) -> Result<(), String> {
        // Any round trip proves the connection; a missing stream is an empty answer.
        let stream = StreamName::parse("grodt.bars.v1").map_err(|e| e.to_string())?;
        self.0
            .groups(&stream)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Ready while the database answers a ping.
pub struct StoreReady(Store);

#[async_trait]
impl ReadinessCheck for StoreReady {
    fn name(&self) -> &str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}
