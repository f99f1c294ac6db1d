//! Area C's realtime chat: the reference WebSocket protocol (`socket.rs`, its client frames in
//! `frames.rs`, each socket's writer in `outbound.rs`), friendships and direct messages (this
//! file), the bus that carries frames to every session of a user (`bus.rs`), and the session
//! logs behind sequence numbers and `resume`, with the chat's memory limits (`resume.rs`).
//!
//! Read marks (`chat_reads`): how far each account has read each chat, moved by the chat page
//! when it shows a conversation's newest messages or sends one ([`mark_read`]), and counted
//! by the dashboard ([`unread_chats`]).
//!
//! **Invariant**: a DM is found by the unordered pair of its participants, which the server
//! derives as `chat_id XOR requester`; a client can only ever name pairs it belongs to.

pub mod bot;
pub mod bus;
pub mod frames;
pub mod outbound;
pub mod resume;
pub mod socket;

use serde_json::{Value, json};

use crate::accounts::Account;
use crate::ids::IdGenerator;
use crate::store::{Db, StoreError};

/// The chat's state: the bus to every socket, the sessions waiting for `resume`, the bot
/// engine that answers DMs to the herald bot, and that bot's account.
#[derive(Clone)]
pub struct ChatState {
    pub app: crate::state::AppState,
    pub bus: std::sync::Arc<dyn bus::Bus>,
    pub sessions: std::sync::Arc<resume::Sessions>,
    pub bot: crate::bot::Bot,
    pub bot_account_id: i64,
    /// Cancelled when this node stops: every socket is closed with
    /// [`socket::CLOSE_SERVICE_RESTART`] so that its client reconnects (to another node).
    pub stopping: tokio_util::sync::CancellationToken,
    /// The open sockets, so that a stopping node waits for their close frames to go out.
    pub sockets: tokio_util::task::TaskTracker,
}

crate::feature_state!(ChatState);

/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, the reference's `created_at`.
pub fn format_created_at(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

pub fn parse_created_at(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The `chat_id` of the DM between users `a` and `b`, as the reference defines it: their ids
/// XOR-ed. XOR is its own inverse, so `dm_chat_id(chat_id, me)` is the other participant of
/// `me`'s DM `chat_id` — which is how a chat id is only ever resolved for its requester.
pub fn dm_chat_id(a: i64, b: i64) -> i64 {
    a ^ b
}

/// The unordered pair of a DM: the key its messages are stored under.
pub fn pair(a: i64, b: i64) -> (i64, i64) {
    (a.min(b), a.max(b))
}

/// The key a room's messages are stored under (no DM pair has a negative high id).
pub fn room_key(room_id: i64) -> (i64, i64) {
    (room_id, -1)
}

pub fn user_object(account: &Account) -> Value {
    json!({"id": account.id.to_string(), "name": account.name, "profile": account.profile})
}

pub async fn account_by_id(db: &Db, id: i64) -> Result<Option<Account>, StoreError> {
    let row: Option<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, email, profile FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(db.reader())
            .await?;
    Ok(row.map(|(id, name, email, profile)| Account {
        id,
        name,
        email,
        profile,
    }))
}

async fn accounts_where(db: &Db, sql: &'static str, me: i64) -> Result<Vec<Account>, StoreError> {
    let rows: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as(sql).bind(me).fetch_all(db.reader()).await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, email, profile)| Account {
            id,
            name,
            email,
            profile,
        })
        .collect())
}

/// Accepted friends.
pub async fn friends(db: &Db, me: i64) -> Result<Vec<Account>, StoreError> {
    accounts_where(
        db,
        "SELECT a.id, a.name, a.email, a.profile FROM friendships f JOIN accounts a \
         ON a.id = CASE WHEN f.requester_id = $1 THEN f.addressee_id ELSE f.requester_id END \
         WHERE (f.requester_id = $1 OR f.addressee_id = $1) AND f.accepted = 1 ORDER BY a.name",
        me,
    )
    .await
}

/// People who asked to be my friend and wait for my answer.
pub async fn incoming_requests(db: &Db, me: i64) -> Result<Vec<Account>, StoreError> {
    accounts_where(
        db,
        "SELECT a.id, a.name, a.email, a.profile FROM friendships f JOIN accounts a ON a.id = f.requester_id \
         WHERE f.addressee_id = $1 AND f.accepted = 0 ORDER BY a.name",
        me,
    )
    .await
}

pub async fn are_friends(db: &Db, a: i64, b: i64) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT accepted FROM friendships WHERE accepted = 1 AND \
         ((requester_id = $1 AND addressee_id = $2) OR (requester_id = $2 AND addressee_id = $1))",
    )
    .bind(a)
    .bind(b)
    .fetch_optional(db.reader())
    .await?;
    Ok(found.is_some())
}

