//! Teams (area E): a name, a time zone and a morning time, with members — accounts, contacts or
//! both — some of whom are the team's admins, and the members' days (`morning.rs`: days off,
//! anniversaries … and the morning message that tells the team). Schedules address a team as
//! an audience ([`member_contacts`]) and ask who may manage it ([`role_of`]).
//!
//! **Boundary**: this module is the only writer of `teams`, `team_members`, `team_days` and
//! `team_mornings`.

pub mod api;
pub mod morning;

use serde::Serialize;
use sqlx::Row;

use crate::ids::{IdGenerator, now_ms, rfc3339};
use crate::store::{Db, StoreError};

/// The zone a team, a schedule or a preview uses when none is given.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Seoul";
/// A team's morning message time when none is given.
pub const DEFAULT_MORNING_AT: &str = "09:00";

/// An IANA zone name, checked against the zone database.
pub fn parse_time_zone(raw: &str) -> Result<chrono_tz::Tz, String> {
    raw.trim()
        .parse::<chrono_tz::Tz>()
        .map_err(|_| format!("time_zone: {raw:?} is not an IANA time zone (e.g. Asia/Seoul)"))
}

/// A local time of day written `HH:MM` (24 hours).
pub fn parse_morning_at(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    match chrono::NaiveTime::parse_from_str(raw, "%H:%M") {
        Ok(time) if raw.len() == 5 => Ok(time.format("%H:%M").to_string()),
        _ => Err(format!("morning_at: {raw:?} is not a time written HH:MM")),
    }
}

/// A team name: 1 to 100 characters, no control characters.
pub fn valid_team_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("name: 1 to 100 characters, without control characters".into());
    }
    Ok(name.to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct Team {
    #[serde(with = "crate::ids::as_string")]
    pub id: i64,
    pub name: String,
    pub time_zone: String,
    pub morning_at: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    #[serde(with = "crate::ids::as_string")]
    pub id: i64,
    #[serde(serialize_with = "optional_id")]
    pub account_id: Option<i64>,
    #[serde(serialize_with = "optional_id")]
    pub contact_id: Option<i64>,
    pub admin: bool,
    pub created_at: String,
}

fn optional_id<S: serde::Serializer>(id: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.collect_str(id),
        None => serializer.serialize_none(),
    }
}

/// What an account is to a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Stranger,
    Member,
    Admin,
}

const TEAM_COLUMNS: &str = "id, name, time_zone, morning_at, created_at";

fn team_from_row(row: &sqlx::any::AnyRow) -> Team {
    Team {
        id: row.get(0),
        name: row.get(1),
        time_zone: row.get(2),
        morning_at: row.get(3),
        created_at: rfc3339(row.get(4)),
    }
}

fn member_from_row(row: &sqlx::any::AnyRow) -> Member {
    Member {
        id: row.get(0),
        account_id: row.get(1),
        contact_id: row.get(2),
        admin: row.get::<i64, _>(3) != 0,
        created_at: rfc3339(row.get(4)),
    }
}

/// A checked new team.
pub struct NewTeam {
    pub name: String,
    pub time_zone: String,
    pub morning_at: String,
    /// The first working morning after the team is created (`morning::next_morning`).
    pub next_morning_at: Option<i64>,
}

