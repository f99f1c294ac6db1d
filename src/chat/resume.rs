//! Sequence numbers, the session log and `resume`.
//!
//! After `auth`, every server frame of a session is numbered (`"seq": n`) and kept in its
//! [`SessionLog`]. The log is the socket's only outgoing queue: the bus appends to it, the
//! socket's writer sends from it in order, and what was sent stays for a while in case the
//! connection drops. So nothing is ever dropped between the bus and the socket: a socket that
//! cannot keep up is closed (see `socket.rs`) and its frames wait in the log, where a new socket
//! that sends `resume` with the last `seq` it saw takes them up in order.
//!
//! **Bounded memory.** A log is bounded in bytes ([`ChatLimits::resume_bytes`]): beyond it the
//! oldest frames go. All logs together are bounded too ([`ChatLimits::resume_total_bytes`]):
//! beyond that the largest log loses its oldest frames, so the sessions that hoard the most
//! pay for the total, not the ones that keep up. A frame's text is shared by every log it is in
//! (one `Arc` for all sockets of a user), but each log is charged for it in full, so the real
//! memory is at most the figure counted.
//!
//! **Honest at every limit.** A log never has a hole in the middle: it is always one run of
//! consecutive numbers. A socket whose next frame was dropped sees the gap and is closed as too
//! slow; a `resume` from before the oldest kept frame is answered 410 (authenticate and load the
//! history). A session whose socket dropped is kept for [`RESUME_WINDOW`], at most
//! [`ChatLimits::detached_per_account`] per account (the oldest goes first).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::bus::LocalLogs;
use crate::config::Settings;

/// How long a dropped session can be resumed.
pub const RESUME_WINDOW: Duration = Duration::from_secs(120);

/// What a kept frame costs beyond its text: its slot in the log and its allocation's header.
const FRAME_OVERHEAD: usize = 64;

/// The chat's memory and connection limits, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Bytes kept per session for `resume` (`HERALD_WS_RESUME_BYTES`).
    pub resume_bytes: usize,
    /// Bytes kept for `resume` by all sessions of this node (`HERALD_WS_RESUME_TOTAL_BYTES`).
    pub resume_total_bytes: usize,
    /// Bytes a socket may have queued and not yet written before it counts as too slow
    /// (`HERALD_WS_BACKLOG_BYTES`).
    pub backlog_bytes: usize,
    /// Live (authenticated) sockets per account (`HERALD_WS_SOCKETS_PER_ACCOUNT`).
    pub sockets_per_account: usize,
    /// Sessions waiting for `resume` per account (`HERALD_WS_DETACHED_PER_ACCOUNT`).
    pub detached_per_account: usize,
}

impl ChatLimits {
    pub fn from_settings(settings: &Settings) -> ChatLimits {
        ChatLimits {
            resume_bytes: settings.ws_resume_bytes,
            resume_total_bytes: settings.ws_resume_total_bytes,
            backlog_bytes: settings.ws_backlog_bytes,
            sockets_per_account: settings.ws_sockets_per_account,
            detached_per_account: settings.ws_detached_per_account,
        }
    }
}

fn cost(frame: &str) -> usize {
    frame.len() + FRAME_OVERHEAD
}

/// The text a client gets for frame `seq`: the frame with `"seq": n` as its first member.
pub fn stamped(seq: u64, frame: &str) -> String {
    match frame.strip_prefix('{') {
        Some(rest) => format!("{{\"seq\":{seq},{rest}"),
        None => frame.to_string(),
    }
}

/// One session's numbered frames: those not yet written to its socket and, before them, those
/// written lately, for `resume`.
pub struct SessionLog {
    inner: Mutex<LogInner>,
    /// `inner.bytes`, readable without the lock, for the total budget's choice of a log to trim.
    bytes: AtomicUsize,
    limits: ChatLimits,
    budget: Arc<ResumeBudget>,
}

