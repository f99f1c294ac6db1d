//! herald's integration tests: one binary, every test through the real app (port 0, its own
//! database), each storage test on SQLite and on PostgreSQL.

mod helpers;

mod accounts;
mod bot;
mod chat;
mod delivery;
mod git_watch;
mod github;
mod kb;
mod limits;
mod ops;
mod reference_api;
mod store;
mod webhooks;
