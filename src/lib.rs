//! herald: a self-hosted chat-bot and notification hub. The binary in `main.rs` only parses the
//! command line; everything else is this library, so tests and benchmarks run the real thing.
//! See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod bot;
pub mod channels;
pub mod chat;
pub mod config;
pub mod connectors;
pub mod contacts;
pub mod crypto;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod kb;
pub mod limits;
pub mod notify;
pub mod outbox;
pub mod projects;
pub mod push;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testkit;
pub mod text;
pub mod watch;