/// Creates a team; with `admin`, that account is its first member and admin, in the same
/// transaction.
pub async fn create_team(
    db: &Db,
    ids: &IdGenerator,
    team: &NewTeam,
    admin: Option<i64>,
) -> Result<Team, StoreError> {
    let id = ids.next();
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    sqlx::query(
        "INSERT INTO teams (id, name, time_zone, morning_at, next_morning_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&team.name)
    .bind(&team.time_zone)
    .bind(&team.morning_at)
    .bind(team.next_morning_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if let Some(account_id) = admin {
        sqlx::query(
            "INSERT INTO team_members (id, team_id, account_id, contact_id, admin, created_at) \
             VALUES ($1, $2, $3, NULL, 1, $4)",
        )
        .bind(ids.next())
        .bind(id)
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Team {
        id,
        name: team.name.clone(),
        time_zone: team.time_zone.clone(),
        morning_at: team.morning_at.clone(),
        created_at: rfc3339(now),
    })
}

pub async fn find_team(db: &Db, id: i64) -> Result<Option<Team>, StoreError> {
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(team_from_row))
}

/// Every team (the operator's view), or the teams `account_id` is a member of.
pub async fn list_teams(db: &Db, account_id: Option<i64>) -> Result<Vec<Team>, StoreError> {
    let rows = match account_id {
        None => {
            let sql = format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY id");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.reader())
                .await?
        }
        Some(account_id) => {
            let sql = format!(
                "SELECT {TEAM_COLUMNS} FROM teams WHERE id IN \
                 (SELECT team_id FROM team_members WHERE account_id = $1) ORDER BY id"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .fetch_all(db.reader())
                .await?
        }
    };
    Ok(rows.iter().map(team_from_row).collect())
}

/// Deletes a team with its members (and, by the schema, the schedules addressed to it).
pub async fn delete_team(db: &Db, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM teams WHERE id = $1")
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// What `account_id` is to the team: an admin, a member, or nobody.
pub async fn role_of(db: &Db, team_id: i64, account_id: i64) -> Result<Role, StoreError> {
    let admin: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(admin) FROM team_members WHERE team_id = $1 AND account_id = $2",
    )
    .bind(team_id)
    .bind(account_id)
    .fetch_one(db.reader())
    .await?;
    Ok(match admin {
        None => Role::Stranger,
        Some(0) => Role::Member,
        Some(_) => Role::Admin,
    })
}

/// The teams `account_id` administers.
pub async fn administered_by(db: &Db, account_id: i64) -> Result<Vec<i64>, StoreError> {
    sqlx::query_scalar(
        "SELECT team_id FROM team_members WHERE account_id = $1 AND admin = 1 ORDER BY team_id",
    )
    .bind(account_id)
    .fetch_all(db.reader())
    .await
}

const MEMBER_COLUMNS: &str = "id, account_id, contact_id, admin, created_at";

pub async fn list_members(db: &Db, team_id: i64) -> Result<Vec<Member>, StoreError> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM team_members WHERE team_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(team_id)
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(member_from_row).collect())
}

/// Why a member could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddMemberError {
    #[error("no account with id {0}")]
    NoAccount(i64),
    #[error("no contact with id {0}")]
    NoContact(i64),
    #[error("that account or contact is already a member of this team")]
    AlreadyMember,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds a member: an account, a contact, or an account together with one of its contacts.
pub async fn add_member(
    db: &Db,
    ids: &IdGenerator,
    team_id: i64,
    account_id: Option<i64>,
    contact_id: Option<i64>,
    admin: bool,
) -> Result<Member, AddMemberError> {
    let mut tx = db.writer().begin().await?;
    if let Some(id) = account_id {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(AddMemberError::NoAccount(id));
        }
    }
    if let Some(id) = contact_id {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM contacts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(AddMemberError::NoContact(id));
        }
    }
    let id = ids.next();
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO team_members (id, team_id, account_id, contact_id, admin, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(team_id)
    .bind(account_id)
    .bind(contact_id)
    .bind(i64::from(admin))
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(AddMemberError::AlreadyMember);
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(Member {
        id,
        account_id,
        contact_id,
        admin,
        created_at: rfc3339(now),
    })
}

pub async fn remove_member(db: &Db, team_id: i64, member_id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM team_members WHERE id = $1 AND team_id = $2")
        .bind(member_id)
        .bind(team_id)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Someone a team's announcement goes to: a contact on its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Recipient {
    #[serde(with = "crate::ids::as_string")]
    pub contact_id: i64,
    pub channel: String,
    pub address: String,
}

