//! The delivery worker: claims due rows, sends each through its channel with bounded
//! concurrency, records the attempt. Woken at once by a local enqueue and every 250 ms otherwise
//! (for rows enqueued by other nodes and for retries coming due).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::channel::OutgoingMessage;
use super::{Attempt, Channel, ClaimedDelivery, Settled, Verdict, claim, defer, record_attempt};
use crate::ids::IdGenerator;
use crate::store::Db;

const IDLE_POLL: Duration = Duration::from_millis(250);

pub struct Dispatcher {
    pub db: Db,
    pub ids: Arc<IdGenerator>,
    pub channels: HashMap<&'static str, Arc<dyn Channel>>,
    pub wake: Arc<Notify>,
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Dispatcher {
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let names: Vec<&'static str> = self.channels.keys().copied().collect();
        if names.is_empty() {
            tracing::info!("no outgoing channel is configured; the delivery worker stays idle");
            shutdown.cancelled().await;
            return;
        }
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let tracker = TaskTracker::new();
        loop {
            let mut claimed_full_batch = false;
            let available = permits.available_permits();
            if available > 0 {
                match claim(&self.db, &names, available, super::lease_for(self.timeout)).await {
                    Ok(batch) => {
                        claimed_full_batch = batch.len() == available;
                        for delivery in batch {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            let this = self.clone();
                            tracker.spawn(async move {
                                this.process(delivery).await;
                                drop(permit);
                                this.wake.notify_one();
                            });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not claim deliveries; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.cancelled() => break,
                        }
                    }
                }
            }
            if claimed_full_batch {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Finish what is in flight; anything not yet claimed stays in the queue for next time.
        tracker.close();
        tracker.wait().await;
    }

    /// Sends one claimed delivery and records what happened. Public so that tests and tools can
    /// drive the queue one step at a time.
    pub async fn process(&self, delivery: ClaimedDelivery) -> Option<Settled> {
        let channel = self.channels.get(delivery.channel.as_str())?;
        let started = Instant::now();
        if let Some(wait) = channel.pace(&delivery.destination).await {
            if let Err(error) = defer(&self.db, delivery.id, wait).await {
                tracing::warn!(%error, delivery = delivery.id, "could not defer delivery");
            }
            return None;
        }
        let message = OutgoingMessage {
            id: delivery.id,
            destination: &delivery.destination,
            payload: &delivery.payload,
            event_type: delivery.event_type.as_deref(),
        };
        let attempt = match tokio::time::timeout(self.timeout, channel.send(message)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::failed(
                Verdict::Retry { after: None },
                None,
                None,
                format!(
                    "timed out after {}",
                    humantime::format_duration(self.timeout)
                ),
            ),
        };
        if let Verdict::Deferred { after } = attempt.verdict {
            if let Err(error) = defer(&self.db, delivery.id, after).await {
                tracing::warn!(%error, delivery = delivery.id, "could not defer delivery");
            }
            return None;
        }
        let elapsed = started.elapsed();
        let outcome = match attempt.verdict {
            Verdict::Delivered => "delivered",
            Verdict::Retry { .. } | Verdict::Throttled { .. } => "retry",
            Verdict::Permanent | Verdict::Gone => "failed",
            Verdict::Deferred { .. } => "deferred",
        };
        metrics::counter!("herald_deliveries_total", "channel" => channel.name(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("herald_delivery_seconds", "channel" => channel.name())
            .record(elapsed.as_secs_f64());
        match record_attempt(
            &self.db,
            &self.ids,
            &delivery,
            &attempt,
            elapsed,
            &self.retry_schedule,
        )
        .await
        {
            Ok(settled) => {
                if attempt.verdict != Verdict::Delivered {
                    tracing::info!(
                        delivery = delivery.id,
                        channel = channel.name(),
                        status = attempt.status_code,
                        error = attempt.error.as_deref().unwrap_or(""),
                        ?settled,
                        "delivery attempt did not succeed"
                    );
                }
                Some(settled)
            }
            Err(error) => {
                // The lease runs out and the row is sent again: at least once, never lost.
                tracing::error!(%error, delivery = delivery.id, "could not record a delivery attempt");
                None
            }
        }
    }
}
