//! Integration tests of the seven services and the `grodt` CLI: each service
//! on port 0 against embedded or real infrastructure, and `grodt up` as a
//! real process.

mod backtest;
mod cluster;
mod data;
mod distributed;
mod fault;
mod fetch;
mod health_tls;
mod helpers;
mod layout;
mod optimize;
mod outage;
mod paper;
mod proxy;
mod redis_server;
mod replay_metrics;
mod services;
mod strategies;
mod trace;
mod up;
