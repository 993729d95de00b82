//! Integration tests of the service kit: real listeners on port 0, real gRPC
//! and HTTP clients.

mod auth;
mod config_exit;
mod helpers;
mod redis_auth;
mod redis_tls;
mod server;
mod shutdown;
mod tls;
mod tracing_ctx;
