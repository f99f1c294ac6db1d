//! `/chat`: friends with their presence, friend requests, group rooms, and each conversation
//! (`/chat/{chat_id}`, the protocol's chat id: a DM's is the two account ids XOR-ed, a room's
//! its id) with its recent history and a form to send. Everything works without JavaScript
//! through the chat's own functions (`chat::request_friend`, `chat::store_message`, the bus), so
//! a message sent from the form is stored and reaches every socket exactly like one sent over
//! `/ws`.
//!
//! With JavaScript, `assets/chat.js` makes the page live over `/ws` with the unchanged protocol.
//! It authenticates with a **socket ticket** from `POST /chat/ticket` (CSRF-checked): a login
//! token of its own that lives [`TICKET_TTL_MS`], asked for before every connection (`auth` or
//! `resume`). The session cookie stays `HttpOnly`; script never sees it, and a leaked ticket is
//! worthless minutes later.

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::csrf::{CsrfForm, NoFields, SignedInForm};
use super::home::display_time;
use super::session::{SignedIn, Visitor};
use super::{
    Layout, MessagePage, PageResult, WebState, internal_error, not_found_page, or_internal_error,
    render, render_or_internal_error,
};
use crate::accounts::Account;
use crate::chat::{ChatTarget, FriendChange};
use crate::store::StoreError;

/// How long a socket ticket is a valid login token.
pub const TICKET_TTL_MS: i64 = 5 * 60 * 1000;
/// How many messages a conversation page shows at once.
const PAGE_MESSAGES: i64 = 50;

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/chat", list)
        .outside(Outside::Page, Method::POST, "/chat/friends", friends_form)
        .outside(Outside::Page, Method::POST, "/chat/rooms", new_room)
        .outside(Outside::Page, Method::POST, "/chat/ticket", ticket)
        .outside(Outside::Page, Method::GET, "/chat/presence", presence)
        .outside(Outside::Page, Method::GET, "/chat/{chat_id}", conversation)
        .outside(Outside::Page, Method::POST, "/chat/{chat_id}/send", send)
        .outside(Outside::Page, Method::POST, "/chat/{chat_id}/read", read)
        .outside(
            Outside::Page,
            Method::POST,
            "/chat/{chat_id}/invite",
            invite,
        )
        .outside(Outside::Page, Method::POST, "/chat/{chat_id}/leave", leave)
}

struct PersonRow {
    id: String,
    name: String,
    chat_id: String,
    online: bool,
}

struct RoomRow {
    id: String,
    name: String,
}

#[derive(Template)]
#[template(path = "web/chat.html")]
struct ChatListPage {
    layout: Layout,
    notice: Option<(&'static str, String)>,
    me: String,
    friends: Vec<PersonRow>,
    requests: Vec<String>,
    rooms: Vec<RoomRow>,
    script: &'static str,
}

struct MessageRow {
    id: String,
    author: String,
    mine: bool,
    at: String,
    when: String,
    content: String,
}

#[derive(Template)]
#[template(path = "web/chat_room.html")]
struct ConversationPage {
    layout: Layout,
    me: String,
    me_name: String,
    chat_id: String,
    name: String,
    members: Vec<PersonRow>,
    messages: Vec<MessageRow>,
    /// `?before=` for the next older page, when there may be one.
    older: Option<i64>,
    error: Option<String>,
    /// A group room's forms: inviting a friend and leaving. `None` for a DM.
    room: Option<RoomForms>,
    script: &'static str,
}

/// What a room's page offers beside the conversation.
struct RoomForms {
    /// My friends who are not members yet, by name.
    invitable: Vec<String>,
    /// Why the invitation was refused, next to its field.
    error: Option<String>,
    /// Who was just invited.
    done: Option<String>,
}

async fn online(state: &WebState, id: i64) -> bool {
    state.chat.bus.live(id, 0).await > 0
}

async fn person(state: &WebState, me: i64, account: &Account) -> PersonRow {
    PersonRow {
        id: account.id.to_string(),
        name: account.name.clone(),
        chat_id: crate::chat::dm_chat_id(me, account.id).to_string(),
        online: online(state, account.id).await,
    }
}

/// The people of `accounts` as rows, each with its presence (asked one after another).
async fn people(state: &WebState, me: i64, accounts: &[&Account]) -> Vec<PersonRow> {
    let mut rows = Vec::new();
    for account in accounts {
        rows.push(person(state, me, account).await);
    }
    rows
}

async fn build_list(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
) -> Result<ChatListPage, StoreError> {
    let db = &state.db;
    let friends = crate::chat::friends(db, account.id).await?;
    let friends = people(state, account.id, &friends.iter().collect::<Vec<_>>()).await;
    let requests = crate::chat::incoming_requests(db, account.id)
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    let rooms = crate::chat::rooms_of(db, account.id)
        .await?
        .into_iter()
        .map(|r| RoomRow {
            id: r.id.to_string(),
            name: r.name,
        })
        .collect();
    Ok(ChatListPage {
        layout: Layout::new(visitor, visitor.lang.messages().chat_title),
        notice: None,
        me: account.id.to_string(),
        friends,
        requests,
        rooms,
        script: super::assets::chat_script_url(),
    })
}

async fn list(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    let built = build_list(&state, &signed_in.visitor, &signed_in.account).await;
    render_or_internal_error(&signed_in.visitor, StatusCode::OK, built)
}

#[derive(Deserialize)]
struct FriendForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    action: String,
}

