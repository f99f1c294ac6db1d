//! The scheduler: one task per node that fires due schedules and teams' morning messages
//! (`teams::morning`, claimed the same way).
//!
//! It never scans the schedules: it reads the smallest `next_due_at` (an index lookup) and sleeps
//! on `AppState::clock` until then, or until the API wakes it after a change (or a while has
//! passed, for schedules another node created). Due schedules are claimed in batches, one
//! transaction per batch ([`fire_due`]):
//!
//! 1. the due rows are read (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so nodes take different
//!    rows; SQLite has one writer);
//! 2. each one's run row is inserted with `ON CONFLICT (schedule_id, due_at) DO NOTHING
//!    RETURNING`: only the node that inserted a run sends it, so a due time fires once
//!    across the cluster whatever the timing;
//! 3. `next_due_at` moves on by compare-and-set (`WHERE next_due_at = <the value read>`), and the
//!    deliveries are queued through the outbox in the same commit.
//!
//! After downtime the missed slots of a schedule collapse into its latest one (one catch-up run);
//! a run later than the schedule's catch-up limit is recorded as skipped and sends nothing. The
//! next due time is then computed from now.
//!
//! A recipient inside its quiet time (the contact's quiet hours or weekend, in its zone) is not
//! sent the announcement: it is held for the contact's digest (`digest::hold_announcements_into`,
//! in the same commit as the run) and arrives when the window opens — unless the schedule is
//! `urgent`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::cron::CronSpec;
use super::{Audience, RunRecipient, SchedulesState};
use crate::digest::HeldAnnouncement;
use crate::outbox::{self, NewDelivery};
use crate::store::{ROWS_PER_STATEMENT, Script, StoreError};
use crate::teams::Recipient;

/// Schedules claimed per transaction.
pub const BATCH: i64 = 500;

/// Runs recorded per `INSERT … RETURNING` (5 values a row): SQLite binds numbered
/// parameters in time quadratic in their number per statement (`store::ROWS_PER_STATEMENT`),
/// which made a whole batch in one statement the scheduler's largest single cost.
const RUNS_PER_STATEMENT: usize = ROWS_PER_STATEMENT;

/// How long the scheduler sleeps at most before it looks at the earliest due time again:
/// another node may have created an earlier schedule, which only that node's API wakes for.
const RECHECK: Duration = Duration::from_secs(10);

