//! `GET /ws`: the reference chat protocol. Frames are `{"type": …, "payload": …}`.
//!
//! A connection must send `heartbeat` first (anything else first closes it) and keep sending one
//! within `HERALD_WS_HEARTBEAT_TIMEOUT` (40 + 5 s); then `auth` with a login token; then `chat`,
//! `load` and `mutual_users` frames. Every bad frame gets an `error` frame and the connection
//! stays open; it never affects another socket. See `docs/chat-protocol.md`.
//!
//! Each connection has two tasks. This one reads the client's frames (parsed once, at the edge,
//! into `frames::ClientFrame`), handles them and queues what it answers; it never waits for the
//! client to read, so a heartbeat is always read on time. The writer (`outbound.rs`) writes the
//! queue and the session's log at the client's pace and reports a client that falls behind;
//! this task then closes the socket as too slow, and the session keeps the frames not written
//! for `resume`.
//!
//! A socket closes in two steps: the close frame is queued, then the client's frames are read
//! (and ignored) until it answers the close or a grace time passes. Dropping a TCP connection
//! with unread input makes the kernel reset it, and a reset throws away whatever the client
//! had not read yet — the close frame included. That is why a slow client used to see its
//! connection cut without a close frame. For the same reason tungstenite is allowed to read a
//! frame a little over the limit whole ([`READ_CEILING_BYTES`]), so that the limit is enforced
//! here with a clean 1009 instead of a reset.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::Method;
use axum::response::Response;
use base64::Engine;
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ChatState;
use super::bus::Joined;
use super::frames::{
    AuthIn, ChatIn, ChatKind, ClientFrame, Count, FriendKind, Id, Integer, Kind, LoadIn, LoadKind,
    Members, MutualUsersIn, NotJson, ReadIn, Request, ResumeIn, RoomIn, RoomKind, TypingIn,
};
use super::outbound::{CLOSE_TOO_SLOW, Close, Outbound, Trouble};
use super::resume::{ChatLimits, RESUME_WINDOW};
use super::{
    ChatTarget, FriendChange, Message as ChatMessage, Room, accept_friend, add_member,
    chat_payload, create_room, delete_friend, edit_message, find_message, friends, history,
    incoming_requests, mark_read, pair, parse_created_at, remove_member, request_friend,
    resolve_chat, room_key, room_members, room_object, rooms_of, store_message, user_object,
    withdraw_request,
};
use crate::accounts::Account;
use crate::http::routes::{Outside, Routes};

/// The largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The largest frame tungstenite reads whole; between this and [`MAX_FRAME_BYTES`] the limit is
/// enforced after reading, so that the close frame is not lost to a reset.
pub const READ_CEILING_BYTES: usize = 2 * MAX_FRAME_BYTES;
/// The longest chat message, in characters.
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Frames a connection may send per second (with a burst of twice that).
pub const FRAMES_PER_SECOND: u32 = 20;
/// How long a closing socket waits for its close frame to be written and answered, unless it
/// was closed as too slow (then the heartbeat timeout: the client is alive, only slow).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// No heartbeat within `HERALD_WS_HEARTBEAT_TIMEOUT`.
pub const CLOSE_NO_HEARTBEAT: u16 = 4000;
/// The account has `HERALD_WS_SOCKETS_PER_ACCOUNT` live sockets already.
pub const CLOSE_TOO_MANY_SOCKETS: u16 = 4003;
/// This node is stopping (RFC 6455's "Service Restart"): reconnect, to another node behind the
/// load balancer, and resume.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// The reason sent with [`CLOSE_SERVICE_RESTART`].
pub const SERVICE_RESTART_REASON: &str = "service restart: reconnect and resume";

/// The chat socket: outside the OpenAPI document (its protocol is `docs/chat-protocol.md`).
pub fn router(state: ChatState) -> Routes {
    Routes::new()
        .outside(Outside::WebSocket, Method::GET, "/ws", upgrade)
        .with_state(state)
}

async fn upgrade(State(state): State<ChatState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(READ_CEILING_BYTES)
        .max_frame_size(READ_CEILING_BYTES)
        // tungstenite reads into a 128 KiB buffer by default; chat frames are small.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            // Counted until it has closed, so that a stopping node waits for its close frame.
            let _open = state.sockets.token();
            connection(state, socket).await
        })
}

fn frame(kind: &str, payload: Value) -> String {
    json!({"type": kind, "payload": payload}).to_string()
}