/// Sends, accepts or declines a friend request, as the `mutual_users` frames do, and tells the
/// other side's sockets the same way.
async fn friends_form(
    State(state): State<WebState>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<FriendForm>,
) -> Response {
    let t = visitor.lang.messages();
    let db = &state.db;
    let (word, done_text) = match form.action.as_str() {
        "request" => ("request", t.chat_request_sent),
        "accept" => ("response", t.chat_accepted),
        "decline" => ("delete", t.chat_declined),
        _ => {
            return MessagePage::new(&visitor, t.form_has_errors, t.chat_bad_action, "bad")
                .link("/chat", t.chat_title)
                .with_status(StatusCode::BAD_REQUEST);
        }
    };
    let name = form.name.trim();
    let notice = match crate::accounts::find_by_name(db, name).await {
        Err(error) => return internal_error(&visitor, &error),
        Ok(None) => ("bad", format!("{} {name}", t.chat_no_such_user)),
        Ok(Some(them)) => {
            let change = match word {
                "request" => crate::chat::request_friend(db, account.id, them.id).await,
                "response" => crate::chat::accept_friend(db, account.id, them.id).await,
                _ => crate::chat::delete_friend(db, account.id, them.id).await,
            };
            match change {
                Err(error) => return internal_error(&visitor, &error),
                Ok(FriendChange::Nothing(_)) => ("bad", t.chat_nothing_to_do.to_string()),
                Ok(FriendChange::Done) => {
                    let bot_accepts = word == "request" && them.id == state.chat.bot_account_id;
                    if bot_accepts {
                        if let Err(error) =
                            crate::chat::accept_friend(db, them.id, account.id).await
                        {
                            return internal_error(&visitor, &error);
                        }
                    } else {
                        let frame = json!({"type": "mutual_users", "payload": {
                            "type": word, "user": crate::chat::user_object(&account)}});
                        state.chat.bus.publish(them.id, frame.to_string().into());
                    }
                    ("ok", format!("{done_text} {}", them.name))
                }
            }
        }
    };
    match build_list(&state, &visitor, &account).await {
        Ok(mut page) => {
            let status = if notice.0 == "ok" {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            page.notice = Some(notice);
            (status, render(&page)).into_response()
        }
        Err(error) => internal_error(&visitor, &error),
    }
}

/// The list page again, with what was wrong (422).
async fn list_refusing(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    text: String,
) -> Response {
    match build_list(state, visitor, account).await {
        Ok(mut page) => {
            page.notice = Some(("bad", text));
            (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(error) => internal_error(visitor, &error),
    }
}

/// Creates a group room with some friends (the form's `member` boxes), as a `room` `create`
/// frame does, tells every member's sockets, and opens it.
async fn new_room(
    State(state): State<WebState>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<Vec<(String, String)>>,
) -> PageResult {
    let t = visitor.lang.messages();
    let db = &state.db;
    let name = form
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    if name.is_empty() || name.chars().count() > 100 {
        let text = t.chat_room_bad_name.to_string();
        return Ok(list_refusing(&state, &visitor, &account, text).await);
    }
    let friends_now = or_internal_error(&visitor, crate::chat::friends(db, account.id).await)?;
    let mut members = vec![account.id];
    for (_, wanted) in form.iter().filter(|(k, _)| k == "member") {
        let Some(friend) = friends_now.iter().find(|f| &f.name == wanted) else {
            let text = format!("{} {wanted}", t.chat_not_a_friend);
            return Ok(list_refusing(&state, &visitor, &account, text).await);
        };
        if !members.contains(&friend.id) {
            members.push(friend.id);
        }
    }
    let room = crate::chat::create_room(db, &state.ids, name, &members).await;
    let room = or_internal_error(&visitor, room)?;
    let everyone = or_internal_error(&visitor, crate::chat::room_members(db, room.id).await)?;
    let frame = json!({"type": "room", "payload": {
        "type": "created", "room": crate::chat::room_object(&room, &everyone)}})
    .to_string();
    let frame: std::sync::Arc<str> = frame.into();
    for member in &everyone {
        state.chat.bus.publish(member.id, frame.clone());
    }
    Ok(Redirect::to(&format!("/chat/{}", room.id)).into_response())
}

/// A short-lived login token for the page's socket (see the module's doc).
async fn ticket(
    State(state): State<WebState>,
    CsrfForm { visitor, .. }: CsrfForm<NoFields>,
) -> Response {
    let Some(account) = visitor.account.clone() else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "sign in first"})),
        )
            .into_response();
    };
    match crate::accounts::issue_token_for(&state.db, account.id, TICKET_TTL_MS).await {
        Ok(token) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({"token": token})),
        )
            .into_response(),
        Err(error) => match crate::store::storage_failure(&error) {
            Some(failure) => {
                tracing::error!(%error, "could not issue a chat socket ticket: storage unavailable");
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": failure.message()})),
                )
                    .into_response();
                crate::http::error::mark_storage_failed(&mut response, failure);
                response
            }
            None => {
                tracing::error!(%error, "could not issue a chat socket ticket");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": "internal error"})),
                )
                    .into_response()
            }
        },
    }
}

