//! Member days and the team's morning message: on each working morning (Monday to Friday) at
//! the team's `morning_at` in its zone, the team is told who is away or celebrating today;
//! nothing is sent on a day with nobody.
//!
//! The scheduler (`schedules::scheduler`) calls [`fire_due`] beside its own claim and sleeps until
//! [`earliest_due`] too. A morning is claimed like a schedule's due time: its
//! `team_mornings` row (one per team and local date) is inserted before anything is queued,
//! `next_morning_at` moves by compare-and-set, and the deliveries are queued in the same commit.
//!
//! A member contact inside its quiet time (its quiet hours or weekend, in its zone) is not sent
//! the message: it is held for the contact's digest in the same commit
//! (`digest::hold_announcements_into`, as a scheduled announcement is) and arrives when the
//! window opens. A team's morning has no `urgent` flag: who is away today can wait for the
//! end of a member's night.

use chrono::{Datelike, Duration as Days, NaiveDate, NaiveTime, TimeZone, Weekday};
use serde::Serialize;
use sqlx::Row;

use super::{Recipient, member_contacts};
use crate::digest::HeldAnnouncement;
use crate::ids::{IdGenerator, now_ms, rfc3339};
use crate::outbox::{self, NewDelivery};
use crate::state::AppState;
use crate::store::{Db, Script, StoreError};

/// Teams whose morning is claimed per transaction.
pub const BATCH: i64 = 200;

/// A morning more than this late (the node was down) is recorded as handled without a send.
const LATE_AFTER_MS: i64 = 3_600_000;

/// The next working morning strictly after `after_ms`: `morning_at` (`HH:MM`) on a weekday, in
/// `zone`. A morning time that a daylight-saving change skips is taken an hour later.
pub fn next_morning(zone: chrono_tz::Tz, morning_at: &str, after_ms: i64) -> Option<i64> {
    let time = NaiveTime::parse_from_str(morning_at, "%H:%M").ok()?;
    let mut day = zone.timestamp_millis_opt(after_ms).single()?.date_naive();
    for _ in 0..10 {
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            let local = day.and_time(time);
            let at = zone.from_local_datetime(&local).earliest().or_else(|| {
                zone.from_local_datetime(&(local + Days::hours(1)))
                    .earliest()
            })?;
            if at.timestamp_millis() > after_ms {
                return Some(at.timestamp_millis());
            }
        }
        day = day.succ_opt()?;
    }
    None
}

/// A date written `YYYY-MM-DD`.
pub fn parse_day(raw: &str, field: &str) -> Result<NaiveDate, String> {
    let raw = raw.trim();
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) if raw.len() == 10 => Ok(day),
        _ => Err(format!("{field}: {raw:?} is not a date written YYYY-MM-DD")),
    }
}

/// A kind of day: `off`, `half`, `anniversary`, `birthday`, or another short word.
pub fn valid_kind(raw: &str) -> Result<String, String> {
    let kind = raw.trim().to_lowercase();
    let ok = !kind.is_empty()
        && kind.chars().count() <= 32
        && kind
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(
            "kind: off, half, anniversary, birthday, or another word of at most 32 letters".into(),
        );
    }
    Ok(kind)
}

/// The longest span one day entry may cover.
pub const MAX_DAYS: i64 = 366;

/// A span of days: `to` on or after `from`, and less than [`MAX_DAYS`] days later.
pub fn check_span(from: NaiveDate, to: NaiveDate) -> Result<(), String> {
    if !(0..MAX_DAYS).contains(&(to - from).num_days()) {
        return Err(format!(
            "to: on or after from, and at most {MAX_DAYS} days later"
        ));
    }
    Ok(())
}

/// A day's note: at most 200 characters, no control characters (empty is fine).
pub fn valid_note(raw: &str) -> Result<String, String> {
    let note = raw.trim();
    if note.chars().count() > 200 || note.chars().any(char::is_control) {
        return Err("note: at most 200 characters, without control characters".into());
    }
    Ok(note.to_string())
}