/// How long to wait after a failed batch before trying again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Runs until `shutdown` is cancelled.
pub async fn run(state: SchedulesState, shutdown: CancellationToken) {
    // The deliveries of a crowded boundary's batches, held back until the last batch is
    // committed: on SQLite the sends' own writes would otherwise queue up behind and between
    // the claims, and every later batch of the boundary would fire later for it.
    let mut undispatched = outbox::Committed::default();
    loop {
        // Registered before anything is read, so a change made meanwhile is not missed.
        let woken = state.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = state.clock.now_ms();
        let fired = async {
            let (schedules, committed) = fire_due(&state, now).await?;
            undispatched.merge(committed);
            let mornings =
                crate::teams::morning::fire_due(&state.app, &state.digest_wake, now).await?;
            Ok::<bool, StoreError>(
                schedules as i64 >= BATCH || mornings as i64 >= crate::teams::morning::BATCH,
            )
        };
        let fired = fired.await;
        if !matches!(fired, Ok(true)) {
            std::mem::take(&mut undispatched).dispatch(&state.local_queue, &state.outbox_wake);
        }
        match fired {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "could not fire due schedules; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER_ERROR) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        let earliest = match earliest_due(&state).await {
            Ok(earliest) => earliest,
            Err(error) => {
                tracing::warn!(%error, "could not read the next due schedule");
                None
            }
        };
        let recheck = state.clock.now_ms() + RECHECK.as_millis() as i64;
        let until = earliest.map_or(recheck, |at| at.min(recheck));
        tokio::select! {
            _ = state.clock.sleep_until(until) => {}
            _ = &mut woken => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The earliest due time of any schedule or team morning.
async fn earliest_due(state: &SchedulesState) -> Result<Option<i64>, StoreError> {
    let schedules: Option<i64> = sqlx::query_scalar("SELECT MIN(next_due_at) FROM schedules")
        .fetch_one(state.db.reader())
        .await?;
    let mornings = crate::teams::morning::earliest_due(&state.db).await?;
    Ok(match (schedules, mornings) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// One due schedule, as claimed, with what its run will be.
struct Claimed {
    id: i64,
    /// `next_due_at` as read: the compare-and-set's expected value.
    read_due: i64,
    /// The due time this run is for (the latest missed one).
    due: i64,
    next: Option<i64>,
    /// `None` when the run is skipped as later than its catch-up limit.
    send: Option<Vec<Recipient>>,
    message: String,
    /// Passes the recipients' quiet time.
    urgent: bool,
    /// A stored schedule that no longer parses: paused without a run.
    paused: bool,
}

/// Fires the schedules due at `now` (at most [`BATCH`] of them) in one transaction; returns how
/// many were claimed, and the deliveries queued, for the caller to dispatch.
///
/// A crowded boundary is many schedules with the same few expressions due at the same instant,
/// so the work that does not depend on the row is done once per batch: each expression is
/// parsed once, each (expression, due time) stepped through the calendar once, each audience
/// resolved once; and the writes are multi-row statements, a few per batch rather than one per
/// schedule (each statement is a round trip to the database).
pub async fn fire_due(
    state: &SchedulesState,
    now: i64,
) -> Result<(usize, outbox::Committed), StoreError> {
    let mut tx = state.db.writer().begin().await?;
    let sql = format!(
        "SELECT id, cron, time_zone, message, audience, channels, catch_up_limit_ms, next_due_at, \
         urgent FROM schedules WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT $2{}",
        state.db.skip_locked()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        return Ok((0, outbox::Committed::default()));
    }
    let mut claimed = Vec::with_capacity(rows.len());
    // Expression and zone → the parsed spec (or why it no longer parses).
    let mut specs: HashMap<(String, String), Result<CronSpec, String>> = HashMap::new();
    // (expression, zone, next_due_at as read) → this run's due time and the next one.
    let mut times: HashMap<(String, String, i64), (i64, Option<i64>)> = HashMap::new();
    let mut audiences: HashMap<String, Vec<Recipient>> = HashMap::new();
    let mut channel_lists: HashMap<String, Option<Vec<String>>> = HashMap::new();
    for row in &rows {
        let id: i64 = row.get(0);
        let read_due: i64 = row.get(7);
        let key = (row.get::<String, _>(1), row.get::<String, _>(2));
        let spec = specs
            .entry(key.clone())
            .or_insert_with(|| CronSpec::parse(&key.0, &key.1));
        let spec = match spec {
            Ok(spec) => spec,
            Err(error) => {
                // Checked when stored; only a zone dropped from the database gets here.
                tracing::error!(schedule = id, %error, "a stored schedule no longer parses; it is paused");
                claimed.push(Claimed {
                    id,
                    read_due,
                    due: read_due,
                    next: None,
                    send: None,
                    message: String::new(),
                    urgent: false,
                    paused: true,
                });
                continue;
            }
        };
        let (due, next) = *times.entry((key.0, key.1, read_due)).or_insert_with(|| {
            let due = spec.latest_due(read_due, now);
            (due, spec.next_after(now, Some(due)))
        });
        let catch_up_limit: i64 = row.get(6);
        let send = if now - due > catch_up_limit {
            None
        } else {
            let audience_text: String = row.get(4);
            let recipients = match audiences.get(&audience_text) {
                Some(known) => known.clone(),
                None => {
                    let found = match serde_json::from_str::<Audience>(&audience_text) {
                        Ok(audience) => resolve(&mut tx, &audience).await?,
                        Err(error) => {
                            tracing::error!(schedule = id, %error, "a stored audience does not parse; nobody is told");
                            Vec::new()
                        }
                    };
                    audiences.insert(audience_text, found.clone());
                    found
                }
            };
            let channels = match row.get::<Option<String>, _>(5) {
                None => &None,
                Some(text) => channel_lists
                    .entry(text)
                    .or_insert_with_key(|text| serde_json::from_str(text).ok()),
            };
            Some(match channels {
                Some(channels) => recipients
                    .into_iter()
                    .filter(|r| channels.contains(&r.channel))
                    .collect(),
                None => recipients,
            })
        };
        claimed.push(Claimed {
            id,
            read_due,
            due,
            next,
            send,
            message: row.get(3),
            urgent: row.get::<i64, _>(8) != 0,
            paused: false,
        });
    }

    // The quiet time of every recipient of a run that does not pass it, read once per batch,
    // before the runs are recorded: a run's history says who was held for a digest.
    let fired_at = state.clock.now_ms();
    let mut quiet_contacts: Vec<i64> = claimed
        .iter()
        .filter(|run| !run.urgent)
        .flat_map(|run| run.send.iter().flatten().map(|r| r.contact_id))
        .collect();
    quiet_contacts.sort_unstable();
    quiet_contacts.dedup();
    let quiet = if quiet_contacts.is_empty() {
        HashMap::new()
    } else {
        crate::contacts::quiet_rules(&mut tx, &quiet_contacts).await?
    };
    // Schedule id → its run's recipients, each with when its digest is due if it is held.
    let told: HashMap<i64, Vec<RunRecipient>> = claimed
        .iter()
        .filter_map(|run| {
            let recipients = run.send.as_ref()?;
            let told = recipients
                .iter()
                .map(|recipient| RunRecipient {
                    held_until: (!run.urgent)
                        .then(|| quiet.get(&recipient.contact_id))
                        .flatten()
                        .and_then(|rule| rule.due(fired_at)),
                    recipient: recipient.clone(),
                })
                .collect();
            Some((run.id, told))
        })
        .collect();

    // Schedule id → the id of its run row, for the items a run holds.
    let mut run_ids: HashMap<i64, i64> = HashMap::new();
    let mut inserted: HashSet<i64> = HashSet::new();
    let runs: Vec<&Claimed> = claimed.iter().filter(|c| !c.paused).collect();
    for chunk in runs.chunks(RUNS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO schedule_runs (id, schedule_id, due_at, fired_at, recipients) VALUES {} \
             ON CONFLICT (schedule_id, due_at) DO NOTHING RETURNING schedule_id",
            crate::store::values_rows(chunk.len(), 5)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for run in chunk {
            let recipients = told.get(&run.id).map_or(&[][..], Vec::as_slice);
            let run_id = state.ids.next();
            run_ids.insert(run.id, run_id);
            query = query
                .bind(run_id)
                .bind(run.id)
                .bind(run.due)
                .bind(run.send.is_some().then_some(fired_at))
                .bind(serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into()));
        }
        for row in query.fetch_all(&mut *tx).await? {
            inserted.insert(row.get(0));
        }
    }

    let mut script = Script::new(state.db.backend);
    // Each schedule's next due time, by compare-and-set on the value read, several per
    // statement.
    for chunk in claimed.chunks(ROWS_PER_STATEMENT) {
        script.push(format!(
            "UPDATE schedules SET next_due_at = v.column2 FROM (VALUES {}) AS v \
             WHERE schedules.id = v.column1 AND schedules.next_due_at = v.column3",
            crate::store::values_rows(chunk.len(), 3)
        ));
        for run in chunk {
            script.bind(run.id).bind(run.next).bind(run.read_due);
        }
    }
    let mut deliveries = Vec::new();
    let mut held = Vec::new();
    for run in &claimed {
        if !inserted.contains(&run.id) {
            continue;
        }
        match told.get(&run.id) {
            Some(recipients) => {
                let held_before = held.len();
                for told in recipients {
                    match (told.held_until, run_ids.get(&run.id)) {
                        (Some(due_at), Some(&run_id)) => held.push(HeldAnnouncement {
                            contact_id: told.recipient.contact_id,
                            due_at,
                            source_id: run_id,
                            message: run.message.clone(),
                        }),
                        _ => deliveries.push(announcement(&told.recipient, &run.message)),
                    }
                }
                tracing::info!(
                    schedule = run.id,
                    due = %crate::ids::rfc3339(run.due),
                    recipients = recipients.len(),
                    held = held.len() - held_before,
                    "scheduled announcement fired"
                );
            }
            None => tracing::info!(
                schedule = run.id,
                due = %crate::ids::rfc3339(run.due),
                "scheduled announcement skipped: later than its catch-up limit"
            ),
        }
    }
    crate::digest::hold_announcements_into(&mut script, &state.ids, &held, fired_at);
    let queued = deliveries.len();
    let leased =
        outbox::enqueue_local_first(&mut script, &state.ids, &state.local_queue, deliveries);
    if let Err(error) = script.run_in(&mut tx).await {
        state.local_queue.release(leased.len());
        return Err(error);
    }
    let committed = outbox::commit(tx, &state.local_queue, queued, leased).await?;
    if !held.is_empty() {
        // The digest worker sleeps until the earliest item it knows of; these may be earlier.
        state.digest_wake.notify_one();
    }
    Ok((claimed.len(), committed))
}

/// Who hears an audience right now (muted and blocked contacts excepted), each contact once.
async fn resolve(
    conn: &mut sqlx::AnyConnection,
    audience: &Audience,
) -> Result<Vec<Recipient>, StoreError> {
    let rows = match audience {
        Audience::Team { team_id } => return crate::teams::member_contacts(conn, *team_id).await,
        Audience::Contacts { contact_ids } => {
            let sql = format!(
                "SELECT id, channel, address FROM contacts WHERE muted = 0 AND blocked = 0 \
                 AND id IN ({}) ORDER BY id",
                crate::store::placeholders(1, contact_ids.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in contact_ids {
                query = query.bind(*id);
            }
            query.fetch_all(conn).await?
        }
        Audience::Repository {
            repository_id,
            branch: Some(branch),
            ..
        } => {
            sqlx::query(
                "SELECT DISTINCT c.id, c.channel, c.address FROM subscriptions s \
                 JOIN contacts c ON c.id = s.contact_id \
                 WHERE s.repository_id = $1 AND s.branch = $2 AND s.muted = 0 AND c.muted = 0 \
                 AND c.blocked = 0 ORDER BY c.id",
            )
            .bind(*repository_id)
            .bind(branch.as_str())
            .fetch_all(conn)
            .await?
        }
        Audience::Repository {
            repository_id,
            branch: None,
            ..
        } => {
            sqlx::query(
                "SELECT DISTINCT c.id, c.channel, c.address FROM subscriptions s \
                 JOIN contacts c ON c.id = s.contact_id \
                 WHERE s.repository_id = $1 AND s.muted = 0 AND c.muted = 0 AND c.blocked = 0 \
                 ORDER BY c.id",
            )
            .bind(*repository_id)
            .fetch_all(conn)
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(|row| Recipient {
            contact_id: row.get(0),
            channel: row.get(1),
            address: row.get(2),
        })
        .collect())
}

/// The announcement to one contact, within its channel's limits.
fn announcement(recipient: &Recipient, message: &str) -> NewDelivery {
    NewDelivery {
        channel: recipient.channel.clone(),
        destination: recipient.address.clone(),
        payload: crate::notify::render::text_for_channel(&recipient.channel, message).to_string(),
        event_id: None,
        contact_id: Some(recipient.contact_id),
        webhook_id: None,
        event_type: Some("announcement".into()),
    }
}
