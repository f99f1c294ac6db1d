//! The delivery worker: claims due rows, sends each through its channel with bounded
//! concurrency, and hands the finished attempt to a recorder that writes attempts in batches.
//! Deliveries queued by this node arrive in memory, leased already; the table is read (claimed
//! from) only when it may hold something due — see the loop in [`Dispatcher::run`] — and at
//! least every 250 ms (rows enqueued by other nodes, retries coming due, expired leases).
//!
//! A claimed row stays leased until its attempt is recorded, so neither this node nor another
//! sends it twice meanwhile; if the node dies first, the live nodes free it once the node's own
//! lease lapses (`node`), and it is sent again. A node whose lease lapsed claims nothing.
//!
//! At a graceful stop the worker claims nothing more, lets the sends in flight finish for
//! `HERALD_SHUTDOWN_GRACE`, then abandons the rest unrecorded: the node's goodbye
//! (`outbox::free_claims_of`) puts them back, due at once and without counting an attempt.
//!
//! The recorder writes once the sends in flight have finished (or after [`GATHER`]), so a
//! push's fan-out is recorded in one commit after its last answer, not in two or three commits
//! taken on a runtime thread while the rest of its sends still wait for one. What the attempts
//! mean for the hooks and contacts they were for is written in that same commit by their
//! owners, the [`AttemptObserver`]s this dispatcher is given at start-up.
//!
//! [`Dispatcher::step`] is the same work as one turn, without the loop: claim what is due, send
//! it, record it, and say what happened — for tests, and anything else that must drive the
//! queue by hand.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::channel::OutgoingMessage;
use super::{
    Attempt, AttemptObserver, Channel, ClaimedDelivery, LocalQueue, LocalReceiver, Recorded,
    Settled, Verdict, claim, defer, record_batch,
};
use crate::ids::{IdGenerator, now_ms};
use crate::store::{Db, StoreError};

const IDLE_POLL: Duration = Duration::from_millis(250);
/// Attempts written per transaction, at most.
const RECORD_BATCH: usize = 512;

/// How long the recorder waits, at most, for the sends in flight to finish before it writes
/// the attempts it holds.
const GATHER: Duration = Duration::from_millis(2);

/// Destinations at their own limit are left unclaimed this long at most, and this many at once.
const BUSY_MAX: usize = 200;

pub struct Dispatcher {
    pub db: Db,
    pub ids: Arc<IdGenerator>,
    pub channels: HashMap<&'static str, Arc<dyn Channel>>,
    /// Enqueuers' signal that the table holds rows this worker has not been handed in memory.
    pub wake: Arc<Notify>,
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    pub concurrency: usize,
    /// `channel:destination` → until when it is not to be claimed (it deferred a send).
    pub busy: std::sync::Mutex<HashMap<String, Instant>>,
    /// The owners of the hooks and contacts deliveries are for, told of every recorded batch.
    pub observers: Vec<Arc<dyn AttemptObserver>>,
    /// This node: the id its claims carry, and whether it may claim at all.
    pub node: Arc<crate::node::NodeLease>,
    /// At a graceful stop, how long sends in flight may still finish before they are abandoned
    /// (and their rows put back by the node's goodbye).
    pub shutdown_grace: Duration,
    /// With other nodes sharing destinations' limits: deliveries a destination at its limit
    /// deferred wait here instead of in the table (see [`Parking`]); `None` puts them back.
    pub parking: Option<Parking>,
}

/// Deliveries that a destination at its limit deferred, kept in memory — still leased to this
/// node — instead of being put back in the table, and sent as soon as this node's own send to
/// that destination ends (its slot is likely free) or the destination's pause ends. With hooks'
/// limits shared by several nodes, a hook at its limit is the common case, and putting each of
/// a claimed batch back (a write per delivery) while only a few can be sent left the hook idle
/// between claims and cost the database more than the sends. While a destination has deliveries
/// parked here this node claims no more of its rows; one waits here at most a quarter of the
/// send timeout (well inside its lease), then goes back to the table.
#[derive(Default)]
pub struct Parking {
    parked: std::sync::Mutex<HashMap<String, VecDeque<(ClaimedDelivery, Instant)>>>,
    /// Destinations to which a send of this node just ended.
    ended: std::sync::Mutex<Vec<String>>,
}

/// Deliveries parked per destination at most; more are put back in the table.
const PARKED_PER_DESTINATION: usize = 256;
/// Parked deliveries of a destination tried again when its pause ends.
const RESUMED_AT_PAUSE_END: usize = 4;