fn error_frame(code: u16, reason: impl Into<String>) -> String {
    frame("error", json!({"code": code, "reason": reason.into()}))
}

fn close(code: u16, reason: &'static str) -> Close {
    Close {
        code,
        reason,
        abandon: false,
    }
}

fn too_large() -> Close {
    close(1009, "frame too large (at most 64 KiB)")
}

/// The close for a frame tungstenite could not read.
fn close_for_read_error(error: &axum::Error) -> Close {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let cause = std::error::Error::source(error).and_then(|e| e.downcast_ref::<WsError>());
    match cause {
        Some(WsError::Capacity(_)) => too_large(),
        Some(WsError::Utf8(_)) => close(1007, "invalid UTF-8 in a text frame"),
        _ => {
            tracing::debug!(%error, "a chat socket sent something that is not WebSocket");
            close(1002, "protocol error")
        }
    }
}

/// Why a frame was refused: the client's mistake (told as it is), or ours (logged with its
/// cause, told only as 500).
enum Refusal {
    Client(u16, String),
    Internal {
        what: &'static str,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A 400 with `reason`.
fn bad(reason: String) -> Refusal {
    Refusal::Client(400, reason)
}

/// Turns an internal error into a refusal that logs it as failing to do `what`.
fn internal<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> Refusal {
    move |error| Refusal::Internal {
        what,
        error: Box::new(error),
    }
}

/// What a chat id names for one requester.
enum Target {
    Dm { other: Account, friends: bool },
    Room { room: Room, members: Vec<Account> },
}

impl Target {
    /// The key the conversation's messages are stored under.
    fn key(&self, me: &Account) -> (i64, i64) {
        match self {
            Target::Dm { other, .. } => pair(me.id, other.id),
            Target::Room { room, .. } => room_key(room.id),
        }
    }

    /// Everyone whose sockets see the conversation's frames.
    fn recipients(&self, me: &Account) -> Vec<i64> {
        match self {
            Target::Dm { other, .. } => vec![me.id, other.id],
            Target::Room { members, .. } => members.iter().map(|m| m.id).collect(),
        }
    }
}

/// What to do after a frame.
enum Next {
    Continue,
    /// A heartbeat arrived: the silence deadline starts again.
    Heartbeat,
    Close(Close),
}

struct Session {
    state: ChatState,
    limits: ChatLimits,
    outbound: Arc<Outbound>,
    heartbeat_seen: bool,
    account: Option<Account>,
    /// Whether this socket counts among its account's live sockets.
    live: bool,
    limiter: DefaultDirectRateLimiter,
    /// After `auth` or `resume`: the session.
    joined: Option<Joined>,
}

async fn connection(state: ChatState, socket: WebSocket) {
    let limits = ChatLimits::from_settings(&state.settings);
    let timeout = state.settings.ws_heartbeat_timeout;
    let (sink, mut stream) = socket.split();
    let outbound = Outbound::new(limits.backlog_bytes);
    let (trouble, mut troubled) = oneshot::channel();
    let mut writer = tokio::spawn(super::outbound::write(
        sink,
        outbound.clone(),
        timeout,
        trouble,
    ));
    let mut session = Session {
        state: state.clone(),
        limits,
        outbound: outbound.clone(),
        heartbeat_seen: false,
        account: None,
        live: false,
        joined: None,
        limiter: RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(FRAMES_PER_SECOND).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(FRAMES_PER_SECOND * 2).unwrap_or(NonZeroU32::MIN)),
        ),
    };
    metrics::gauge!("herald_chat_sockets").increment(1.0);
    let mut deadline = Instant::now() + timeout;
    let stopping = state.stopping.clone();
    let ending: Option<Close> = loop {
        tokio::select! {
            _ = stopping.cancelled() => {
                break Some(close(CLOSE_SERVICE_RESTART, SERVICE_RESTART_REASON));
            }
            _ = tokio::time::sleep_until(deadline) => {
                break Some(Close {
                    code: CLOSE_NO_HEARTBEAT,
                    reason: "no heartbeat in time",
                    abandon: true,
                });
            }
            trouble = &mut troubled => break match trouble {
                Ok(Trouble::TooSlow) => Some(Close {
                    code: CLOSE_TOO_SLOW,
                    reason: "too slow to take its frames; resume the session",
                    abandon: true,
                }),
                Ok(Trouble::Broken) | Err(_) => None,
            },
            received = stream.next() => match received {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Err(error)) => break Some(close_for_read_error(&error)),
                Some(Ok(Message::Text(text))) => {
                    if text.len() > MAX_FRAME_BYTES {
                        break Some(too_large());
                    }
                    match session.on_text(text.as_str()).await {
                        Next::Continue => {}
                        Next::Heartbeat => deadline = Instant::now() + timeout,
                        Next::Close(close) => break Some(close),
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if bytes.len() > MAX_FRAME_BYTES {
                        break Some(too_large());
                    }
                    session.send_text(error_frame(400, "binary frames are not part of the protocol; send JSON text"));
                }
                Some(Ok(_)) => {}
            },
        }
    };
    let too_slow = matches!(&ending, Some(close) if close.code == CLOSE_TOO_SLOW);
    if let Some(close) = &ending {
        metrics::counter!("herald_chat_socket_closes_total", "code" => close.code.to_string())
            .increment(1);
    }
    // The session goes first, so that the client can resume it while this socket closes.
    drop(session);
    outbound.close(ending);
    // A client closed as too slow is alive, only slow: its close frame may wait behind much
    // unread data, so it gets as long as it keeps sending heartbeats (within the time its
    // session can be resumed). Any other close gets a short grace.
    let closed_at = Instant::now();
    let mut linger_until = closed_at + if too_slow { timeout } else { CLOSE_GRACE };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(linger_until) => {
                tracing::debug!("a chat socket did not finish closing in time; dropped");
                break;
            }
            received = stream.next() => match received {
                None => break,
                Some(Ok(Message::Text(text)))
                    if too_slow && matches!(ClientFrame::parse(&text), Ok(ClientFrame::Heartbeat(_))) =>
                {
                    linger_until = (Instant::now() + timeout).min(closed_at + RESUME_WINDOW);
                }
                Some(_) => {}
            },
        }
    }
    // The client answered the close (or is gone): the writer may still be flushing.
    let _ = tokio::time::timeout_at(linger_until, &mut writer).await;
    writer.abort();
    metrics::gauge!("herald_chat_sockets").decrement(1.0);
}