struct LogInner {
    /// The number the next frame gets; the first frame is 1.
    next_seq: u64,
    /// Frames `first_seq .. next_seq`, in order, without a hole.
    frames: VecDeque<Arc<str>>,
    first_seq: u64,
    bytes: usize,
    /// The socket taking this session's frames, if one is connected.
    attached: Option<Attached>,
}

struct Attached {
    /// Tells the socket's writer, and nothing else, which socket this is.
    token: u64,
    /// The last frame written to the socket.
    cursor: u64,
    /// The last frame there was when the socket attached: up to it, a replay.
    replay_until: u64,
    /// Bytes of the kept frames after `cursor` and `replay_until`: how far the socket fell
    /// behind since it attached. A replay does not count, or a client closed as too slow could
    /// never resume: its replay is its backlog.
    unsent: usize,
    wake: Arc<Notify>,
}

impl Attached {
    /// Whether frame `seq` counts in `unsent` while it is kept.
    fn counts(&self, seq: u64) -> bool {
        seq > self.cursor && seq > self.replay_until
    }
}

/// What became of a frame numbered elsewhere ([`SessionLog::append_numbered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbered {
    /// Kept; `true` when the node's logs together are over their budget.
    Appended(bool),
    /// The log has this number already.
    Duplicate,
    /// Numbers before it are missing: the session lost its continuity.
    Gap,
}

/// What a socket's writer should do next with its session's frames.
#[derive(Debug)]
pub enum Unsent {
    Frame {
        seq: u64,
        frame: Arc<str>,
    },
    /// The next frame is gone (dropped at a limit before it could be written).
    Gap,
    Nothing,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

impl SessionLog {
    pub fn new(limits: ChatLimits, budget: &Arc<ResumeBudget>) -> Arc<SessionLog> {
        let log = Arc::new(SessionLog {
            inner: Mutex::new(LogInner {
                next_seq: 1,
                frames: VecDeque::new(),
                first_seq: 1,
                bytes: 0,
                attached: None,
            }),
            bytes: AtomicUsize::new(0),
            limits,
            budget: budget.clone(),
        });
        budget.register(&log);
        log
    }

    /// A log whose next frame is number `next_seq`: a session numbered elsewhere (in Redis)
    /// whose frames before that this node never keeps.
    pub fn starting_at(
        limits: ChatLimits,
        budget: &Arc<ResumeBudget>,
        next_seq: u64,
    ) -> Arc<SessionLog> {
        let log = SessionLog::new(limits, budget);
        {
            let mut inner = log.lock();
            inner.next_seq = next_seq;
            inner.first_seq = next_seq;
        }
        log
    }

    /// The number the next frame gets.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Keeps frame `seq`, numbered elsewhere: appended when it is the next one, ignored when
    /// this log has it already. A number from further on means frames went missing: the
    /// session loses its continuity. When this says `Appended(true)`, call
    /// [`trim_budget`](Self::trim_budget) once any lock is released.
    pub fn append_numbered(&self, seq: u64, frame: Arc<str>) -> Numbered {
        let mut inner = self.lock();
        if seq < inner.next_seq {
            return Numbered::Duplicate;
        }
        if seq > inner.next_seq {
            drop(inner);
            self.lose_continuity();
            return Numbered::Gap;
        }
        let (added, freed) = self.append_locked(&mut inner, frame);
        drop(inner);
        Numbered::Appended(self.budget.charge(added, freed) > self.limits.resume_total_bytes)
    }

    /// Numbers and keeps a frame (a JSON object), wakes the socket's writer, and keeps the
    /// session and the node within their budgets.
    pub fn push(&self, frame: Arc<str>) {
        if self.append(frame) {
            self.trim_budget();
        }
    }

    /// [`push`](Self::push) without the total budget's trimming, for a caller that holds a lock
    /// the trimming must not run under; when this says `true`, call
    /// [`trim_budget`](Self::trim_budget) once the lock is released.
    pub fn append(&self, frame: Arc<str>) -> bool {
        let mut inner = self.lock();
        let (added, freed) = self.append_locked(&mut inner, frame);
        drop(inner);
        self.budget.charge(added, freed) > self.limits.resume_total_bytes
    }

