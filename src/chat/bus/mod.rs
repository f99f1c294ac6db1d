//! The bus carries server frames to every session of a user, wherever it is connected.
//!
//! A subscription is a session's log (`resume::SessionLog`): delivering appends the frame to
//! it, and the session's socket writes from there at its own pace. Nothing is queued in
//! between, so a frame is never dropped on the way; a socket that cannot keep up is closed by
//! its own task and its frames wait in the log for `resume` (the log's limits say how long).
//!
//! Two implementations sit behind [`Bus`], chosen by `HERALD_REDIS_URL`: [`InProcessBus`] for
//! one node, and [`redis::RedisBus`] for several, which sends every frame through Redis and
//! delivers it from there on every node, the publisher's own included, so that all sessions of
//! a user see that user's frames in one order. Both keep this node's sessions in [`LocalLogs`]
//! and this node's live sockets in [`LocalLive`].
//!
//! **Boundary**: sockets only ever `publish` to a user and read their own session's log; they
//! never look at another socket.

pub mod redis;
pub mod redis_sessions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::resume::{ChatLimits, SessionLog, SessionState, Sessions};

pub trait Bus: Send + Sync + 'static {
    /// Delivers a frame (JSON text) to every session of `user`, on every node.
    fn publish(&self, user: i64, frame: Arc<str>);
    /// A socket of `user` on this node came (`+1`) or went (`-1`); returns how many are live
    /// now on all nodes (`0` asks without changing). Detached sessions waiting for `resume`
    /// keep their subscription but are not live. The change is made (on this node) before the
    /// future is first polled or when it is, in the order of the calls.
    fn live(&self, user: i64, change: i64) -> BoxFuture<'static, usize>;
    /// A new session `id` of `account`, taken by the socket that `wake` wakes; `first` is its
    /// frame 1 (`auth`). `None` when the session cannot be kept (the Redis link is down).
    fn open(
        &self,
        account: i64,
        id: String,
        wake: Arc<Notify>,
        first: String,
    ) -> BoxFuture<'static, Option<Joined>>;
    /// A frame for one session only (an answer to its socket), numbered after those before.
    fn send(&self, joined: &Joined, frame: Arc<str>);
    /// The socket let go of its session: it waits for `resume` (see `resume::RESUME_WINDOW`).
    fn leave(&self, joined: Joined);
    /// Session `id` of `account` is taken up by a new socket after frame `last_seq`: the frames
    /// after it, then `resumed(how many)`, are its next frames. `None` when it cannot be (gone,
    /// not this account's, frames after `last_seq` no longer kept, or its store unreachable).
    fn resume(
        &self,
        account: i64,
        id: String,
        last_seq: u64,
        wake: Arc<Notify>,
        resumed: Box<dyn FnOnce(u64) -> String + Send>,
    ) -> BoxFuture<'static, Option<Joined>>;
}

/// A session taken by a socket: its log (the socket's queue) and the socket's token in it.
pub struct Joined {
    pub id: String,
    pub account: i64,
    pub log: Arc<SessionLog>,
    pub token: u64,
    /// The backend's handle of this hold on the session (a subscription, a takeover's epoch).
    pub handle: u64,
}

/// The sessions of one user on this node: (subscription id, its log).
type UserLogs = Vec<(u64, Arc<SessionLog>)>;

/// This node's session logs, by user.
#[derive(Default)]
pub struct LocalLogs {
    next: AtomicU64,
    logs: Mutex<HashMap<i64, UserLogs>>,
}

impl LocalLogs {
    /// Appends `frame` to every log of `user` on this node.
    pub fn deliver(&self, user: i64, frame: Arc<str>) {
        // Appended under the lock, so that all sessions of a user see frames in one order;
        // trimming the node's total runs after it, since it locks other logs.
        let mut over_budget = None;
        {
            let logs = self.lock();
            for (_, log) in logs.get(&user).into_iter().flatten() {
                if log.append(frame.clone()) {
                    over_budget = Some(log.clone());
                }
            }
        }
        if let Some(log) = over_budget {
            log.trim_budget();
        }
    }

    /// Whether any session of `user` is on this node.
    pub fn has(&self, user: i64) -> bool {
        self.lock().contains_key(&user)
    }

    pub fn subscribe(&self, user: i64, log: Arc<SessionLog>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(user).or_default().push((id, log));
        id
    }