/// What a chat id names for one requester, read in a single query (a chat frame is the hot
/// path: one database round trip instead of one each for room, account and friendship).
#[derive(Debug)]
pub enum ChatTarget {
    /// A group room with this id exists (membership is checked by the caller).
    Room(Room),
    /// The id is the XOR of the requester's id and `other`'s; `friends` says whether they are.
    Dm { other: Account, friends: bool },
    /// Neither a room nor a DM of this requester.
    Nothing,
}

pub async fn resolve_chat(db: &Db, me: i64, chat_id: i64) -> Result<ChatTarget, StoreError> {
    let other_id = dm_chat_id(chat_id, me);
    type Row = (
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
    );
    let (room_name, id, name, email, profile, friends): Row = sqlx::query_as(
        "SELECT (SELECT name FROM rooms WHERE id = $1), a.id, a.name, a.email, a.profile, \
         (SELECT COUNT(*) FROM friendships f WHERE f.accepted = 1 AND \
          ((f.requester_id = $2 AND f.addressee_id = $3) OR (f.requester_id = $3 AND f.addressee_id = $2))) \
         FROM (SELECT 1 AS one) AS one LEFT JOIN accounts a ON a.id = $2",
    )
    .bind(chat_id)
    .bind(other_id)
    .bind(me)
    .fetch_one(db.reader())
    .await?;
    Ok(match (room_name, id, name, email) {
        (Some(name), _, _, _) => ChatTarget::Room(Room { id: chat_id, name }),
        (_, Some(id), Some(name), Some(email)) if id != me => ChatTarget::Dm {
            other: Account {
                id,
                name,
                email,
                profile,
            },
            friends: friends > 0,
        },
        _ => ChatTarget::Nothing,
    })
}

/// What a friendship operation did, for the caller to tell the other side.
#[derive(Debug, PartialEq, Eq)]
pub enum FriendChange {
    Done,
    Nothing(&'static str),
}

impl FriendChange {
    /// `Done` if the statement changed a row, else `Nothing` with the reason to tell the user.
    fn from_rows(rows: u64, nothing: &'static str) -> FriendChange {
        if rows > 0 {
            FriendChange::Done
        } else {
            FriendChange::Nothing(nothing)
        }
    }
}

pub async fn request_friend(db: &Db, me: i64, them: i64) -> Result<FriendChange, StoreError> {
    if me == them {
        return Ok(FriendChange::Nothing("you cannot befriend yourself"));
    }
    // If they already asked me, asking back accepts.
    if accept_friend(db, me, them).await? == FriendChange::Done {
        return Ok(FriendChange::Done);
    }
    if are_friends(db, me, them).await? {
        return Ok(FriendChange::Nothing("you are already friends"));
    }
    let inserted = sqlx::query(
        "INSERT INTO friendships (requester_id, addressee_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (requester_id, addressee_id) DO NOTHING",
    )
    .bind(me)
    .bind(them)
    .bind(crate::ids::now_ms())
    .execute(db.writer())
    .await?;
    Ok(FriendChange::from_rows(
        inserted.rows_affected(),
        "the request was already sent",
    ))
}

/// Runs one friendship statement over (`first`, `second`) and says whether it changed anything.
async fn change_pair(
    db: &Db,
    sql: &'static str,
    first: i64,
    second: i64,
    nothing: &'static str,
) -> Result<FriendChange, StoreError> {
    let result = sqlx::query(sql)
        .bind(first)
        .bind(second)
        .execute(db.writer())
        .await?;
    Ok(FriendChange::from_rows(result.rows_affected(), nothing))
}

const ACCEPT: &str = "UPDATE friendships SET accepted = 1 WHERE requester_id = $1 AND addressee_id = $2 AND accepted = 0";

/// Accepts `them`'s pending request.
pub async fn accept_friend(db: &Db, me: i64, them: i64) -> Result<FriendChange, StoreError> {
    change_pair(db, ACCEPT, them, me, "there is no request from that user").await
}

/// Withdraws my own pending request to `them`.
pub async fn withdraw_request(db: &Db, me: i64, them: i64) -> Result<FriendChange, StoreError> {
    let sql =
        "DELETE FROM friendships WHERE requester_id = $1 AND addressee_id = $2 AND accepted = 0";
    change_pair(db, sql, me, them, "there is no request to that user").await
}

/// Declines `them`'s request, or ends a friendship (for both sides).
pub async fn delete_friend(db: &Db, me: i64, them: i64) -> Result<FriendChange, StoreError> {
    let sql = "DELETE FROM friendships WHERE (requester_id = $1 AND addressee_id = $2) \
               OR (requester_id = $2 AND addressee_id = $1 AND accepted = 1)";
    change_pair(
        db,
        sql,
        them,
        me,
        "that user is neither a friend nor asking to be one",
    )
    .await
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub user_id: i64,
    pub content: String,
    pub created_at_us: i64,
}

/// The chat frame payload for a message, as both participants see it.
pub fn chat_payload(kind: &str, message: &Message, chat_id: i64) -> Value {
    json!({
        "type": kind,
        "id": message.id.to_string(),
        "user_id": message.user_id.to_string(),
        "chat_id": chat_id.to_string(),
        "content": message.content,
        "created_at": format_created_at(message.created_at_us),
    })
}

/// Stores a DM; durable before anyone is told. With a client `nonce`, sending the same nonce
/// again returns the message stored the first time (`true`: it is a repeat) instead of a copy.
pub async fn store_message(
    db: &Db,
    ids: &IdGenerator,
    (low, high): (i64, i64),
    from: i64,
    content: &str,
    nonce: Option<&str>,
) -> Result<(Message, bool), StoreError> {
    let message = Message {
        id: ids.next(),
        user_id: from,
        content: content.to_string(),
        created_at_us: now_micros(),
    };
    let inserted = sqlx::query(
        "INSERT INTO chat_messages (id, low_id, high_id, user_id, content, created_at_us, nonce) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, nonce) DO NOTHING",
    )
    .bind(message.id)
    .bind(low)
    .bind(high)
    .bind(from)
    .bind(content)
    .bind(message.created_at_us)
    .bind(nonce)
    .execute(db.writer())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok((message, false));
    }
    let (id, user_id, content, created_at_us): (i64, i64, String, i64) = sqlx::query_as(
        "SELECT id, user_id, content, created_at_us FROM chat_messages WHERE user_id = $1 AND nonce = $2",
    )
    .bind(from)
    .bind(nonce)
    .fetch_one(db.writer())
    .await?;
    Ok((
        Message {
            id,
            user_id,
            content,
            created_at_us,
        },
        true,
    ))
}