    /// Numbers and keeps a frame under the log's lock; returns the bytes added and freed, for
    /// the total budget (charged once the lock is released).
    fn append_locked(&self, inner: &mut LogInner, frame: Arc<str>) -> (usize, usize) {
        let added = cost(&frame);
        inner.next_seq += 1;
        inner.frames.push_back(frame);
        inner.bytes += added;
        if let Some(attached) = &mut inner.attached {
            attached.unsent += added;
            attached.wake.notify_one();
        }
        let freed = inner.evict_to(self.limits.resume_bytes);
        self.bytes.store(inner.bytes, Ordering::Relaxed);
        (added, freed)
    }

    /// Frames meant for this session may have been lost on their way (the bus lost its link to
    /// the other nodes for a while): the session cannot go on without a hole, so it ends
    /// honestly. Its kept frames go and one number is skipped, so that its socket finds the
    /// gap and is closed as too slow (4001), and a `resume` of it is answered 410
    /// (authenticate and load the history). Frames published after this are logged as usual.
    pub fn lose_continuity(&self) {
        let mut inner = self.lock();
        let freed = inner.evict_to(0);
        inner.next_seq += 1;
        inner.first_seq = inner.next_seq;
        if let Some(attached) = &inner.attached {
            attached.wake.notify_one();
        }
        self.bytes.store(inner.bytes, Ordering::Relaxed);
        drop(inner);
        self.budget.charge(0, freed);
    }

    /// Brings all logs together back within the total budget.
    pub fn trim_budget(&self) {
        self.budget.trim(self.limits.resume_total_bytes);
    }

    /// A socket takes the session's frames after `cursor` (the last one the client saw; for a
    /// new session, 0). `None` if some of them are no longer kept or `cursor` is from the
    /// future. Otherwise the socket's token and how many frames it will be sent first; `then`
    /// is appended after them, told that number, before any other frame can come in between.
    pub fn attach(
        &self,
        cursor: u64,
        wake: Arc<Notify>,
        then: impl FnOnce(u64) -> String,
    ) -> Option<(u64, u64)> {
        let mut inner = self.lock();
        if cursor >= inner.next_seq || cursor + 1 < inner.first_seq {
            return None;
        }
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        inner.attached = Some(Attached {
            token,
            cursor,
            replay_until: inner.next_seq - 1,
            unsent: 0,
            wake,
        });
        let missed = inner.next_seq - 1 - cursor;
        // Appended before the lock is let go, so that no frame published meanwhile can come
        // between the replay and `then`.
        let (added, freed) = self.append_locked(&mut inner, Arc::from(then(missed)));
        drop(inner);
        if self.budget.charge(added, freed) > self.limits.resume_total_bytes {
            self.trim_budget();
        }
        Some((token, missed))
    }

    /// A socket takes the session's frames after `cursor`, with nothing appended for it (see
    /// [`attach`](Self::attach)); its token, or `None` when some of them are not kept.
    pub fn attach_at(&self, cursor: u64, wake: Arc<Notify>) -> Option<u64> {
        let mut inner = self.lock();
        if cursor >= inner.next_seq || cursor + 1 < inner.first_seq {
            return None;
        }
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        inner.attached = Some(Attached {
            token,
            cursor,
            replay_until: inner.next_seq.saturating_sub(1),
            unsent: 0,
            wake,
        });
        Some(token)
    }

    /// The socket `token` lets go; frames keep being logged for `resume`.
    pub fn detach(&self, token: u64) {
        let mut inner = self.lock();
        if inner.attached.as_ref().is_some_and(|a| a.token == token) {
            inner.attached = None;
        }
    }

    /// The next frame for socket `token`, and the bytes it fell behind by since it attached
    /// (that frame included, unless it is part of a replay).
    pub fn next_unsent(&self, token: u64) -> (Unsent, usize) {
        let inner = self.lock();
        let Some(attached) = inner.attached.as_ref().filter(|a| a.token == token) else {
            return (Unsent::Nothing, 0);
        };
        let seq = attached.cursor + 1;
        let next = if seq < inner.first_seq {
            Unsent::Gap
        } else {
            match inner.frames.get((seq - inner.first_seq) as usize) {
                Some(frame) => Unsent::Frame {
                    seq,
                    frame: frame.clone(),
                },
                None => Unsent::Nothing,
            }
        };
        (next, attached.unsent)
    }

