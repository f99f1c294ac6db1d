//! The infrastructure every feature shares, built once by `startup::Application::build`:
//! settings, storage, ids, the outbound HTTP client, the delivery queue's wake-ups, the clients
//! of git remotes and the metrics handle.
//!
//! **Boundary**: nothing here belongs to one feature. A feature that keeps runtime state of its
//! own (a cache, a bus, a limiter) owns it in a state struct of its module — `ChatState`,
//! `bot::Bot`, `push::PushState`, `accounts::http::AccountsState`, `kb::http::KbState`,
//! `connectors::webex::WebexState`, `schedules::SchedulesState` — which holds an `AppState`
//! beside its own handles and is given to that feature's router and tasks alone. This module imports no feature module
//! except the queue handle (`outbox`) and the remote clients (`watch::github`,
//! `watch::gitremote`), which import nothing back.

use std::ops::Deref;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use url::Url;

use crate::config::Settings;
use crate::ids::IdGenerator;
use crate::limits::{ClientKey, WindowLimit};
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
    /// This node's lease: the id its claims carry, and whether it may claim (`node`).
    pub node: Arc<crate::node::NodeLease>,
    /// One outbound HTTP client (connection pools are per client).
    pub http: reqwest::Client,
    /// Wakes the delivery workers right after something is queued that was not handed to this
    /// node's in memory: this node's, and with several nodes the others' (`outbox::wake`).
    pub outbox_wake: Arc<crate::outbox::wake::Wake>,
    /// Deliveries leased to this node as they are queued, handed to its worker in memory.
    pub local_queue: crate::outbox::LocalQueue,
    pub github: GithubClient,
    pub git: GitRemotes,
    pub metrics: PrometheusHandle,
    /// Wall-clock time for what fires at calendar times (schedules, digests, quiet hours); a
    /// `clock::ManualClock` in tests.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Wrong operator tokens per client address (`http::auth`). The operator's identity is
    /// checked by extractors in every feature, which reach only this shared state; like the
    /// token itself (in `settings`), its limit belongs to no one feature.
    pub operator_token_failures: WindowLimit<ClientKey>,
    /// Whether a bearer token is a live login token: `accounts` owns the tokens and sits above
    /// `http::auth`, so it is handed over at start-up; a login token sent to an operator-only
    /// route is then not counted as a guess at the operator token.
    pub login_token_is_live: LoginTokenCheck,
    /// The links besides the database that `/readyz` reports (the chat bus's Redis link).
    pub readiness: Arc<crate::health::Readiness>,
}

/// See [`AppInner::login_token_is_live`].
pub type LoginTokenCheck =
    for<'a> fn(&'a Db, &'a str) -> BoxFuture<'a, Result<bool, crate::store::StoreError>>;

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

/// Makes a feature's state struct — one with an `app: AppState` field beside the feature's own
/// handles — reach the shared infrastructure: `state.db` and the like through `Deref`, and the
/// extractors that need `AppState` (`http::auth::Admin`, `accounts::auth::Actor` …) through
/// axum's `FromRef`.
#[macro_export]
macro_rules! feature_state {
    ($name:ty) => {
        impl ::std::ops::Deref for $name {
            type Target = $crate::state::AppState;

            fn deref(&self) -> &$crate::state::AppState {
                &self.app
            }
        }

        impl ::axum::extract::FromRef<$name> for $crate::state::AppState {
            fn from_ref(state: &$name) -> $crate::state::AppState {
                state.app.clone()
            }
        }
    };
}
