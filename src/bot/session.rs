//! Per-contact conversation state, kept in the database so that a conversation survives a
//! restart and may continue on any node: the language chosen, the question the bot is waiting
//! for an answer to, and the commands behind the last buttons offered.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::reply::Lang;
use crate::contacts::Contact;
use crate::ids::now_ms;
use crate::store::{Db, StoreError};

/// How long the bot keeps waiting for the answer to a question.
pub const PENDING_FOR_MS: i64 = 10 * 60 * 1000;

/// The question the bot asked and is waiting for an answer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "waiting_for", rename_all = "snake_case")]
pub enum Pending {
    /// `구독` alone: which repository?
    SubscribeRepository,
    /// Which branch of this repository?
    SubscribeBranch { repository: String },
    /// `검색` alone: what to search for?
    SearchQuery,
    /// `연결` alone: which code?
    LinkCode,
}

#[derive(Debug, Clone, Default)]
pub struct Session {
    pub lang: Option<Lang>,
    pub pending: Option<Pending>,
    /// The commands behind the last buttons offered, for `#n` button payloads.
    pub offered: Vec<String>,
    pub expires_at: i64,
    /// Whether this differs from what is stored.
    pub dirty: bool,
}

impl Session {
    pub fn pending_now(&self) -> Option<&Pending> {
        self.pending.as_ref().filter(|_| self.expires_at > now_ms())
    }

    pub fn set_pending(&mut self, pending: Option<Pending>) {
        if pending.is_none() && self.pending.is_none() {
            return;
        }
        self.pending = pending;
        self.expires_at = if self.pending.is_some() {
            now_ms() + PENDING_FOR_MS
        } else {
            0
        };
        self.dirty = true;
    }

    pub fn set_lang(&mut self, lang: Lang) {
        if self.lang != Some(lang) {
            self.lang = Some(lang);
            self.dirty = true;
        }
    }

    pub fn set_offered(&mut self, offered: Vec<String>) {
        if self.offered != offered {
            self.offered = offered;
            self.dirty = true;
        }
    }
}

/// A contact and its conversation, read together in one query.
pub async fn load(
    db: &Db,
    channel: &str,
    address: &str,
) -> Result<Option<(Contact, Session)>, StoreError> {
    let row = sqlx::query(
        "SELECT c.id, c.channel, c.address, c.nick_name, c.muted, c.blocked, c.created_at, \
         c.time_zone, c.quiet_hours, c.quiet_weekends, s.lang, s.pending, s.offered, s.expires_at \
         FROM contacts c LEFT JOIN bot_sessions s ON s.contact_id = c.id \
         WHERE c.channel = $1 AND c.address = $2",
    )
    .bind(channel)
    .bind(address)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|row| {
        // Columns 0..=9 are the contact's, in `contacts::CONTACT_COLUMNS` order.
        let contact = crate::contacts::contact_from_row(&row);
        let session = Session {
            lang: row
                .get::<Option<String>, _>(10)
                .as_deref()
                .and_then(Lang::parse),
            pending: row
                .get::<Option<String>, _>(11)
                .filter(|p| !p.is_empty())
                .and_then(|p| serde_json::from_str(&p).ok()),
            offered: row
                .get::<Option<String>, _>(12)
                .and_then(|o| serde_json::from_str(&o).ok())
                .unwrap_or_default(),
            expires_at: row.get::<Option<i64>, _>(13).unwrap_or(0),
            dirty: false,
        };
        (contact, session)
    }))
}

/// Stores the conversation if it changed.
pub async fn save(db: &Db, contact_id: i64, session: &Session) -> Result<(), StoreError> {
    if !session.dirty {
        return Ok(());
    }
    let pending = session
        .pending
        .as_ref()
        .and_then(|p| serde_json::to_string(p).ok())
        .unwrap_or_default();
    let offered = serde_json::to_string(&session.offered).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO bot_sessions (contact_id, lang, pending, offered, expires_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (contact_id) DO UPDATE SET \
         lang = excluded.lang, pending = excluded.pending, offered = excluded.offered, \
         expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )
    .bind(contact_id)
    .bind(session.lang.map(Lang::as_str).unwrap_or_default())
    .bind(pending)
    .bind(offered)
    .bind(session.expires_at)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Conversations kept in memory between messages, so that a command costs no database read.
/// Only on SQLite, where herald is one node by construction: every change to a conversation
/// goes through this node, which writes it to the database and to the cache together. Contact
/// flags changed elsewhere (mute by API, a block reported by a platform) are picked up when an
/// entry is older than [`CACHE_TTL`]. On PostgreSQL, where any node may take the next message,
/// the cache is off and every message reads the database.
pub struct SessionCache {
    enabled: bool,
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), Cached>>,
}

struct Cached {
    contact: Contact,
    session: Session,
    at: std::time::Instant,
}

pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// At most this many conversations are kept; past it the cache starts over.
const CACHE_CAPACITY: usize = 100_000;

impl SessionCache {
    pub fn new(enabled: bool) -> SessionCache {
        SessionCache {
            enabled,
            entries: Default::default(),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), Cached>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, channel: &str, address: &str) -> Option<(Contact, Session)> {
        if !self.enabled {
            return None;
        }
        let entries = self.lock();
        let cached = entries.get(&(channel.to_string(), address.to_string()))?;
        (cached.at.elapsed() < CACHE_TTL).then(|| (cached.contact.clone(), cached.session.clone()))
    }

    pub fn put(&self, channel: &str, address: &str, contact: &Contact, session: &Session) {
        if !self.enabled {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        let key = (channel.to_string(), address.to_string());
        match entries.get_mut(&key) {
            // A fresh entry keeps its age, so that flags changed elsewhere still show within
            // the TTL; an expired one was just read from the database again.
            Some(cached) => {
                cached.contact = contact.clone();
                cached.session = session.clone();
                if cached.at.elapsed() >= CACHE_TTL {
                    cached.at = std::time::Instant::now();
                }
            }
            None => {
                entries.insert(
                    key,
                    Cached {
                        contact: contact.clone(),
                        session: session.clone(),
                        at: std::time::Instant::now(),
                    },
                );
            }
        }
    }

    pub fn forget(&self, channel: &str, address: &str) {
        self.lock()
            .remove(&(channel.to_string(), address.to_string()));
    }
}
