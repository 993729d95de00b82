//! Layered configuration: built-in defaults, `config/base.toml`,
//! `config/<env>.toml`, then `GRODT_<SECTION>__<KEY>` variables (later wins).
//!
//! The directory and the variables are injected through [`ConfigSource`] so
//! tests describe their environment instead of mutating the process's.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::AuthConfig;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Exit status for a bad configuration (`EX_CONFIG` is 78, but the project
/// convention, shared with `EX_USAGE`, is 64).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Top-level sections every service understands.
const COMMON_SECTIONS: &[&str] = &[
    "grpc",
    "http",
    "telemetry",
    "server",
    "redis",
    "database",
    "auth",
];

/// Sections owned by the services of docs/conventions.md. A shared
/// `config/base.toml` may carry all of them; each service reads its own and
/// ignores its siblings', while any other name is an unknown key.
pub const SERVICE_SECTIONS: &[&str] = &[
    "market_data",
    "regime",
    "strategy",
    "risk",
    "execution",
    "backtest_worker",
    "optimizer",
];

/// A configuration error naming the key at fault (`grpc.addr`, `server.concurrency_limit`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    /// A value that parsed but is not acceptable: `"<key>: <reason>"`.
    pub fn invalid(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        let key = key.into();
        let message = if key.is_empty() {
            reason.to_string()
        } else {
            format!("{key}: {reason}")
        };
        Self { key, message }
    }

    /// A key no section defines.
    pub fn unknown(key: impl Into<String>, origin: Option<&str>) -> Self {
        let key = key.into();
        let message = match origin {
            Some(origin) => format!("unknown key `{key}` (from {origin})"),
            None => format!("unknown key `{key}`"),
        };
        Self { key, message }
    }

    /// The dotted key at fault (empty when the error is about a whole file).
    pub fn key(&self) -> &str {
        &self.key
    }

    fn from_figment(err: figment::Error) -> Self {
        use figment::error::Kind;
        let origin = err.metadata.as_ref().map(|m| describe_origin(m, &err.path));
        let path = err.path.join(".");
        match &err.kind {
            Kind::UnknownField(field, _) => {
                // Figment's path already ends with the field; older versions did not.
                let key = if err.path.last() == Some(field) {
                    path
                } else if path.is_empty() {
                    field.clone()
                } else {
                    format!("{path}.{field}")
                };
                Self::unknown(key, origin.as_deref())
            }
            kind => {
                let key = match kind {
                    Kind::MissingField(field) if path.is_empty() => field.to_string(),
                    Kind::MissingField(field) => format!("{path}.{field}"),
                    _ => path,
                };
                let reason = match origin {
                    Some(origin) => format!("{kind} (from {origin})"),
                    None => kind.to_string(),
                };
                Self::invalid(key, reason)
            }
        }
    }

    /// Prints the error to stderr and exits with status 64; for `main`.
    pub fn exit(&self) -> ! {
        eprintln!("configuration error: {self}");
        std::process::exit(EXIT_BAD_CONFIG)
    }
}

/// `TOML file /etc/grodt/base.toml` or `environment variable GRODT_GRPC__ADDR`.
fn describe_origin(metadata: &Metadata, path: &[String]) -> String {
    match &metadata.source {
        Some(source) => format!("{} {source}", metadata.name),
        None if metadata.name == ENV_SOURCE && !path.is_empty() => {
            format!(
                "{ENV_SOURCE} {}",
                metadata.interpolate(&Profile::Default, path)
            )
        }
        None => metadata.name.to_string(),
    }
}

const ENV_SOURCE: &str = "environment variable";

/// A value that must never reach a log: `Debug` and `Display` print `[redacted]`.
///
/// It serializes to the real value because layering defaults goes through
/// serialization; never serialize a config for display.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it (a connect call).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

/// `[grpc]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address; port 0 picks a free port.
    pub addr: SocketAddr,
    /// `[grpc.tls]`: TLS on the gRPC listener (off while `cert_file` is empty).
    #[serde(default)]
    pub tls: GrpcTlsConfig,
}

/// `[grpc.tls]`: the gRPC listener speaks TLS (rustls) when `cert_file` is set.
/// The files are read when the server binds; a missing or malformed one stops
/// it with the key named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcTlsConfig {
    /// PEM certificate chain of the server (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, clients must present a certificate
    /// signed by one of them (mTLS). A certificate listed in
    /// `auth.identities_file` carries a role without a token.
    pub client_ca_file: PathBuf,
}

