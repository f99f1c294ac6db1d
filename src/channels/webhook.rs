//! Outgoing project webhooks: a signed POST of the stored payload to the hook's URL.
//!
//! Each hook has its own concurrency limit and optional rate limit, enforced here: a delivery
//! over either is handed back as `Deferred` (not attempted, not logged), so a slow or throttled
//! receiver holds at most its own few sends and never the worker's other slots. On one node the
//! limits are this process's (a semaphore and a `governor` limiter per hook); with
//! `HERALD_REDIS_URL` they are the cluster's, in Redis (`hook_limits`), so that N nodes together
//! keep them. Redirects are
//! not followed, and unless `HERALD_ALLOW_PRIVATE_TARGETS` is set, names are resolved by a
//! resolver that drops loopback and private addresses — the SSRF check at send time, after DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::Semaphore;

use crate::channels::hook_client::{HookClient, PRIVATE_REFUSAL, resolve_guarded};
use crate::channels::hook_limits::{Admission, SharedHookLimits};
use crate::ids::now_ms;
use crate::outbox::channel::OutgoingMessage;
use crate::outbox::{Attempt, Channel, Verdict};
use crate::projects::signing::{github_signature, standard_webhooks_signature};
use crate::projects::{HookTarget, hook_target, hook_targets};
use crate::store::{Db, StoreError};
use crate::watch::repo::is_private_host;

/// How often the settings of the hooks in use are read again, in the background: a change
/// (limits, turned off, deleted) reaches sends within about this long, on every node.
const HOOK_REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A send reads its hook's settings itself only when they are older than this: a hook not in
/// the cache (first send, or none for a while), or refreshes failing.
const HOOK_STALE_AFTER: Duration = Duration::from_secs(3);
/// Hooks not sent to for this long leave the cache and are no longer refreshed.
const HOOK_IDLE_AFTER: Duration = Duration::from_secs(60);
/// The longest a delivery waits for a permit of a hook whose permits are all taken.
const BUSY_DEFER_MAX: Duration = Duration::from_secs(2);
/// How much of a receiver's answer is kept in the attempt log.
const RESPONSE_LOG_BYTES: usize = 4096;

struct HookRuntime {
    target: HookTarget,
    /// The payload URL, parsed once per load; `Err` holds why it cannot be sent to.
    uri: Result<hyper::Uri, String>,
    /// The URL's host when it is a loopback or private address (refused unless allowed).
    private_host: Option<String>,
    /// When the read that found these settings started.
    loaded_at: Instant,
    permits: Arc<Semaphore>,
    /// When a send last found a free permit (Unix ms), kept across reloads like `permits`.
    last_free: Arc<AtomicI64>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl HookRuntime {
    /// How long a delivery waits when every permit is taken: a quarter of how long the hook
    /// has had none free, from 50 ms up to [`BUSY_DEFER_MAX`]. A hook that answers slowly frees
    /// permits often and its queue is tried again soon; one that holds every request until the
    /// timeout (a dead receiver) would otherwise have its whole backlog claimed, tried and put
    /// back twenty times a second — a write per delivery each time, which doubled herald's CPU
    /// with one such hook among 100 and slowed the healthy ones' deliveries with it.
    fn busy_wait(&self) -> Duration {
        busy_wait_after(now_ms().saturating_sub(self.last_free.load(Ordering::Relaxed)))
    }
}

/// [`HookRuntime::busy_wait`] for a hook that has had no free permit for `busy_ms`.
fn busy_wait_after(busy_ms: i64) -> Duration {
    Duration::from_millis((busy_ms / 4).clamp(50, BUSY_DEFER_MAX.as_millis() as i64) as u64)
}

/// The headers of a hook delivery: content type, Standard Webhooks id, timestamp (now) and
/// signature, and GitHub's event, delivery id, hook id and `X-Hub-Signature-256`. The delivery
/// id is the same on every retry.
pub fn signed_headers(
    secret: &str,
    delivery_id: i64,
    hook_id: i64,
    event_type: &str,
    body: &[u8],
) -> impl Iterator<Item = (HeaderName, HeaderValue)> + use<> {
    let id = delivery_id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let value = |text: String| HeaderValue::try_from(text).ok();
    [
        (
            "content-type",
            Some(HeaderValue::from_static("application/json")),
        ),
        ("webhook-id", value(id.clone())),
        ("webhook-timestamp", value(timestamp.to_string())),
        (
            "webhook-signature",
            value(standard_webhooks_signature(secret, &id, timestamp, body)),
        ),
        ("x-github-event", value(event_type.to_string())),
        ("x-github-delivery", value(id)),
        ("x-github-hook-id", value(hook_id.to_string())),
        ("x-hub-signature-256", value(github_signature(secret, body))),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((HeaderName::from_static(name), value?)))
}

pub struct WebhookChannel {
    db: Db,
    http: HookClient,
    allow_private: bool,
    hooks: Mutex<HashMap<i64, CachedHook>>,
    /// With several nodes: the limits held across all of them, instead of this process's.
    shared: Option<Arc<SharedHookLimits>>,
}

struct CachedHook {
    runtime: Arc<HookRuntime>,
    used_at: Instant,
}

/// Files `target`, read from a statement that started at `read_at`, as hook `target.id`'s
/// settings — unless the entry there was read later (a send's own read and the background
/// refresh can cross) — and returns the settings now in force. The live semaphore, rate
/// limiter and busy clock carry over while the limits are unchanged: taken from the entry in
/// the map under its lock, since two sends that load at once each making their own semaphore
/// let both through a limit of one.
fn install(
    hooks: &mut HashMap<i64, CachedHook>,
    target: HookTarget,
    read_at: Instant,
) -> Arc<HookRuntime> {
    let current = hooks.get(&target.id);
    if let Some(current) = current
        && current.runtime.loaded_at > read_at
    {
        return current.runtime.clone();
    }
    let (permits, last_free, limiter) = match current {
        Some(CachedHook { runtime, .. })
            if runtime.target.max_concurrency == target.max_concurrency
                && runtime.target.rate_per_second == target.rate_per_second =>
        {
            (
                runtime.permits.clone(),
                runtime.last_free.clone(),
                runtime.limiter.clone(),
            )
        }
        _ => (
            Arc::new(Semaphore::new(
                target.max_concurrency.clamp(1, 1000) as usize
            )),
            Arc::new(AtomicI64::new(now_ms())),
            target
                .rate_per_second
                .and_then(|rate| NonZeroU32::new(rate.clamp(1, 100_000) as u32))
                .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate)))),
        ),
    };
    let parsed = url::Url::parse(&target.payload_url);
    let private_host = parsed
        .as_ref()
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .filter(|host| is_private_host(host));
    let uri = parsed
        .map_err(|e| e.to_string())
        .and_then(|u| u.as_str().parse::<hyper::Uri>().map_err(|e| e.to_string()));
    let used_at = current.map_or_else(Instant::now, |c| c.used_at);
    let runtime = Arc::new(HookRuntime {
        uri,
        private_host,
        target,
        loaded_at: read_at,
        permits,
        last_free,
        limiter,
    });
    hooks.insert(
        runtime.target.id,
        CachedHook {
            runtime: runtime.clone(),
            used_at,
        },
    );
    runtime
}

