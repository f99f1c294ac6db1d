//! A webhook receiver that records every request (headers, body, time) and answers as scripted:
//! a status (with `Retry-After`), a delay, or no answer at all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    StatusRetryAfter(u16, u64),
    /// Answers 204 after a delay.
    Delay(Duration),
    /// Holds the connection open this long before answering 504.
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    always: Option<Reply>,
    received: Vec<Received>,
    count: usize,
    /// Requests that have arrived, answered or not yet.
    arrived: usize,
    /// Requests arrived and not yet answered, now and at most so far.
    in_flight: usize,
    most_in_flight: usize,
    keep_bodies: bool,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            keep_bodies: true,
            ..Inner::default()
        }));
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let address = super::serve(router).await;
        Receiver {
            url: format!("http://{address}/hook"),
            inner,
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().expect("lock").script.extend(replies);
    }

    pub fn set_always(&self, reply: Option<Reply>) {
        self.inner.lock().expect("lock").always = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").received.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().expect("lock").count
    }

    /// Requests that have arrived, including those still waiting for their scripted answer
    /// (a delay or a hang): a send in flight is one of these before it is [`Receiver::count`]ed.
    pub fn arrived(&self) -> usize {
        self.inner.lock().expect("lock").arrived
    }

    /// The most requests that were ever in the receiver at once (arrived, not yet answered):
    /// the concurrency a sender held, as the receiver saw it.
    pub fn most_in_flight(&self) -> usize {
        self.inner.lock().expect("lock").most_in_flight
    }

    /// Keeps only headers (benchmarks receive millions of bodies).
    pub fn forget_bodies(&self) {
        self.inner.lock().expect("lock").keep_bodies = false;
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let reply = {
        let mut guard = inner.lock().expect("lock");
        guard.arrived += 1;
        guard.in_flight += 1;
        guard.most_in_flight = guard.most_in_flight.max(guard.in_flight);
        let next = guard.script.pop_front();
        next.or_else(|| guard.always.clone())
            .unwrap_or(Reply::Status(204))
    };
    let (status, retry_after) = match reply {
        Reply::Status(code) => (code, None),
        Reply::StatusRetryAfter(code, seconds) => (code, Some(seconds)),
        Reply::Delay(wait) => {
            tokio::time::sleep(wait).await;
            (204, None)
        }
        Reply::Hang(wait) => {
            tokio::time::sleep(wait).await;
            (504, None)
        }
    };
    {
        let mut guard = inner.lock().expect("lock");
        guard.count += 1;
        guard.in_flight -= 1;
        let keep = guard.keep_bodies;
        guard.received.push(Received {
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: if keep {
                String::from_utf8_lossy(&body).into_owned()
            } else {
                String::new()
            },
            at,
            status,
        });
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match retry_after {
        Some(seconds) => {
            (status, [("retry-after", seconds.to_string())], "slow down").into_response()
        }
        None => (status, "ok").into_response(),
    }
}