    pub fn unsubscribe(&self, user: i64, subscription: u64) {
        let mut logs = self.lock();
        if let Some(list) = logs.get_mut(&user) {
            list.retain(|(id, _)| *id != subscription);
            if list.is_empty() {
                logs.remove(&user);
            }
        }
    }

    /// Every session of this node may have missed frames: each one ends (see
    /// `SessionLog::lose_continuity`). Returns how many there were.
    pub fn lose_continuity(&self) -> usize {
        let all: Vec<Arc<SessionLog>> = self
            .lock()
            .values()
            .flatten()
            .map(|(_, log)| log.clone())
            .collect();
        for log in &all {
            log.lose_continuity();
        }
        all.len()
    }

    /// The sessions of `user` on this node may have missed frames: each one ends. Returns how
    /// many there were.
    pub fn lose_continuity_of(&self, user: i64) -> usize {
        let mine: Vec<Arc<SessionLog>> = self
            .lock()
            .get(&user)
            .into_iter()
            .flatten()
            .map(|(_, log)| log.clone())
            .collect();
        for log in &mine {
            log.lose_continuity();
        }
        mine.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, UserLogs>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// This node's live sockets, by user.
#[derive(Default)]
pub struct LocalLive {
    live: Mutex<HashMap<i64, usize>>,
}

impl LocalLive {
    /// Applies `change` to `user`'s count and returns the new count.
    pub fn change(&self, user: i64, change: i64) -> usize {
        let mut live = self.lock();
        let count = live.entry(user).or_default();
        *count = (*count as i64 + change).max(0) as usize;
        let now = *count;
        if now == 0 {
            live.remove(&user);
        }
        now
    }

    /// Every user with a live socket here, and how many.
    pub fn all(&self) -> Vec<(i64, usize)> {
        self.lock().iter().map(|(u, n)| (*u, *n)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bus of a single node: publishing is appending to this node's logs, and a dropped
/// session waits in this node's memory ([`Sessions`]).
pub struct InProcessBus {
    logs: Arc<LocalLogs>,
    live: LocalLive,
    sessions: Arc<Sessions>,
    limits: ChatLimits,
}

impl InProcessBus {
    pub fn new(limits: ChatLimits, sessions: Arc<Sessions>) -> InProcessBus {
        InProcessBus {
            logs: Arc::default(),
            live: LocalLive::default(),
            sessions,
            limits,
        }
    }
}

impl Bus for InProcessBus {
    fn publish(&self, user: i64, frame: Arc<str>) {
        self.logs.deliver(user, frame);
    }

    fn live(&self, user: i64, change: i64) -> BoxFuture<'static, usize> {
        let now = self.live.change(user, change);
        Box::pin(std::future::ready(now))
    }

    fn open(
        &self,
        account: i64,
        id: String,
        wake: Arc<Notify>,
        first: String,
    ) -> BoxFuture<'static, Option<Joined>> {
        let log = SessionLog::new(self.limits, self.sessions.budget());
        // A new log always takes a socket at 0; `None` would be a bug in `SessionLog`.
        let joined = log.attach(0, wake, |_| first).map(|(token, _)| {
            let handle = self.logs.subscribe(account, log.clone());
            Joined {
                id,
                account,
                log,
                token,
                handle,
            }
        });
        Box::pin(std::future::ready(joined))
    }

    fn send(&self, joined: &Joined, frame: Arc<str>) {
        joined.log.push(frame);
    }

    fn leave(&self, joined: Joined) {
        joined.log.detach(joined.token);
        self.sessions.detach(
            joined.id,
            SessionState {
                account_id: joined.account,
                subscription: joined.handle,
                log: joined.log,
            },
            self.logs.clone(),
            self.limits.detached_per_account,
        );
    }

    fn resume(
        &self,
        account: i64,
        id: String,
        last_seq: u64,
        wake: Arc<Notify>,
        resumed: Box<dyn FnOnce(u64) -> String + Send>,
    ) -> BoxFuture<'static, Option<Joined>> {
        let joined = self.sessions.resume(&id, account).and_then(|state| {
            match state.log.attach(last_seq, wake, resumed) {
                Some((token, _)) => Some(Joined {
                    id,
                    account,
                    log: state.log,
                    token,
                    handle: state.subscription,
                }),
                None => {
                    // Frames after `last_seq` are gone: the session cannot go on, so it ends.
                    self.logs.unsubscribe(state.account_id, state.subscription);
                    None
                }
            }
        });
        Box::pin(std::future::ready(joined))
    }
}
