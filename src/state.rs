//! What every handler and background task shares, built once by `startup::Application::build`.

use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use url::Url;

use crate::config::Settings;
use crate::ids::IdGenerator;
use crate::store::Db;
use crate::watch::github::GithubClient;
use crate::watch::gitremote::GitRemotes;

#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub settings: Settings,
    /// The base URL for links, resolved against the address actually bound.
    pub public_url: Url,
    pub db: Db,
    pub ids: Arc<IdGenerator>,
    /// One outbound HTTP client (connection pools are per client).
    pub http: reqwest::Client,
    /// Wakes this node's delivery worker right after something is queued.
    pub outbox_wake: Arc<Notify>,
    /// Deliveries leased to this node as they are queued, handed to its worker in memory.
    pub local_queue: crate::outbox::LocalQueue,
    pub github: GithubClient,
    pub git: GitRemotes,
    pub metrics: PrometheusHandle,
    pub login_limits: Arc<crate::accounts::http::LoginLimits>,
    /// Carries chat frames to every socket of a user.
    pub bus: Arc<dyn crate::chat::bus::Bus>,
    /// Chat sessions whose socket dropped, waiting for `resume`.
    pub sessions: Arc<crate::chat::resume::Sessions>,
    /// Knowledge search: the database's documents through this node's index (`kb/`).
    pub kb: Arc<crate::kb::KnowledgeBase>,
    /// The account of the herald bot in chat.
    pub bot_account_id: i64,
    /// Bot conversations between messages (SQLite only; see `bot::session::SessionCache`).
    pub bot_sessions: Arc<crate::bot::session::SessionCache>,
    /// Push events waiting for their group commit (`watch::ingest`).
    pub ingest: crate::watch::ingest::IngestQueue,
    /// Repositories by key, for inbound webhooks.
    pub repositories: crate::watch::RepositoryCache,
    /// The Webex bot's own identity, read once from the API.
    pub webex_me: Arc<tokio::sync::OnceCell<crate::connectors::webex::WebexMe>>,
}

impl AppState {
    pub fn new(inner: AppInner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}
