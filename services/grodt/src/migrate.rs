//! `grodt migrate`: brings the database at `database.url` to the current
//! schema. Run before the services in distributed mode (a Compose one-shot, a
//! Helm pre-install/pre-upgrade Job); idempotent.

use grodt_store::Store;

/// Connects to `url` and runs every pending migration.
pub async fn run(url: &str) -> anyhow::Result<String> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let backend = store.backend();
    store.close().await;
    Ok(format!("{backend:?}"))
}