/// The key of a destination in `busy` and in [`Parking`].
fn destination_key(delivery: &ClaimedDelivery) -> String {
    format!("{}:{}", delivery.channel, delivery.destination)
}

impl Parking {
    /// Parks `delivery` unless its destination has enough waiting already (then it is given
    /// back).
    fn park(&self, delivery: ClaimedDelivery) -> Option<ClaimedDelivery> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = parked.entry(destination_key(&delivery)).or_default();
        if waiting.len() >= PARKED_PER_DESTINATION {
            return Some(delivery);
        }
        waiting.push_back((delivery, Instant::now()));
        None
    }

    fn ended(&self, key: String) {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key);
    }

    /// What to send now, at most `available`: one per destination a send of this node just
    /// ended, and a few of each destination whose pause is over; and what waited longer than
    /// `longest`, to go back to the table.
    fn take(
        &self,
        busy: &HashMap<String, Instant>,
        available: usize,
        longest: Duration,
    ) -> (Vec<ClaimedDelivery>, Vec<i64>) {
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()));
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut expired = Vec::new();
        for waiting in parked.values_mut() {
            while waiting
                .front()
                .is_some_and(|(_, since)| now.duration_since(*since) > longest)
            {
                if let Some((delivery, _)) = waiting.pop_front() {
                    expired.push(delivery.id);
                }
            }
        }
        let mut resume = Vec::new();
        for key in ended {
            if resume.len() >= available {
                break;
            }
            if let Some((delivery, _)) = parked.get_mut(&key).and_then(VecDeque::pop_front) {
                resume.push(delivery);
            }
        }
        for (key, waiting) in parked.iter_mut() {
            if busy.get(key).is_some_and(|until| *until > now) {
                continue;
            }
            for _ in 0..RESUMED_AT_PAUSE_END {
                if resume.len() >= available {
                    break;
                }
                match waiting.pop_front() {
                    Some((delivery, _)) => resume.push(delivery),
                    None => break,
                }
            }
        }
        parked.retain(|_, waiting| !waiting.is_empty());
        (resume, expired)
    }

    fn keys(&self) -> Vec<String> {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn drain(&self) -> Vec<i64> {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .flat_map(|(_, waiting)| waiting.into_iter().map(|(delivery, _)| delivery.id))
            .collect()
    }
}

/// What one [`Dispatcher::step`] did.
#[derive(Debug, Default)]
pub struct Step {
    /// The deliveries it claimed and sent, in the order they were claimed.
    pub sent: Vec<Sent>,
    /// The deliveries it claimed but put back unsent, because their channel or destination
    /// asked to wait (no attempt is logged for them).
    pub put_back: Vec<i64>,
}