/// Which friends are online now: `{"friends": ["<id>", …], "online": ["<id>", …]}`. The page asks after every `auth`
/// and `resume`, since `presence` frames only tell changes (one sent while the page was not
/// connected is not seen).
async fn presence(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    match crate::chat::friends(&state.db, signed_in.account.id).await {
        Ok(friends) => {
            let mut online_now = Vec::new();
            for friend in &friends {
                if online(&state, friend.id).await {
                    online_now.push(friend.id.to_string());
                }
            }
            let all: Vec<String> = friends.iter().map(|f| f.id.to_string()).collect();
            (
                [(header::CACHE_CONTROL, "no-store")],
                axum::Json(json!({"friends": all, "online": online_now})),
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "could not read the friends for the chat page's presence");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": "internal error"})),
            )
                .into_response()
        }
    }
}

/// A conversation the visitor may read and write: a DM with a friend (or the herald bot), or a
/// room they are a member of. Anything else is `None`, shown as 404.
struct Conversation {
    name: String,
    /// The room, for a group room.
    room: Option<crate::chat::Room>,
    key: (i64, i64),
    /// Everyone whose sockets see the conversation, the visitor included.
    members: Vec<Account>,
    to_bot: bool,
}

async fn conversation_of(
    state: &WebState,
    me: &Account,
    chat_id: i64,
) -> Result<Option<Conversation>, StoreError> {
    let db = &state.db;
    Ok(match crate::chat::resolve_chat(db, me.id, chat_id).await? {
        ChatTarget::Room(room) => {
            let members = crate::chat::room_members(db, room.id).await?;
            members.iter().any(|m| m.id == me.id).then(|| Conversation {
                name: room.name.clone(),
                key: crate::chat::room_key(room.id),
                room: Some(room),
                members,
                to_bot: false,
            })
        }
        ChatTarget::Dm { other, friends } => {
            let to_bot = other.id == state.chat.bot_account_id;
            (friends || to_bot).then(|| Conversation {
                name: other.name.clone(),
                room: None,
                key: crate::chat::pair(me.id, other.id),
                members: vec![me.clone(), other],
                to_bot,
            })
        }
        ChatTarget::Nothing => None,
    })
}

fn not_found(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    let text = t.chat_not_found;
    not_found_page(visitor, text, text, "/chat", t.chat_title)
}

