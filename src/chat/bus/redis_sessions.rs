//! Chat sessions kept in Redis, so that a socket resumes on any node (`redis.rs` uses these).
//!
//! **Where a session lives.** Each session is a hash `<prefix>:chat:session:<id>` (`account`,
//! `next` — the number its next frame gets, `first` — the number of the oldest frame kept,
//! `bytes`, `epoch` — how many sockets have taken it, `attached`, `gen`, `broken`) and a list
//! `<prefix>:chat:session:<id>:frames` of its frames `first .. next`. A user's sessions are the
//! sorted set `<prefix>:chat:user-sessions:<user>` (scored by when each was opened or let go).
//!
//! **Who writes a session's log.** The node that *publishes* a frame, not the node where the
//! session's socket is: the script that publishes a frame for a user appends it to each of the
//! user's sessions, numbers it there, and publishes it with those numbers, in one step
//! ([`APPEND_SCRIPT`]). So a session's log has every frame meant for it whether or not the node
//! holding its socket is alive, listening, or being replaced — a socket whose node was killed
//! resumes elsewhere with nothing missing. A node only delivers what it hears to the sockets it
//! holds, in the numbers Redis gave, and checks that no number is skipped
//! ([`SessionLog::append_numbered`]).
//!
//! **Resuming.** A node that is asked to resume a session first listens for it (frames heard
//! meanwhile wait, [`Here`]), then runs [`RESUME_SCRIPT`], which reads the frames after the
//! client's `last_seq`, appends `resumed`, raises the session's epoch and publishes that the
//! session moved; the node that held it before closes its socket when it hears so. The frames
//! heard while waiting that the script's answer already has are dropped by their numbers.
//!
//! **Bounded.** A session's list is trimmed by bytes (`HERALD_WS_RESUME_BYTES`) as it is
//! appended to; a session ends `RESUME_WINDOW` after its socket let go (the node holding a
//! socket renews the time every [`REFRESH_EVERY`]); an account keeps at most
//! `HERALD_WS_DETACHED_PER_ACCOUNT` sessions waiting (the oldest ends). Redis's own
//! `maxmemory` bounds the total: every key here has a time to live.
//!
//! **Honest.** Frames that a node could not publish (its link was down) are not in any log:
//! when it reconnects, [`BREAK_SCRIPT`] marks the sessions of their users broken (all
//! sessions, by raising `<prefix>:chat:generation`, past `LOST_USERS`), and their `resume` is
//! answered 410. Redis here keeps nothing on disk: after a Redis restart every session is gone
//! and its `resume` answered 410 (the client loads the history, which the database has).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::chat::resume::{Numbered, SessionLog};

/// How often the node holding a session's socket renews the session's time to live.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Appends a frame to every session of a user (or to one session) and publishes it with the
/// number each session gave it: `f:<node>:<n>:<sent µs>:<user>:<session>=<seq>,…:<frame>`.
/// ARGV: key prefix, channel, node, n, sent, user, frame, byte limit, session (or empty).
pub const APPEND_SCRIPT: &str = r"
local p = ARGV[1]
local user = ARGV[6]
local frame = ARGV[7]
local limit = tonumber(ARGV[8])
local set = p .. ':user-sessions:' .. user
local targets
if ARGV[9] == '' then
  targets = redis.call('ZRANGE', set, 0, -1)
else
  targets = {ARGV[9]}