fn kind_label(kind: &str) -> String {
    match kind {
        "off" => "day off (휴가)".into(),
        "half" => "half day (반차)".into(),
        "anniversary" => "anniversary (기념일)".into(),
        "birthday" => "birthday (생일)".into(),
        other => other.into(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberDay {
    #[serde(with = "crate::ids::as_string")]
    pub id: i64,
    #[serde(with = "crate::ids::as_string")]
    pub member_id: i64,
    pub from: String,
    pub to: String,
    pub kind: String,
    pub note: String,
    pub created_at: String,
}

/// A member's day (or days) to add.
pub struct NewDay {
    pub member_id: i64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub kind: String,
    pub note: String,
}

/// Adds a member's day (or days); `None` when the member is not in the team.
pub async fn add_day(
    db: &Db,
    ids: &IdGenerator,
    team_id: i64,
    day: &NewDay,
) -> Result<Option<MemberDay>, StoreError> {
    let id = ids.next();
    let now = now_ms();
    let (from, to) = (day.from.to_string(), day.to.to_string());
    let done = sqlx::query(
        "INSERT INTO team_days (id, team_id, member_id, from_day, to_day, kind, note, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS \
         (SELECT 1 FROM team_members WHERE id = $3 AND team_id = $2)",
    )
    .bind(id)
    .bind(team_id)
    .bind(day.member_id)
    .bind(&from)
    .bind(&to)
    .bind(&day.kind)
    .bind(&day.note)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok((done.rows_affected() > 0).then(|| MemberDay {
        id,
        member_id: day.member_id,
        from,
        to,
        kind: day.kind.clone(),
        note: day.note.clone(),
        created_at: rfc3339(now),
    }))
}

pub async fn list_days(db: &Db, team_id: i64) -> Result<Vec<MemberDay>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, member_id, from_day, to_day, kind, note, created_at FROM team_days \
         WHERE team_id = $1 ORDER BY from_day, id",
    )
    .bind(team_id)
    .fetch_all(db.reader())
    .await?;
    Ok(rows.iter().map(day_from_row).collect())
}

fn day_from_row(row: &sqlx::any::AnyRow) -> MemberDay {
    MemberDay {
        id: row.get(0),
        member_id: row.get(1),
        from: row.get(2),
        to: row.get(3),
        kind: row.get(4),
        note: row.get(5),
        created_at: rfc3339(row.get(6)),
    }
}

/// A team's days that end on or after `today` (`YYYY-MM-DD`), soonest first.
pub async fn upcoming_days(
    db: &Db,
    team_id: i64,
    today: &str,
) -> Result<Vec<MemberDay>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, member_id, from_day, to_day, kind, note, created_at FROM team_days \
         WHERE team_id = $1 AND to_day >= $2 ORDER BY from_day, id",
    )
    .bind(team_id)
    .bind(today)
    .fetch_all(db.reader())
    .await?;
    Ok(rows.iter().map(day_from_row).collect())
}

pub async fn delete_day(db: &Db, team_id: i64, day_id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM team_days WHERE id = $1 AND team_id = $2")
        .bind(day_id)
        .bind(team_id)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The earliest morning any team is due.
pub async fn earliest_due(db: &Db) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT MIN(next_morning_at) FROM teams")
        .fetch_one(db.reader())
        .await
}

/// The morning message of a team for `day`, or `None` when nobody is away or celebrating.
async fn morning_message(
    conn: &mut sqlx::AnyConnection,
    team_id: i64,
    team_name: &str,
    day: &str,
) -> Result<Option<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT COALESCE(a.name, NULLIF(c.nick_name, ''), c.address, 'member'), d.kind, d.note \
         FROM team_days d JOIN team_members m ON m.id = d.member_id \
         LEFT JOIN accounts a ON a.id = m.account_id LEFT JOIN contacts c ON c.id = m.contact_id \
         WHERE d.team_id = $1 AND d.from_day <= $2 AND d.to_day >= $2 ORDER BY d.kind, d.id",
    )
    .bind(team_id)
    .bind(day)
    .fetch_all(conn)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut text = format!("{team_name} — {day}");
    for row in &rows {
        let who: String = row.get(0);
        let kind: String = row.get(1);
        let note: String = row.get(2);
        text.push_str(&format!("\n• {who}: {}", kind_label(&kind)));
        if !note.is_empty() {
            text.push_str(&format!(" — {note}"));
        }
    }
    Ok(Some(text))
}