impl GrpcTlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        if set(&self.cert_file) != set(&self.key_file) {
            let missing = if set(&self.cert_file) {
                "grpc.tls.key_file"
            } else {
                "grpc.tls.cert_file"
            };
            return Err(ConfigError::invalid(
                missing,
                "grpc.tls.cert_file and grpc.tls.key_file go together",
            ));
        }
        if set(&self.client_ca_file) && !set(&self.cert_file) {
            return Err(ConfigError::invalid(
                "grpc.tls.client_ca_file",
                "needs grpc.tls.cert_file and grpc.tls.key_file",
            ));
        }
        Ok(())
    }
}

/// `[http]`: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; port 0 picks a free port.
    pub addr: SocketAddr,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for collectors.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// `[telemetry]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` or `pretty`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,grodt_risk=debug`.
    pub log_level: String,
    /// OTLP/gRPC collector (`http://host:4317`); empty turns trace export off.
    pub otlp_endpoint: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: "info".into(),
            otlp_endpoint: String::new(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Deadline for a call to produce its response headers.
    pub request_timeout_ms: u64,
    /// Calls served at once across all connections; more wait.
    pub concurrency_limit: usize,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            concurrency_limit: 256,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://...`; may carry a password, hence secret.
    pub url: Secret<String>,
    /// Prefix of every stream key, so several deployments share one Redis.
    pub key_prefix: String,
    /// The ACL user to log in as (`AUTH <username> <password>`); empty: the
    /// default user. Used only with `password_file`.
    #[serde(default)]
    pub username: String,
    /// A secret file holding the Redis password (one line). When set, the
    /// password (and `username`) are put into `url` at load time, so the URL
    /// in the environment carries none; `url` must then have no credentials.
    #[serde(default)]
    pub password_file: PathBuf,
    /// The CA certificate (PEM) that signed the Redis server's certificate,
    /// for a `rediss://` URL with a private CA; empty: the platform's roots.
    #[serde(default)]
    pub ca_file: PathBuf,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379".into()),
            key_prefix: String::new(),
            username: String::new(),
            password_file: PathBuf::new(),
            ca_file: PathBuf::new(),
        }
    }
}

impl RedisConfig {
    /// The PEM of `ca_file`, `None` when unset. Errors name `redis.ca_file`:
    /// an unreadable file, one without a certificate, or a URL that is not
    /// `rediss://` (a CA on a plaintext connection would be silently unused).
    pub fn tls_ca(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.ca_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let key = "redis.ca_file";
        if !self.url.expose().starts_with("rediss://") {
            return Err(ConfigError::invalid(
                key,
                "is set but redis.url is not rediss://: TLS needs a rediss:// URL",
            ));
        }
        let pem = std::fs::read(&self.ca_file)
            .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", self.ca_file.display())))?;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", self.ca_file.display())))?;
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                key,
                format!("{}: no PEM certificate in it", self.ca_file.display()),
            ));
        }
        Ok(Some(pem))
    }

    /// Reads `password_file` (if set) and puts the credentials into `url`.
    /// Errors name `redis.password_file` (an unreadable or empty file) or
    /// `redis.url` (no `redis://` / `rediss://` URL, or one with credentials).
    pub fn apply_password_file(&mut self) -> Result<(), ConfigError> {
        if self.password_file.as_os_str().is_empty() {
            return Ok(());
        }
        let key = "redis.password_file";
        let text = std::fs::read_to_string(&self.password_file).map_err(|e| {
            ConfigError::invalid(key, format!("{}: {e}", self.password_file.display()))
        })?;
        let password = text.trim_end_matches(['\r', '\n']);
        if password.is_empty() || password.contains(['\r', '\n']) {
            return Err(ConfigError::invalid(
                key,
                format!("{}: want one non-empty line", self.password_file.display()),
            ));
        }
        let url = self.url.expose();
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "redis" | "rediss"))
            .ok_or_else(|| {
                ConfigError::invalid(
                    "redis.url",
                    "with redis.password_file: want redis:// or rediss://",
                )
            })?;
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(ConfigError::invalid(
                "redis.url",
                "carries credentials and redis.password_file is set: keep them in the file only",
            ));
        }
        let user = percent_encode(&self.username);
        let password = percent_encode(password);
        self.url = Secret::new(format!("{scheme}://{user}:{password}@{rest}"));
        Ok(())
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a URL's userinfo.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `[database]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://...` or `sqlite://...`.
    pub url: Secret<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/grodt".into()),
        }
    }
}

