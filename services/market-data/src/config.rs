//! The `[market_data]` configuration section.

use std::path::PathBuf;

use grodt_kit::{ConfigError, ServiceConfig};
use serde::{Deserialize, Serialize};

/// Settings of the market-data service (`GRODT_MARKET_DATA__<KEY>` overrides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketDataConfig {
    /// Root of the Parquet catalog. Unset: `data/catalog` for the standalone
    /// service, `<--data-dir>/catalog` under `grodt up`.
    pub catalog_dir: Option<PathBuf>,
    /// Byte budget of the in-memory frame cache.
    pub cache_bytes: u64,
    /// Largest file UploadCsv accepts.
    pub upload_max_bytes: u64,
    /// Bars per `grodt.bars.v1` publish burst before a replay yields to other tasks.
    pub replay_yield_every: u32,
}

impl Default for MarketDataConfig {
    fn default() -> Self {
        Self {
            catalog_dir: None,
            cache_bytes: 512 * 1024 * 1024,
            upload_max_bytes: 2 * 1024 * 1024 * 1024,
            replay_yield_every: 256,
        }
    }
}

impl ServiceConfig for MarketDataConfig {
    const SECTION: Option<&'static str> = Some("market_data");

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_bytes == 0 {
            return Err(ConfigError::invalid(
                "market_data.cache_bytes",
                "must be > 0",
            ));
        }
        if self.upload_max_bytes == 0 {
            return Err(ConfigError::invalid(
                "market_data.upload_max_bytes",
                "must be > 0",
            ));
        }
        if self.replay_yield_every == 0 {
            return Err(ConfigError::invalid(
                "market_data.replay_yield_every",
                "must be > 0",
            ));
        }
        if let Some(dir) = &self.catalog_dir
            && dir.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "market_data.catalog_dir",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use grodt_kit::config::{ConfigSource, load};

    use super::*;

    fn source(vars: &[(&str, &str)]) -> ConfigSource {
        ConfigSource {
            dir: PathBuf::from("/nonexistent-grodt-config"),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn defaults_load_and_env_overrides_apply() {
        let c = load(&source(&[]), &crate::defaults()).expect("defaults");
        assert_eq!(c.service, MarketDataConfig::default());
        let c = load(
            &source(&[
                ("GRODT_MARKET_DATA__CATALOG_DIR", "/srv/catalog"),
                ("GRODT_MARKET_DATA__CACHE_BYTES", "1024"),
            ]),
            &crate::defaults(),
        )
        .expect("overrides");
        assert_eq!(c.service.catalog_dir, Some(PathBuf::from("/srv/catalog")));
        assert_eq!(c.service.cache_bytes, 1024);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load(
            &source(&[("GRODT_MARKET_DATA__CACHE_BYTES", "0")]),
            &crate::defaults(),
        )
        .expect_err("zero");
        assert_eq!(e.key(), "market_data.cache_bytes");
        let e = load(
            &source(&[("GRODT_MARKET_DATA__CACHE_BYTE", "5")]),
            &crate::defaults(),
        )
        .expect_err("unknown key");
        assert!(e.key().contains("cache_byte"), "{e}");
    }
}
