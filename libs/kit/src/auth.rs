//! Who may call what: bearer tokens with roles, checked for every gRPC call by
//! the kit's layer (one place for every service).
//!
//! Tokens live in a secret file, one per line, `<role> <token>` (`#` starts a
//! comment); only their SHA-256 digests are kept in memory. Roles are ordered:
//! `read` < `trader` < `operator`. Health and reflection are always open;
//! calls that only read (Get/List/Describe/Stream/Check/Classify) need any
//! valid token; orders, strategies, backtests and optimizations need `trader`;
//! every other call, including any RPC not classified yet, needs `operator`
//! (see [`required_role`]). A missing or unknown token
//! is UNAUTHENTICATED, a token whose role is too low PERMISSION_DENIED; both
//! are counted in `grpc_auth_refusals_total{method,reason}`.
//!
//! A client certificate can stand in for a token (mTLS identity): with
//! `grpc.tls.client_ca_file` set the listener verifies the client's
//! certificate, and `auth.identities_file` maps certificates to roles, one
//! per line, `<role> <SHA-256 fingerprint of the certificate>` (hex, colons
//! allowed: `openssl x509 -noout -fingerprint -sha256 -in client.pem`). A
//! call's role is the higher of its certificate's and its token's; a token
//! that is present but unknown is refused even with a known certificate.
//!
//! `auth.mode`: `auto` (the default) requires tokens when the gRPC listener is
//! not on a loopback address, so a laptop's loopback-only services stay easy to
//! use and anything on a network is closed; `required` and `off` force it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::config::ConfigError;

/// A caller's role, ordered by what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Read,
    /// Reads, orders, strategies, backtests and optimizations.
    Trader,
    /// Everything: limits, halt and resume, imports and replays too.
    Operator,
}

impl Role {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" | "read-only" => Some(Self::Read),
            "trader" => Some(Self::Trader),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// When tokens are required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Required unless the gRPC listener is on a loopback address.
    #[default]
    Auto,
    /// Always required.
    Required,
    /// Never required (a trusted network only).
    Off,
}

/// `[auth]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `auto`, `required` or `off`.
    pub mode: AuthMode,
    /// The secret file of `<role> <token>` lines; empty: no token is valid.
    pub tokens_file: PathBuf,
    /// `<role> <certificate SHA-256 fingerprint>` lines: client certificates
    /// (verified against `grpc.tls.client_ca_file`) that carry a role
    /// without a token; empty: none.
    pub identities_file: PathBuf,
}

impl AuthConfig {
    /// Whether calls to a server listening on `grpc_addr` need a token.
    pub fn required_for(&self, grpc_addr: SocketAddr) -> bool {
        match self.mode {
            AuthMode::Auto => !grpc_addr.ip().is_loopback(),
            AuthMode::Required => true,
            AuthMode::Off => false,
        }
    }
}

/// Method-name prefixes of calls that change nothing.
const READ_VERBS: &[&str] = &["Get", "List", "Describe", "Stream", "Check", "Classify"];

/// The role a call needs, from its path (`/grodt.v1.RiskService/Halt`);
/// `None` for health and reflection, which stay open.
pub fn required_role(path: &str) -> Option<Role> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("");
    if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
        return None;
    }
    let role = match (service, method) {
        ("grodt.v1.ExecutionService", "SubmitOrder" | "CancelOrder")
        | ("grodt.v1.StrategyService", "Deploy" | "Start" | "Stop" | "Pause")
        | ("grodt.v1.OptimizerService", "StartOptimization" | "CancelOptimization")
        | ("grodt.v1.BacktestService", "RunBacktest" | "SubmitBacktest") => Role::Trader,
        // Calls that only read, by their verb (Classify computes, stores nothing).
        _ if READ_VERBS.iter().any(|v| method.starts_with(v)) => Role::Read,
        // Everything else changes state (SetLimits, Halt, Resume, imports,
        // replays, ...): operator. A new RPC is closed until it is classified.
        _ => Role::Operator,
    };
    Some(role)
}