/// A live message of this pair.
pub async fn find_message(
    db: &Db,
    low: i64,
    high: i64,
    id: i64,
) -> Result<Option<Message>, StoreError> {
    let row: Option<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT id, user_id, content, created_at_us FROM chat_messages \
         WHERE id = $1 AND low_id = $2 AND high_id = $3 AND deleted = 0",
    )
    .bind(id)
    .bind(low)
    .bind(high)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|(id, user_id, content, created_at_us)| Message {
        id,
        user_id,
        content,
        created_at_us,
    }))
}

/// Edits a message's content, or deletes it when `content` is empty.
pub async fn edit_message(db: &Db, id: i64, content: &str) -> Result<(), StoreError> {
    if content.is_empty() {
        sqlx::query("UPDATE chat_messages SET deleted = 1, content = '' WHERE id = $1")
            .bind(id)
            .execute(db.writer())
            .await?;
    } else {
        sqlx::query("UPDATE chat_messages SET content = $1 WHERE id = $2")
            .bind(content)
            .bind(id)
            .execute(db.writer())
            .await?;
    }
    Ok(())
}

/// Up to `count` messages of the pair written before `before_us`, newest first.
pub async fn history(
    db: &Db,
    low: i64,
    high: i64,
    before_us: i64,
    count: i64,
) -> Result<Vec<Message>, StoreError> {
    let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT id, user_id, content, created_at_us FROM chat_messages \
         WHERE low_id = $1 AND high_id = $2 AND deleted = 0 AND created_at_us < $3 \
         ORDER BY created_at_us DESC, id DESC LIMIT $4",
    )
    .bind(low)
    .bind(high)
    .bind(before_us)
    .bind(count)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, user_id, content, created_at_us)| Message {
            id,
            user_id,
            content,
            created_at_us,
        })
        .collect())
}

/// Records that `account` has read the chat stored under `(low, high)` up to the message
/// written at `up_to_us` (its `created_at_us`). The mark only moves forward, so an older page
/// read later does not make newer messages unread again.
pub async fn mark_read(
    db: &Db,
    account: i64,
    (low, high): (i64, i64),
    up_to_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO chat_reads (account_id, low_id, high_id, read_up_to_us) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, low_id, high_id) DO UPDATE SET read_up_to_us = \
         CASE WHEN excluded.read_up_to_us > chat_reads.read_up_to_us \
         THEN excluded.read_up_to_us ELSE chat_reads.read_up_to_us END",
    )
    .bind(account)
    .bind(low)
    .bind(high)
    .bind(up_to_us)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Unread messages are counted up to this many per chat (the page shows "99+").
pub const UNREAD_COUNT_CAP: i64 = 100;