/// The contacts that hear a team: its member contacts and the contacts linked to its member
/// accounts, each once, except muted and blocked ones. Read inside the caller's transaction.
pub async fn member_contacts(
    conn: &mut sqlx::AnyConnection,
    team_id: i64,
) -> Result<Vec<Recipient>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, c.channel, c.address FROM contacts c \
         WHERE c.muted = 0 AND c.blocked = 0 AND ( \
           c.id IN (SELECT contact_id FROM team_members WHERE team_id = $1 AND contact_id IS NOT NULL) \
           OR c.account_id IN (SELECT account_id FROM team_members WHERE team_id = $1 AND account_id IS NOT NULL)) \
         ORDER BY c.id",
    )
    .bind(team_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Recipient {
            contact_id: row.get(0),
            channel: row.get(1),
            address: row.get(2),
        })
        .collect())
}

/// A team as one of its members sees it in a chat with the bot.
#[derive(Debug, Clone)]
pub struct ContactTeam {
    pub team: Team,
    /// Whether this contact (or its linked account) is one of the team's admins.
    pub admin: bool,
    pub members: i64,
}

/// The teams a contact belongs to, as a member contact or through its linked account.
pub async fn teams_of_contact(db: &Db, contact_id: i64) -> Result<Vec<ContactTeam>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.id, t.name, t.time_zone, t.morning_at, t.created_at, MAX(m.admin), \
         (SELECT COUNT(*) FROM team_members n WHERE n.team_id = t.id) \
         FROM teams t JOIN team_members m ON m.team_id = t.id \
         WHERE m.contact_id = $1 OR m.account_id = (SELECT account_id FROM contacts WHERE id = $1) \
         GROUP BY t.id, t.name, t.time_zone, t.morning_at, t.created_at ORDER BY t.name, t.id",
    )
    .bind(contact_id)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .iter()
        .map(|row| ContactTeam {
            team: team_from_row(row),
            admin: row.get::<i64, _>(5) != 0,
            members: row.get(6),
        })
        .collect())
}

/// A team's members by name (an account's name, else a contact's nickname or address), with
/// their admin flag.
pub async fn member_names(db: &Db, team_id: i64) -> Result<Vec<(String, bool)>, StoreError> {
    let rows = sqlx::query(
        "SELECT COALESCE(a.name, NULLIF(c.nick_name, ''), c.address, '?'), m.admin \
         FROM team_members m LEFT JOIN accounts a ON a.id = m.account_id \
         LEFT JOIN contacts c ON c.id = m.contact_id WHERE m.team_id = $1 ORDER BY m.id",
    )
    .bind(team_id)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get::<i64, _>(1) != 0))
        .collect())
}

/// A team's members with their names (an account's name, else a contact's nickname or
/// address), in one read.
pub async fn members_with_names(
    db: &Db,
    team_id: i64,
) -> Result<Vec<(Member, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.id, m.account_id, m.contact_id, m.admin, m.created_at, \
         COALESCE(a.name, NULLIF(c.nick_name, ''), c.address, '?') \
         FROM team_members m LEFT JOIN accounts a ON a.id = m.account_id \
         LEFT JOIN contacts c ON c.id = m.contact_id WHERE m.team_id = $1 ORDER BY m.id",
    )
    .bind(team_id)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .iter()
        .map(|row| (member_from_row(row), row.get(5)))
        .collect())
}

/// Removes the member that is `account_id` from a team.
pub async fn remove_account_member(
    db: &Db,
    team_id: i64,
    account_id: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND account_id = $2")
        .bind(team_id)
        .bind(account_id)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morning_times_and_zones_are_checked() {
        assert_eq!(parse_morning_at("07:05"), Ok("07:05".to_string()));
        assert!(parse_morning_at("7:05").is_err());
        assert!(parse_morning_at("24:00").is_err());
        assert!(parse_time_zone("America/New_York").is_ok());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }
}