/// The conversation a page's path names, with its chat id, when the visitor is in it;
/// otherwise the 404 page.
async fn my_conversation(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    raw_chat_id: &str,
) -> Result<(i64, Conversation), Response> {
    let Ok(chat_id) = raw_chat_id.parse::<i64>() else {
        return Err(not_found(visitor));
    };
    let found = conversation_of(state, account, chat_id).await;
    Ok((chat_id, super::found(visitor, found, not_found)?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<i64>,
}

async fn build_conversation(
    state: &WebState,
    visitor: &Visitor,
    me: &Account,
    chat_id: i64,
    found: Conversation,
    before: Option<i64>,
) -> Result<ConversationPage, StoreError> {
    let before_us = before.unwrap_or(i64::MAX);
    let (low, high) = found.key;
    let mut history = crate::chat::history(&state.db, low, high, before_us, PAGE_MESSAGES).await?;
    let older = (history.len() as i64 == PAGE_MESSAGES)
        .then(|| history.last().map(|m| m.created_at_us))
        .flatten();
    // The newest messages are on the screen now: the conversation is read up to them.
    if before.is_none()
        && let Some(newest) = history.first()
    {
        crate::chat::mark_read(&state.db, me.id, found.key, newest.created_at_us).await?;
    }
    history.reverse();
    let name_of = |id: i64| {
        found
            .members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.name.clone())
            // Someone who has left the room since.
            .unwrap_or_else(|| "?".to_string())
    };
    let messages = history
        .into_iter()
        .map(|m| MessageRow {
            id: m.id.to_string(),
            author: name_of(m.user_id),
            mine: m.user_id == me.id,
            at: crate::chat::format_created_at(m.created_at_us),
            when: display_time(m.created_at_us / 1000),
            content: m.content,
        })
        .collect();
    let others: Vec<&Account> = found.members.iter().filter(|m| m.id != me.id).collect();
    let room = match &found.room {
        Some(_) => Some(RoomForms {
            invitable: crate::chat::friends(&state.db, me.id)
                .await?
                .into_iter()
                .filter(|f| !found.members.iter().any(|m| m.id == f.id))
                .map(|f| f.name)
                .collect(),
            error: None,
            done: None,
        }),
        None => None,
    };
    Ok(ConversationPage {
        layout: Layout::new(visitor, &found.name),
        me: me.id.to_string(),
        me_name: me.name.clone(),
        chat_id: chat_id.to_string(),
        name: found.name.clone(),
        members: people(state, me.id, &others).await,
        messages,
        older,
        error: None,
        room,
        script: super::assets::chat_script_url(),
    })
}

async fn conversation(
    State(state): State<WebState>,
    Path(chat_id): Path<String>,
    Query(query): Query<HistoryQuery>,
    signed_in: SignedIn,
) -> PageResult {
    let SignedIn { visitor, account } = signed_in;
    let (chat_id, found) = my_conversation(&state, &visitor, &account, &chat_id).await?;
    let page = build_conversation(&state, &visitor, &account, chat_id, found, query.before).await;
    Ok(render(&or_internal_error(&visitor, page)?))
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    content: String,
}

/// Stores a message and publishes it to every socket of the conversation, as a `chat` `send`
/// frame does; then back to the conversation (303, so a reload does not send it again).
async fn send(
    State(state): State<WebState>,
    Path(chat_id): Path<String>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<SendForm>,
) -> PageResult {
    let (chat_id, found) = my_conversation(&state, &visitor, &account, &chat_id).await?;
    let content = form.content.trim();
    let max = crate::chat::socket::MAX_CONTENT_CHARS;
    if content.is_empty() || content.chars().count() > max {
        let t = visitor.lang.messages();
        let error = if content.is_empty() {
            t.chat_empty.to_string()
        } else {
            format!("{} ({max})", t.chat_too_long)
        };
        let page = build_conversation(&state, &visitor, &account, chat_id, found, None).await;
        let mut page = or_internal_error(&visitor, page)?;
        page.error = Some(error);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    let stored =
        crate::chat::store_message(&state.db, &state.ids, found.key, account.id, content, None)
            .await;
    let (message, _) = or_internal_error(&visitor, stored)?;
    // Writing from the conversation's page: what it showed is read. The message is stored
    // whatever happens here, so a read mark that cannot be stored (a full disk) is only logged:
    // refusing now would tell the writer that a stored message was not.
    if let Err(error) =
        crate::chat::mark_read(&state.db, account.id, found.key, message.created_at_us).await
    {
        if let Some(failure) = state.db.storage().note(&error) {
            tracing::warn!(%error, ?failure, "a sent message's read mark could not be stored");
        } else {
            tracing::error!(%error, "a sent message's read mark could not be stored");
        }
    }
    let frame = json!({"type": "chat",
        "payload": crate::chat::chat_payload("send", &message, chat_id)})
    .to_string();
    let frame: std::sync::Arc<str> = frame.into();
    for member in &found.members {
        state.chat.bus.publish(member.id, frame.clone());
    }
    if found.to_bot {
        crate::chat::bot::answer(
            state.chat.clone(),
            account.clone(),
            message.id,
            content.to_string(),
        );
    }
    Ok(Redirect::to(&format!("/chat/{chat_id}#compose")).into_response())
}

#[derive(Deserialize)]
struct ReadForm {
    /// The `created_at` (the protocol's format) of the newest message the page showed.
    #[serde(default)]
    up_to: String,
}

/// `POST /chat/{chat_id}/read`: the conversation's page (with `chat.js`) showed messages that
/// came over the socket; the read mark moves up to the newest (never past now). 204.
async fn read(
    State(state): State<WebState>,
    Path(chat_id): Path<String>,
    CsrfForm { visitor, form }: CsrfForm<ReadForm>,
) -> PageResult {
    let Some(account) = visitor.account.clone() else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    let (_, found) = my_conversation(&state, &visitor, &account, &chat_id).await?;
    let Some(up_to) = crate::chat::parse_created_at(&form.up_to) else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
    let up_to = up_to.min(crate::chat::now_micros());
    let read = crate::chat::mark_read(&state.db, account.id, found.key, up_to).await;
    or_internal_error(&visitor, read)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The room a form of its page names, when the visitor is a member; otherwise the 404 page.
async fn member_room(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    raw_chat_id: &str,
) -> Result<(i64, crate::chat::Room), Response> {
    match my_conversation(state, visitor, account, raw_chat_id).await? {
        (
            chat_id,
            Conversation {
                room: Some(room), ..
            },
        ) => Ok((chat_id, room)),
        _ => Err(not_found(visitor)),
    }
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    name: String,
}

/// `POST /chat/{room_id}/invite`: adds a friend to a room I am in, as a `room` `invite` frame
/// does, and tells every member's sockets (`joined`, with the room and the new member). The
/// room's page again, with what happened next to the form: 200, or 422 when the name is not a
/// friend of mine or already a member.
async fn invite(
    State(state): State<WebState>,
    Path(chat_id): Path<String>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<InviteForm>,
) -> PageResult {
    let (chat_id, room) = member_room(&state, &visitor, &account, &chat_id).await?;
    let t = visitor.lang.messages();
    let db = &state.db;
    let name = form.name.trim().to_string();
    let friends = or_internal_error(&visitor, crate::chat::friends(db, account.id).await)?;
    let friend = friends.into_iter().find(|f| f.name == name);
    let outcome = match friend {
        None => Err(format!("{} {name}", t.chat_not_a_friend)),
        Some(friend) => match crate::chat::add_member(db, room.id, friend.id).await {
            Err(error) => return Err(internal_error(&visitor, &error)),
            Ok(false) => Err(format!("{} {name}", t.chat_already_member)),
            Ok(true) => {
                let members =
                    or_internal_error(&visitor, crate::chat::room_members(db, room.id).await)?;
                let frame = json!({"type": "room", "payload": {
                    "type": "joined",
                    "room": crate::chat::room_object(&room, &members),
                    "user": crate::chat::user_object(&friend)}})
                .to_string();
                let frame: std::sync::Arc<str> = frame.into();
                for member in &members {
                    state.chat.bus.publish(member.id, frame.clone());
                }
                Ok(format!("{} {name}", t.chat_invited))
            }
        },
    };
    // The page as it is now, the new member included.
    let found = conversation_of(&state, &account, chat_id).await;
    let found = super::found(&visitor, found, not_found)?;
    let page = build_conversation(&state, &visitor, &account, chat_id, found, None).await;
    let mut page = or_internal_error(&visitor, page)?;
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    if let Some(forms) = page.room.as_mut() {
        match outcome {
            Ok(done) => forms.done = Some(done),
            Err(error) => forms.error = Some(error),
        }
    }
    Ok((status, render(&page)).into_response())
}

/// `POST /chat/{room_id}/leave`: leaves a room, as a `room` `leave` frame does: the members
/// left behind and my own sockets get `left`. Then the chat list, without the room.
async fn leave(
    State(state): State<WebState>,
    Path(chat_id): Path<String>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> PageResult {
    let (_, room) = member_room(&state, &visitor, &account, &chat_id).await?;
    let db = &state.db;
    or_internal_error(
        &visitor,
        crate::chat::remove_member(db, room.id, account.id).await,
    )?;
    let remaining = or_internal_error(&visitor, crate::chat::room_members(db, room.id).await)?;
    let frame = json!({"type": "room", "payload": {
        "type": "left", "room_id": room.id.to_string(),
        "user": crate::chat::user_object(&account)}})
    .to_string();
    let frame: std::sync::Arc<str> = frame.into();
    for member in &remaining {
        state.chat.bus.publish(member.id, frame.clone());
    }
    state.chat.bus.publish(account.id, frame);
    let t = visitor.lang.messages();
    let mut page = or_internal_error(&visitor, build_list(&state, &visitor, &account).await)?;
    page.notice = Some(("ok", format!("{} {}", t.chat_left, room.name)));
    Ok(render(&page))
}