/// The sections every service shares (docs/conventions.md).
///
/// The top level is not `deny_unknown_fields` because it is read from the same
/// document as the service's own section; [`load`] checks top-level names itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonConfig {
    /// `[grpc]`
    pub grpc: GrpcConfig,
    /// `[http]`
    pub http: HttpConfig,
    /// `[telemetry]`
    pub telemetry: TelemetryConfig,
    /// `[server]`
    pub server: ServerConfig,
    /// `[redis]`
    pub redis: RedisConfig,
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[auth]`: who may call what (see [`crate::auth`]).
    #[serde(default)]
    pub auth: AuthConfig,
}

impl CommonConfig {
    /// Defaults for a service listening on `0.0.0.0:<grpc_port>` and
    /// `0.0.0.0:<http_port>` (the service's ports from docs/conventions.md).
    pub fn with_ports(grpc_port: u16, http_port: u16) -> Self {
        Self {
            grpc: GrpcConfig {
                addr: SocketAddr::from(([0, 0, 0, 0], grpc_port)),
                tls: GrpcTlsConfig::default(),
            },
            http: HttpConfig {
                addr: SocketAddr::from(([0, 0, 0, 0], http_port)),
            },
            telemetry: TelemetryConfig::default(),
            server: ServerConfig::default(),
            redis: RedisConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
        }
    }

    /// Checks what deserialization cannot: limits, the log filter, the endpoint.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.grpc.tls.validate()?;
        if self.server.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.request_timeout_ms",
                "must be > 0",
            ));
        }
        if self.server.concurrency_limit == 0 {
            return Err(ConfigError::invalid(
                "server.concurrency_limit",
                "must be > 0",
            ));
        }
        if self.server.shutdown_grace_ms == 0 {
            return Err(ConfigError::invalid(
                "server.shutdown_grace_ms",
                "must be > 0",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level)
            .map_err(|e| ConfigError::invalid("telemetry.log_level", e))?;
        let endpoint = &self.telemetry.otlp_endpoint;
        if !endpoint.is_empty() {
            let uri: http::Uri = endpoint
                .parse()
                .map_err(|e| ConfigError::invalid("telemetry.otlp_endpoint", e))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ConfigError::invalid(
                    "telemetry.otlp_endpoint",
                    format!("`{endpoint}` is not an http(s)://host:port URL"),
                ));
            }
        }
        if self.database.url.expose().is_empty() {
            return Err(ConfigError::invalid("database.url", "must not be empty"));
        }
        if self.redis.url.expose().is_empty() {
            return Err(ConfigError::invalid("redis.url", "must not be empty"));
        }
        Ok(())
    }
}

/// A service's own settings, read from its section (`[risk]`, `[market_data]`).
///
/// Put `#[serde(deny_unknown_fields)]` on the type so typos in the section fail.
pub trait ServiceConfig: Serialize + DeserializeOwned + Clone {
    /// The section name, one of [`SERVICE_SECTIONS`]; `None` for a service without one.
    const SECTION: Option<&'static str>;

    /// Checks beyond deserialization; errors name the key (`risk.max_position`).
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// For services with no settings of their own.
impl ServiceConfig for () {
    const SECTION: Option<&'static str> = None;
}

/// A loaded configuration: the common sections and the service's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Config<S> {
    /// Sections every service shares.
    pub common: CommonConfig,
    /// The service's own section.
    pub service: S,
}

/// Where configuration comes from: a directory of TOML files and a variable map.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// Holds `base.toml` and `<env>.toml`; missing files are skipped.
    pub dir: PathBuf,
    /// `GRODT_ENV` and `GRODT_<SECTION>__<KEY>` overrides; other names are ignored.
    pub vars: HashMap<String, String>,
}

impl ConfigSource {
    /// `./config` (or `$GRODT_CONFIG_DIR`) and the process environment; for `main`.
    pub fn from_process() -> Self {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let dir = vars
            .get("GRODT_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self { dir, vars }
    }

    /// The environment name (`GRODT_ENV`, default `dev`).
    pub fn env_name(&self) -> Result<&str, ConfigError> {
        let env = self.vars.get("GRODT_ENV").map_or("dev", String::as_str);
        let valid = !env.is_empty()
            && env
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Ok(env)
        } else {
            Err(ConfigError::invalid(
                "GRODT_ENV",
                format!("`{env}` is not a plain lowercase name"),
            ))
        }
    }
}