/// On the way out, whatever ended the connection: the session is kept for `resume` for a while
/// (its frames keep being logged), and friends hear the user went offline if this was its last
/// live socket.
impl Drop for Session {
    fn drop(&mut self) {
        let Some(account) = self.account.take() else {
            return;
        };
        // Detached before the socket stops counting as live, so that a count of none means
        // every session of the account is ready for `resume`.
        if let Some(joined) = self.joined.take() {
            self.state.bus.leave(joined);
        }
        if self.live {
            let state = self.state.clone();
            let counted = state.bus.live(account.id, -1);
            tokio::spawn(async move {
                if counted.await == 0 {
                    announce_offline(&state, &account).await;
                }
            });
        }
    }
}

/// Tells `account`'s friends that it went offline, unless it came back meanwhile: the friends
/// are read from the database first, and a new socket of the same user (a page that reloads,
/// a browser that reconnects) may have gone live and said "online" by then, which a late
/// "offline" would contradict for as long as that socket lives.
async fn announce_offline(state: &ChatState, account: &Account) {
    match friends(&state.db, account.id).await {
        Ok(list) => {
            if state.bus.live(account.id, 0).await == 0 {
                announce_presence(state, account, &list, "offline");
            }
        }
        Err(error) => tracing::error!(
            %error,
            account = account.id,
            "could not read the friends to tell that a chat user went offline"
        ),
    }
}

/// Tells the friends of users whose sockets were on a node that stopped without saying so
/// (killed, cut off) that they went offline; the bus finds them (`bus::redis`).
pub async fn announce_offline_from_lost_nodes(
    state: ChatState,
    mut users: tokio::sync::mpsc::Receiver<i64>,
) {
    while let Some(user) = users.recv().await {
        match super::account_by_id(&state.db, user).await {
            Ok(Some(account)) => announce_offline(&state, &account).await,
            Ok(None) => {}
            Err(error) => tracing::error!(
                %error,
                account = user,
                "could not read a chat user whose node was lost, to tell their friends"
            ),
        }
    }
}

/// Tells every friend that `account` came online or went offline.
fn announce_presence(state: &ChatState, account: &Account, friends: &[Account], status: &str) {
    let text: Arc<str> = Arc::from(frame(
        "presence",
        json!({"user": user_object(account), "status": status}),
    ));
    for friend in friends {
        state.bus.publish(friend.id, text.clone());
    }
}

