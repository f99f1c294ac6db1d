//! `GET /ws`: the reference chat protocol. Frames are `{"type": …, "payload": …}`.
//!
//! A connection must send `heartbeat` first (anything else first closes it) and keep sending one
//! within `HERALD_WS_HEARTBEAT_TIMEOUT` (40 + 5 s); then `auth` with a login token; then `chat`,
//! `load` and `mutual_users` frames. Every bad frame gets an `error` frame and the connection
//! stays open; it never affects another socket. See `docs/chat-protocol.md`.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ChatState;
use super::resume::{FrameLog, SessionState};
use super::{
    ChatTarget, FriendChange, Message as ChatMessage, Room, accept_friend, add_member,
    chat_payload, create_room, delete_friend, edit_message, find_message, friends, history,
    incoming_requests, pair, parse_created_at, remove_member, request_friend, resolve_chat,
    room_key, room_members, room_object, rooms_of, store_message, user_object, withdraw_request,
};
use crate::accounts::Account;

/// The largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The longest chat message, in characters.
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Frames a connection may send per second (with a burst of twice that).
pub const FRAMES_PER_SECOND: u32 = 20;

pub fn router(state: ChatState) -> axum::Router {
    axum::Router::new()
        .route("/ws", get(upgrade))
        .with_state(state)
}

async fn upgrade(State(state): State<ChatState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // tungstenite reads into a 128 KiB buffer by default; chat frames are small.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| connection(state, socket))
}

fn frame(kind: &str, payload: Value) -> String {
    json!({"type": kind, "payload": payload}).to_string()
}

