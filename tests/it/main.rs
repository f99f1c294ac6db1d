//! herald's integration tests: one binary, every test through the real app (port 0, its own
//! database), each storage test on SQLite and on PostgreSQL.

mod helpers;

mod accounts;
mod bot;
mod chat;
mod cluster_bus;
mod cluster_hooks;
mod cluster_once;
mod connections;
mod delivery;
mod digest;
mod full_disk;
mod git_watch;
mod github;
mod history;
mod kakao_gate;
mod kb;
mod limits;
mod name_squatting;
mod openapi;
mod ops;
mod reference_api;
mod schedules;
mod ssrf;
mod store;
mod takeover;
mod web_browser;
mod web_chat;
mod web_operator;
mod web_pages;
mod web_projects;
// area E's pages (schedules, member days) and the dashboard's unread chats
mod web_schedules;
// subscriptions, teams and schedules, knowledge base pages
mod web_subs;
mod webhooks;