impl Session {
    /// Sends a frame: numbered and logged once the session is authenticated.
    fn send_text(&self, text: String) {
        match &self.joined {
            Some(joined) => self.state.bus.send(joined, Arc::from(text)),
            None => self.outbound.queue(text),
        }
    }

    fn error(&self, code: u16, reason: impl Into<String>) {
        self.send_text(error_frame(code, reason));
    }

    fn ok(&self) {
        self.send_text(frame("ok", json!({})));
    }

    fn publish(&self, user: i64, text: String) {
        self.state.bus.publish(user, Arc::from(text));
    }

    fn refuse(&self, refusal: Refusal) {
        match refusal {
            Refusal::Client(code, reason) => self.error(code, reason),
            Refusal::Internal { what, error } => {
                if let Some(failure) = self.state.db.storage().note(&*error) {
                    tracing::error!(
                        error = %error,
                        account = self.account.as_ref().map(|a| a.id),
                        "a chat frame failed for lack of storage: could not {what}"
                    );
                    self.error(503, failure.message());
                    return;
                }
                tracing::error!(
                    error = %error,
                    account = self.account.as_ref().map(|a| a.id),
                    "a chat frame failed: could not {what}"
                );
                self.error(500, "internal error");
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Next {
        if self.limiter.check().is_err() {
            self.error(429, "too many frames; slow down");
            return Next::Continue;
        }
        let heartbeat_first = |session: &Session| {
            session.error(400, "the first frame must be a heartbeat");
            Next::Close(close(1008, "heartbeat first"))
        };
        let parsed = match ClientFrame::parse(text) {
            Ok(parsed) => parsed,
            Err(NotJson(e)) => {
                if !self.heartbeat_seen {
                    return heartbeat_first(self);
                }
                self.error(400, format!("bad JSON: {e}"));
                return Next::Continue;
            }
        };
        let request = match parsed {
            ClientFrame::Heartbeat(payload) => {
                self.heartbeat_seen = true;
                self.send_text(frame("heartbeat", payload));
                return Next::Heartbeat;
            }
            _ if !self.heartbeat_seen => return heartbeat_first(self),
            ClientFrame::Auth(auth) => return self.auth(auth).await,
            ClientFrame::Resume(resume) => return self.resume(resume).await,
            ClientFrame::Request(request) => request,
        };
        let Some(me) = self.account.clone() else {
            self.error(401, "authenticate first (an auth frame with a login token)");
            return Next::Continue;
        };
        let result = match request {
            Request::Chat(payload) => self.chat(&me, payload).await,
            Request::Load(payload) => self.load(&me, payload).await,
            Request::MutualUsers(payload) => self.mutual_users(&me, payload).await,
            Request::Typing(payload) => self.typing(&me, payload).await,
            Request::Room(payload) => self.room(&me, payload).await,
            Request::Read(payload) => self.read(&me, payload).await,
            Request::Untyped => Err(bad("missing field type".to_string())),
            Request::Unknown(other) => Err(bad(format!("unknown frame type {other:?}"))),
        };
        if let Err(refusal) = result {
            self.refuse(refusal);
        }
        Next::Continue
    }

    /// The account a token belongs to, or the error frame already sent.
    async fn account_for(&self, token: &str) -> Option<Account> {
        match crate::accounts::account_for_token(&self.state.db, token).await {
            Ok(Some(account)) => Some(account),
            Ok(None) => {
                self.error(401, "this token is not valid (expired or logged out)");
                None
            }
            Err(error) => {
                self.refuse(internal("look up a login token")(error));
                None
            }
        }
    }

    /// Counts this socket among the account's live ones, if it is under the limit; if not, the
    /// client is told and the socket closes. `Ok(true)`: it is the account's only live socket.
    async fn go_live(&mut self, account: &Account) -> Result<bool, Next> {
        let limit = self.limits.sockets_per_account;
        let now = self.state.bus.live(account.id, 1).await;
        if now > limit {
            self.state.bus.live(account.id, -1).await;
            self.error(
                429,
                format!("too many open sockets for this account (at most {limit})"),
            );
            return Err(Next::Close(close(
                CLOSE_TOO_MANY_SOCKETS,
                "too many sockets for this account",
            )));
        }
        self.live = true;
        Ok(now == 1)
    }

    /// Undoes [`go_live`](Self::go_live) for a socket that did not get its session after all.
    async fn leave_live(&mut self, account: &Account) {
        self.state.bus.live(account.id, -1).await;
        self.live = false;
    }

    async fn auth(&mut self, payload: AuthIn) -> Next {
        if self.account.is_some() {
            self.error(400, "already authenticated");
            return Next::Continue;
        }
        let Some(token) = payload.auth.ok() else {
            self.error(400, "missing field auth (the login token)");
            return Next::Continue;
        };
        let Some(account) = self.account_for(&token).await else {
            return Next::Continue;
        };
        let db = &self.state.db;
        let lists = async {
            let requests = incoming_requests(db, account.id)
                .await
                .map_err(internal("read the friend requests for auth"))?;
            let mutual = friends(db, account.id)
                .await
                .map_err(internal("read the friends for auth"))?;
            let rooms = rooms_of(db, account.id)
                .await
                .map_err(internal("read the rooms for auth"))?;
            Ok::<_, Refusal>((requests, mutual, rooms))
        };
        let (requests, mutual, rooms) = match lists.await {
            Ok(lists) => lists,
            Err(refusal) => {
                self.refuse(refusal);
                return Next::Continue;
            }
        };
        let first = match self.go_live(&account).await {
            Ok(first) => first,
            Err(next) => return next,
        };
        let session = crate::accounts::random_secret();
        let auth = frame(
            "auth",
            json!({
                "self_user": user_object(&account),
                "mutual_requests": requests.iter().map(user_object).collect::<Vec<_>>(),
                "mutual_users": mutual.iter().map(user_object).collect::<Vec<_>>(),
                "rooms": rooms.iter().map(|r| json!({"id": r.id.to_string(), "name": r.name})).collect::<Vec<_>>(),
                "session": session,
            }),
        );
        let opened = self
            .state
            .bus
            .open(account.id, session, self.outbound.wake(), auth)
            .await;
        let Some(joined) = opened else {
            self.leave_live(&account).await;
            self.error(
                503,
                "the chat cannot keep a session right now; try again shortly",
            );
            return Next::Continue;
        };
        self.outbound.follow(joined.log.clone(), joined.token);
        self.joined = Some(joined);
        if first {
            announce_presence(&self.state, &account, &mutual, "online");
        }
        self.account = Some(account);
        Next::Continue
    }

    /// `{"type":"resume","payload":{"session","auth","last_seq"}}` on a fresh socket (after its
    /// heartbeat): replays the frames after `last_seq` in order and carries the session on, or
    /// answers 410 when it cannot (then authenticate and load history as usual).
    async fn resume(&mut self, payload: ResumeIn) -> Next {
        if self.account.is_some() {
            self.error(400, "already authenticated");
            return Next::Continue;
        }
        let (Some(session), Some(token)) = (payload.session.ok(), payload.auth.ok()) else {
            self.error(400, "resume needs session, auth and last_seq");
            return Next::Continue;
        };
        let Some(Count(last_seq)) = payload.last_seq.ok() else {
            self.error(400, "last_seq must be a number");
            return Next::Continue;
        };
        let Some(account) = self.account_for(&token).await else {
            return Next::Continue;
        };
        let cannot = "cannot resume this session; send auth and load the history";
        let first = match self.go_live(&account).await {
            Ok(first) => first,
            Err(next) => return next,
        };
        let replayed = {
            let session = session.clone();
            move |replayed: u64| frame("resumed", json!({"session": session, "replayed": replayed}))
        };
        let resumed = self
            .state
            .bus
            .resume(
                account.id,
                session,
                last_seq,
                self.outbound.wake(),
                Box::new(replayed),
            )
            .await;
        let Some(joined) = resumed else {
            self.leave_live(&account).await;
            self.error(410, cannot);
            return Next::Continue;
        };
        self.outbound.follow(joined.log.clone(), joined.token);
        if first {
            match friends(&self.state.db, account.id).await {
                Ok(list) => announce_presence(&self.state, &account, &list, "online"),
                Err(error) => tracing::error!(
                    %error,
                    account = account.id,
                    "could not read the friends to tell that a chat user resumed"
                ),
            }
        }
        self.joined = Some(joined);
        self.account = Some(account);
        Next::Continue
    }

    /// What a `chat_id` names for this requester: a room it belongs to, or a DM (the XOR id
    /// resolved for this requester only).
    async fn target(&self, me: &Account, chat_id: i64) -> Result<Target, Refusal> {
        match resolve_chat(&self.state.db, me.id, chat_id)
            .await
            .map_err(internal("resolve a chat id"))?
        {
            ChatTarget::Room(room) => {
                let members = room_members(&self.state.db, room.id)
                    .await
                    .map_err(internal("read a room's members"))?;
                if !members.iter().any(|m| m.id == me.id) {
                    return Err(Refusal::Client(
                        403,
                        "you are not a member of this room".into(),
                    ));
                }
                Ok(Target::Room { room, members })
            }
            ChatTarget::Dm { other, friends } => Ok(Target::Dm { other, friends }),
            ChatTarget::Nothing => Err(Refusal::Client(404, "no such chat".into())),
        }
    }

    async fn chat(&mut self, me: &Account, payload: ChatIn) -> Result<(), Refusal> {
        let Kind(kind) = payload.kind.required("type").map_err(bad)?;
        let Id(chat_id) = payload.chat_id.required("chat_id").map_err(bad)?;
        let content = payload.content.required("content").map_err(bad)?;
        let content = content.trim();
        if content.chars().count() > MAX_CONTENT_CHARS {
            return Err(Refusal::Client(
                413,
                format!("content: at most {MAX_CONTENT_CHARS} characters"),
            ));
        }
        let target = self.target(me, chat_id).await?;
        let db = &self.state.db;
        match kind {
            ChatKind::Send => {
                if content.is_empty() {
                    self.ok();
                    return Ok(());
                }
                // Anyone may write to the herald bot; people only to their friends.
                let to_bot = matches!(&target, Target::Dm { other, .. } if other.id == self.state.bot_account_id);
                if let Target::Dm { friends: false, .. } = &target
                    && !to_bot
                {
                    return Err(Refusal::Client(403, "you can only message friends".into()));
                }
                let nonce = payload.nonce.checked().map_err(bad)?;
                let (message, repeat) =
                    store_message(db, &self.state.ids, target.key(me), me.id, content, nonce)
                        .await
                        .map_err(internal("store a chat message"))?;
                let mut body = chat_payload("send", &message, chat_id);
                if let Some(nonce) = nonce {
                    body["nonce"] = json!(nonce);
                }
                let text = frame("chat", body);
                if repeat {
                    // Already delivered to everyone: only this socket needs its answer again.
                    self.send_text(text);
                } else {
                    for user in target.recipients(me) {
                        self.publish(user, text.clone());
                    }
                    if to_bot {
                        crate::chat::bot::answer(
                            self.state.clone(),
                            me.clone(),
                            message.id,
                            content.to_string(),
                        );
                    }
                }
                Ok(())
            }
            ChatKind::Edit => {
                let Id(id) = payload.id.required("id").map_err(bad)?;
                let (low, high) = target.key(me);
                let Some(found) = find_message(db, low, high, id)
                    .await
                    .map_err(internal("find the message to edit"))?
                else {
                    return Err(Refusal::Client(404, "no such message in this chat".into()));
                };
                if found.user_id != me.id {
                    return Err(Refusal::Client(
                        403,
                        "only the author may edit or delete a message".into(),
                    ));
                }
                edit_message(db, id, content)
                    .await
                    .map_err(internal("edit a chat message"))?;
                let edited = ChatMessage {
                    content: content.to_string(),
                    ..found
                };
                let text = frame("chat", chat_payload("edit", &edited, chat_id));
                for user in target.recipients(me) {
                    self.publish(user, text.clone());
                }
                Ok(())
            }
            ChatKind::Other(other) => {
                Err(bad(format!("unknown chat type {other:?} (send or edit)")))
            }
        }
    }

    /// `{"type":"typing","payload":{"chat_id"}}`: the other participants see
    /// `{"type":"typing","payload":{"chat_id","user_id"}}`. Not stored.
    async fn typing(&mut self, me: &Account, payload: TypingIn) -> Result<(), Refusal> {
        let Id(chat_id) = payload.chat_id.required("chat_id").map_err(bad)?;
        let target = self.target(me, chat_id).await?;
        if let Target::Dm { friends: false, .. } = &target {
            return Err(Refusal::Client(403, "you can only message friends".into()));
        }
        let text = frame(
            "typing",
            json!({"chat_id": chat_id.to_string(), "user_id": me.id.to_string()}),
        );
        for user in target.recipients(me).into_iter().filter(|u| *u != me.id) {
            self.publish(user, text.clone());
        }
        Ok(())
    }

    async fn load(&mut self, me: &Account, payload: LoadIn) -> Result<(), Refusal> {
        match payload.kind.required("type").map_err(bad)?.0 {
            LoadKind::MutualUsers => {
                let list = friends(&self.state.db, me.id)
                    .await
                    .map_err(internal("read the friends"))?;
                let users: Vec<Value> = list.iter().map(user_object).collect();
                self.send_text(frame(
                    "load",
                    json!({"type": "mutual_users", "users": users}),
                ));
                Ok(())
            }
            LoadKind::Chat => {
                let Id(load_id) = payload.load_id.required("load_id").map_err(bad)?;
                let encoded = payload.datetime.required("datetime").map_err(bad)?;
                let format_error =
                    || bad("datetime must be base64 of YYYY-MM-DD HH:MM:SS.ffffff".into());
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(format_error)?;
                let before = parse_created_at(&decoded).ok_or_else(format_error)?;
                let Some(Integer(count)) = payload.count.ok() else {
                    return Err(bad("count must be a number".into()));
                };
                let count = count.clamp(1, 100);
                let target = self.target(me, load_id).await?;
                let (low, high) = target.key(me);
                for message in history(&self.state.db, low, high, before, count)
                    .await
                    .map_err(internal("read a chat's history"))?
                {
                    self.send_text(frame("chat", chat_payload("send", &message, load_id)));
                }
                Ok(())
            }
            LoadKind::Other(other) => Err(bad(format!(
                "unknown load type {other:?} (chat or mutual_users)"
            ))),
        }
    }

    /// `{"type":"read","payload":{"chat_id","message_id"}}`: the user has seen the chat up to
    /// that message, so its read mark (what the dashboard's unread counts start from) moves
    /// there, never back. Answered `ok`; a message not in the chat is 404.
    async fn read(&mut self, me: &Account, payload: ReadIn) -> Result<(), Refusal> {
        let Id(chat_id) = payload.chat_id.required("chat_id").map_err(bad)?;
        let Id(message_id) = payload.message_id.required("message_id").map_err(bad)?;
        let target = self.target(me, chat_id).await?;
        let (low, high) = target.key(me);
        let db = &self.state.db;
        let Some(message) = find_message(db, low, high, message_id)
            .await
            .map_err(internal("find the message read up to"))?
        else {
            return Err(Refusal::Client(404, "no such message in this chat".into()));
        };
        mark_read(db, me.id, (low, high), message.created_at_us)
            .await
            .map_err(internal("move a chat's read mark"))?;
        self.ok();
        Ok(())
    }

    /// Group rooms: `{"type":"room","payload":{"type":"create"|"invite"|"leave"|"members", …}}`.
    async fn room(&mut self, me: &Account, payload: RoomIn) -> Result<(), Refusal> {
        let db = &self.state.db;
        match payload.kind.required("type").map_err(bad)?.0 {
            RoomKind::Create => {
                let name = payload.name.required("name").map_err(bad)?;
                let name = name.trim();
                if name.is_empty() || name.chars().count() > 100 {
                    return Err(bad("name: 1 to 100 characters".into()));
                }
                let names = match payload.members {
                    Members::Absent => Vec::new(),
                    Members::Names(names) => names,
                    Members::Invalid => {
                        return Err(bad("members must be a list of user names".into()));
                    }
                };
                let friends_now = friends(db, me.id)
                    .await
                    .map_err(internal("read the friends for a new room"))?;
                let mut members = vec![me.id];
                for name in names {
                    let Some(friend) = friends_now.iter().find(|f| f.name == name) else {
                        return Err(Refusal::Client(403, format!("{name:?} is not your friend")));
                    };
                    if !members.contains(&friend.id) {
                        members.push(friend.id);
                    }
                }
                let room = create_room(db, &self.state.ids, name, &members)
                    .await
                    .map_err(internal("create a room"))?;
                self.announce_room(&room, "created", None).await
            }
            RoomKind::Invite => {
                let room = self.member_room(me, payload.room_id).await?;
                let name = payload.name.required("name").map_err(bad)?;
                let friends_now = friends(db, me.id)
                    .await
                    .map_err(internal("read the friends for an invitation"))?;
                let Some(friend) = friends_now.into_iter().find(|f| f.name == name) else {
                    return Err(Refusal::Client(403, format!("{name:?} is not your friend")));
                };
                if !add_member(db, room.id, friend.id)
                    .await
                    .map_err(internal("add a room member"))?
                {
                    return Err(Refusal::Client(
                        409,
                        format!("{name:?} is already a member"),
                    ));
                }
                self.announce_room(&room, "joined", Some(&friend)).await
            }
            RoomKind::Leave => {
                let room = self.member_room(me, payload.room_id).await?;
                remove_member(db, room.id, me.id)
                    .await
                    .map_err(internal("remove a room member"))?;
                let text = frame(
                    "room",
                    json!({"type": "left", "room_id": room.id.to_string(), "user": user_object(me)}),
                );
                for member in room_members(db, room.id)
                    .await
                    .map_err(internal("read a room's members"))?
                {
                    self.publish(member.id, text.clone());
                }
                self.publish(me.id, text);
                Ok(())
            }
            RoomKind::Members => {
                let room = self.member_room(me, payload.room_id).await?;
                let members = room_members(db, room.id)
                    .await
                    .map_err(internal("read a room's members"))?;
                self.send_text(frame(
                    "room",
                    json!({"type": "members", "room": room_object(&room, &members)}),
                ));
                Ok(())
            }
            RoomKind::Other(other) => Err(bad(format!(
                "unknown room type {other:?} (create, invite, leave, members)"
            ))),
        }
    }

    /// The room named by `room_id`, if the requester is a member.
    async fn member_room(
        &self,
        me: &Account,
        room_id: super::frames::Field<Id>,
    ) -> Result<Room, Refusal> {
        let Id(room_id) = room_id.required("room_id").map_err(bad)?;
        match self.target(me, room_id).await {
            Ok(Target::Room { room, .. }) => Ok(room),
            Ok(Target::Dm { .. }) | Err(Refusal::Client(404, _)) => {
                Err(Refusal::Client(404, "no such room".into()))
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// Tells every member about a new room or member.
    async fn announce_room(
        &self,
        room: &Room,
        kind: &str,
        user: Option<&Account>,
    ) -> Result<(), Refusal> {
        let members = room_members(&self.state.db, room.id)
            .await
            .map_err(internal("read a room's members"))?;
        let mut body = json!({"type": kind, "room": room_object(room, &members)});
        if let Some(user) = user {
            body["user"] = user_object(user);
        }
        let text = frame("room", body);
        for member in &members {
            self.publish(member.id, text.clone());
        }
        Ok(())
    }

    async fn mutual_users(&mut self, me: &Account, payload: MutualUsersIn) -> Result<(), Refusal> {
        let Kind(kind) = payload.kind.required("type").map_err(bad)?;
        let name = payload.name.required("name").map_err(bad)?;
        let db = &self.state.db;
        let Some(them) = crate::accounts::find_by_name(db, name.trim())
            .await
            .map_err(internal("find a user by name"))?
        else {
            return Err(Refusal::Client(404, format!("no user named {name:?}")));
        };
        let change = match &kind {
            FriendKind::Request => request_friend(db, me.id, them.id).await,
            FriendKind::Response => accept_friend(db, me.id, them.id).await,
            FriendKind::Remove => withdraw_request(db, me.id, them.id).await,
            FriendKind::Delete => delete_friend(db, me.id, them.id).await,
            FriendKind::Other(other) => {
                return Err(bad(format!("unknown mutual_users type {other:?}")));
            }
        }
        .map_err(internal("change a friendship"))?;
        if kind == FriendKind::Request
            && them.id == self.state.bot_account_id
            && matches!(change, FriendChange::Done)
        {
            // The bot accepts every friend request at once.
            accept_friend(db, them.id, me.id)
                .await
                .map_err(internal("accept a friend request for the bot"))?;
            self.ok();
            self.publish(
                me.id,
                frame(
                    "mutual_users",
                    json!({"type": "response", "user": user_object(&them)}),
                ),
            );
            return Ok(());
        }
        match change {
            FriendChange::Done => {
                self.publish(
                    them.id,
                    frame(
                        "mutual_users",
                        json!({"type": kind.word(), "user": user_object(me)}),
                    ),
                );
                self.ok();
                Ok(())
            }
            FriendChange::Nothing(reason) => Err(Refusal::Client(409, reason.to_string())),
        }
    }
}