/// Reads the settings of the hooks in use again every [`HOOK_REFRESH_EVERY`], so that sends
/// find them fresh in memory instead of reading them on the way; ends with the channel.
async fn refresh_in_background(channel: std::sync::Weak<WebhookChannel>) {
    let mut tick = tokio::time::interval(HOOK_REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(channel) = channel.upgrade() else {
            return;
        };
        channel.refresh().await;
    }
}

/// Resolves names like the system does, minus loopback, private and reserved addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let public: Vec<SocketAddr> = resolve_guarded(name.as_str(), false).await?;
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for URLs that came from users: no redirects, and unless `allow_private`,
/// a resolver that refuses loopback and private addresses (the SSRF check after DNS).
pub fn guarded_client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(crate::channels::hook_client::USER_AGENT)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64);
    if !allow_private {
        // A proxy would resolve the name itself, past the check.
        builder = builder
            .dns_resolver(Arc::new(PublicOnlyResolver))
            .no_proxy();
    }
    builder.build()
}

impl WebhookChannel {
    /// The channel, with its background refresh of hook settings (a task on the current
    /// runtime that ends when the channel is dropped). With `shared`, hooks' limits are held
    /// across the nodes that share it; without, by this process alone.
    pub fn new(
        db: Db,
        timeout: Duration,
        allow_private: bool,
        shared: Option<Arc<SharedHookLimits>>,
    ) -> std::io::Result<Arc<WebhookChannel>> {
        let channel = Arc::new(WebhookChannel {
            db,
            http: HookClient::new(timeout, allow_private)?,
            allow_private,
            hooks: Mutex::new(HashMap::new()),
            shared,
        });
        tokio::spawn(refresh_in_background(Arc::downgrade(&channel)));
        Ok(channel)
    }

    async fn refresh(&self) {
        let ids: Vec<i64> = {
            let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
            hooks.retain(|_, hook| hook.used_at.elapsed() < HOOK_IDLE_AFTER);
            hooks.keys().copied().collect()
        };
        if ids.is_empty() {
            return;
        }
        let read_at = Instant::now();
        match hook_targets(&self.db, &ids).await {
            Ok(targets) => {
                let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
                let found: std::collections::HashSet<i64> = targets.iter().map(|t| t.id).collect();
                // Deleted since: the next send reads again and finds out.
                hooks.retain(|id, hook| found.contains(id) || hook.runtime.loaded_at > read_at);
                for target in targets {
                    install(&mut hooks, target, read_at);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "could not refresh webhook settings; sends read their own");
            }
        }
    }