/// Loads and validates a service's configuration. `defaults` is the service's
/// built-in layer (its own ports, its own section's defaults).
pub fn load<S: ServiceConfig>(
    source: &ConfigSource,
    defaults: &Config<S>,
) -> Result<Config<S>, ConfigError> {
    let env = source.env_name()?;
    let mut figment = Figment::from(Serialized::defaults(&defaults.common));
    if let Some(section) = S::SECTION {
        figment = figment.merge(Serialized::default(section, &defaults.service));
    }
    let figment = figment
        .merge(OptionalToml(source.dir.join("base.toml")))
        .merge(OptionalToml(source.dir.join(format!("{env}.toml"))))
        .merge(EnvVars::new(&source.vars));

    let top: Dict = figment.extract().map_err(ConfigError::from_figment)?;
    for key in top.keys() {
        let known = COMMON_SECTIONS.contains(&key.as_str())
            || SERVICE_SECTIONS.contains(&key.as_str())
            || S::SECTION == Some(key.as_str());
        if !known {
            let origin = figment
                .find_metadata(key)
                .map(|m| describe_origin(m, std::slice::from_ref(key)));
            return Err(ConfigError::unknown(key.clone(), origin.as_deref()));
        }
    }

    let mut common: CommonConfig = figment.extract().map_err(ConfigError::from_figment)?;
    common.redis.apply_password_file()?;
    common.redis.tls_ca()?;
    let service: S = match S::SECTION {
        Some(section) => figment.focus(section).extract().map_err(|mut e| {
            e.path.insert(0, section.to_owned());
            ConfigError::from_figment(e)
        })?,
        // Nothing can override a service without a section.
        None => defaults.service.clone(),
    };
    common.validate()?;
    service.validate()?;
    Ok(Config { common, service })
}

/// [`load`] for `main`: on error prints it and exits with status 64.
pub fn load_or_exit<S: ServiceConfig>(source: &ConfigSource, defaults: &Config<S>) -> Config<S> {
    load(source, defaults).unwrap_or_else(|err| err.exit())
}

/// A TOML file that may be absent (`config/<env>.toml` is optional) but,
/// when present, must parse.
struct OptionalToml(PathBuf);

impl Provider for OptionalToml {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.0.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        if self.0.exists() {
            Toml::file_exact(&self.0).data()
        } else {
            Ok(Map::new())
        }
    }
}

/// `GRODT_<SECTION>__<KEY>[__<SUBKEY>...]` variables from an injected map.
///
/// Only names containing `__` count, so `GRODT_ENV` and unrelated
/// `GRODT_TEST_*` variables never become unknown keys.
struct EnvVars {
    entries: BTreeMap<String, (Vec<String>, String)>,
}