end
local seqs = {}
for _, s in ipairs(targets) do
  local h = p .. ':session:' .. s
  local state = redis.call('HMGET', h, 'next', 'broken')
  if not state[1] then
    if ARGV[9] == '' then redis.call('ZREM', set, s) end
  elseif not state[2] then
    local l = h .. ':frames'
    local seq = tonumber(state[1])
    redis.call('RPUSH', l, frame)
    local ttl = redis.call('PTTL', h)
    if ttl > 0 then redis.call('PEXPIRE', l, ttl) end
    redis.call('HSET', h, 'next', seq + 1)
    local bytes = redis.call('HINCRBY', h, 'bytes', #frame + 64)
    while bytes > limit do
      local gone = redis.call('LPOP', l)
      if not gone then break end
      bytes = redis.call('HINCRBY', h, 'bytes', -(#gone + 64))
      redis.call('HINCRBY', h, 'first', 1)
    end
    table.insert(seqs, s .. '=' .. seq)
  end
end
redis.call('PUBLISH', ARGV[2], 'f:' .. ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[5] .. ':' .. user .. ':' .. table.concat(seqs, ',') .. ':' .. frame)
return #seqs
";

/// Opens a session with its first frame. ARGV: key prefix, session, account, frame, time to
/// live (ms), now (ms).
pub const CREATE_SCRIPT: &str = r"
local p = ARGV[1]
local h = p .. ':session:' .. ARGV[2]
if redis.call('EXISTS', h) == 1 then return 0 end
local l = h .. ':frames'
local gen = redis.call('GET', p .. ':generation') or '0'
redis.call('HSET', h, 'account', ARGV[3], 'next', 2, 'first', 1, 'bytes', #ARGV[4] + 64,
  'epoch', 1, 'attached', 1, 'gen', gen)
redis.call('RPUSH', l, ARGV[4])
redis.call('PEXPIRE', h, ARGV[5])
redis.call('PEXPIRE', l, ARGV[5])
local set = p .. ':user-sessions:' .. ARGV[3]
redis.call('ZADD', set, ARGV[6], ARGV[2])
redis.call('PEXPIRE', set, 86400000)
return 1
";

/// Takes a session over after frame `last_seq`: `{epoch, frames after last_seq…}`, with
/// `resumed` appended after them, or `{}` when it cannot be resumed. ARGV: key prefix, channel,
/// session, account, last_seq, the `resumed` frame before and after its count, time to live
/// (ms), byte limit, node, sent (µs).
pub const RESUME_SCRIPT: &str = r"
local p = ARGV[1]
local h = p .. ':session:' .. ARGV[3]
local l = h .. ':frames'
if redis.call('TYPE', h)['ok'] ~= 'hash' then return {} end
local f = redis.call('HMGET', h, 'account', 'next', 'first', 'broken', 'gen')
local gen = redis.call('GET', p .. ':generation') or '0'
if f[1] ~= ARGV[4] or f[4] or (f[5] or '0') ~= gen then return {} end
local seq = tonumber(f[2])
local first = tonumber(f[3])
local last = tonumber(ARGV[5])
if last >= seq then return {} end
if last + 1 < first or redis.call('LLEN', l) ~= seq - first then
  redis.call('DEL', h, l)
  redis.call('ZREM', p .. ':user-sessions:' .. ARGV[4], ARGV[3])
  return {}
end
local frames = redis.call('LRANGE', l, last + 1 - first, -1)
local resumed = ARGV[6] .. (seq - 1 - last) .. ARGV[7]
redis.call('RPUSH', l, resumed)
redis.call('HSET', h, 'next', seq + 1, 'attached', 1)
local bytes = redis.call('HINCRBY', h, 'bytes', #resumed + 64)
local limit = tonumber(ARGV[9])
while bytes > limit do
  local gone = redis.call('LPOP', l)
  if not gone then break end
  bytes = redis.call('HINCRBY', h, 'bytes', -(#gone + 64))
  redis.call('HINCRBY', h, 'first', 1)
end
local epoch = redis.call('HINCRBY', h, 'epoch', 1)
redis.call('PEXPIRE', h, ARGV[8])
redis.call('PEXPIRE', l, ARGV[8])
redis.call('PUBLISH', ARGV[2], 'm:' .. ARGV[10] .. ':0:' .. ARGV[11] .. ':' .. ARGV[3] .. ':' .. epoch)
table.insert(frames, 1, tostring(epoch))
return frames
";

/// A socket let go of its session (if it still holds it): the session waits for `resume`
/// for its time to live, and the account's oldest waiting sessions beyond the limit end.
/// ARGV: key prefix, session, epoch, time to live (ms), account, waiting limit, now (ms).
pub const DETACH_SCRIPT: &str = r"
local p = ARGV[1]
local h = p .. ':session:' .. ARGV[2]
if redis.call('HGET', h, 'epoch') ~= ARGV[3] then return 0 end
redis.call('HSET', h, 'attached', 0)
redis.call('PEXPIRE', h, ARGV[4])
redis.call('PEXPIRE', h .. ':frames', ARGV[4])
local set = p .. ':user-sessions:' .. ARGV[5]
redis.call('ZADD', set, ARGV[7], ARGV[2])
local waiting = {}
for _, s in ipairs(redis.call('ZRANGE', set, 0, -1)) do
  local attached = redis.call('HGET', p .. ':session:' .. s, 'attached')
  if not attached then
    redis.call('ZREM', set, s)
  elseif attached == '0' then
    table.insert(waiting, s)
  end
end
for i = 1, #waiting - tonumber(ARGV[6]) do
  local gone = p .. ':session:' .. waiting[i]
  redis.call('DEL', gone, gone .. ':frames')
  redis.call('ZREM', set, waiting[i])
end
return 1
";

/// Renews a held session's time to live. ARGV: key prefix, session, epoch, time to live (ms).
pub const REFRESH_SCRIPT: &str = r"
local h = ARGV[1] .. ':session:' .. ARGV[2]
if redis.call('HGET', h, 'epoch') ~= ARGV[3] then return 0 end
redis.call('PEXPIRE', h, ARGV[4])
redis.call('PEXPIRE', h .. ':frames', ARGV[4])
return 1
";

/// Frames of some users were not published: their sessions are broken (or, for `*`, every
/// session), then the report is published. ARGV: key prefix, channel, report, users… or `*`.
pub const BREAK_SCRIPT: &str = r"
local p = ARGV[1]
if ARGV[4] == '*' then
  redis.call('INCR', p .. ':generation')
else
  for i = 4, #ARGV do
    for _, s in ipairs(redis.call('ZRANGE', p .. ':user-sessions:' .. ARGV[i], 0, -1)) do
      local h = p .. ':session:' .. s
      if redis.call('EXISTS', h) == 1 then
        redis.call('HSET', h, 'broken', 1)
        redis.call('DEL', h .. ':frames')
      end
    end
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// Whether a client's session id can name a session (ids are URL-safe base64).
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<session>=<seq>,…` as the append script writes it.
pub fn parse_seqs(text: &str) -> Option<Vec<(&str, u64)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let (session, seq) = pair.split_once('=')?;
            Some((session, seq.parse().ok()?))
        })
        .collect()
}

/// The sessions whose sockets are on this node, by id.
#[derive(Default)]
pub struct Here {
    sessions: Mutex<HashMap<String, HereSession>>,
}

struct HereSession {
    account: i64,
    log: Arc<SessionLog>,
    /// Which takeover of the session this node holds (0 while waiting).
    epoch: u64,
    /// Until Redis answered the opening or the takeover: what was heard meanwhile.
    waiting: Option<Waiting>,
}

#[derive(Default)]
struct Waiting {
    frames: Vec<(u64, Arc<str>)>,
    bytes: usize,
    /// Over the session's byte limit: something was not kept.
    overflowed: bool,
    /// The highest takeover heard meanwhile.
    moved: u64,
}

impl Here {
    /// Starts listening for session `id` before Redis is asked to open it or hand it over.
    /// A socket of the same session already here loses it (it was taken over).
    pub fn wait_for(&self, id: &str, account: i64, log: Arc<SessionLog>) {
        let before = self.lock().insert(
            id.to_string(),
            HereSession {
                account,
                log,
                epoch: 0,
                waiting: Some(Waiting::default()),
            },
        );
        if let Some(before) = before {
            before.log.lose_continuity();
        }
    }

    /// Redis answered: `start` gives the log its frames up to now (and attaches the socket),
    /// then the frames heard meanwhile follow. `false` when the session was lost or taken
    /// over meanwhile (then it is not here any more).
    pub fn ready(
        &self,
        id: &str,
        log: &Arc<SessionLog>,
        epoch: u64,
        byte_limit: usize,
        start: impl FnOnce(&SessionLog),
    ) -> bool {
        let mut trim = false;
        let ready = {
            let mut sessions = self.lock();
            let Some(here) = sessions.get_mut(id).filter(|h| Arc::ptr_eq(&h.log, log)) else {
                return false;
            };
            let waiting = here.waiting.take().unwrap_or_default();
            if waiting.moved > epoch || waiting.overflowed || waiting.bytes > byte_limit {
                sessions.remove(id);
                false
            } else {
                here.epoch = epoch;
                start(log);
                for (seq, frame) in waiting.frames {
                    match log.append_numbered(seq, frame) {
                        Numbered::Appended(over) => trim |= over,
                        Numbered::Duplicate => {}
                        Numbered::Gap => break,
                    }
                }
                true
            }
        };
        if trim {
            log.trim_budget();
        }
        ready
    }

    /// Frame `seq` of session `id`, if its socket is here.
    pub fn deliver(&self, id: &str, seq: u64, frame: &Arc<str>, byte_limit: usize) {
        let mut over_budget = None;
        {
            let mut sessions = self.lock();
            let Some(here) = sessions.get_mut(id) else {
                return;
            };
            match &mut here.waiting {
                Some(waiting) => {
                    waiting.bytes += frame.len();
                    if waiting.bytes > byte_limit {
                        waiting.overflowed = true;
                        waiting.frames.clear();
                    } else {
                        waiting.frames.push((seq, frame.clone()));
                    }
                }
                None => match here.log.append_numbered(seq, frame.clone()) {
                    Numbered::Appended(true) => over_budget = Some(here.log.clone()),
                    Numbered::Appended(false) | Numbered::Duplicate => {}
                    Numbered::Gap => {
                        sessions.remove(id);
                    }
                },
            }
        }
        if let Some(log) = over_budget {
            log.trim_budget();
        }
    }

    /// Session `id` was taken over (its `epoch`-th taking): a socket here that holds an earlier
    /// one loses it (it is closed as if too slow; its client is gone or resumed elsewhere).
    pub fn moved(&self, id: &str, epoch: u64) {
        let mut sessions = self.lock();
        let Some(here) = sessions.get_mut(id) else {
            return;
        };
        match &mut here.waiting {
            Some(waiting) => waiting.moved = waiting.moved.max(epoch),
            None if here.epoch < epoch => {
                if let Some(gone) = sessions.remove(id) {
                    gone.log.lose_continuity();
                }
            }
            None => {}
        }
    }

    /// The socket holding `log` let go of session `id`.
    pub fn remove(&self, id: &str, log: &Arc<SessionLog>) {
        let mut sessions = self.lock();
        if sessions.get(id).is_some_and(|h| Arc::ptr_eq(&h.log, log)) {
            sessions.remove(id);
        }
    }

    /// This node may have missed frames of `user` (`None`: of anyone): those sockets lose their
    /// sessions here (closed as too slow; `resume` reads the log in Redis). Returns how many.
    pub fn lose(&self, user: Option<i64>) -> usize {
        let gone: Vec<HereSession> = {
            let mut sessions = self.lock();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, h)| user.is_none_or(|u| h.account == u))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for here in &gone {
            here.log.lose_continuity();
        }
        gone.len()
    }

    /// The sessions held here (id, epoch), to renew their time to live.
    pub fn held(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter(|(_, h)| h.waiting.is_none())
            .map(|(id, h)| (id.clone(), h.epoch))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, HereSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_lists_parse() {
        assert_eq!(parse_seqs(""), Some(vec![]));
        assert_eq!(
            parse_seqs("ab=3,c-d=10"),
            Some(vec![("ab", 3), ("c-d", 10)])
        );
        assert_eq!(parse_seqs("ab"), None);
        assert!(plausible_id("a-b_C9"));
        assert!(!plausible_id("a:frames"));
        assert!(!plausible_id(""));
    }
}