    async fn hook(&self, id: i64) -> Result<Option<Arc<HookRuntime>>, StoreError> {
        if let Some(cached) = self
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            cached.used_at = Instant::now();
            if cached.runtime.loaded_at.elapsed() < HOOK_STALE_AFTER {
                return Ok(Some(cached.runtime.clone()));
            }
        }
        let read_at = Instant::now();
        let Some(target) = hook_target(&self.db, id).await? else {
            self.hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Ok(None);
        };
        let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(install(&mut hooks, target, read_at)))
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
        // Held until the send ends: this node's semaphore permit, or the hook's slot in Redis.
        let _permit = match &self.shared {
            None => {
                let Ok(permit) = hook.permits.clone().try_acquire_owned() else {
                    return Attempt::deferred(hook.busy_wait());
                };
                hook.last_free.store(now_ms(), Ordering::Relaxed);
                if let Some(limiter) = &hook.limiter
                    && limiter.check().is_err()
                {
                    let rate = hook.target.rate_per_second.unwrap_or(1).max(1) as u64;
                    return Attempt::deferred(Duration::from_millis((1000 / rate).max(5)));
                }
                (Some(permit), None)
            }
            Some(shared) => {
                let admission = shared
                    .admit(
                        hook_id,
                        hook.target.max_concurrency,
                        hook.target.rate_per_second,
                    )
                    .await;
                match admission {
                    Admission::Granted(permit) => {
                        hook.last_free.store(now_ms(), Ordering::Relaxed);
                        (None, Some(permit))
                    }
                    // How long the hook has been busy is the cluster's to say: a node that
                    // rarely wins a slot would otherwise wait ever longer.
                    Admission::Busy(busy) => {
                        return Attempt::deferred(busy_wait_after(busy.as_millis() as i64));
                    }
                    Admission::RateLimited(wait) => {
                        return Attempt::deferred(wait.max(Duration::from_millis(5)));
                    }
                    Admission::Unavailable(wait) => return Attempt::deferred(wait),
                }
            }
        };
        if !self.allow_private
            && let Some(host) = &hook.private_host
        {
            return Attempt::failed(
                Verdict::Permanent,
                None,
                None,
                format!("refused: {host} is a loopback or private address; {PRIVATE_REFUSAL}"),
            );
        }
        let uri = match &hook.uri {
            Ok(uri) => uri,
            Err(error) => {
                let error = format!("the payload URL cannot be used: {error}");
                return Attempt::failed(Verdict::Permanent, None, None, error);
            }
        };

        let body = message.payload.as_bytes();
        let headers = signed_headers(
            &hook.target.secret,
            message.id,
            hook_id,
            message.event_type.unwrap_or("push"),
            body,
        );
        let payload = bytes::Bytes::copy_from_slice(body);
        let answer = match self
            .http
            .post(uri, headers, payload, RESPONSE_LOG_BYTES)
            .await
        {
            Ok(answer) => answer,
            Err(error) if error.is_private_refusal() => {
                let error = format!("refused: {}", error.message());
                return Attempt::failed(Verdict::Permanent, None, None, error);
            }
            Err(error) => {
                return Attempt::failed(
                    Verdict::Retry { after: None },
                    None,
                    None,
                    error.message(),
                );
            }
        };
        let status = answer.status;
        let retry_after = answer.retry_after;
        let body = Some(String::from_utf8_lossy(&answer.body).into_owned());
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
    fn a_hook_without_free_permits_is_tried_less_often_the_longer_it_stays_so() {
        assert_eq!(busy_wait_after(0), Duration::from_millis(50));
        assert_eq!(busy_wait_after(200), Duration::from_millis(50));
        assert_eq!(busy_wait_after(1_000), Duration::from_millis(250));
        assert_eq!(busy_wait_after(60_000), BUSY_DEFER_MAX);
        // A clock step backwards never makes it negative.
        assert_eq!(busy_wait_after(-5_000), Duration::from_millis(50));
    }

    fn target(id: i64, rate: Option<i64>, url: &str) -> HookTarget {
        HookTarget {
            id,
            payload_url: url.to_string(),
            secret: "s".into(),
            active: true,
            rate_per_second: rate,
            max_concurrency: 1,
        }
    }

    #[test]
    fn settings_read_earlier_never_replace_ones_read_later() {
        let mut hooks = HashMap::new();
        let (early, late) = (Instant::now(), Instant::now() + Duration::from_millis(5));
        let first = install(&mut hooks, target(7, None, "http://a.example/"), late);
        // A refresh that started before the send's own read finishes after it: ignored.
        let stale = install(&mut hooks, target(7, None, "http://old.example/"), early);
        assert!(Arc::ptr_eq(&first, &stale));
        assert_eq!(hooks[&7].runtime.target.payload_url, "http://a.example/");
        // A later read with the same limits keeps the live semaphore (a permit held stays held).
        let held = first.permits.clone().try_acquire_owned().expect("free");
        let later = late + Duration::from_millis(5);
        let moved = install(&mut hooks, target(7, None, "http://b.example/"), later);
        assert!(Arc::ptr_eq(&moved.permits, &first.permits));
        assert_eq!(moved.permits.available_permits(), 0);
        drop(held);
        // New limits: new semaphore and limiter.
        let limited = install(
            &mut hooks,
            target(7, Some(5), "http://b.example/"),
            later + Duration::from_millis(5),
        );
        assert!(!Arc::ptr_eq(&limited.permits, &first.permits));
        assert!(limited.limiter.is_some());
    }

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
