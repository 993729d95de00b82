//! market-data over gRPC: each test spawns the service on port 0 with its own
//! SQLite database, its own catalog directory and, for replays, real Redis
//! under its own key prefix.

mod catalog;
mod helpers;
mod kill;
mod live;
mod replay;
