//! The chat page (`web::chat`) without JavaScript, through plain HTTP as `web_pages.rs` does:
//! friend requests, sending from the form (stored and published to sockets like a `/ws`
//! message), the socket ticket, and what another account may not see or do. The live page in a
//! real browser is in `web_browser.rs`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(
    friends_are_made_and_messages_sent_from_the_chat_page_without_javascript,
    chat_forms_refuse_a_missing_csrf_token_and_other_peoples_chats,
    group_rooms_are_made_joined_and_left_from_the_chat_page,
    a_read_frame_over_the_socket_moves_the_read_mark,
);

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `/ws` client that authenticates with a ticket from the page.
async fn socket_with_ticket(app: &TestApp, page: &mut PageClient) -> (Stream, Value) {
    page.get("/chat").await;
    let ticket = page.post("/chat/ticket", &[]).await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    assert_eq!(
        ticket
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let token: Value = serde_json::from_str(&ticket.body).expect("ticket JSON");
    let token = token["token"].as_str().expect("token").to_string();
    let url = format!("{}/ws", app.address.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    ws.send(Message::text(
        json!({"type": "heartbeat", "payload": 1}).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(next_frame(&mut ws).await["type"], json!("heartbeat"));
    ws.send(Message::text(
        json!({"type": "auth", "payload": {"auth": token}}).to_string(),
    ))
    .await
    .expect("send");
    let auth = next_frame(&mut ws).await;
    assert_eq!(auth["type"], json!("auth"), "{auth}");
    (ws, auth["payload"].clone())
}

/// The next frame that is not a presence update (panics after 5 s).
async fn next_frame(ws: &mut Stream) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("the socket is open")
            .expect("a message");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
            if frame["type"] != json!("presence") {
                return frame;
            }
        }
    }
}

async fn account_id(app: &TestApp, name: &str) -> i64 {
    herald::accounts::find_by_name(&app.state.db, name)
        .await
        .expect("read")
        .expect("account")
        .id
}

/// `asker` and `answerer` become friends through the chat page's forms.
async fn befriend(
    asker: &mut PageClient,
    asker_name: &str,
    answerer: &mut PageClient,
    answerer_name: &str,
) {
    asker.get("/chat").await;
    let asked = asker
        .post(
            "/chat/friends",
            &[("name", answerer_name), ("action", "request")],
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    answerer.get("/chat").await;
    let accepted = answerer
        .post(
            "/chat/friends",
            &[("name", asker_name), ("action", "accept")],
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
}

async fn room_members(app: &TestApp, room: i64) -> Vec<String> {
    herald::chat::room_members(&app.state.db, room)
        .await
        .expect("members")
        .into_iter()
        .map(|a| a.name)
        .collect()
}

async fn messages(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM chat_messages").await
}

async fn friends_are_made_and_messages_sent_from_the_chat_page_without_javascript(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut anna = PageClient::new(&app);
    let mut ben = PageClient::new(&app);
    sign_up_and_in(&env, &mut anna, "anna", "anna@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut ben, "ben", "ben@example.com", "correct horse").await;
    let (anna_id, ben_id) = (
        account_id(&app, "anna").await,
        account_id(&app, "ben").await,
    );

    // Anna asks Ben by name; Ben's socket hears it, and his page lists it.
    let (mut ben_ws, auth) = socket_with_ticket(&app, &mut ben).await;
    assert_eq!(auth["mutual_users"], json!([]));
    let page = anna.get("/chat").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let unknown = anna
        .post(
            "/chat/friends",
            &[("name", "nobody"), ("action", "request")],
        )
        .await;
    assert_eq!(unknown.status, 422);
    assert!(
        unknown
            .body
            .contains("There is no herald user named nobody")
    );
    let asked = anna
        .post("/chat/friends", &[("name", "ben"), ("action", "request")])
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    asked.assert_shows("Friend request sent to ben");
    let heard = next_frame(&mut ben_ws).await;
    assert_eq!(heard["type"], json!("mutual_users"));
    assert_eq!(heard["payload"]["type"], json!("request"));
    assert_eq!(heard["payload"]["user"]["name"], json!("anna"));
    let again = anna
        .post("/chat/friends", &[("name", "ben"), ("action", "request")])
        .await;
    assert_eq!(again.status, 422);
    again.assert_shows("Nothing to do");

    let page = ben.get("/chat").await;
    page.assert_shows("<strong>anna</strong>");
    let accepted = ben
        .post("/chat/friends", &[("name", "anna"), ("action", "accept")])
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    accepted.assert_shows("You are now friends with anna");
    let chat_id = anna_id ^ ben_id;
    assert!(
        accepted
            .body
            .contains(&format!("href=\"/chat/{chat_id}\">anna</a>"))
    );
    // Ben's socket is live, so Anna's list shows him online.
    let page = anna.get("/chat").await;
    let ben_row = &page.body[page.body.find("data-name=\"ben\"").expect("ben listed")..];
    assert!(ben_row[..300].contains("presence\">online"), "{ben_row}");
    let presence = anna.get("/chat/presence").await;
    assert_eq!(presence.status, 200);
    let presence: Value = serde_json::from_str(&presence.body).expect("JSON");
    let ben_text = ben_id.to_string();
    assert_eq!(
        presence,
        json!({"friends": [ben_text.clone()], "online": [ben_text]})
    );
    drop(ben_ws);
    wait_until("ben's socket to close", WAIT, || async {
        app.chat.bus.live(ben_id, 0).await == 0
    })
    .await;
    let presence = anna.get("/chat/presence").await;
    let presence: Value = serde_json::from_str(&presence.body).expect("JSON");
    assert_eq!(
        presence,
        json!({"friends": [ben_id.to_string()], "online": []})
    );
    let (mut ben_ws, _) = socket_with_ticket(&app, &mut ben).await;

    // Anna writes from the form: stored, then on Ben's socket like any chat frame.
    let page = anna.get(&format!("/chat/{chat_id}")).await;
    assert_eq!(page.status, 200);
    page.assert_shows("No messages yet");
    let sent = anna
        .post(
            &format!("/chat/{chat_id}/send"),
            &[("content", "  hello <ben>  ")],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(
        sent.location(),
        Some(format!("/chat/{chat_id}#compose").as_str())
    );
    let frame = next_frame(&mut ben_ws).await;
    assert_eq!(frame["type"], json!("chat"), "{frame}");
    assert_eq!(frame["payload"]["type"], json!("send"));
    assert_eq!(frame["payload"]["content"], json!("hello <ben>"));
    assert_eq!(frame["payload"]["user_id"], json!(anna_id.to_string()));
    assert_eq!(frame["payload"]["chat_id"], json!(chat_id.to_string()));
    assert_eq!(messages(&app).await, 1);

    // Ben's own chat id for the DM is the same; he sees it escaped and answers.
    let page = ben.get(&format!("/chat/{chat_id}")).await;
    page.assert_shows("hello &#60;ben&#62;");
    let sent = ben
        .post(&format!("/chat/{chat_id}/send"), &[("content", "hi anna")])
        .await;
    assert_eq!(sent.status, 303);
    let own = next_frame(&mut ben_ws).await;
    assert_eq!(own["payload"]["content"], json!("hi anna"));
    let page = anna.get(&format!("/chat/{chat_id}")).await;
    let first = page.body.find("hello &#60;ben&#62;").expect("first");
    let second = page.body.find("hi anna").expect("second");
    assert!(first < second, "oldest first");

    // Empty and too long are refused with the form again, and nothing is stored.
    let empty = anna
        .post(&format!("/chat/{chat_id}/send"), &[("content", "   ")])
        .await;
    assert_eq!(empty.status, 422);
    empty.assert_shows("Write a message first.");
    let long = "x".repeat(4001);
    let too_long = anna
        .post(&format!("/chat/{chat_id}/send"), &[("content", &long)])
        .await;
    assert_eq!(too_long.status, 422);
    assert_eq!(messages(&app).await, 2);

    // Declining ends the friendship; the DM is then not Anna's to open.
    let ended = ben
        .post("/chat/friends", &[("name", "anna"), ("action", "decline")])
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(anna.get(&format!("/chat/{chat_id}")).await.status, 404);
    let bad = ben
        .post("/chat/friends", &[("name", "anna"), ("action", "hug")])
        .await;
    assert_eq!(bad.status, 400);
    app.stop().await;
    env.cleanup().await;
}

async fn chat_forms_refuse_a_missing_csrf_token_and_other_peoples_chats(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut anna = PageClient::new(&app);
    let mut ben = PageClient::new(&app);
    let mut carl = PageClient::new(&app);
    sign_up_and_in(&env, &mut anna, "anna", "anna@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut ben, "ben", "ben@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut carl, "carl", "carl@example.com", "correct horse").await;
    let (anna_id, ben_id, carl_id) = (
        account_id(&app, "anna").await,
        account_id(&app, "ben").await,
        account_id(&app, "carl").await,
    );
    anna.get("/chat").await;
    anna.post("/chat/friends", &[("name", "ben"), ("action", "request")])
        .await;
    ben.get("/chat").await;
    ben.post("/chat/friends", &[("name", "anna"), ("action", "accept")])
        .await;
    let dm = anna_id ^ ben_id;
    // Anna makes a room with Ben from the list page; Carl is not her friend, so not with him.
    anna.get("/chat").await;
    let refused = anna
        .post("/chat/rooms", &[("name", "plans"), ("member", "carl")])
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused
            .body
            .contains("Only friends can be added to a room, not carl")
    );
    let refused = anna
        .post("/chat/rooms", &[("name", " "), ("member", "ben")])
        .await;
    assert_eq!(refused.status, 422);
    let created = anna
        .post("/chat/rooms", &[("name", "plans"), ("member", "ben")])
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let rooms = herald::chat::rooms_of(&app.state.db, ben_id)
        .await
        .expect("rooms");
    assert_eq!(rooms.len(), 1);
    let room = rooms[0].clone();
    assert_eq!(room.name, "plans");
    assert_eq!(
        created.location(),
        Some(format!("/chat/{}", room.id).as_str())
    );
    let refused = carl.post_raw("/chat/rooms", &[("name", "sneaky")]).await;
    assert_eq!(refused.status, 403);
    // Ben sees it in his list and writes in it; the room's page shows it to both.
    let page = ben.get("/chat").await;
    assert!(
        page.body
            .contains(&format!("href=\"/chat/{}\">plans</a>", room.id))
    );
    let sent = ben
        .post(
            &format!("/chat/{}/send", room.id),
            &[("content", "room hello")],
        )
        .await;
    assert_eq!(sent.status, 303);
    let page = anna.get(&format!("/chat/{}", room.id)).await;
    page.assert_shows("room hello");

    // Without the token: refused, nothing stored, no ticket, no friendship change.
    let refused = anna
        .post_raw(&format!("/chat/{dm}/send"), &[("content", "forged")])
        .await;
    assert_eq!(refused.status, 403);
    let refused = anna.post_raw("/chat/ticket", &[]).await;
    assert_eq!(refused.status, 403);
    let refused = carl
        .post_raw("/chat/friends", &[("name", "anna"), ("action", "request")])
        .await;
    assert_eq!(refused.status, 403);
    assert!(
        herald::chat::incoming_requests(&app.state.db, anna_id)
            .await
            .expect("read")
            .is_empty()
    );

    // Anna's room and DM are hers and Ben's: Carl gets 404 for reading and for writing.
    let page = anna.get(&format!("/chat/{}", room.id)).await;
    assert_eq!(page.status, 200);
    page.assert_shows("<h1>plans");
    carl.get("/chat").await;
    for chat_id in [room.id, dm, anna_id ^ carl_id, 12345] {
        let page = carl.get(&format!("/chat/{chat_id}")).await;
        assert_eq!(page.status, 404, "{chat_id}");
        let sent = carl
            .post(&format!("/chat/{chat_id}/send"), &[("content", "intruder")])
            .await;
        assert_eq!(sent.status, 404, "{chat_id}");
    }
    assert_eq!(carl.get("/chat/not-a-number").await.status, 404);
    assert_eq!(messages(&app).await, 1, "only Ben's message in the room");

    // Signed out: the page sends to sign-in, the ticket is refused.
    let mut stranger = PageClient::new(&app);
    let page = stranger.get("/chat").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), Some("/signin"));
    stranger.get("/signin").await;
    let ticket = stranger.post("/chat/ticket", &[]).await;
    assert_eq!(ticket.status, 401);
    app.stop().await;
    env.cleanup().await;
}

async fn group_rooms_are_made_joined_and_left_from_the_chat_page(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut anna = PageClient::new(&app);
    let mut ben = PageClient::new(&app);
    let mut cleo = PageClient::new(&app);
    let mut dave = PageClient::new(&app);
    sign_up_and_in(&env, &mut anna, "anna", "anna@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut ben, "ben", "ben@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut cleo, "cleo", "cleo@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut dave, "dave", "dave@example.com", "correct horse").await;
    befriend(&mut anna, "anna", &mut ben, "ben").await;
    befriend(&mut anna, "anna", &mut cleo, "cleo").await;
    let (mut ben_ws, _) = socket_with_ticket(&app, &mut ben).await;

    // Anna makes a room with Ben from the list page; Ben's socket hears of it.
    anna.get("/chat").await;
    let made = anna
        .post("/chat/rooms", &[("name", "Crew"), ("member", "ben")])
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let room: i64 = made
        .location()
        .and_then(|l| l.strip_prefix("/chat/"))
        .and_then(|id| id.parse().ok())
        .expect("the room's page");
    let created = next_frame(&mut ben_ws).await;
    assert_eq!(created["type"], json!("room"), "{created}");
    assert_eq!(created["payload"]["type"], json!("created"));
    assert_eq!(created["payload"]["room"]["name"], json!("Crew"));
    assert_eq!(room_members(&app, room).await, ["anna", "ben"]);

    // The room's page offers the friends who are not in it yet, and leaving.
    let page = anna.get(&format!("/chat/{room}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("action=\"/chat/{room}/invite\"")),
        "{}",
        page.body
    );
    page.assert_shows("<option value=\"cleo\">cleo</option>");
    page.assert_lacks("<option value=\"ben\">");
    assert!(
        page.body
            .contains(&format!("action=\"/chat/{room}/leave\""))
    );
    // A DM's page has neither.
    let dm = ben
        .get(&format!(
            "/chat/{}",
            account_id(&app, "anna").await ^ account_id(&app, "ben").await
        ))
        .await;
    assert_eq!(dm.status, 200);
    dm.assert_lacks("/invite\"");
    dm.assert_lacks("/leave\"");

    // Only a friend can be invited: the refusal is next to the field, and nothing changes.
    let refused = anna
        .post(&format!("/chat/{room}/invite"), &[("name", "dave")])
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("<p id=\"invite-error\" class=\"error\" role=\"alert\">Only friends can be added to a room, not dave</p>"),
        "{}",
        refused.body
    );
    refused.assert_shows("aria-invalid=\"true\"");
    assert_eq!(room_members(&app, room).await, ["anna", "ben"]);

    // Cleo is invited: every member's sockets hear `joined`, as with the `invite` frame.
    let invited = anna
        .post(&format!("/chat/{room}/invite"), &[("name", "cleo")])
        .await;
    assert_eq!(invited.status, 200, "{}", invited.body);
    invited.assert_shows("Invited to the room: cleo");
    invited.assert_shows("All your friends are in this room.");
    assert_eq!(room_members(&app, room).await, ["anna", "ben", "cleo"]);
    let joined = next_frame(&mut ben_ws).await;
    assert_eq!(joined["type"], json!("room"), "{joined}");
    assert_eq!(joined["payload"]["type"], json!("joined"));
    assert_eq!(joined["payload"]["user"]["name"], json!("cleo"));
    assert_eq!(
        joined["payload"]["room"]["members"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let again = anna
        .post(&format!("/chat/{room}/invite"), &[("name", "cleo")])
        .await;
    assert_eq!(again.status, 422);
    again.assert_shows("Already in this room: cleo");
    let page = cleo.get("/chat").await;
    assert!(
        page.body
            .contains(&format!("<a href=\"/chat/{room}\">Crew</a>"))
    );

    // Someone outside the room can neither invite nor leave it; a form without its token is
    // refused.
    dave.get("/chat").await;
    let outsider = dave
        .post(&format!("/chat/{room}/invite"), &[("name", "anna")])
        .await;
    assert_eq!(outsider.status, 404);
    assert_eq!(
        dave.post(&format!("/chat/{room}/leave"), &[]).await.status,
        404
    );
    let forged = ben.post_raw(&format!("/chat/{room}/leave"), &[]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(room_members(&app, room).await, ["anna", "ben", "cleo"]);

    // Ben leaves: the list no longer has the room, his and the others' sockets hear `left`,
    // and the room is no longer his to open.
    ben.get(&format!("/chat/{room}")).await;
    let left = ben.post(&format!("/chat/{room}/leave"), &[]).await;
    assert_eq!(left.status, 200, "{}", left.body);
    left.assert_shows("You left the room: Crew");
    left.assert_lacks(&format!("href=\"/chat/{room}\""));
    let heard = next_frame(&mut ben_ws).await;
    assert_eq!(heard["payload"]["type"], json!("left"), "{heard}");
    assert_eq!(heard["payload"]["room_id"], json!(room.to_string()));
    assert_eq!(heard["payload"]["user"]["name"], json!("ben"));
    assert_eq!(room_members(&app, room).await, ["anna", "cleo"]);
    assert_eq!(ben.get(&format!("/chat/{room}")).await.status, 404);
    app.stop().await;
    env.cleanup().await;
}

async fn a_read_frame_over_the_socket_moves_the_read_mark(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut anna = PageClient::new(&app);
    let mut ben = PageClient::new(&app);
    sign_up_and_in(&env, &mut anna, "anna", "anna@example.com", "correct horse").await;
    sign_up_and_in(&env, &mut ben, "ben", "ben@example.com", "correct horse").await;
    befriend(&mut anna, "anna", &mut ben, "ben").await;
    let (anna_id, ben_id) = (
        account_id(&app, "anna").await,
        account_id(&app, "ben").await,
    );
    let dm = anna_id ^ ben_id;
    anna.get(&format!("/chat/{dm}")).await;
    for text in ["one", "two"] {
        let sent = anna
            .post(&format!("/chat/{dm}/send"), &[("content", text)])
            .await;
        assert_eq!(sent.status, 303);
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM chat_messages ORDER BY created_at_us")
        .fetch_all(app.state.db.reader())
        .await
        .expect("ids");
    let key = herald::chat::pair(anna_id, ben_id);
    let unread = || async {
        herald::chat::unread_count(&app.state.db, ben_id, key)
            .await
            .expect("unread")
    };
    assert_eq!(unread().await, 2);

    // A client of the protocol that is not the chat page says what it showed.
    let (mut ws, _) = socket_with_ticket(&app, &mut ben).await;
    let mut send = async |frame: Value| {
        ws.send(Message::text(frame.to_string()))
            .await
            .expect("send");
        next_frame(&mut ws).await
    };
    let read = |chat_id: Value, message_id: Value| json!({"type": "read", "payload": {"chat_id": chat_id, "message_id": message_id}});
    let answer = send(read(json!(dm.to_string()), json!(ids[0].to_string()))).await;
    assert_eq!(
        answer,
        json!({"type": "ok", "payload": {}, "seq": answer["seq"]})
    );
    assert_eq!(unread().await, 1);
    let answer = send(read(json!(dm.to_string()), json!(ids[1].to_string()))).await;
    assert_eq!(answer["type"], json!("ok"), "{answer}");
    assert_eq!(unread().await, 0);
    // The mark never moves back.
    let answer = send(read(json!(dm.to_string()), json!(ids[0].to_string()))).await;
    assert_eq!(answer["type"], json!("ok"), "{answer}");
    assert_eq!(unread().await, 0);

    // Bad input gets the protocol's error frame.
    let error = |code: i64, reason: &str| json!({"code": code, "reason": reason});
    let answer = send(json!({"type": "read", "payload": {"chat_id": dm.to_string()}})).await;
    assert_eq!(answer["type"], json!("error"));
    assert_eq!(answer["payload"], error(400, "missing field message_id"));
    let answer = send(read(json!("abc"), json!(ids[0].to_string()))).await;
    assert_eq!(answer["payload"], error(400, "chat_id is not an id"));
    let answer = send(read(json!(dm.to_string()), json!("12345"))).await;
    assert_eq!(
        answer["payload"],
        error(404, "no such message in this chat")
    );
    // A message of another chat is not in this one.
    let herald_bot = app.chat.bot_account_id;
    let answer = send(read(
        json!((ben_id ^ herald_bot).to_string()),
        json!(ids[0].to_string()),
    ))
    .await;
    assert_eq!(
        answer["payload"],
        error(404, "no such message in this chat")
    );
    // A room Ben is not in.
    anna.get("/chat").await;
    let made = anna.post("/chat/rooms", &[("name", "Solo")]).await;
    let room = made
        .location()
        .and_then(|l| l.strip_prefix("/chat/"))
        .expect("room")
        .to_string();
    let answer = send(read(json!(room), json!(ids[0].to_string()))).await;
    assert_eq!(
        answer["payload"],
        error(403, "you are not a member of this room")
    );
    app.stop().await;
    env.cleanup().await;
}