impl EnvVars {
    fn new(vars: &HashMap<String, String>) -> Self {
        let entries = vars
            .iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix("GRODT_")?;
                if !rest.contains("__") {
                    return None;
                }
                let path = rest
                    .split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>();
                Some((name.clone(), (path, value.clone())))
            })
            .collect();
        Self { entries }
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE).interpolater(|_profile, keys| {
            format!("GRODT_{}", keys.join("__").to_ascii_uppercase())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (name, (path, raw)) in &self.entries {
            if path.iter().any(String::is_empty) {
                return Err(figment::Error::from(format!(
                    "environment variable {name}: empty key segment"
                )));
            }
            let value: Value = raw.parse().unwrap_or_else(|never| match never {});
            insert_path(&mut root, path, value);
        }
        let mut map = Map::new();
        map.insert(Profile::Default, root);
        Ok(map)
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Risk {
        max_orders: u32,
    }

    impl ServiceConfig for Risk {
        const SECTION: Option<&'static str> = Some("risk");

        fn validate(&self) -> Result<(), ConfigError> {
            if self.max_orders == 0 {
                return Err(ConfigError::invalid("risk.max_orders", "must be > 0"));
            }
            Ok(())
        }
    }

    fn defaults() -> Config<Risk> {
        Config {
            common: CommonConfig::with_ports(50054, 9104),
            service: Risk { max_orders: 10 },
        }
    }

    fn source(files: &[(&str, &str)], vars: &[(&str, &str)]) -> (tempfile::TempDir, ConfigSource) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write config file");
        }
        let source = ConfigSource {
            dir: dir.path().to_path_buf(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        (dir, source)
    }

    #[test]
    fn a_redis_password_file_goes_into_the_url_and_never_into_debug() {
        let (dir, _) = source(&[], &[]);
        let pw = dir.path().join("redis_password");
        std::fs::write(&pw, "s3cr/t pw\n").expect("write");
        let pw = pw.to_string_lossy().into_owned();
        let (_d, src) = source(
            &[],
            &[
                ("GRODT_REDIS__URL", "redis://redis:6379/0"),
                ("GRODT_REDIS__USERNAME", "grodt"),
                ("GRODT_REDIS__PASSWORD_FILE", &pw),
            ],
        );
        let cfg = load(&src, &defaults()).expect("load");
        assert_eq!(
            cfg.common.redis.url.expose(),
            "redis://grodt:s3cr%2Ft%20pw@redis:6379/0"
        );
        assert!(!format!("{cfg:?}").contains("s3cr"));
    }

    #[test]
    fn a_bad_redis_password_file_names_the_key() {
        let (_d, src) = source(
            &[],
            &[("GRODT_REDIS__PASSWORD_FILE", "/nonexistent/redis_pw")],
        );
        let err = load(&src, &defaults()).expect_err("missing file");
        assert_eq!(err.key(), "redis.password_file");
        assert!(err.to_string().contains("/nonexistent/redis_pw"), "{err}");

        let (dir, _) = source(&[], &[]);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let (_d, src) = source(
            &[],
            &[("GRODT_REDIS__PASSWORD_FILE", &empty.to_string_lossy())],
        );
        let err = load(&src, &defaults()).expect_err("empty file");
        assert_eq!(err.key(), "redis.password_file");

        let pw = dir.path().join("pw");
        std::fs::write(&pw, "pw").expect("write");
        let (_d, src) = source(
            &[],
            &[
                ("GRODT_REDIS__URL", "redis://:other@redis:6379"),
                ("GRODT_REDIS__PASSWORD_FILE", &pw.to_string_lossy()),
            ],
        );
        let err = load(&src, &defaults()).expect_err("two passwords");
        assert_eq!(err.key(), "redis.url");
        assert!(!err.to_string().contains("other"), "{err}");
    }

    #[test]
    fn grpc_tls_keys_go_together() {
        let (_d, src) = source(&[], &[("GRODT_GRPC__TLS__CERT_FILE", "/etc/tls/cert.pem")]);
        let err = load(&src, &defaults()).expect_err("cert without key");
        assert_eq!(err.key(), "grpc.tls.key_file");
        let (_d, src) = source(
            &[],
            &[("GRODT_GRPC__TLS__CLIENT_CA_FILE", "/etc/tls/ca.pem")],
        );
        let err = load(&src, &defaults()).expect_err("client CA without a server certificate");
        assert_eq!(err.key(), "grpc.tls.client_ca_file");
        let (_d, src) = source(
            &[(
                "prod.toml",
                "[grpc.tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n",
            )],
            &[("GRODT_ENV", "prod")],
        );
        let cfg = load(&src, &defaults()).expect("tls from a file");
        assert!(cfg.common.grpc.tls.enabled());
        assert!(!defaults().common.grpc.tls.enabled());
    }

    #[test]
    fn defaults_alone_load() {
        let (_dir, src) = source(&[], &[]);
        let cfg = load(&src, &defaults()).expect("load");
        assert_eq!(cfg, defaults());
    }

    #[test]
    fn an_empty_variable_is_an_empty_string_that_wins_over_the_files() {
        // The chart sets GRODT_REDIS__KEY_PREFIX="" for dev: no prefix, even
        // if a file set one.
        let (_dir, src) = source(
            &[("base.toml", "[redis]\nkey_prefix = \"prod:\"\n")],
            &[("GRODT_REDIS__KEY_PREFIX", "")],
        );
        let cfg = load(&src, &defaults()).expect("load");
        assert_eq!(cfg.common.redis.key_prefix, "");
    }

    #[test]
    fn layers_apply_in_order_base_env_file_then_vars() {
        let (_dir, src) = source(
            &[
                (
                    "base.toml",
                    "[server]\nconcurrency_limit = 5\nshutdown_grace_ms = 7\n[risk]\nmax_orders = 3\n",
                ),
                ("dev.toml", "[server]\nconcurrency_limit = 6\n"),
                ("staging.toml", "[server]\nconcurrency_limit = 99\n"),
            ],
            &[("GRODT_RISK__MAX_ORDERS", "4")],
        );
        let cfg = load(&src, &defaults()).expect("load");
        assert_eq!(
            cfg.common.server.concurrency_limit, 6,
            "dev.toml beats base.toml"
        );
        assert_eq!(
            cfg.common.server.shutdown_grace_ms, 7,
            "base.toml beats defaults"
        );
        assert_eq!(cfg.common.server.request_timeout_ms, 30_000, "default kept");
        assert_eq!(cfg.service.max_orders, 4, "variable beats base.toml");
        assert_eq!(
            cfg.common.grpc.addr.port(),
            50054,
            "service default port kept"
        );
    }

    #[test]
    fn grodt_env_selects_the_environment_file_and_vars_win() {
        let (_dir, src) = source(
            &[
                ("base.toml", "[telemetry]\nlog_format = \"json\"\n"),
                (
                    "staging.toml",
                    "[telemetry]\nlog_format = \"pretty\"\nlog_level = \"debug\"\n",
                ),
            ],
            &[
                ("GRODT_ENV", "staging"),
                ("GRODT_TELEMETRY__LOG_LEVEL", "warn"),
                ("GRODT_GRPC__ADDR", "127.0.0.1:0"),
                ("GRODT_TEST_DATABASE_URL", "ignored: no double underscore"),
            ],
        );
        let cfg = load(&src, &defaults()).expect("load");
        assert_eq!(cfg.common.telemetry.log_format, LogFormat::Pretty);
        assert_eq!(cfg.common.telemetry.log_level, "warn");
        assert_eq!(cfg.common.grpc.addr, "127.0.0.1:0".parse().expect("addr"));
    }

    #[test]
    fn unknown_key_in_a_section_is_named() {
        let (_dir, src) = source(&[("base.toml", "[grpc]\nadress = \"0.0.0.0:1\"\n")], &[]);
        let err = load(&src, &defaults()).expect_err("typo must fail");
        assert_eq!(err.key(), "grpc.adress");
        assert!(
            err.to_string().starts_with("unknown key `grpc.adress`"),
            "{err}"
        );
        assert!(
            err.to_string().contains("base.toml"),
            "names the file: {err}"
        );
    }

    #[test]
    fn unknown_section_and_unknown_variable_are_named() {
        let (_dir, src) = source(&[("dev.toml", "[grcp]\naddr = \"0.0.0.0:1\"\n")], &[]);
        let err = load(&src, &defaults()).expect_err("unknown section");
        assert!(err.to_string().starts_with("unknown key `grcp`"), "{err}");

        let (_dir, src) = source(&[], &[("GRODT_SERVER__CONCURENCY_LIMIT", "3")]);
        let err = load(&src, &defaults()).expect_err("unknown variable key");
        assert!(
            err.to_string()
                .starts_with("unknown key `server.concurency_limit`"),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("(from environment variable GRODT_SERVER__CONCURENCY_LIMIT)"),
            "{err}"
        );
    }

    #[test]
    fn sibling_service_sections_are_not_unknown_but_own_typos_are() {
        let (_dir, src) = source(
            &[(
                "base.toml",
                "[optimizer]\nworkers = 4\n[risk]\nmax_orders = 2\n",
            )],
            &[],
        );
        assert_eq!(load(&src, &defaults()).expect("load").service.max_orders, 2);

        let (_dir, src) = source(&[("base.toml", "[risk]\nmax_order = 2\n")], &[]);
        let err = load(&src, &defaults()).expect_err("typo in own section");
        assert_eq!(err.key(), "risk.max_order");
    }

    #[test]
    fn malformed_values_name_the_key() {
        let (_dir, src) = source(&[], &[("GRODT_GRPC__ADDR", "not-an-address")]);
        let err = load(&src, &defaults()).expect_err("bad addr");
        assert_eq!(err.key(), "grpc.addr", "{err}");
        assert_eq!(
            err.to_string(),
            "grpc.addr: invalid socket address syntax (from environment variable GRODT_GRPC__ADDR)"
        );

        let (_dir, src) = source(
            &[("base.toml", "[server]\nconcurrency_limit = \"lots\"\n")],
            &[],
        );
        let err = load(&src, &defaults()).expect_err("bad number");
        assert!(
            err.to_string().starts_with("server.concurrency_limit: "),
            "{err}"
        );

        let (_dir, src) = source(&[("base.toml", "[telemetry]\nlog_format = \"xml\"\n")], &[]);
        let err = load(&src, &defaults()).expect_err("bad format");
        assert!(
            err.to_string().starts_with("telemetry.log_format: "),
            "{err}"
        );
        assert!(err.to_string().contains("xml"), "{err}");
    }

    #[test]
    fn validation_rejects_zero_limits_and_bad_filters_before_binding() {
        let (_dir, src) = source(&[], &[("GRODT_SERVER__CONCURRENCY_LIMIT", "0")]);
        let err = load(&src, &defaults()).expect_err("zero limit");
        assert_eq!(err.to_string(), "server.concurrency_limit: must be > 0");

        let (_dir, src) = source(&[], &[("GRODT_TELEMETRY__LOG_LEVEL", "info,=[")]);
        let err = load(&src, &defaults()).expect_err("bad filter");
        assert_eq!(err.key(), "telemetry.log_level");

        let (_dir, src) = source(&[], &[("GRODT_TELEMETRY__OTLP_ENDPOINT", "collector:4317")]);
        let err = load(&src, &defaults()).expect_err("bad endpoint");
        assert_eq!(err.key(), "telemetry.otlp_endpoint");

        let (_dir, src) = source(&[], &[("GRODT_RISK__MAX_ORDERS", "0")]);
        let err = load(&src, &defaults()).expect_err("service validation runs");
        assert_eq!(err.to_string(), "risk.max_orders: must be > 0");
    }

    #[test]
    fn bad_env_name_and_unreadable_file_fail() {
        let (_dir, src) = source(&[], &[("GRODT_ENV", "../etc")]);
        assert_eq!(load(&src, &defaults()).expect_err("env").key(), "GRODT_ENV");

        let (_dir, src) = source(&[("base.toml", "[server\n")], &[]);
        let err = load(&src, &defaults()).expect_err("broken toml");
        assert!(err.to_string().contains("base.toml"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let (_dir, src) = source(
            &[],
            &[("GRODT_DATABASE__URL", "postgres://u:hunter2@db/grodt")],
        );
        let cfg = load(&src, &defaults()).expect("load");
        assert_eq!(
            cfg.common.database.url.expose(),
            "postgres://u:hunter2@db/grodt"
        );
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("[redacted]"));
        assert_eq!(cfg.common.database.url.to_string(), "[redacted]");
    }

    #[test]
    fn a_service_without_a_section_loads() {
        let (_dir, src) = source(&[], &[("GRODT_HTTP__ADDR", "127.0.0.1:0")]);
        let cfg = load(
            &src,
            &Config {
                common: CommonConfig::with_ports(1, 2),
                service: (),
            },
        )
        .expect("load");
        assert_eq!(cfg.common.http.addr.port(), 0);
    }

    /// The example files at the repository root load for every environment.
    #[test]
    fn the_repository_config_files_load() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let with = |vars: &[(&str, &str)]| ConfigSource {
            dir: dir.clone(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let dev = load(&with(&[]), &defaults()).expect("dev");
        assert_eq!(dev.common.telemetry.log_format, LogFormat::Pretty);
        let staging = load(&with(&[("GRODT_ENV", "staging")]), &defaults()).expect("staging");
        assert_eq!(staging.common.redis.key_prefix, "staging:");
        assert_eq!(
            staging.common.telemetry.otlp_endpoint,
            "http://otel-collector:4317"
        );

        let err =
            load(&with(&[("GRODT_ENV", "prod")]), &defaults()).expect_err("prod without secrets");
        assert_eq!(err.to_string(), "database.url: must not be empty");
        let prod = load(
            &with(&[
                ("GRODT_ENV", "prod"),
                ("GRODT_DATABASE__URL", "postgres://grodt:s3cret@db/grodt"),
                ("GRODT_REDIS__URL", "redis://:s3cret@redis:6379"),
            ]),
            &defaults(),
        )
        .expect("prod with secrets");
        assert_eq!(prod.common.server.shutdown_grace_ms, 25_000);
        assert_eq!(
            prod.common.grpc.addr.port(),
            50054,
            "ports stay per service"
        );
        assert!(!format!("{prod:?}").contains("s3cret"));
    }
}