/// Tells the teams whose morning is due at `now_ms` (at most a batch of them) in one
/// transaction; returns how many were claimed. A member contact in its quiet time is not sent
/// the message: it is held for the contact's digest, and `held_some` (the digest worker's
/// wake-up) is rung.
pub async fn fire_due(
    state: &AppState,
    held_some: &tokio::sync::Notify,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut tx = state.db.writer().begin().await?;
    let sql = format!(
        "SELECT id, name, time_zone, morning_at, next_morning_at FROM teams \
         WHERE next_morning_at <= $1 ORDER BY next_morning_at LIMIT $2{}",
        state.db.skip_locked()
    );
    let teams = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now_ms)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
    if teams.is_empty() {
        return Ok(0);
    }
    let fired_at = state.clock.now_ms();
    let mut script = Script::new(state.db.backend);
    // Each team told this morning: its message and who hears it.
    let mut told: Vec<(i64, String, Vec<Recipient>)> = Vec::new();
    for row in &teams {
        let team_id: i64 = row.get(0);
        let name: String = row.get(1);
        let morning_at: String = row.get(3);
        let due: i64 = row.get(4);
        let zone = super::parse_time_zone(&row.get::<String, _>(2)).ok();
        let next = zone.and_then(|zone| next_morning(zone, &morning_at, now_ms));
        script
            .push("UPDATE teams SET next_morning_at = $1 WHERE id = $2 AND next_morning_at = $3")
            .bind(next)
            .bind(team_id)
            .bind(due);
        let Some(zone) = zone else {
            continue;
        };
        let Some(day) = zone.timestamp_millis_opt(due).single() else {
            continue;
        };
        let day = day.date_naive().to_string();
        let late = now_ms - due > LATE_AFTER_MS;
        let message = if late {
            None
        } else {
            morning_message(&mut tx, team_id, &name, &day).await?
        };
        let recipients: Vec<Recipient> = match &message {
            Some(_) => member_contacts(&mut tx, team_id).await?,
            None => Vec::new(),
        };
        let claimed = sqlx::query(
            "INSERT INTO team_mornings (team_id, day, due_at, fired_at, recipients) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (team_id, day) DO NOTHING RETURNING team_id",
        )
        .bind(team_id)
        .bind(&day)
        .bind(due)
        .bind((!late).then_some(fired_at))
        .bind(serde_json::to_string(&recipients).unwrap_or_else(|_| "[]".into()))
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        let Some(message) = message.filter(|_| claimed) else {
            continue;
        };
        tracing::info!(
            team = team_id,
            %day,
            recipients = recipients.len(),
            "team morning message fired"
        );
        told.push((team_id, message, recipients));
    }
    // A member contact inside its quiet time gets the message in its next digest, like a
    // scheduled announcement; the quiet rules of every recipient are read once per batch.
    let mut contacts: Vec<i64> = told
        .iter()
        .flat_map(|(_, _, recipients)| recipients.iter().map(|r| r.contact_id))
        .collect();
    contacts.sort_unstable();
    contacts.dedup();
    let quiet = if contacts.is_empty() {
        std::collections::HashMap::new()
    } else {
        crate::contacts::quiet_rules(&mut tx, &contacts).await?
    };
    let mut deliveries: Vec<NewDelivery> = Vec::new();
    let mut held: Vec<HeldAnnouncement> = Vec::new();
    for (team_id, message, recipients) in &told {
        for r in recipients {
            match quiet.get(&r.contact_id).and_then(|rule| rule.due(fired_at)) {
                Some(due_at) => held.push(HeldAnnouncement {
                    contact_id: r.contact_id,
                    due_at,
                    source_id: *team_id,
                    message: message.clone(),
                }),
                None => deliveries.push(NewDelivery {
                    channel: r.channel.clone(),
                    destination: r.address.clone(),
                    payload: crate::notify::render::text_for_channel(&r.channel, message)
                        .to_string(),
                    event_id: None,
                    contact_id: Some(r.contact_id),
                    webhook_id: None,
                    event_type: Some("team_morning".into()),
                }),
            }
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
    outbox::commit_and_dispatch(tx, &state.local_queue, &state.outbox_wake, queued, leased).await?;
    if !held.is_empty() {
        held_some.notify_one();
    }
    Ok(teams.len())
}

/// Deletes up to `{BATCH}` handled mornings due before `$1` (Unix ms, on `AppState::clock`),
/// oldest first; history pruning (`retention`) runs it in paced batches. A pruned morning is
/// not told again: the team's `next_morning_at` moved past it when it was claimed.
pub const PRUNE_SQL: &str = "DELETE FROM team_mornings WHERE (team_id, day) IN \
     (SELECT team_id, day FROM team_mornings WHERE due_at < $1 ORDER BY due_at LIMIT {BATCH})";

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("instant")
            .timestamp_millis()
    }

    #[test]
    fn mornings_are_working_days_at_the_team_time() {
        let seoul = chrono_tz::Asia::Seoul;
        // Friday 2026-06-05 after nine: the next morning is Monday's.
        assert_eq!(
            next_morning(seoul, "09:00", ms("2026-06-05T09:00:00+09:00")),
            Some(ms("2026-06-08T09:00:00+09:00"))
        );
        assert_eq!(
            next_morning(seoul, "09:00", ms("2026-06-01T08:59:00+09:00")),
            Some(ms("2026-06-01T09:00:00+09:00"))
        );
        assert_eq!(
            next_morning(
                chrono_tz::America::New_York,
                "02:30",
                ms("2026-03-07T12:00:00-05:00")
            ),
            Some(ms("2026-03-09T02:30:00-04:00"))
        );
    }

    #[test]
    fn days_and_kinds_are_checked() {
        assert!(parse_day("2026-06-01", "from").is_ok());
        assert!(parse_day("2026-6-1", "from").is_err());
        assert_eq!(valid_kind("Birthday"), Ok("birthday".to_string()));
        assert!(valid_kind("a b").is_err());
    }
}