/// Why a call was refused (the metric's `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization: Bearer` header.
    Missing,
    /// A token no line of the file holds.
    Unknown,
    /// A valid token whose role is too low.
    Forbidden,
}

impl Refusal {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unknown => "unknown",
            Self::Forbidden => "forbidden",
        }
    }
}

/// The tokens a server accepts, by digest.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    roles: HashMap<[u8; 32], Role>,
    /// Client certificates by the SHA-256 of their DER.
    identities: HashMap<[u8; 32], Role>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads a tokens file. Errors name the file and line, never the token.
    ///
    /// # Errors
    /// An unreadable file, a line without a role and a token, an unknown role.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("auth.tokens_file", format!("{}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|(line, why)| {
            ConfigError::invalid(
                "auth.tokens_file",
                format!("{} line {line}: {why}", path.display()),
            )
        })
    }

    /// Parses `<role> <token>` lines; errors carry the 1-based line number.
    fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut roles = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err((n + 1, "expected `<role> <token>`"));
            };
            let role = Role::parse(role).ok_or((n + 1, "role must be read, trader or operator"))?;
            if token.len() < 16 {
                return Err((n + 1, "a token must have at least 16 characters"));
            }
            roles.insert(digest(token), role);
        }
        Ok(Self {
            roles,
            identities: HashMap::new(),
        })
    }

    /// Adds the client certificates of an identities file. Errors name the
    /// file and line.
    ///
    /// # Errors
    /// An unreadable file, a line without a role and a fingerprint, an
    /// unknown role, a fingerprint that is not 32 bytes of hex.
    pub fn load_identities(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("auth.identities_file", format!("{}: {e}", path.display()))
        })?;
        self.identities = parse_identities(&text).map_err(|(line, why)| {
            ConfigError::invalid(
                "auth.identities_file",
                format!("{} line {line}: {why}", path.display()),
            )
        })?;
        Ok(())
    }

    /// Checks a call: `Ok` or the refusal with its status.
    ///
    /// # Errors
    /// The refusal and the status to answer with.
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&str>,
        client_cert: Option<&[u8]>,
    ) -> Result<(), (Refusal, Status)> {
        let Some(needed) = required_role(path) else {
            return Ok(());
        };
        let by_cert = client_cert.and_then(|der| {
            let fingerprint: [u8; 32] = Sha256::digest(der).into();
            self.identities.get(&fingerprint).copied()
        });
        let by_token = match authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(token) => match self.roles.get(&digest(token.trim())) {
                Some(&role) => Some(role),
                // A wrong credential is refused, whatever else comes with it.
                None => return Err((Refusal::Unknown, Status::unauthenticated("unknown token"))),
            },
            None => None,
        };
        let Some(role) = by_cert.max(by_token) else {
            return Err((
                Refusal::Missing,
                Status::unauthenticated(
                    "missing authorization: Bearer <token> (or a client certificate listed in \
                     auth.identities_file)",
                ),
            ));
        };
        if role < needed {
            return Err((
                Refusal::Forbidden,
                Status::permission_denied(format!(
                    "{path} needs the {needed:?} role; this caller has {role:?}"
                )),
            ));
        }
        Ok(())
    }
}

/// The tokens for a server on `grpc_addr`, or `None` when none are required.
///
/// # Errors
/// An unreadable or malformed tokens file.
pub fn tokens_for(
    config: &AuthConfig,
    grpc_addr: SocketAddr,
) -> Result<Option<Tokens>, ConfigError> {
    if !config.required_for(grpc_addr) {
        return Ok(None);
    }
    // Required but none configured: nobody gets in, reads included.
    let mut tokens = if config.tokens_file.as_os_str().is_empty() {
        Tokens::default()
    } else {
        Tokens::load(&config.tokens_file)?
    };
    if !config.identities_file.as_os_str().is_empty() {
        tokens.load_identities(&config.identities_file)?;
    }
    Ok(Some(tokens))
}