    /// Socket `token` wrote frame `seq`.
    pub fn sent(&self, token: u64, seq: u64) {
        let mut inner = self.lock();
        let first_seq = inner.first_seq;
        let kept = seq
            .checked_sub(first_seq)
            .and_then(|index| inner.frames.get(index as usize))
            .map(|frame| cost(frame));
        if let Some(attached) = inner.attached.as_mut().filter(|a| a.token == token)
            && attached.cursor + 1 == seq
        {
            if attached.counts(seq) {
                // A frame dropped meanwhile was taken off `unsent` when it was dropped.
                attached.unsent = attached.unsent.saturating_sub(kept.unwrap_or(0));
            }
            attached.cursor = seq;
        }
    }

    /// Drops oldest frames until at most `target` bytes are kept; returns the bytes freed.
    fn evict_down_to(&self, target: usize) -> usize {
        let mut inner = self.lock();
        let freed = inner.evict_to(target);
        self.bytes.store(inner.bytes, Ordering::Relaxed);
        freed
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LogInner {
    fn evict_to(&mut self, target: usize) -> usize {
        let mut freed = 0;
        while self.bytes > target {
            let Some(frame) = self.frames.pop_front() else {
                break;
            };
            let gone = cost(&frame);
            if let Some(attached) = &mut self.attached
                && self.first_seq > attached.cursor
            {
                // Not written yet: the socket finds the gap and is closed as too slow.
                if attached.counts(self.first_seq) {
                    attached.unsent = attached.unsent.saturating_sub(gone);
                }
                attached.wake.notify_one();
            }
            self.first_seq += 1;
            self.bytes -= gone;
            freed += gone;
        }
        freed
    }
}

impl Drop for SessionLog {
    fn drop(&mut self) {
        let bytes = self.bytes.load(Ordering::Relaxed);
        self.budget.charge(0, bytes);
    }
}

/// The bytes all session logs of this node keep, and the logs, to trim the largest.
#[derive(Default)]
pub struct ResumeBudget {
    total: AtomicUsize,
    logs: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    logs: Vec<Weak<SessionLog>>,
    /// How many entries the list had after it was last cleared of ended logs.
    live_at_last_prune: usize,
}

impl ResumeBudget {
    /// The bytes kept by all logs now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn register(&self, log: &Arc<SessionLog>) {
        let mut registry = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        registry.logs.push(Arc::downgrade(log));
        // Ended logs are cleared once the list has doubled, so registering stays cheap.
        if registry.logs.len() > 2 * registry.live_at_last_prune.max(32) {
            registry.logs.retain(|log| log.strong_count() > 0);
            registry.live_at_last_prune = registry.logs.len();
        }
    }

    /// Adds `added` and takes off `freed`; returns the new total.
    fn charge(&self, added: usize, freed: usize) -> usize {
        if added >= freed {
            self.total.fetch_add(added - freed, Ordering::Relaxed) + (added - freed)
        } else {
            self.total.fetch_sub(freed - added, Ordering::Relaxed) - (freed - added)
        }
    }

    /// While the total is over `limit`, the largest log loses its oldest frames.
    fn trim(&self, limit: usize) {
        while self.total() > limit {
            let largest = {
                let registry = self.logs.lock().unwrap_or_else(|p| p.into_inner());
                registry
                    .logs
                    .iter()
                    .filter_map(Weak::upgrade)
                    .max_by_key(|log| log.bytes.load(Ordering::Relaxed))
            };
            let Some(largest) = largest else {
                return;
            };
            let excess = self.total().saturating_sub(limit);
            let keep = largest.bytes.load(Ordering::Relaxed).saturating_sub(excess);
            let freed = largest.evict_down_to(keep);
            if freed == 0 {
                return;
            }
            tracing::info!(
                freed,
                limit,
                "the chat's resume logs reached their total; the largest lost its oldest frames"
            );
            self.charge(0, freed);
        }
    }
}

/// A session whose socket dropped, kept for `resume`.
pub struct SessionState {
    pub account_id: i64,
    /// Its subscription on the bus, which keeps appending to `log`.
    pub subscription: u64,
    pub log: Arc<SessionLog>,
}

struct Detached {
    state: SessionState,
    /// Which detachment this is, so that a timer of an earlier one leaves a later one alone.
    generation: u64,
}

/// Sessions whose socket dropped and that may still be resumed, on this node; and the budget
/// every session log of the node shares.
#[derive(Default)]
pub struct Sessions {
    detached: Mutex<HashMap<String, Detached>>,
    generations: AtomicU64,
    budget: Arc<ResumeBudget>,
}

impl Sessions {
    pub fn budget(&self) -> &Arc<ResumeBudget> {
        &self.budget
    }

