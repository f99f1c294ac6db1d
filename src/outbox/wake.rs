//! Waking delivery workers when the table holds work they were not handed in memory: this
//! node's at once, and with `HERALD_REDIS_URL` every other node's too, through a Redis pub/sub
//! channel (`<prefix>:outbox:wake`). So rows queued unleased on a busy node, or freed when a
//! node died or said goodbye, are claimed by whichever node has room within a round trip or
//! two, not on the next 250 ms tick of the dispatcher (which stays, for what a lost message
//! would miss: a wake-up is a hint, the table is the truth).
//!
//! Publishing is coalesced: however many wake-ups a node rings while one message is on its
//! way, at most one more follows it, and never more than one each [`PUBLISH_SPACING`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rand::RngExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Backoff, RESPONSE_TIMEOUT, RedisLink};

/// The shortest time between two wake-ups this node publishes.
const PUBLISH_SPACING: Duration = Duration::from_millis(5);

/// The wake-up of delivery workers: this node's, and the other nodes' when there are some.
pub struct Wake {
    local: Arc<Notify>,
    others: Option<Others>,
}

struct Others {
    /// A wake-up waits to be published.
    pending: AtomicBool,
    publish: Notify,
    link: Arc<RedisLink>,
    channel: String,
    /// This run of the process's name on the channel, so that it ignores its own messages.
    name: String,
}

impl Others {
    async fn publish(&self) -> redis::RedisResult<()> {
        let mut publish = redis::pipe();
        publish
            .cmd("PUBLISH")
            .arg(&self.channel)
            .arg(&self.name)
            .ignore();
        self.link.query::<()>(&publish).await
    }
}

impl Default for Wake {
    fn default() -> Self {
        Wake::single_node()
    }
}

impl Wake {
    /// Wakes this node's worker only.
    pub fn single_node() -> Wake {
        Wake {
            local: Arc::new(Notify::new()),
            others: None,
        }
    }

    /// Wakes this node's worker, and through Redis the other nodes' (and is woken by theirs),
    /// for as long as `stop` is not cancelled.
    pub fn across_nodes(link: Arc<RedisLink>, prefix: &str, stop: CancellationToken) -> Arc<Wake> {
        let wake = Arc::new(Wake {
            local: Arc::new(Notify::new()),
            others: Some(Others {
                pending: AtomicBool::new(false),
                publish: Notify::new(),
                link,
                channel: format!("{prefix}:outbox:wake"),
                name: format!("{:016x}", rand::rng().random::<u64>()),
            }),
        });
        tokio::spawn(publish_loop(wake.clone(), stop.clone()));
        tokio::spawn(receive_loop(wake.clone(), stop));
        wake
    }

    /// Wakes the workers: the table holds rows they were not handed.
    pub fn notify_one(&self) {
        self.local.notify_one();
        if let Some(others) = &self.others
            && !others.pending.swap(true, Ordering::AcqRel)
        {
            others.publish.notify_one();
        }
    }

    /// Wakes the other nodes' workers now and returns once Redis has the message (or refused
    /// it): for a node that is leaving, whose rows were just freed.
    pub async fn tell_others(&self) {
        if let Some(others) = &self.others
            && let Err(error) = others.publish().await
        {
            tracing::debug!(%error, "could not wake the other nodes; they find the rows on their tick");
        }
    }

    /// This node's side, which its dispatcher waits on.
    pub fn local(&self) -> Arc<Notify> {
        self.local.clone()
    }
}

async fn publish_loop(wake: Arc<Wake>, stop: CancellationToken) {
    let Some(others) = &wake.others else {
        return;
    };
    let mut failing = false;
    loop {
        tokio::select! {
            _ = others.publish.notified() => {}
            _ = stop.cancelled() => return,
        }
        if !others.pending.swap(false, Ordering::AcqRel) {
            continue;
        }
        match others.publish().await {
            Ok(()) => {
                metrics::counter!("herald_outbox_wakes_published_total").increment(1);
                if failing {
                    tracing::info!("delivery wake-ups reach the other nodes again");
                    failing = false;
                }
            }
            Err(error) => {
                // The others find the rows on their own tick.
                if !failing {
                    tracing::warn!(%error, "could not wake the other nodes' delivery workers through Redis");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(PUBLISH_SPACING).await;
    }
}

async fn receive_loop(wake: Arc<Wake>, stop: CancellationToken) {
    let Some(Others {
        link,
        channel,
        name,
        ..
    }) = &wake.others
    else {
        return;
    };
    let mut backoff = Backoff::default();
    loop {
        let subscribe = async {
            let mut pubsub = link.client().get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let subscribed = tokio::select! {
            subscribed = tokio::time::timeout(RESPONSE_TIMEOUT, subscribe) => subscribed,
            _ = stop.cancelled() => return,
        };
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "Redis did not answer in time".to_string(),
                };
                tracing::debug!(%error, "cannot subscribe to the other nodes' delivery wake-ups; retrying");
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        // Whatever was published while this node was not listening: look at the table.
        wake.local.notify_one();
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = stop.cancelled() => return,
            };
            let Some(message) = message else {
                tracing::debug!("the subscription to delivery wake-ups closed; subscribing again");
                break;
            };
            if message.get_payload_bytes() != name.as_bytes() {
                metrics::counter!("herald_outbox_wakes_received_total").increment(1);
                wake.local.notify_one();
            }
        }
        if !backoff.wait(&stop).await {
            return;
        }
    }
}