/// One delivery sent by a [`Dispatcher::step`].
#[derive(Debug, Clone)]
pub struct Sent {
    pub delivery_id: i64,
    pub attempt: Attempt,
    /// What the attempt decided for the delivery (a delivery cancelled while the send was in
    /// flight stays cancelled nonetheless, unless it was delivered).
    pub settled: Settled,
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Dispatcher {
    /// One turn of the worker, start to end: claims what is due now (as many as its
    /// concurrency), sends it all at once, and records the attempts in one batch. Nothing is
    /// handed over in memory here; a dispatcher that [`Dispatcher::run`]s beside it on the same
    /// database claims from the same table, so the two never send one row at once.
    pub async fn step(&self) -> Result<Step, StoreError> {
        let names: Vec<&'static str> = self.channels.keys().copied().collect();
        let busy = self.busy_destinations();
        let claimed = if self.node.is_live() {
            claim(
                &self.db,
                &names,
                self.concurrency,
                super::lease_for(self.timeout),
                self.node.id(),
                &busy,
            )
            .await?
        } else {
            Vec::new()
        };
        let attempts = futures_util::future::join_all(claimed.into_iter().map(|delivery| async {
            let id = delivery.id;
            (id, self.attempt(delivery, false).await)
        }))
        .await;
        let mut step = Step::default();
        let mut batch = Vec::with_capacity(attempts.len());
        for (id, recorded) in attempts {
            match recorded {
                Some(recorded) => batch.push(recorded),
                None => step.put_back.push(id),
            }
        }
        let settled = self.record_attempts(&batch).await?;
        step.sent = batch
            .into_iter()
            .zip(settled)
            .map(|(recorded, settled)| Sent {
                delivery_id: recorded.delivery.id,
                attempt: recorded.attempt,
                settled,
            })
            .collect();
        Ok(step)
    }

    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        mut local: LocalReceiver,
        local_queue: LocalQueue,
    ) {
        let names: Vec<&'static str> = self.channels.keys().copied().collect();
        if names.is_empty() {
            tracing::info!("no outgoing channel is configured; the delivery worker stays idle");
            shutdown.cancelled().await;
            return;
        }
        let (records, inbox) = mpsc::channel::<Recorded>(RECORD_BATCH * 4);
        let sending = Arc::new(InFlight::default());
        let recorder = tokio::spawn(self.clone().record(inbox, sending.clone()));
        let permits = Arc::new(Semaphore::new(self.concurrency));
        // A send finished: its slot is free for a delivery waiting in memory or in the table.
        let finished = Arc::new(Notify::new());
        let tracker = TaskTracker::new();
        // Cancelled when the grace for sends in flight at a stop is over.
        let abandon = CancellationToken::new();
        let spawn = |delivery: ClaimedDelivery, permit: tokio::sync::OwnedSemaphorePermit| {
            let this = self.clone();
            let records = records.clone();
            let finished = finished.clone();
            let abandon = abandon.clone();
            let in_flight = InFlight::start(&sending);
            let local_queue = local_queue.clone();
            local_queue.send_started();
            tracker.spawn(async move {
                let key = destination_key(&delivery);
                let attempted = tokio::select! {
                    attempted = this.attempt(delivery, true) => attempted,
                    // Not recorded: the goodbye puts the row back unsent.
                    _ = abandon.cancelled() => None,
                };
                if let Some(recorded) = attempted {
                    if let Some(parking) = &this.parking {
                        parking.ended(key);
                    }
                    // Backpressure: if the recorder is behind, sending waits.
                    let _ = records.send(recorded).await;
                }
                drop(in_flight);
                local_queue.send_ended();
                drop(permit);
                finished.notify_one();
            });
        };
        // The table is read only when it may hold something due: at start (rows left by an
        // earlier run), when an enqueuer says so (`wake`), when a deferred destination's pause
        // ends, after a claim that filled every free slot, and on a steady tick (retries
        // coming due, rows of other nodes, expired leases). Deliveries handed over in memory
        // need no read at all, so a busy fast path costs the single writer nothing here.
        let mut check_table = true;
        let mut tick = tokio::time::interval(IDLE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Parked deliveries whose destination may have room again come first: they were
            // claimed before anything waiting now.
            if let Some(parking) = &self.parking {
                let (resume, mut expired) = {
                    let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
                    parking.take(&busy, permits.available_permits(), self.timeout / 4)
                };
                for delivery in resume {
                    // Taken no more than the free permits, which only this loop takes.
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => spawn(delivery, permit),
                        Err(_) => expired.push(delivery.id),
                    }
                }
                for id in expired {
                    if let Err(error) = defer(&self.db, id, Duration::ZERO).await {
                        tracing::warn!(%error, delivery = id, "could not put a parked delivery back; its lease runs out");
                    }
                }
            }
            // Deliveries leased to this node as they were queued come first: no claim needed.
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                match local.try_recv() {
                    Ok(delivery) => {
                        local_queue.taken();
                        spawn(delivery, permit);
                    }
                    Err(_) => break,
                }
            }
            let available = permits.available_permits();
            // A node whose lease lapsed claims nothing: the others may have its rows by now.
            if check_table && available > 0 && self.node.is_live() {
                let busy = self.busy_destinations();
                match claim(
                    &self.db,
                    &names,
                    available,
                    super::lease_for(self.timeout),
                    self.node.id(),
                    &busy,
                )
                .await
                {
                    Ok(batch) => {
                        // A full batch may have left more behind: read again when slots free.
                        check_table = batch.len() == available;
                        for delivery in batch {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            spawn(delivery, permit);
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
            let paused_until = self.next_resume();
            tokio::select! {
                Some(delivery) = local.recv() => {
                    local_queue.taken();
                    if let Ok(permit) = permits.clone().acquire_owned().await {
                        spawn(delivery, permit);
                    }
                }
                _ = finished.notified() => {}
                _ = self.wake.notified() => check_table = true,
                _ = tick.tick() => check_table = true,
                _ = sleep_until_some(paused_until) => check_table = true,
                _ = shutdown.cancelled() => break,
            }
        }
        // Finish what is in flight and record it; anything not yet claimed stays queued, and
        // what was handed over in memory is given back to the table at once.
        local.close();
        let mut unsent = Vec::new();
        while let Ok(delivery) = local.try_recv() {
            local_queue.taken();
            unsent.push(delivery.id);
        }
        if let Some(parking) = &self.parking {
            unsent.extend(parking.drain());
        }
        if let Err(error) = super::release_leases(&self.db, &unsent).await {
            tracing::warn!(%error, "could not release leases at shutdown; they expire on their own");
        }
        tracker.close();
        if tokio::time::timeout(self.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                in_flight = tracker.len(),
                "shutdown: sends still in flight after the grace are abandoned and put back unsent"
            );
            abandon.cancel();
            tracker.wait().await;
        }
        drop(records);
        let _ = recorder.await;
    }

    /// When the earliest deferred destination may be tried again, if any is waiting.
    fn next_resume(&self) -> Option<Instant> {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        busy.values().filter(|until| **until > now).min().copied()
    }

    /// Destinations not to claim for now: those paused, and those with parked deliveries.
    fn busy_destinations(&self) -> Vec<String> {
        let mut keys: Vec<String> = {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            busy.retain(|_, until| *until > now);
            busy.keys().take(BUSY_MAX).cloned().collect()
        };
        if let Some(parking) = &self.parking {
            for key in parking.keys() {
                if keys.len() >= BUSY_MAX {
                    break;
                }
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// Puts a delivery back unsent — parked in memory when `may_park` and there is parking,
    /// else in the table — and leaves its destination alone for `after`.
    async fn put_back(&self, delivery: ClaimedDelivery, after: Duration, may_park: bool) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(destination_key(&delivery), Instant::now() + after);
        let delivery = match &self.parking {
            Some(parking) if may_park => match parking.park(delivery) {
                None => return,
                Some(delivery) => delivery,
            },
            _ => delivery,
        };
        if let Err(error) = defer(&self.db, delivery.id, after).await {
            tracing::warn!(%error, delivery = delivery.id, "could not defer delivery");
        }
    }

    /// Writes finished attempts: once the sends in flight have ended (or after [`GATHER`]),
    /// everything that has arrived by then, in one transaction.
    async fn record(self: Arc<Self>, mut inbox: mpsc::Receiver<Recorded>, sending: Arc<InFlight>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while inbox.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            // A full batch gains nothing by waiting (and under backpressure the sends in flight
            // are the ones waiting for this recorder).
            if batch.len() < RECORD_BATCH {
                sending.ended_or(GATHER).await;
            }
            while batch.len() < RECORD_BATCH {
                match inbox.try_recv() {
                    Ok(recorded) => batch.push(recorded),
                    Err(_) => break,
                }
            }
            // The leases run out and the rows are sent again: at least once, never lost.
            if let Err(error) = self.record_attempts(&batch).await {
                tracing::error!(%error, attempts = batch.len(), "could not record delivery attempts")
            }
            batch.clear();
        }
    }

    /// Writes a batch of finished attempts in one commit (with what the observers write for
    /// them) and logs the ones that did not succeed.
    async fn record_attempts(&self, batch: &[Recorded]) -> Result<Vec<Settled>, StoreError> {
        let settled = record_batch(
            &self.db,
            &self.ids,
            batch,
            &self.retry_schedule,
            &self.observers,
        )
        .await?;
        for (recorded, settled) in batch.iter().zip(&settled) {
            if recorded.attempt.verdict != Verdict::Delivered {
                tracing::info!(
                    delivery = recorded.delivery.id,
                    channel = %recorded.delivery.channel,
                    status = recorded.attempt.status_code,
                    error = recorded.attempt.error.as_deref().unwrap_or(""),
                    ?settled,
                    "delivery attempt did not succeed (settled as shown unless cancelled meanwhile)"
                );
            }
        }
        Ok(settled)
    }

    /// Sends one claimed delivery; `None` when it was not attempted (paced or deferred: put
    /// back, or parked when `may_park`).
    async fn attempt(&self, delivery: ClaimedDelivery, may_park: bool) -> Option<Recorded> {
        let channel = self.channels.get(delivery.channel.as_str())?;
        let started = Instant::now();
        let started_at = now_ms();
        if let Some(wait) = channel.pace(&delivery.destination).await {
            self.put_back(delivery, wait, may_park).await;
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
            self.put_back(delivery, after, may_park).await;
            return None;
        }
        let duration = started.elapsed();
        let outcome = match attempt.verdict {
            Verdict::Delivered => "delivered",
            Verdict::Retry { .. } | Verdict::Throttled { .. } => "retry",
            Verdict::Permanent | Verdict::Gone => "failed",
            Verdict::Deferred { .. } => "deferred",
        };
        metrics::counter!("herald_deliveries_total", "channel" => channel.name(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("herald_delivery_seconds", "channel" => channel.name())
            .record(duration.as_secs_f64());
        Some(Recorded {
            delivery,
            attempt,
            started_at,
            duration,
        })
    }
}

/// The sends in flight (from before the send until its attempt is with the recorder), and a
/// signal when the last one ends.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    none: Notify,
}

/// One send in flight; it ends when this is dropped (also if the send panicked).
struct Sending(Arc<InFlight>);

impl Drop for Sending {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.none.notify_one();
        }
    }
}

impl InFlight {
    fn start(this: &Arc<InFlight>) -> Sending {
        this.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Sending(this.clone())
    }