/// How many messages of the chat under `(low, high)` others wrote after `account`'s read
/// mark (all of them when it never read it), at most [`UNREAD_COUNT_CAP`]: a range of the
/// chat's index, bounded.
pub async fn unread_count(
    db: &Db,
    account: i64,
    (low, high): (i64, i64),
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM chat_messages WHERE low_id = $1 AND high_id = $2 \
         AND created_at_us > COALESCE((SELECT read_up_to_us FROM chat_reads \
           WHERE account_id = $3 AND low_id = $1 AND high_id = $2), -1) \
         AND user_id <> $3 AND deleted = 0 LIMIT $4) AS unread",
    )
    .bind(low)
    .bind(high)
    .bind(account)
    .bind(UNREAD_COUNT_CAP)
    .fetch_one(db.reader())
    .await
}

/// A chat with messages `account` has not read: its protocol chat id (a DM's XOR, a room's
/// id), its name (the other person or the room) and how many (capped).
#[derive(Debug, Clone)]
pub struct UnreadChat {
    pub chat_id: i64,
    pub name: String,
    pub unread: i64,
}

/// The chats of `account` — DMs with its friends and with the herald bot, its rooms — that
/// have unread messages.
pub async fn unread_chats(
    db: &Db,
    account: i64,
    bot_account_id: i64,
) -> Result<Vec<UnreadChat>, StoreError> {
    let mut people = friends(db, account).await?;
    if bot_account_id != account
        && !people.iter().any(|p| p.id == bot_account_id)
        && let Some(bot) = account_by_id(db, bot_account_id).await?
    {
        people.push(bot);
    }
    let mut chats = Vec::new();
    for other in people {
        let unread = unread_count(db, account, pair(account, other.id)).await?;
        if unread > 0 {
            chats.push(UnreadChat {
                chat_id: dm_chat_id(account, other.id),
                name: other.name,
                unread,
            });
        }
    }
    for room in rooms_of(db, account).await? {
        let unread = unread_count(db, account, room_key(room.id)).await?;
        if unread > 0 {
            chats.push(UnreadChat {
                chat_id: room.id,
                name: room.name,
                unread,
            });
        }
    }
    Ok(chats)
}

#[derive(Debug, Clone)]
pub struct Room {
    pub id: i64,
    pub name: String,
}

pub fn room_object(room: &Room, members: &[Account]) -> Value {
    json!({
        "id": room.id.to_string(),
        "name": room.name,
        "members": members.iter().map(user_object).collect::<Vec<_>>(),
    })
}

pub async fn create_room(
    db: &Db,
    ids: &IdGenerator,
    name: &str,
    members: &[i64],
) -> Result<Room, StoreError> {
    let room = Room {
        id: ids.next(),
        name: name.to_string(),
    };
    let now = crate::ids::now_ms();
    let mut tx = db.writer().begin().await?;
    sqlx::query("INSERT INTO rooms (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)")
        .bind(room.id)
        .bind(name)
        .bind(members.first().copied().unwrap_or_default())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    for member in members {
        sqlx::query(
            "INSERT INTO room_members (room_id, account_id, joined_at) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id, account_id) DO NOTHING",
        )
        .bind(room.id)
        .bind(*member)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(room)
}

pub async fn room_members(db: &Db, room_id: i64) -> Result<Vec<Account>, StoreError> {
    accounts_where(
        db,
        "SELECT a.id, a.name, a.email, a.profile FROM room_members m JOIN accounts a ON a.id = m.account_id \
         WHERE m.room_id = $1 ORDER BY m.joined_at, a.id",
        room_id,
    )
    .await
}

pub async fn rooms_of(db: &Db, account: i64) -> Result<Vec<Room>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT r.id, r.name FROM room_members m JOIN rooms r ON r.id = m.room_id WHERE m.account_id = $1 ORDER BY r.id",
    )
    .bind(account)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| Room { id, name })
        .collect())
}

pub async fn add_member(db: &Db, room_id: i64, account: i64) -> Result<bool, StoreError> {
    let added = sqlx::query(
        "INSERT INTO room_members (room_id, account_id, joined_at) VALUES ($1, $2, $3) \
         ON CONFLICT (room_id, account_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(account)
    .bind(crate::ids::now_ms())
    .execute(db.writer())
    .await?;
    Ok(added.rows_affected() > 0)
}

pub async fn remove_member(db: &Db, room_id: i64, account: i64) -> Result<bool, StoreError> {
    let removed = sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND account_id = $2")
        .bind(room_id)
        .bind(account)
        .execute(db.writer())
        .await?;
    Ok(removed.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_round_trips_in_the_reference_format() {
        let text = format_created_at(1_640_218_756_000_880);
        assert_eq!(text, "2021-12-23 00:19:16.000880");
        assert_eq!(parse_created_at(&text), Some(1_640_218_756_000_880));
    }
}