/// Parses `<role> <fingerprint>` lines; errors carry the 1-based line number.
fn parse_identities(text: &str) -> Result<HashMap<[u8; 32], Role>, (usize, &'static str)> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(role), Some(fp), None) = (words.next(), words.next(), words.next()) else {
            return Err((n + 1, "expected `<role> <SHA-256 fingerprint>`"));
        };
        let role = Role::parse(role).ok_or((n + 1, "role must be read, trader or operator"))?;
        let hex_digits: String = fp.chars().filter(|c| *c != ':').collect();
        let mut fingerprint = [0u8; 32];
        hex::decode_to_slice(&hex_digits, &mut fingerprint).map_err(|_| {
            (
                n + 1,
                "the fingerprint must be 64 hex digits (colons allowed)",
            )
        })?;
        out.insert(fingerprint, role);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# GRODT tokens\nread    r-0123456789abcdef\ntrader  t-0123456789abcdef  # desk\noperator o-0123456789abcdef\n";

    fn tokens() -> Tokens {
        Tokens::parse(FILE).unwrap()
    }

    #[test]
    fn roles_by_method() {
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            None
        );
        assert_eq!(
            required_role("/grodt.v1.RiskService/Halt"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role("/grodt.v1.RiskService/GetLimits"),
            Some(Role::Read)
        );
        assert_eq!(
            required_role("/grodt.v1.ExecutionService/SubmitOrder"),
            Some(Role::Trader)
        );
        assert_eq!(
            required_role("/grodt.v1.MarketDataService/ImportCsv"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role("/grodt.v1.BacktestService/RunBacktest"),
            Some(Role::Trader)
        );
        assert_eq!(
            required_role("/grodt.v1.MarketDataService/StartReplay"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role("/grodt.v1.RegimeService/Classify"),
            Some(Role::Read)
        );
        // Deny by default: an RPC nobody classified needs the highest role.
        assert_eq!(
            required_role("/grodt.v1.RiskService/Liquidate"),
            Some(Role::Operator)
        );
        // This session's RPCs: the optimizer's start and cancel need a
        // trader, its list only reads, and FetchBars (it writes the
        // catalog) needs an operator.
        for (method, role) in [
            ("StartOptimization", Role::Trader),
            ("CancelOptimization", Role::Trader),
            ("ListOptimizations", Role::Read),
            ("StreamProgress", Role::Read),
        ] {
            assert_eq!(
                required_role(&format!("/grodt.v1.OptimizerService/{method}")),
                Some(role),
                "{method}"
            );
        }
        assert_eq!(
            required_role("/grodt.v1.MarketDataService/FetchBars"),
            Some(Role::Operator)
        );
    }

    #[test]
    fn each_refusal_has_its_code() {
        let t = tokens();
        let halt = "/grodt.v1.RiskService/Halt";
        let (why, status) = t.check(halt, None, None).unwrap_err();
        assert_eq!(
            (why, status.code()),
            (Refusal::Missing, tonic::Code::Unauthenticated)
        );
        let (why, status) = t
            .check(halt, Some("Bearer nope-nope-nope-nope"), None)
            .unwrap_err();
        assert_eq!(
            (why, status.code()),
            (Refusal::Unknown, tonic::Code::Unauthenticated)
        );
        let (why, status) = t
            .check(halt, Some("Bearer t-0123456789abcdef"), None)
            .unwrap_err();
        assert_eq!(
            (why, status.code()),
            (Refusal::Forbidden, tonic::Code::PermissionDenied)
        );
        assert!(
            status.message().contains("Operator"),
            "{}",
            status.message()
        );
        assert!(
            t.check(halt, Some("Bearer o-0123456789abcdef"), None)
                .is_ok()
        );
        let submit = "/grodt.v1.ExecutionService/SubmitOrder";
        assert!(
            t.check(submit, Some("Bearer t-0123456789abcdef"), None)
                .is_ok()
        );
        assert!(
            t.check(submit, Some("Bearer r-0123456789abcdef"), None)
                .is_err()
        );
        let read = "/grodt.v1.ExecutionService/ListOrders";
        assert!(
            t.check(read, Some("Bearer r-0123456789abcdef"), None)
                .is_ok()
        );
        assert!(t.check(read, None, None).is_err(), "reads need a token too");
        assert!(t.check("/grpc.health.v1.Health/Check", None, None).is_ok());
        // Not "Bearer": refused as missing.
        assert!(matches!(
            t.check(read, Some("Basic r-0123456789abcdef"), None),
            Err((Refusal::Missing, _))
        ));
    }

    #[test]
    fn a_listed_client_certificate_carries_its_role_without_a_token() {
        let mut t = tokens();
        let (op_cert, read_cert, stranger) = (b"operator-cert-der", b"read-cert-der", b"other");
        let fp = |der: &[u8]| {
            let d: [u8; 32] = Sha256::digest(der).into();
            // The colon form openssl prints, for one of them.
            d.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        t.identities = parse_identities(&format!(
            "operator {}\nread {}  # a dashboard\n",
            fp(op_cert),
            hex::encode(Sha256::digest(read_cert))
        ))
        .unwrap();
        let halt = "/grodt.v1.RiskService/Halt";
        assert!(t.check(halt, None, Some(op_cert)).is_ok());
        let (why, status) = t.check(halt, None, Some(read_cert)).unwrap_err();
        assert_eq!(
            (why, status.code()),
            (Refusal::Forbidden, tonic::Code::PermissionDenied)
        );
        // The higher of certificate and token.
        assert!(
            t.check(halt, Some("Bearer o-0123456789abcdef"), Some(read_cert))
                .is_ok()
        );
        // An unknown certificate is no credential; a wrong token is refused
        // even with a good certificate.
        assert!(matches!(
            t.check(halt, None, Some(stranger)),
            Err((Refusal::Missing, _))
        ));
        assert!(matches!(
            t.check(halt, Some("Bearer nope-nope-nope-nope"), Some(op_cert)),
            Err((Refusal::Unknown, _))
        ));
        assert_eq!(parse_identities("operator abcd").unwrap_err().0, 1);
        assert_eq!(parse_identities("\nroot 00").unwrap_err().0, 2);
    }

    #[test]
    fn malformed_files_are_refused_by_line_without_the_token() {
        assert_eq!(Tokens::parse("root secret-secret-secret").unwrap_err().0, 1);
        assert_eq!(Tokens::parse("\n\ntrader short").unwrap_err().0, 3);
        assert_eq!(
            Tokens::parse("trader a b c d e f g h i j").unwrap_err().0,
            1
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "trader too-short").unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("auth.tokens_file") && e.contains("line 1"),
            "{e}"
        );
        assert!(
            !e.contains("too-short"),
            "the token never reaches a message: {e}"
        );
    }

    #[test]
    fn auto_mode_follows_the_listener() {
        let auto = AuthConfig::default();
        assert!(!auto.required_for(([127, 0, 0, 1], 1).into()));
        assert!(!auto.required_for("[::1]:1".parse().unwrap()));
        assert!(auto.required_for(([0, 0, 0, 0], 1).into()));
        assert!(auto.required_for(([10, 1, 2, 3], 1).into()));
        let off = AuthConfig {
            mode: AuthMode::Off,
            ..AuthConfig::default()
        };
        assert!(!off.required_for(([0, 0, 0, 0], 1).into()));
        let on = AuthConfig {
            mode: AuthMode::Required,
            ..AuthConfig::default()
        };
        let none = tokens_for(&on, ([127, 0, 0, 1], 1).into())
            .unwrap()
            .unwrap();
        assert!(
            none.check(
                "/grodt.v1.RiskService/GetLimits",
                Some("Bearer x-0123456789abcdef"),
                None
            )
            .is_err(),
            "required with no file: nobody gets in"
        );
    }
}