    /// Returns when no send is in flight, or after `limit`.
    async fn ended_or(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let none = self.none.notified();
            tokio::pin!(none);
            // Registered before the count is read, so an end in between is not missed.
            none.as_mut().enable();
            if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, none).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn to(destination: &str, id: i64) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            channel: "webhook".into(),
            destination: destination.into(),
            payload: String::new(),
            contact_id: None,
            webhook_id: None,
            event_type: None,
            attempts: 0,
            failures: 0,
        }
    }

    #[test]
    fn parked_deliveries_go_out_as_their_destinations_free_up_or_back_to_the_table() {
        let parking = Parking::default();
        for id in 0..PARKED_PER_DESTINATION as i64 {
            assert!(parking.park(to("7", id)).is_none());
        }
        let full = parking
            .park(to("7", 999))
            .expect("a full destination gives it back");
        assert_eq!(full.id, 999);
        assert!(parking.park(to("8", 1000)).is_none());
        let paused: HashMap<String, Instant> = [
            ("webhook:7".to_string(), Instant::now() + LONG),
            ("webhook:8".to_string(), Instant::now() + LONG),
        ]
        .into();
        // Both paused, no send ended: nothing goes.
        let (resume, expired) = parking.take(&paused, 64, LONG);
        assert!(resume.is_empty() && expired.is_empty());
        // A send to 7 ended: its oldest parked delivery goes, one only.
        parking.ended("webhook:7".into());
        let (resume, _) = parking.take(&paused, 64, LONG);
        assert_eq!(resume.iter().map(|d| d.id).collect::<Vec<_>>(), vec![0]);
        // 8's pause is over: a few of it go, within the free permits.
        let only_7: HashMap<String, Instant> =
            [("webhook:7".to_string(), Instant::now() + LONG)].into();
        let (resume, _) = parking.take(&only_7, 64, LONG);
        assert_eq!(resume.iter().map(|d| d.id).collect::<Vec<_>>(), vec![1000]);
        assert_eq!(parking.keys(), vec!["webhook:7".to_string()]);
        // Waited too long: back to the table, all of them.
        let (resume, expired) = parking.take(&paused, 64, Duration::ZERO);
        assert!(resume.is_empty());
        assert_eq!(expired.len(), PARKED_PER_DESTINATION - 1);
        assert!(parking.keys().is_empty());
    }

    #[tokio::test]
    async fn the_recorder_waits_for_the_last_send_in_flight() {
        let sending = Arc::new(InFlight::default());
        // Nothing in flight: no wait at all.
        tokio::time::timeout(Duration::from_secs(10), sending.ended_or(LONG))
            .await
            .expect("returns at once when nothing is in flight");

        let first = InFlight::start(&sending);
        let second = InFlight::start(&sending);
        let waiting = tokio::spawn({
            let sending = sending.clone();
            async move { sending.ended_or(LONG).await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one send is still in flight");
        drop(second);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("returns when the last send ends, long before its limit")
            .expect("no panic");
    }

    #[tokio::test]
    async fn the_recorder_stops_waiting_for_a_send_that_hangs() {
        let sending = Arc::new(InFlight::default());
        let _hanging = InFlight::start(&sending);
        let started = tokio::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(10),
            sending.ended_or(Duration::from_millis(5)),
        )
        .await
        .expect("gives up after its limit");
        assert!(started.elapsed() >= Duration::from_millis(5));
    }
}
