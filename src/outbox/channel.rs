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
    /// The recipient is gone (blocked the bot, left): not retried, and the contact is marked
    /// blocked so that nothing more is queued for it.
    Gone,
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
    fn pace<'a>(&'a self, destination: &'a str) -> BoxFuture<'a, Option<Duration>>;

    /// Sends one message. Must not panic on any payload: a payload it cannot understand is
    /// a `Permanent` failure.
    fn send<'a>(
        &'a self,
        destination: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, Attempt>;
}