    /// Keeps a dropped session for `resume` until [`RESUME_WINDOW`] passes; then it ends (its
    /// subscription with it). At most `limit` sessions of one account wait: the oldest goes.
    pub fn detach(
        self: &Arc<Self>,
        session: String,
        state: SessionState,
        logs: Arc<LocalLogs>,
        limit: usize,
    ) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let account_id = state.account_id;
        let mut pushed_out = Vec::new();
        {
            let mut detached = self.lock();
            let mut mine: Vec<(u64, String)> = detached
                .iter()
                .filter(|(_, d)| d.state.account_id == account_id)
                .map(|(id, d)| (d.generation, id.clone()))
                .collect();
            mine.sort_unstable();
            let over = (mine.len() + 1).saturating_sub(limit.max(1));
            for (_, id) in mine.into_iter().take(over) {
                if let Some(gone) = detached.remove(&id) {
                    pushed_out.push(gone.state);
                }
            }
            detached.insert(session.clone(), Detached { state, generation });
        }
        for gone in pushed_out {
            tracing::info!(
                account = account_id,
                limit,
                "an account has too many sessions waiting for resume; its oldest ended"
            );
            logs.unsubscribe(gone.account_id, gone.subscription);
        }
        let sessions = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESUME_WINDOW).await;
            let expired = {
                let mut detached = sessions.lock();
                match detached.get(&session) {
                    Some(d) if d.generation == generation => detached.remove(&session),
                    _ => None,
                }
            };
            if let Some(expired) = expired {
                logs.unsubscribe(expired.state.account_id, expired.state.subscription);
            }
        });
    }

    /// Takes over a detached session of `account_id`, if it is still there.
    pub fn resume(&self, session: &str, account_id: i64) -> Option<SessionState> {
        let mut detached = self.lock();
        match detached.get(session) {
            Some(d) if d.state.account_id == account_id => {
                detached.remove(session).map(|d| d.state)
            }
            _ => None,
        }
    }

    /// How many sessions of `account_id` wait for `resume`.
    pub fn detached_of(&self, account_id: i64) -> usize {
        self.lock()
            .values()
            .filter(|d| d.state.account_id == account_id)
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Detached>> {
        self.detached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(resume_bytes: usize, resume_total_bytes: usize) -> ChatLimits {
        ChatLimits {
            resume_bytes,
            resume_total_bytes,
            backlog_bytes: resume_bytes / 2,
            sockets_per_account: 4,
            detached_per_account: 2,
        }
    }

    fn frame(text: &str) -> Arc<str> {
        Arc::from(format!(r#"{{"type":"{text}"}}"#))
    }

    /// Every frame the socket `token` would be sent, marked as sent.
    fn drain(log: &SessionLog, token: u64) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match log.next_unsent(token).0 {
                Unsent::Frame { seq, frame } => {
                    out.push(stamped(seq, &frame));
                    log.sent(token, seq);
                }
                Unsent::Gap => panic!("gap"),
                Unsent::Nothing => return out,
            }
        }
    }

    #[test]
    fn frames_are_numbered_and_replayed_from_any_kept_point() {
        let budget = Arc::new(ResumeBudget::default());
        let log = SessionLog::new(limits(1 << 20, 1 << 30), &budget);
        let wake = Arc::new(Notify::new());
        let (token, _) = log
            .attach(0, wake.clone(), |_| frame("auth").to_string())
            .expect("a new session");
        log.push(frame("a"));
        assert_eq!(
            drain(&log, token),
            [r#"{"seq":1,"type":"auth"}"#, r#"{"seq":2,"type":"a"}"#]
        );
        log.push(frame("b"));
        log.detach(token);
        log.push(frame("c"));
        assert!(log.attach(9, wake.clone(), |_| String::new()).is_none());
        let (token, missed) = log
            .attach(2, wake, |missed| {
                format!(r#"{{"type":"resumed","n":{missed}}}"#)
            })
            .expect("kept");
        assert_eq!(missed, 2);
        assert_eq!(
            log.next_unsent(token).1,
            cost(r#"{"type":"resumed","n":2}"#),
            "a replay is no backlog"
        );
        assert_eq!(
            drain(&log, token),
            [
                r#"{"seq":3,"type":"b"}"#,
                r#"{"seq":4,"type":"c"}"#,
                r#"{"seq":5,"type":"resumed","n":2}"#
            ]
        );
    }

    #[test]
    fn a_log_keeps_its_bytes_and_a_socket_sees_the_gap_of_a_frame_it_lost() {
        let budget = Arc::new(ResumeBudget::default());
        let one = cost(&frame("x"));
        let log = SessionLog::new(limits(3 * one, 1 << 30), &budget);
        let (token, _) = log
            .attach(0, Arc::new(Notify::new()), |_| frame("x").to_string())
            .expect("new");
        for _ in 0..3 {
            log.push(frame("x"));
        }
        assert_eq!(budget.total(), 3 * one, "the first frame went");
        assert!(matches!(log.next_unsent(token).0, Unsent::Gap));
        log.detach(token);
        assert!(
            log.attach(0, Arc::new(Notify::new()), |_| String::new())
                .is_none(),
            "410: frame 1 is gone"
        );
        drop(log);
        assert_eq!(budget.total(), 0);
    }

    #[test]
    fn a_log_that_lost_continuity_shows_its_socket_a_gap_and_refuses_resume() {
        let budget = Arc::new(ResumeBudget::default());
        let log = SessionLog::new(limits(1 << 20, 1 << 30), &budget);
        let (token, _) = log
            .attach(0, Arc::new(Notify::new()), |_| frame("auth").to_string())
            .expect("new");
        assert_eq!(drain(&log, token), [r#"{"seq":1,"type":"auth"}"#]);
        log.push(frame("a"));
        log.lose_continuity();
        assert!(matches!(log.next_unsent(token).0, Unsent::Gap));
        assert_eq!(
            budget.total(),
            0,
            "nothing is kept for a session that ended"
        );
        log.detach(token);
        assert!(
            log.attach(1, Arc::new(Notify::new()), |_| String::new())
                .is_none(),
            "410: frames after 1 are lost"
        );
        log.push(frame("b"));
        assert_eq!(budget.total(), cost(&frame("b")));
    }

    #[test]
    fn the_total_is_kept_by_trimming_the_largest_log() {
        let budget = Arc::new(ResumeBudget::default());
        let one = cost(&frame("x"));
        let limits = limits(100 * one, 10 * one);
        let big = SessionLog::new(limits, &budget);
        let small = SessionLog::new(limits, &budget);
        for _ in 0..8 {
            big.push(frame("x"));
        }
        for _ in 0..4 {
            small.push(frame("x"));
        }
        assert_eq!(budget.total(), 10 * one);
        assert_eq!(big.bytes.load(Ordering::Relaxed), 6 * one);
        assert_eq!(small.bytes.load(Ordering::Relaxed), 4 * one);
    }
}
