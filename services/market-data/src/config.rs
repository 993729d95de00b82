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
    /// The exchange REST adapters FetchBars uses (`[market_data.venues.binance]`, `.coinbase`).
    pub venues: VenuesConfig,
    /// The live bar feed (`[market_data.feeds]`); off by default.
    pub feeds: FeedsConfig,
}

/// Live closed bars from Binance's kline WebSocket stream onto `grodt.bars.v1`;
/// holes are filled over REST with `[market_data.venues.binance]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedsConfig {
    pub enabled: bool,
    /// Unset: `wss://stream.binance.com:9443`. Must be `wss://`.
    pub ws_url: Option<String>,
    /// As Binance spells them (`BTCUSDT`); one stream each.
    pub symbols: Vec<String>,
    /// Kline interval (`1m`, `5m`, `15m`, `1h`, `4h`, `1d`).
    pub interval: String,
    /// PEM certificates trusted for the stream besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Where each stream's last published open time is kept, so a restarted service
    /// neither repeats nor skips bars. Unset: `<catalog_dir>/.feeds`.
    pub state_dir: Option<PathBuf>,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ws_url: None,
            symbols: Vec::new(),
            interval: "1m".into(),
            ca_file: None,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            state_dir: None,
        }
    }
}

/// One exchange adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VenueConfig {
    /// Unset: the venue's public API (`https://api.binance.com`, `https://api.exchange.coinbase.com`).
    /// Must be `https://`; a test or proxy with its own CA sets `ca_file`.
    pub base_url: Option<String>,
    /// PEM certificates trusted besides the built-in (webpki) roots.
    pub ca_file: Option<PathBuf>,
    /// Per request: connect, TLS, headers and body.
    pub timeout_ms: u64,
    /// Attempts per request (429/418 and 5xx answers, timeouts included).
    pub max_attempts: u32,
    /// Pages fetched between two commits to the catalog.
    pub pages_per_commit: u32,
}

impl Default for VenueConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            ca_file: None,
            timeout_ms: 10_000,
            max_attempts: 8,
            pages_per_commit: 20,
        }
    }
}

/// The venues with an adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VenuesConfig {
    pub binance: VenueConfig,
    pub coinbase: VenueConfig,
}

impl VenuesConfig {
    pub fn of(&self, venue: grodt_data::venues::Venue) -> &VenueConfig {
        match venue {
            grodt_data::venues::Venue::Binance => &self.binance,
            grodt_data::venues::Venue::Coinbase => &self.coinbase,
        }
    }
}

impl Default for MarketDataConfig {
    fn default() -> Self {
        Self {
            catalog_dir: None,
            cache_bytes: 512 * 1024 * 1024,
            upload_max_bytes: 2 * 1024 * 1024 * 1024,
            replay_yield_every: 256,
            venues: VenuesConfig::default(),
            feeds: FeedsConfig::default(),
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
        for (name, v) in [
            ("binance", &self.venues.binance),
            ("coinbase", &self.venues.coinbase),
        ] {
            let key = |k: &str| format!("market_data.venues.{name}.{k}");
            if let Some(url) = &v.base_url
                && !url.starts_with("https://")
            {
                return Err(ConfigError::invalid(
                    key("base_url"),
                    "must start with https:// (exchanges are never spoken to in clear text)",
                ));
            }
            if v.timeout_ms == 0 {
                return Err(ConfigError::invalid(key("timeout_ms"), "must be > 0"));
            }
            if v.max_attempts == 0 {
                return Err(ConfigError::invalid(key("max_attempts"), "must be > 0"));
            }
            if v.pages_per_commit == 0 {
                return Err(ConfigError::invalid(key("pages_per_commit"), "must be > 0"));
            }
        }
        let f = &self.feeds;
        if let Some(url) = &f.ws_url
            && !url.starts_with("wss://")
        {
            return Err(ConfigError::invalid(
                "market_data.feeds.ws_url",
                "must start with wss://",
            ));
        }
        if grodt_data::venues::timeframe_ms(&f.interval).is_err() {
            return Err(ConfigError::invalid(
                "market_data.feeds.interval",
                format!(
                    "{:?} is not one of 1m 5m 15m 30m 1h 4h 6h 1d 1w",
                    f.interval
                ),
            ));
        }
        if f.enabled && f.symbols.is_empty() {
            return Err(ConfigError::invalid(
                "market_data.feeds.symbols",
                "required when the feed is enabled",
            ));
        }
        if f.reconnect_min_ms == 0 || f.reconnect_max_ms < f.reconnect_min_ms {
            return Err(ConfigError::invalid(
                "market_data.feeds.reconnect_min_ms",
                "must be > 0 and at most reconnect_max_ms",
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
        let e = load(
            &source(&[(
                "GRODT_MARKET_DATA__VENUES__BINANCE__BASE_URL",
                "http://127.0.0.1:8080",
            )]),
            &crate::defaults(),
        )
        .expect_err("clear text");
        assert_eq!(e.key(), "market_data.venues.binance.base_url");
        let c = load(
            &source(&[
                (
                    "GRODT_MARKET_DATA__VENUES__COINBASE__BASE_URL",
                    "https://localhost:8443",
                ),
                (
                    "GRODT_MARKET_DATA__VENUES__COINBASE__CA_FILE",
                    "/etc/grodt/ca.pem",
                ),
            ]),
            &crate::defaults(),
        )
        .expect("venue overrides");
        assert_eq!(
            c.service.venues.coinbase.base_url.as_deref(),
            Some("https://localhost:8443")
        );
        assert_eq!(
            c.service.venues.coinbase.ca_file,
            Some(PathBuf::from("/etc/grodt/ca.pem"))
        );
        assert_eq!(c.service.venues.binance, VenueConfig::default());
        assert!(!c.service.feeds.enabled, "the live feed is off by default");
        for (var, value, key) in [
            (
                "GRODT_MARKET_DATA__FEEDS__WS_URL",
                "ws://127.0.0.1:9443",
                "market_data.feeds.ws_url",
            ),
            (
                "GRODT_MARKET_DATA__FEEDS__ENABLED",
                "true",
                "market_data.feeds.symbols",
            ),
            (
                "GRODT_MARKET_DATA__FEEDS__INTERVAL",
                "2m",
                "market_data.feeds.interval",
            ),
        ] {
            let e = load(&source(&[(var, value)]), &crate::defaults()).expect_err(var);
            assert_eq!(e.key(), key, "{e}");
        }
    }
}