fn error_frame(code: u16, reason: impl Into<String>) -> String {
    frame("error", json!({"code": code, "reason": reason.into()}))
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
    Close(u16, &'static str),
}

struct Session {
    state: ChatState,
    out: mpsc::Sender<Message>,
    heartbeat_seen: bool,
    account: Option<Account>,
    subscription: Option<(u64, mpsc::Receiver<Arc<str>>)>,
    limiter: DefaultDirectRateLimiter,
    /// After `auth`: the session id, and the log that numbers every frame sent.
    session_id: Option<String>,
    log: std::sync::Mutex<Option<FrameLog>>,
}

async fn connection(state: ChatState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let timeout = state.settings.ws_heartbeat_timeout;
    let mut session = Session {
        state: state.clone(),
        out,
        heartbeat_seen: false,
        account: None,
        subscription: None,
        session_id: None,
        log: std::sync::Mutex::new(None),
        limiter: RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(FRAMES_PER_SECOND).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(FRAMES_PER_SECOND * 2).unwrap_or(NonZeroU32::MIN)),
        ),
    };
    metrics::gauge!("herald_chat_sockets").increment(1.0);
    let mut deadline = Instant::now() + timeout;
    loop {
        let from_bus = async {
            match &mut session.subscription {
                Some((_, receiver)) => receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                session.close(4000, "no heartbeat in time").await;
                break;
            }
            published = from_bus => match published {
                Some(text) => session.send_text(text.to_string()).await,
                None => break,
            },
            received = stream.next() => match received {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(error)) => {
                    let text = error.to_string();
                    if text.contains("too long") || text.contains("Space limit") {
                        session.close(1009, "frame too large (at most 64 KiB)").await;
                    } else {
                        session.close(1002, "protocol error").await;
                    }
                    break;
                }
                Some(Ok(Message::Text(text))) => {
                    match session.on_text(text.as_str()).await {
                        Next::Continue => {}
                        Next::Heartbeat => deadline = Instant::now() + timeout,
                        Next::Close(code, reason) => {
                            session.close(code, reason).await;
                            break;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    session.send_text(error_frame(400, "binary frames are not part of the protocol; send JSON text")).await;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    drop(session);
    let _ = writer.await;
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
        if self.state.bus.live(account.id, -1) == 0 {
            let (state, account) = (self.state.clone(), account.clone());
            tokio::spawn(async move {
                if let Ok(list) = friends(&state.db, account.id).await {
                    announce_presence(&state, &account, &list, "offline");
                }
            });
        }
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (Some((socket_id, receiver)), Some(session), Some(log)) =
            (self.subscription.take(), self.session_id.take(), log)
        else {
            return;
        };
        let bus = self.state.bus.clone();
        self.state.sessions.detach(
            session,
            SessionState {
                account_id: account.id,
                socket_id,
                receiver,
                log,
            },
            move |account_id, socket_id| bus.unsubscribe(account_id, socket_id),
        );
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

/// Reads an id that clients send as a string (snowflakes exceed JavaScript's integers) or number.
fn id_field(payload: &Value, name: &str) -> Result<i64, String> {
    match payload.get(name) {
        Some(Value::String(s)) => s.trim().parse().map_err(|_| format!("{name} is not an id")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{name} is not an id")),
        Some(_) => Err(format!("{name} is not an id")),
        None => Err(format!("missing field {name}")),
    }
}

fn str_field<'p>(payload: &'p Value, name: &str) -> Result<&'p str, String> {
    match payload.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("missing field {name}")),
    }
}

impl Session {
    /// Sends a frame, numbered and logged once the session is authenticated.
    async fn send_text(&self, text: String) {
        let stamped = match self.log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(log) => log.stamp(&text).to_string(),
            None => text,
        };
        let _ = self.out.send(Message::Text(stamped.into())).await;
    }

    /// Sends a frame that was numbered already (a replay).
    async fn send_stamped(&self, text: &str) {
        let _ = self.out.send(Message::Text(text.to_string().into())).await;
    }

    async fn close(&self, code: u16, reason: &'static str) {
        let _ = self
            .out
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    async fn error(&self, code: u16, reason: impl Into<String>) {
        self.send_text(error_frame(code, reason)).await;
    }

    async fn ok(&self) {
        self.send_text(frame("ok", json!({}))).await;
    }

    fn publish(&self, user: i64, text: String) {
        self.state.bus.publish(user, Arc::from(text));
    }

    async fn on_text(&mut self, text: &str) -> Next {
        if self.limiter.check().is_err() {
            self.error(429, "too many frames; slow down").await;
            return Next::Continue;
        }
        let parsed: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                if !self.heartbeat_seen {
                    self.error(400, "the first frame must be a heartbeat").await;
                    return Next::Close(1008, "heartbeat first");
                }
                self.error(400, format!("bad JSON: {e}")).await;
                return Next::Continue;
            }
        };
        let kind = parsed
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let payload = parsed.get("payload").cloned().unwrap_or(Value::Null);
        if kind == "heartbeat" {
            self.heartbeat_seen = true;
            self.send_text(frame("heartbeat", payload)).await;
            return Next::Heartbeat;
        }
        if !self.heartbeat_seen {
            self.error(400, "the first frame must be a heartbeat").await;
            return Next::Close(1008, "heartbeat first");
        }
        if kind == "auth" {
            self.auth(&payload).await;
            return Next::Continue;
        }
        if kind == "resume" {
            self.resume(&payload).await;
            return Next::Continue;
        }
        let Some(me) = self.account.clone() else {
            self.error(401, "authenticate first (an auth frame with a login token)")
                .await;
            return Next::Continue;
        };
        let result = match kind {
            "chat" => self.chat(&me, &payload).await,
            "load" => self.load(&me, &payload).await,
            "mutual_users" => self.mutual_users(&me, &payload).await,
            "typing" => self.typing(&me, &payload).await,
            "room" => self.room(&me, &payload).await,
            "" => Err((400, "missing field type".to_string())),
            other => Err((400, format!("unknown frame type {other:?}"))),
        };
        if let Err((code, reason)) = result {
            self.error(code, reason).await;
        }
        Next::Continue
    }

    async fn auth(&mut self, payload: &Value) {
        if self.account.is_some() {
            return self.error(400, "already authenticated").await;
        }
        let Ok(token) = str_field(payload, "auth") else {
            return self
                .error(400, "missing field auth (the login token)")
                .await;
        };
        let db = &self.state.db;
        let account = match crate::accounts::account_for_token(db, token).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                return self
                    .error(401, "this token is not valid (expired or logged out)")
                    .await;
            }
            Err(error) => {
                tracing::error!(%error, "chat auth failed in the database");
                return self.error(500, "internal error").await;
            }
        };
        let (requests, mutual, rooms) = match (
            incoming_requests(db, account.id).await,
            friends(db, account.id).await,
            rooms_of(db, account.id).await,
        ) {
            (Ok(requests), Ok(mutual), Ok(rooms)) => (requests, mutual, rooms),
            _ => return self.error(500, "internal error").await,
        };
        self.subscription = Some(self.state.bus.subscribe(account.id));
        if self.state.bus.live(account.id, 1) == 1 {
            announce_presence(&self.state, &account, &mutual, "online");
        }
        let session = crate::accounts::random_secret();
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(FrameLog::default());
        self.session_id = Some(session.clone());
        self.send_text(frame(
            "auth",
            json!({
                "self_user": user_object(&account),
                "mutual_requests": requests.iter().map(user_object).collect::<Vec<_>>(),
                "mutual_users": mutual.iter().map(user_object).collect::<Vec<_>>(),
                "rooms": rooms.iter().map(|r| json!({"id": r.id.to_string(), "name": r.name})).collect::<Vec<_>>(),
                "session": session,
            }),
        ))
        .await;
        self.account = Some(account);
    }

    /// `{"type":"resume","payload":{"session","auth","last_seq"}}` on a fresh socket (after its
    /// heartbeat): replays the frames after `last_seq` in order and carries the session on, or
    /// answers 410 when it cannot (then authenticate and load history as usual).
    async fn resume(&mut self, payload: &Value) {
        if self.account.is_some() {
            return self.error(400, "already authenticated").await;
        }
        let (Ok(session), Ok(token)) = (str_field(payload, "session"), str_field(payload, "auth"))
        else {
            return self
                .error(400, "resume needs session, auth and last_seq")
                .await;
        };
        let Some(last_seq) = payload.get("last_seq").and_then(Value::as_u64) else {
            return self.error(400, "last_seq must be a number").await;
        };
        let account = match crate::accounts::account_for_token(&self.state.db, token).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                return self
                    .error(401, "this token is not valid (expired or logged out)")
                    .await;
            }
            Err(_) => return self.error(500, "internal error").await,
        };
        let cannot = "cannot resume this session; send auth and load the history";
        let Some(state) = self.state.sessions.resume(session, account.id).await else {
            return self.error(410, cannot).await;
        };
        let Some(missed) = state.log.since(last_seq) else {
            self.state
                .bus
                .unsubscribe(state.account_id, state.socket_id);
            return self.error(410, cannot).await;
        };
        for frame_text in &missed {
            self.send_stamped(frame_text).await;
        }
        if self.state.bus.live(account.id, 1) == 1
            && let Ok(list) = friends(&self.state.db, account.id).await
        {
            announce_presence(&self.state, &account, &list, "online");
        }
        self.subscription = Some((state.socket_id, state.receiver));
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.log);
        self.session_id = Some(session.to_string());
        self.account = Some(account);
        self.send_text(frame(
            "resumed",
            json!({"session": session, "replayed": missed.len()}),
        ))
        .await;
    }

    /// What a `chat_id` names for this requester: a room it belongs to, or a DM (the XOR id
    /// resolved for this requester only).
    async fn target(&self, me: &Account, chat_id: i64) -> Result<Target, (u16, String)> {
        let internal = |_| (500u16, "internal error".to_string());
        match resolve_chat(&self.state.db, me.id, chat_id)
            .await
            .map_err(internal)?
        {
            ChatTarget::Room(room) => {
                let members = room_members(&self.state.db, room.id)
                    .await
                    .map_err(internal)?;
                if !members.iter().any(|m| m.id == me.id) {
                    return Err((403, "you are not a member of this room".into()));
                }
                Ok(Target::Room { room, members })
            }
            ChatTarget::Dm { other, friends } => Ok(Target::Dm { other, friends }),
            ChatTarget::Nothing => Err((404, "no such chat".into())),
        }
    }

    async fn chat(&mut self, me: &Account, payload: &Value) -> Result<(), (u16, String)> {
        let bad = |reason: String| (400u16, reason);
        let kind = str_field(payload, "type").map_err(bad)?;
        let chat_id = id_field(payload, "chat_id").map_err(bad)?;
        let content = str_field(payload, "content").map_err(bad)?.trim();
        if content.chars().count() > MAX_CONTENT_CHARS {
            return Err((
                413,
                format!("content: at most {MAX_CONTENT_CHARS} characters"),
            ));
        }
        let target = self.target(me, chat_id).await?;
        let db = &self.state.db;
        let internal = |_| (500u16, "internal error".to_string());
        match kind {
            "send" => {
                if content.is_empty() {
                    self.ok().await;
                    return Ok(());
                }
                // Anyone may write to the herald bot; people only to their friends.
                let to_bot = matches!(&target, Target::Dm { other, .. } if other.id == self.state.bot_account_id);
                if let Target::Dm { friends: false, .. } = &target
                    && !to_bot
                {
                    return Err((403, "you can only message friends".into()));
                }
                let nonce = match payload.get("nonce") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(n)) if !n.is_empty() && n.len() <= 100 => Some(n.as_str()),
                    Some(_) => {
                        return Err(bad("nonce must be a string of 1 to 100 characters".into()));
                    }
                };
                let (message, repeat) =
                    store_message(db, &self.state.ids, target.key(me), me.id, content, nonce)
                        .await
                        .map_err(internal)?;
                let mut body = chat_payload("send", &message, chat_id);
                if let Some(nonce) = nonce {
                    body["nonce"] = json!(nonce);
                }
                let text = frame("chat", body);
                if repeat {
                    // Already delivered to everyone: only this socket needs its answer again.
                    self.send_text(text).await;
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
            "edit" => {
                let id = id_field(payload, "id").map_err(bad)?;
                let (low, high) = target.key(me);
                let Some(found) = find_message(db, low, high, id).await.map_err(internal)? else {
                    return Err((404, "no such message in this chat".into()));
                };
                if found.user_id != me.id {
                    return Err((403, "only the author may edit or delete a message".into()));
                }
                edit_message(db, id, content).await.map_err(internal)?;
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
            other => Err(bad(format!("unknown chat type {other:?} (send or edit)"))),
        }
    }

    /// `{"type":"typing","payload":{"chat_id"}}`: the other participants see
    /// `{"type":"typing","payload":{"chat_id","user_id"}}`. Not stored.
    async fn typing(&mut self, me: &Account, payload: &Value) -> Result<(), (u16, String)> {
        let chat_id = id_field(payload, "chat_id").map_err(|reason| (400u16, reason))?;
        let target = self.target(me, chat_id).await?;
        if let Target::Dm { friends: false, .. } = &target {
            return Err((403, "you can only message friends".into()));
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

    async fn load(&mut self, me: &Account, payload: &Value) -> Result<(), (u16, String)> {
        let bad = |reason: String| (400u16, reason);
        let internal = |_| (500u16, "internal error".to_string());
        match str_field(payload, "type").map_err(bad)? {
            "mutual_users" => {
                let list = friends(&self.state.db, me.id).await.map_err(internal)?;
                let users: Vec<Value> = list.iter().map(user_object).collect();
                self.send_text(frame(
                    "load",
                    json!({"type": "mutual_users", "users": users}),
                ))
                .await;
                Ok(())
            }
            "chat" => {
                let load_id = id_field(payload, "load_id").map_err(bad)?;
                let encoded = str_field(payload, "datetime").map_err(bad)?;
                let format_error =
                    || bad("datetime must be base64 of YYYY-MM-DD HH:MM:SS.ffffff".into());
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(format_error)?;
                let before = parse_created_at(&decoded).ok_or_else(format_error)?;
                let count = payload
                    .get("count")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| bad("count must be a number".into()))?
                    .clamp(1, 100);
                let target = self.target(me, load_id).await?;
                let (low, high) = target.key(me);
                for message in history(&self.state.db, low, high, before, count)
                    .await
                    .map_err(internal)?
                {
                    self.send_text(frame("chat", chat_payload("send", &message, load_id)))
                        .await;
                }
                Ok(())
            }
            other => Err(bad(format!(
                "unknown load type {other:?} (chat or mutual_users)"
            ))),
        }
    }

    /// Group rooms: `{"type":"room","payload":{"type":"create"|"invite"|"leave"|"members", …}}`.
    async fn room(&mut self, me: &Account, payload: &Value) -> Result<(), (u16, String)> {
        let bad = |reason: String| (400u16, reason);
        let internal = |_| (500u16, "internal error".to_string());
        let db = &self.state.db;
        match str_field(payload, "type").map_err(bad)? {
            "create" => {
                let name = str_field(payload, "name").map_err(bad)?.trim();
                if name.is_empty() || name.chars().count() > 100 {
                    return Err(bad("name: 1 to 100 characters".into()));
                }
                let names: Vec<&str> = match payload.get("members") {
                    None => Vec::new(),
                    Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
                    Some(_) => return Err(bad("members must be a list of user names".into())),
                };
                let friends_now = friends(db, me.id).await.map_err(internal)?;
                let mut members = vec![me.id];
                for name in names {
                    let Some(friend) = friends_now.iter().find(|f| f.name == name) else {
                        return Err((403, format!("{name:?} is not your friend")));
                    };
                    if !members.contains(&friend.id) {
                        members.push(friend.id);
                    }
                }
                let room = create_room(db, &self.state.ids, name, &members)
                    .await
                    .map_err(internal)?;
                self.announce_room(&room, "created", None).await
            }
            "invite" => {
                let room = self.member_room(me, payload).await?;
                let name = str_field(payload, "name").map_err(bad)?;
                let friends_now = friends(db, me.id).await.map_err(internal)?;
                let Some(friend) = friends_now.into_iter().find(|f| f.name == name) else {
                    return Err((403, format!("{name:?} is not your friend")));
                };
                if !add_member(db, room.id, friend.id).await.map_err(internal)? {
                    return Err((409, format!("{name:?} is already a member")));
                }
                self.announce_room(&room, "joined", Some(&friend)).await
            }
            "leave" => {
                let room = self.member_room(me, payload).await?;
                remove_member(db, room.id, me.id).await.map_err(internal)?;
                let text = frame(
                    "room",
                    json!({"type": "left", "room_id": room.id.to_string(), "user": user_object(me)}),
                );
                for member in room_members(db, room.id).await.map_err(internal)? {
                    self.publish(member.id, text.clone());
                }
                self.publish(me.id, text);
                Ok(())
            }
            "members" => {
                let room = self.member_room(me, payload).await?;
                let members = room_members(db, room.id).await.map_err(internal)?;
                self.send_text(frame(
                    "room",
                    json!({"type": "members", "room": room_object(&room, &members)}),
                ))
                .await;
                Ok(())
            }
            other => Err(bad(format!(
                "unknown room type {other:?} (create, invite, leave, members)"
            ))),
        }
    }

    /// The room named by `room_id`, if the requester is a member.
    async fn member_room(&self, me: &Account, payload: &Value) -> Result<Room, (u16, String)> {
        let room_id = id_field(payload, "room_id").map_err(|reason| (400u16, reason))?;
        match self.target(me, room_id).await {
            Ok(Target::Room { room, .. }) => Ok(room),
            Ok(Target::Dm { .. }) | Err((404, _)) => Err((404, "no such room".into())),
            Err(error) => Err(error),
        }
    }

    /// Tells every member about a new room or member.
    async fn announce_room(
        &self,
        room: &Room,
        kind: &str,
        user: Option<&Account>,
    ) -> Result<(), (u16, String)> {
        let members = room_members(&self.state.db, room.id)
            .await
            .map_err(|_| (500u16, "internal error".to_string()))?;
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

    async fn mutual_users(&mut self, me: &Account, payload: &Value) -> Result<(), (u16, String)> {
        let bad = |reason: String| (400u16, reason);
        let internal = |_| (500u16, "internal error".to_string());
        let kind = str_field(payload, "type").map_err(bad)?.to_string();
        let name = str_field(payload, "name").map_err(bad)?;
        let db = &self.state.db;
        let Some(them) = crate::accounts::find_by_name(db, name.trim())
            .await
            .map_err(internal)?
        else {
            return Err((404, format!("no user named {name:?}")));
        };
        let change = match kind.as_str() {
            "request" => request_friend(db, me.id, them.id).await,
            "response" => accept_friend(db, me.id, them.id).await,
            "remove" => withdraw_request(db, me.id, them.id).await,
            "delete" => delete_friend(db, me.id, them.id).await,
            other => return Err(bad(format!("unknown mutual_users type {other:?}"))),
        }
        .map_err(internal)?;
        if kind == "request"
            && them.id == self.state.bot_account_id
            && matches!(change, FriendChange::Done)
        {
            // The bot accepts every friend request at once.
            accept_friend(db, them.id, me.id).await.map_err(internal)?;
            self.ok().await;
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
                        json!({"type": kind, "user": user_object(me)}),
                    ),
                );
                self.ok().await;
                Ok(())
            }
            FriendChange::Nothing(reason) => Err((409, reason.to_string())),
        }
    }
}
