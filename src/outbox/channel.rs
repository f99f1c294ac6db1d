//! A channel knows how to send one message to one destination on one platform, and how to tell
//! the queue what happened. It knows nothing about retries or storage.

use std::time::Duration;

use futures_util::future::BoxFuture;

/// What the queue should do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A failure that may pass (5xx, timeout, connection refused); `after` is the platform's
    /// `Retry-After` when it gave one.
    Retry {
        after: Option<Duration>,
    },
    /// The platform asked us to slow down and said for how long (Telegram 429 `retry_after`).
    Throttled {
        after: Duration,
    },
    /// Will never succeed as sent (bad request, unknown chat); not retried.
    Permanent,
    /// The recipient is gone (blocked the bot, left; a webhook answered 410): not retried, and
    /// the contact is marked blocked (or the hook disabled) so that nothing more is queued for it.
    Gone,
    /// Not attempted: the destination is at its own concurrency or rate limit. The delivery is
    /// put back for `after`, and no attempt is logged.
    Deferred {
        after: Duration,
    },
}

/// One message to send, as the queue hands it to a channel.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    /// The delivery's id: the same on every retry (webhooks send it as their message id).
    pub id: i64,
    pub destination: &'a str,
    /// The stored payload, exactly as queued (JSON text).
    pub payload: &'a str,
    pub event_type: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub verdict: Verdict,
    pub status_code: Option<u16>,
    /// The response body, for the attempt log (the queue keeps the first 4 KiB).
    pub body: Option<String>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn delivered(status_code: Option<u16>, body: Option<String>) -> Attempt {
        Attempt {
            verdict: Verdict::Delivered,
            status_code,
            body,
            error: None,
        }
    }

    /// The destination is busy: try again after `after`, without logging an attempt.
    pub fn deferred(after: Duration) -> Attempt {
        Attempt {
            verdict: Verdict::Deferred { after },
            status_code: None,
            body: None,
            error: None,
        }
    }

    pub fn failed(
        verdict: Verdict,
        status_code: Option<u16>,
        body: Option<String>,
        error: impl Into<String>,
    ) -> Attempt {
        Attempt {
            verdict,
            status_code,
            body,
            error: Some(error.into()),
        }
    }

    /// An attempt that never got an HTTP answer.
    pub fn from_transport_error(error: &reqwest::Error) -> Attempt {
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        Attempt::failed(
            Verdict::Retry { after: None },
            None,
            None,
            format!("{what}: {}", error_chain(error)),
        )
    }
}

/// A platform's HTTP answer as channels read it.
pub struct HttpAnswer {
    pub status: u16,
    /// `Retry-After`, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
    pub text: String,
}

/// Sends a channel's request and reads the answer; a request that got no answer at all is
/// already the attempt to report (`Err`).
pub async fn send(request: reqwest::RequestBuilder) -> Result<HttpAnswer, Attempt> {
    let response = request
        .send()
        .await
        .map_err(|error| Attempt::from_transport_error(&error))?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    Ok(HttpAnswer {
        status,
        retry_after,
        text,
    })
}

/// An error with its causes, which reqwest keeps in `source()`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub trait Channel: Send + Sync + 'static {
    /// The `deliveries.channel` value this channel sends.
    fn name(&self) -> &'static str;

    /// Waits for the channel's overall send rate and says whether this destination must wait
    /// longer (its own pace); `Some(wait)` puts the delivery back for that long.
    fn pace<'a>(&'a self, destination: &'a str) -> BoxFuture<'a, Option<Duration>> {
        let _ = destination;
        Box::pin(async { None })
    }

    /// Sends one message. Must not panic on any payload: a payload it cannot understand is
    /// a `Permanent` failure.
    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt>;
}

/// A response's `Retry-After`, as seconds or as an HTTP date, capped at a day.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(86_400)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.clamp(0, 86_400) as u64))
}
