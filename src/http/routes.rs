//! How a route gets into herald's router: the one way in, which also decides whether the route
//! is in the OpenAPI document.
//!
//! A feature's `router()` returns [`Routes`]. A route is added either
//! - with [`Routes::api`], from utoipa-axum's `routes!(handler)`: the handler's
//!   `#[utoipa::path]` attribute gives both the path the route is registered at and its path
//!   item in the document, so a documented route cannot be registered without its
//!   documentation; or
//! - with [`Routes::outside`], which records the route and [`Outside`], the reason it is not
//!   part of the JSON API (a page, a platform's webhook, the chat socket, an operations
//!   endpoint).
//!
//! Nothing else adds routes: `clippy.toml` disallows `axum::Router::route` and friends outside
//! this module, and `tests/it/openapi.rs` compares every registration ([`Registration`]) with the
//! served document and with what the live router answers.

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, Route};
use tower::{Layer, Service};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

/// Why a route is outside the OpenAPI document. Everything under `/api/` is in the document;
/// `tests/it/openapi.rs` refuses an outside route there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    /// HTML for people (the pages of SPEC §F, the reference project pages).
    Page,
    /// Called by an outside platform in that platform's own format (forge push hooks, Kakao,
    /// Telegram, Webex): documented by the platform, not by herald.
    PlatformWebhook,
    /// The chat WebSocket; its frames are described in `docs/chat-protocol.md`.
    WebSocket,
    /// Prometheus' text format, for a scraper.
    Metrics,
    /// A static file the pages load (their style sheet), not an operation.
    Asset,
}

impl Outside {
    pub fn reason(self) -> &'static str {
        match self {
            Outside::Page => "a page for people (HTML), not part of the JSON API",
            Outside::PlatformWebhook => {
                "called by an outside platform in that platform's own format"
            }
            Outside::WebSocket => "the chat WebSocket; frames are in docs/chat-protocol.md",
            Outside::Metrics => "Prometheus text format for a scraper",
            Outside::Asset => "a static file for the pages (HTML), not part of the JSON API",
        }
    }
}

/// One route the router serves: a method on a path (in axum's and OpenAPI's `{param}` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub method: Method,
    pub path: String,
    /// `None`: in the OpenAPI document.
    pub outside: Option<Outside>,
}

/// A set of routes with their registrations; see the module documentation.
pub struct Routes<S = ()> {
    api: OpenApiRouter<S>,
    outside: Router<S>,
    registrations: Vec<Registration>,
}

impl<S> Default for Routes<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Routes::new()
    }
}

impl<S> Routes<S>
where
    S: Clone + Send + Sync + 'static,
{
    pub fn new() -> Routes<S> {
        Routes {
            api: OpenApiRouter::new(),
            outside: Router::new(),
            registrations: Vec::new(),
        }
    }

    /// Adds a documented route: `routes.api(routes!(handler))`, one handler (one method) per
    /// call. To give the route a layer of its own (e.g. a body limit), change the method router
    /// of the tuple `routes!` returns before passing it.
    pub fn api(mut self, route: UtoipaMethodRouter<S>) -> Routes<S> {
        let (_, paths, _) = &route;
        for (path, item) in &paths.paths {
            for method in operation_methods(item) {
                self.registrations.push(Registration {
                    method,
                    path: path.clone(),
                    outside: None,
                });
            }
        }
        self.api = self.api.routes(route);
        self
    }

    /// Adds a route that is not part of the JSON API, with the reason why.
    pub fn outside<H, T>(
        mut self,
        why: Outside,
        method: Method,
        path: &'static str,
        handler: H,
    ) -> Routes<S>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} is not a method axum can route"));
        self.outside = route_outside(self.outside, path, axum::routing::on(filter, handler));
        self.registrations.push(Registration {
            method,
            path: path.to_string(),
            outside: Some(why),
        });
        self
    }

    /// Adds a route outside the JSON API that answers every method (it hands requests on, as
    /// plus-friend's secret door does); `served` are the methods it answers with more than 405,
    /// which are recorded.
    pub fn outside_any<H, T>(
        mut self,
        why: Outside,
        served: &[Method],
        path: &'static str,
        handler: H,
    ) -> Routes<S>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.outside = route_outside(self.outside, path, axum::routing::any(handler));
        for method in served {
            self.registrations.push(Registration {
                method: method.clone(),
                path: path.to_string(),
                outside: Some(why),
            });
        }
        self
    }

    /// The router of routes that are all outside the API, to be served again behind another
    /// route that is itself registered (plus-friend's `/kakao/plusfriend/{secret}/{*rest}`).
    /// Panics if a documented route is among them: those are served only through the document.
    pub fn into_outside_router(self) -> Router<S> {
        assert!(
            self.registrations.iter().all(|r| r.outside.is_some()),
            "documented routes cannot be served behind another route"
        );
        self.outside
    }

    /// A layer for every route added so far (as `axum::Router::layer`).
    pub fn layer<L>(self, layer: L) -> Routes<S>
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Routes {
            api: self.api.layer(layer.clone()),
            outside: self.outside.layer(layer),
            registrations: self.registrations,
        }
    }

    /// Gives the routes their state (as `axum::Router::with_state`).
    pub fn with_state<S2>(self, state: S) -> Routes<S2>
    where
        S2: Clone + Send + Sync + 'static,
    {
        Routes {
            api: self.api.with_state(state.clone()),
            outside: self.outside.with_state(state),
            registrations: self.registrations,
        }
    }

    pub fn merge(mut self, other: Routes<S>) -> Routes<S> {
        self.api = self.api.merge(other.api);
        self.outside = self.outside.merge(other.outside);
        self.registrations.extend(other.registrations);
        self
    }

    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }
}

impl Routes<()> {
    /// The router and the OpenAPI document of these routes, the document starting from `base`
    /// (info, security schemes, shared components).
    pub fn into_parts(
        self,
        base: utoipa::openapi::OpenApi,
    ) -> (Router, utoipa::openapi::OpenApi, Vec<Registration>) {
        let (api_router, document) = OpenApiRouter::with_openapi(base)
            .merge(self.api)
            .split_for_parts();
        (api_router.merge(self.outside), document, self.registrations)
    }
}

/// The one place where a route is added without documentation; [`Routes::outside`] records it.
#[allow(clippy::disallowed_methods)]
fn route_outside<S>(router: Router<S>, path: &str, route: MethodRouter<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route(path, route)
}

/// The methods that have an operation in a path item.
pub fn operation_methods(item: &utoipa::openapi::PathItem) -> Vec<Method> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter(|(_, operation)| operation.is_some())
    .map(|(method, _)| method)
    .collect()
}
