//! Reading a hook's delivery log: pages of its deliveries, newest first, filtered by outcome,
//! by the status class of their last attempt and by time, and each delivery's attempts.
//!
//! **Keyset pagination**: a page ends at the id it was given (`before`) and the next one starts
//! below its last row; no `OFFSET`, so a page deep in the log costs what the first one does.
//! The deliveries that were tried or left the queue come from the hook's log index
//! (`deliveries_by_webhook (webhook_id, id)`, migration 0010, whose condition the query repeats
//! word for word); those still waiting for a first try from the queue's own index, as
//! `projects::api::hook_deliveries` reads them. A time range becomes an id range too: ids are
//! snowflakes that start with their creation time (`ids::first_id_at`), so the index walk
//! starts and stops at the range, and `created_at` then decides exactly.
//!
//! Filters other than time are checked on the rows the index walk meets: an outcome is a
//! column of the row, a status class the last attempt's code, found through
//! `delivery_attempts_by_delivery`. A rare filter on a long log walks further for a page.

use sqlx::{AssertSqlSafe, Row};

use crate::ids::first_id_at;
use crate::store::{Db, StoreError};

/// How far a delivery's id may be from its `created_at` (both are taken when it is queued): the
/// id range is widened by this and `created_at` decides.
const ID_TIME_SLACK_MS: i64 = 60_000;

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Delivered,
    Failed,
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Pending,
        Outcome::Delivered,
        Outcome::Failed,
        Outcome::Cancelled,
    ];

    /// The `deliveries.status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == raw)
    }
}

/// The class of the HTTP status a delivery's last attempt got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
    /// No HTTP answer: the connection failed or timed out.
    NoAnswer,
}

impl StatusClass {
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Success,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::NoAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::NoAnswer => "none",
        }
    }

    pub fn parse(raw: &str) -> Option<StatusClass> {
        StatusClass::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// The condition on the last attempt's status code (constants only).
    fn condition(self) -> &'static str {
        match self {
            StatusClass::Success => "BETWEEN 200 AND 299",
            StatusClass::Redirect => "BETWEEN 300 AND 399",
            StatusClass::ClientError => "BETWEEN 400 AND 499",
            StatusClass::ServerError => "BETWEEN 500 AND 599",
            StatusClass::NoAnswer => "IS NULL",
        }
    }
}

