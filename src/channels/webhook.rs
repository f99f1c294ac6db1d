//! Outgoing project webhooks: a signed POST of the stored payload to the hook's URL.
//!
//! Each hook has its own concurrency limit and optional rate limit, enforced here: a delivery
//! over either is handed back as `Deferred` (not attempted, not logged), so a slow or throttled
//! receiver holds at most its own few sends and never the worker's other slots. Redirects are
//! not followed, and unless `HERALD_ALLOW_PRIVATE_TARGETS` is set, names are resolved by a
//! resolver that drops loopback and private addresses — the SSRF check at send time, after DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::Semaphore;

use crate::outbox::channel::{OutgoingMessage, error_chain};
use crate::outbox::{Attempt, Channel, Verdict};
use crate::projects::signing::{github_signature, standard_webhooks_signature};
use crate::projects::{HookTarget, hook_target};
use crate::store::Db;
use crate::watch::repo::{is_private_host, is_private_ip};

/// How long a hook's settings are trusted before they are read again.
const HOOK_CACHE_TTL: Duration = Duration::from_secs(2);
/// How much of a receiver's answer is kept in the attempt log.
const RESPONSE_LOG_BYTES: usize = 4096;
const PRIVATE_REFUSAL: &str = "set HERALD_ALLOW_PRIVATE_TARGETS=true to allow it";

struct HookRuntime {
    target: HookTarget,
    loaded_at: Instant,
    permits: Arc<Semaphore>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

pub struct WebhookChannel {
    db: Db,
    http: reqwest::Client,
    allow_private: bool,
    hooks: Mutex<HashMap<i64, Arc<HookRuntime>>>,
}

/// Resolves names like the system does, minus loopback, private and reserved addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| !is_private_ip(a.ip()))
                .collect();
            if public.is_empty() {
                let message = format!(
                    "{host} resolves only to loopback or private addresses; {PRIVATE_REFUSAL}"
                );
                return Err(message.into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for URLs that came from users: no redirects, and unless `allow_private`,
/// a resolver that refuses loopback and private addresses (the SSRF check after DNS).
pub fn guarded_client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("herald-Hookshot/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    builder.build()
}

impl WebhookChannel {
    pub fn new(
        db: Db,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Arc<WebhookChannel>, reqwest::Error> {
        Ok(Arc::new(WebhookChannel {
            db,
            http: guarded_client(timeout, allow_private)?,
            allow_private,
            hooks: Mutex::new(HashMap::new()),
        }))
    }

    async fn hook(&self, id: i64) -> Result<Option<Arc<HookRuntime>>, sqlx::Error> {
        let cached = self
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        if let Some(runtime) = &cached
            && runtime.loaded_at.elapsed() < HOOK_CACHE_TTL
        {
            return Ok(cached);
        }
        let Some(target) = hook_target(&self.db, id).await? else {
            self.hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Ok(None);
        };
        // Keep the live semaphore and limiter unless the hook's limits changed.
        let (permits, limiter) = match &cached {
            Some(old)
                if old.target.max_concurrency == target.max_concurrency
                    && old.target.rate_per_second == target.rate_per_second =>
            {
                (old.permits.clone(), old.limiter.clone())
            }
            _ => (
                Arc::new(Semaphore::new(
                    target.max_concurrency.clamp(1, 1000) as usize
                )),
                target
                    .rate_per_second
                    .and_then(|rate| NonZeroU32::new(rate.clamp(1, 100_000) as u32))
                    .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate)))),
            ),
        };
        let runtime = Arc::new(HookRuntime {
            target,
            loaded_at: Instant::now(),
            permits,
            limiter,
        });
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, runtime.clone());
        Ok(Some(runtime))
    }

    async fn deliver(&self, message: OutgoingMessage<'_>) -> Attempt {
        let Ok(hook_id) = message.destination.parse::<i64>() else {
            return Attempt::failed(Verdict::Permanent, None, None, "not a webhook id");
        };
        let hook = match self.hook(hook_id).await {
            Ok(Some(hook)) => hook,
            Ok(None) => {
                return Attempt::failed(Verdict::Permanent, None, None, "the webhook was deleted");
            }
            Err(error) => {
                return Attempt::failed(
                    Verdict::Retry { after: None },
                    None,
                    None,
                    format!("database: {error}"),
                );
            }
        };
        if !hook.target.active {
            return Attempt::failed(Verdict::Permanent, None, None, "the webhook is disabled");
        }
        let Ok(_permit) = hook.permits.clone().try_acquire_owned() else {
            return Attempt::deferred(Duration::from_millis(50));
        };
        if let Some(limiter) = &hook.limiter
            && limiter.check().is_err()
        {
            let rate = hook.target.rate_per_second.unwrap_or(1).max(1) as u64;
            return Attempt::deferred(Duration::from_millis((1000 / rate).max(5)));
        }
        let url = &hook.target.payload_url;
        if !self.allow_private {
            let host = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            if is_private_host(&host) {
                return Attempt::failed(
                    Verdict::Permanent,
                    None,
                    None,
                    format!("refused: {host} is a loopback or private address; {PRIVATE_REFUSAL}"),
                );
            }
        }

        let id = message.id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let body = message.payload.as_bytes();
        let secret = &hook.target.secret;
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                standard_webhooks_signature(secret, &id, timestamp, body),
            )
            .header("x-github-event", message.event_type.unwrap_or("push"))
            .header("x-github-delivery", &id)
            .header("x-github-hook-id", hook_id.to_string())
            .header("x-hub-signature-256", github_signature(secret, body))
            .body(message.payload.to_string());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let text = error_chain(&error);
                if text.contains(PRIVATE_REFUSAL) {
                    return Attempt::failed(
                        Verdict::Permanent,
                        None,
                        None,
                        format!("refused: {text}"),
                    );
                }
                return Attempt::from_transport_error(&error);
            }
        };
        let status = response.status();
        let retry_after = crate::outbox::channel::retry_after(response.headers());
        let mut logged = Vec::new();
        while logged.len() < RESPONSE_LOG_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => logged.extend_from_slice(&chunk),
                _ => break,
            }
        }
        logged.truncate(RESPONSE_LOG_BYTES);
        let body = Some(String::from_utf8_lossy(&logged).into_owned());
        let code = Some(status.as_u16());
        if status.is_success() {
            return Attempt::delivered(code, body);
        }
        let error = format!("the receiver answered {status}");
        match status {
            StatusCode::GONE => Attempt::failed(Verdict::Gone, code, body, error),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Attempt::failed(Verdict::Retry { after: retry_after }, code, body, error)
            }
            _ => Attempt::failed(Verdict::Retry { after: None }, code, body, error),
        }
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::channel::parse_retry_after;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
