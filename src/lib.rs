//! herald: a self-hosted chat-bot and notification hub. The binary in `main.rs` only parses the
//! command line; everything else is this library, so tests and benchmarks run the real thing.
//! See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod bot;
pub mod channels;
pub mod chat;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod contacts;
pub mod crypto;
pub mod digest;
pub mod health;
pub mod history;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod kb;
pub mod limits;
pub mod netguard;
pub mod node;
pub mod notify;
pub mod outbox;
pub mod projects;
pub mod push;
pub mod schedules;
pub mod startup;
pub mod state;
pub mod store;
pub mod teams;
pub mod telemetry;
// The fakes are other platforms' servers, plain axum routers, not herald's routes (clippy.toml).
#[allow(clippy::disallowed_methods)]
#[doc(hidden)]
pub mod testkit;
pub mod text;
pub mod watch;
pub mod web;