/// Which deliveries a page shows.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub outcome: Option<Outcome>,
    /// Of the last attempt; deliveries never tried have none and are left out.
    pub class: Option<StatusClass>,
    /// Created at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Created before (Unix ms).
    pub to_ms: Option<i64>,
    /// Only ids below this one: the cursor of the page before.
    pub before: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct LoggedDelivery {
    pub id: i64,
    pub event_type: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LoggedAttempt {
    pub delivery_id: i64,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    /// The first 4 KiB of the answer, as recorded.
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// One page of a log: its deliveries, and the cursor of the next (older) page when there is one.
#[derive(Clone, Debug)]
pub struct LogPage {
    pub deliveries: Vec<LoggedDelivery>,
    pub older: Option<i64>,
}

const COLUMNS: &str = "id, event_type, status, attempts, created_at, next_attempt_at, last_error";

fn delivery_from_row(row: &sqlx::any::AnyRow) -> LoggedDelivery {
    LoggedDelivery {
        id: row.get(0),
        event_type: row.get(1),
        status: row.get(2),
        attempts: row.get(3),
        created_at: row.get(4),
        next_attempt_at: row.get(5),
        last_error: row.get(6),
    }
}

/// A page of at most `limit` (1 to 200) of a hook's deliveries, newest first.
pub async fn page(
    db: &Db,
    webhook_id: i64,
    filter: &LogFilter,
    limit: i64,
) -> Result<LogPage, StoreError> {
    let limit = limit.clamp(1, 200);
    let mut upper = filter.before.unwrap_or(i64::MAX);
    if let Some(to) = filter.to_ms {
        upper = upper.min(first_id_at(to.saturating_add(ID_TIME_SLACK_MS)));
    }
    let lower = filter
        .from_ms
        .map_or(0, |from| first_id_at(from.saturating_sub(ID_TIME_SLACK_MS)));

    // $1 hook, $2 ids below, $3 ids from, $4 rows; then the optional filters' values.
    let mut extra = String::new();
    let mut next = 5;
    let mut texts: Vec<&'static str> = Vec::new();
    let mut numbers: Vec<i64> = Vec::new();
    if let Some(outcome) = filter.outcome {
        extra.push_str(&format!(" AND status = ${next}"));
        next += 1;
        texts.push(outcome.as_str());
    }
    let mut times = String::new();
    if let Some(from) = filter.from_ms {
        times.push_str(&format!(" AND created_at >= ${next}"));
        next += 1;
        numbers.push(from);
    }
    if let Some(to) = filter.to_ms {
        times.push_str(&format!(" AND created_at < ${next}"));
        numbers.push(to);
    }
    extra.push_str(&times);
    if let Some(class) = filter.class {
        extra.push_str(&format!(
            " AND attempts > 0 AND (SELECT a.status_code FROM delivery_attempts a \
             WHERE a.delivery_id = deliveries.id ORDER BY a.attempted_at DESC, a.id DESC LIMIT 1) {}",
            class.condition()
        ));
    }
    let tried = format!(
        "SELECT {COLUMNS} FROM deliveries WHERE webhook_id = $1 AND (status <> 'pending' OR attempts > 0) \
         AND id < $2 AND id >= $3{extra} ORDER BY id DESC LIMIT $4"
    );
    // Never tried yet: only when the filter can match such a delivery. Found through the
    // queue's index on status (few rows: a hook's waiting backlog), then sorted: `id + 0` keeps
    // the planner from walking the primary key backwards past every finished delivery in the
    // table in search of a waiting one (PostgreSQL did, once it had statistics: 100 ms a page
    // at 250,000 deliveries).
    let waiting_possible =
        filter.class.is_none() && filter.outcome.is_none_or(|o| o == Outcome::Pending);
    let sql = if waiting_possible {
        format!(
            "SELECT {COLUMNS} FROM ({tried}) AS tried UNION ALL SELECT {COLUMNS} FROM \
             (SELECT {COLUMNS} FROM deliveries WHERE status = 'pending' AND attempts = 0 AND webhook_id = $1 \
              AND id < $2 AND id >= $3{times} ORDER BY id + 0 DESC LIMIT $4) AS waiting \
             ORDER BY id DESC LIMIT $4"
        )
    } else {
        tried
    };
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(upper)
        .bind(lower)
        .bind(limit + 1);
    for text in texts {
        query = query.bind(text);
    }
    for number in numbers {
        query = query.bind(number);
    }
    let rows = query.fetch_all(db.reader()).await?;
    let mut deliveries: Vec<LoggedDelivery> = rows.iter().map(delivery_from_row).collect();
    let older = if deliveries.len() as i64 > limit {
        deliveries.truncate(limit as usize);
        deliveries.last().map(|d| d.id)
    } else {
        None
    };
    Ok(LogPage { deliveries, older })
}

/// One delivery of a hook, by its id (the log's search).
pub async fn find(
    db: &Db,
    webhook_id: i64,
    delivery_id: i64,
) -> Result<Option<LoggedDelivery>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1 AND webhook_id = $2");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(delivery_id)
        .bind(webhook_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(delivery_from_row))
}

/// The attempts of these deliveries, each delivery's in the order they were made.
pub async fn attempts(db: &Db, delivery_ids: &[i64]) -> Result<Vec<LoggedAttempt>, StoreError> {
    let mut attempts = Vec::new();
    for chunk in delivery_ids.chunks(64) {
        let sql = format!(
            "SELECT delivery_id, attempted_at, status_code, duration_ms, response_body, error \
             FROM delivery_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, attempted_at, id",
            crate::store::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        attempts.extend(
            query
                .fetch_all(db.reader())
                .await?
                .iter()
                .map(|row| LoggedAttempt {
                    delivery_id: row.get(0),
                    attempted_at: row.get(1),
                    status_code: row.get(2),
                    duration_ms: row.get(3),
                    response_body: row.get(4),
                    error: row.get(5),
                }),
        );
    }
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_back_what_they_write() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        for class in StatusClass::ALL {
            assert_eq!(StatusClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(Outcome::parse("lost"), None);
        assert_eq!(StatusClass::parse("1xx"), None);
    }
}
