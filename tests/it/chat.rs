//! Area C chat over a real WebSocket: heartbeat, auth, friends, DMs, edit/delete, history.

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use herald::testkit::fake_smtp::FakeSmtp;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::sign_up;
use crate::both_backends;
use crate::helpers::{TestApp, TestEnv};

both_backends!(
    friends_chat_edit_delete_and_history,
    bad_frames_get_errors_and_others_keep_working,
    a_dm_to_the_herald_bot_gets_an_answer,
    a_dm_to_the_bot_stored_before_a_crash_is_answered_after_restart,
);

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct Ws(Stream);

impl Ws {
    pub(crate) async fn connect(app: &TestApp) -> Ws {
        Ws::connect_address(&app.address).await
    }

    /// A socket to the herald at `address` (`http://host:port`).
    pub(crate) async fn connect_address(address: &str) -> Ws {
        let url = format!("{}/ws", address.replace("http://", "ws://"));
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        Ws(stream)
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.0
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    async fn send_raw(&mut self, text: &str) {
        self.0
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    /// The next JSON frame (panics after 5 s or on close).
    pub(crate) async fn recv(&mut self) -> Value {
        self.recv_within(Duration::from_secs(5)).await
    }

    /// The next JSON frame (panics after `within` or on close).
    pub(crate) async fn recv_within(&mut self, within: Duration) -> Value {
        loop {
            let message = tokio::time::timeout(within, self.0.next())
                .await
                .expect("a frame in time")
                .expect("the socket is open")
                .expect("a message");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("JSON frame");
            }
            assert!(!matches!(message, Message::Close(_)), "closed: {message:?}");
        }
    }

    /// The next frame that is not a presence update.
    pub(crate) async fn recv_not_presence(&mut self) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] != json!("presence") {
                return frame;
            }
        }
    }

    /// Waits for the server to close; returns the close code.
    pub(crate) async fn closed(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.0.next()).await {
                Err(_) => panic!("not closed within {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub(crate) async fn start(app: &TestApp, token: &str) -> (Ws, Value) {
        Ws::start_address(&app.address, token).await
    }

    /// [`Ws::start`] on the herald at `address`.
    pub(crate) async fn start_address(address: &str, token: &str) -> (Ws, Value) {
        let mut ws = Ws::connect_address(address).await;
        ws.send(json!({"type": "heartbeat", "payload": {"count": 1}}))
            .await;
        assert_eq!(
            ws.recv().await,
            json!({"type": "heartbeat", "payload": {"count": 1}})
        );
        ws.send(json!({"type": "auth", "payload": {"auth": token}}))
            .await;
        let auth = ws.recv().await;
        assert_eq!(auth["type"], json!("auth"), "{auth}");
        (ws, auth["payload"].clone())
    }
}

/// Alice and Bob, signed up, connected and friends: their tokens, sockets and auth payloads.
struct Friends {
    alice: String,
    bob: String,
    a: Ws,
    b: Ws,
    alice_auth: Value,
    bob_auth: Value,
}

async fn alice_and_bob_as_friends(app: &TestApp, smtp: &FakeSmtp) -> Friends {
    let alice = sign_up(app, smtp, "alice", "alice@example.com", "alice's password").await;
    let bob = sign_up(app, smtp, "bob", "bob@example.com", "bob's password").await;
    let (mut a, alice_auth) = Ws::start(app, &alice).await;
    let (mut b, bob_auth) = Ws::start(app, &bob).await;
    befriend(&mut a, &mut b, "bob", "alice").await;
    Friends {
        alice,
        bob,
        a,
        b,
        alice_auth,
        bob_auth,
    }
}

pub(crate) fn id_of(user: &Value) -> i64 {
    user["id"]
        .as_str()
        .expect("ids are strings")
        .parse()
        .expect("an id")
}

fn b64_time(offset: chrono::Duration) -> String {
    let text = (chrono::Utc::now() + offset)
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    base64::engine::general_purpose::STANDARD.encode(text)
}

async fn befriend(a: &mut Ws, b: &mut Ws, b_name: &str, a_name: &str) {
    a.send(json!({"type": "mutual_users", "payload": {"type": "request", "name": b_name}}))
        .await;
    assert_eq!(a.recv().await["type"], json!("ok"));
    let request = b.recv().await;
    assert_eq!(request["payload"]["type"], json!("request"), "{request}");
    assert_eq!(request["payload"]["user"]["name"], json!(a_name));
    b.send(json!({"type": "mutual_users", "payload": {"type": "response", "name": a_name}}))
        .await;
    assert_eq!(b.recv().await["type"], json!("ok"));
    let response = a.recv().await;
    assert_eq!(response["payload"]["type"], json!("response"), "{response}");
}

async fn friends_chat_edit_delete_and_history(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let alice_token = sign_up(
        &app,
        &smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let bob_token = sign_up(&app, &smtp, "bob", "bob@example.com", "bob's password").await;
    let (mut a, alice_auth) = Ws::start(&app, &alice_token).await;
    assert_eq!(alice_auth["self_user"]["name"], json!("alice"));
    assert_eq!(alice_auth["self_user"]["profile"], Value::Null);
    assert_eq!(alice_auth["mutual_users"], json!([]));
    let (mut b, bob_auth) = Ws::start(&app, &bob_token).await;
    let alice_id = id_of(&alice_auth["self_user"]);
    let bob_id = id_of(&bob_auth["self_user"]);
    befriend(&mut a, &mut b, "bob", "alice").await;

    let chat_id = (alice_id ^ bob_id).to_string();
    a.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": "hi bob"}})).await;
    let (mine, theirs) = (a.recv().await, b.recv().await);
    assert_eq!(
        mine["payload"], theirs["payload"],
        "both participants get the same frame"
    );
    assert_eq!(mine["type"], json!("chat"));
    let payload = &mine["payload"];
    assert_eq!(payload["type"], json!("send"));
    assert_eq!(payload["chat_id"], json!(chat_id));
    assert_eq!(payload["user_id"], json!(alice_id.to_string()));
    assert_eq!(payload["content"], json!("hi bob"));
    let created_at = payload["created_at"].as_str().expect("created_at");
    assert!(
        chrono::NaiveDateTime::parse_from_str(created_at, "%Y-%m-%d %H:%M:%S%.6f").is_ok(),
        "{created_at}"
    );
    let first_id = payload["id"].as_str().expect("id").to_string();

    // Several sockets of one user all receive.
    let (mut a2, _) = Ws::start(&app, &alice_token).await;
    b.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": "hi alice"}})).await;
    for ws in [&mut a, &mut a2, &mut b] {
        assert_eq!(ws.recv().await["payload"]["content"], json!("hi alice"));
    }

    // Edit one's own; not someone else's; empty content deletes.
    a.send(json!({"type": "chat", "payload": {"type": "edit", "chat_id": chat_id, "id": first_id, "content": "hi bob!"}})).await;
    assert_eq!(b.recv().await["payload"]["content"], json!("hi bob!"));
    assert_eq!(a.recv().await["payload"]["type"], json!("edit"));
    a2.recv().await;
    b.send(json!({"type": "chat", "payload": {"type": "edit", "chat_id": chat_id, "id": first_id, "content": "mine now"}})).await;
    let refused = b.recv().await;
    assert_eq!(
        (refused["type"].clone(), refused["payload"]["code"].clone()),
        (json!("error"), json!(403))
    );
    a.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": "second"}})).await;
    a.recv().await;
    a2.recv().await;
    b.recv().await;
    a.send(json!({"type": "chat", "payload": {"type": "edit", "chat_id": chat_id, "id": first_id, "content": ""}})).await;
    let deleted = b.recv().await;
    assert_eq!(
        (
            deleted["payload"]["type"].clone(),
            deleted["payload"]["content"].clone()
        ),
        (json!("edit"), json!(""))
    );
    a.recv().await;
    a2.recv().await;

    // History before now, newest first, without the deleted one.
    let load = json!({"type": "load", "payload": {"type": "chat", "load_id": chat_id, "datetime": b64_time(chrono::Duration::seconds(1)), "count": 10}});
    a.send(load.clone()).await;
    assert_eq!(a.recv().await["payload"]["content"], json!("second"));
    assert_eq!(a.recv().await["payload"]["content"], json!("hi alice"));
    a.send(json!({"type": "load", "payload": {"type": "mutual_users"}}))
        .await;
    let friends = a.recv().await;
    assert_eq!(
        friends["payload"]["users"][0]["name"],
        json!("bob"),
        "{friends}"
    );

    // Messages are in the database: a restart keeps the history.
    drop((a, a2, b));
    app.stop().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let (mut a, auth) = Ws::start(&app, &alice_token).await;
    assert_eq!(auth["mutual_users"][0]["name"], json!("bob"));
    a.send(load).await;
    assert_eq!(a.recv().await["payload"]["content"], json!("second"));
    assert_eq!(a.recv().await["payload"]["content"], json!("hi alice"));

    app.stop().await;
    env.cleanup().await;
}

async fn bad_frames_get_errors_and_others_keep_working(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let alice = sign_up(
        &app,
        &smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let bob = sign_up(&app, &smtp, "bob", "bob@example.com", "bob's password").await;
    let carol = sign_up(
        &app,
        &smtp,
        "carol",
        "carol@example.com",
        "carol's password",
    )
    .await;

    // Anything before the heartbeat, auth included, closes the socket.
    for first in [
        json!({"type": "auth", "payload": {"auth": alice}}),
        json!({"type": "chat", "payload": {}}),
    ] {
        let mut ws = Ws::connect(&app).await;
        ws.send(first).await;
        assert_eq!(ws.recv().await["type"], json!("error"));
        assert_eq!(ws.closed(Duration::from_secs(5)).await, Some(1008));
    }

    let (mut b, bob_auth) = Ws::start(&app, &bob).await;
    let (mut c, carol_auth) = Ws::start(&app, &carol).await;
    befriend(&mut b, &mut c, "carol", "bob").await;
    let bob_carol = id_of(&bob_auth["self_user"]) ^ id_of(&carol_auth["self_user"]);
    b.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": bob_carol.to_string(), "content": "secret"}})).await;
    b.recv().await;
    c.recv().await;

    let mut a = Ws::connect(&app).await;
    a.send(json!({"type": "heartbeat", "payload": 1})).await;
    a.recv().await;
    let cases = [
        ("{not json", 400),
        (r#"{"type": "chat", "payload": {"type": "send"}}"#, 401),
    ];
    for (text, code) in cases {
        a.send_raw(text).await;
        let error = a.recv().await;
        assert_eq!(
            (error["type"].clone(), error["payload"]["code"].clone()),
            (json!("error"), json!(code)),
            "{text}"
        );
    }
    a.send(json!({"type": "auth", "payload": {"auth": "made-up"}}))
        .await;
    assert_eq!(a.recv().await["payload"]["code"], json!(401));
    a.send(json!({"type": "auth", "payload": {"auth": alice}}))
        .await;
    let alice_auth = a.recv().await;
    let alice_id = id_of(&alice_auth["payload"]["self_user"]);
    let bob_id = id_of(&bob_auth["self_user"]);
    let cases = [
        (json!({"type": "dance", "payload": {}}), 400),
        (json!({"payload": {}}), 400),
        (
            json!({"type": "chat", "payload": {"type": "send", "content": "x"}}),
            400,
        ),
        (
            json!({"type": "chat", "payload": {"type": "send", "chat_id": "abc", "content": "x"}}),
            400,
        ),
        (
            json!({"type": "chat", "payload": {"type": "shout", "chat_id": (alice_id ^ bob_id).to_string(), "content": "x"}}),
            400,
        ),
        // Not friends.
        (
            json!({"type": "chat", "payload": {"type": "send", "chat_id": (alice_id ^ bob_id).to_string(), "content": "hello?"}}),
            403,
        ),
        // Somebody else's DM, by its XOR id: it resolves to nobody for alice.
        (
            json!({"type": "load", "payload": {"type": "chat", "load_id": bob_carol.to_string(), "datetime": b64_time(chrono::Duration::seconds(1)), "count": 5}}),
            404,
        ),
        (
            json!({"type": "load", "payload": {"type": "chat", "load_id": (alice_id ^ bob_id).to_string(), "datetime": "not base64!", "count": 5}}),
            400,
        ),
        (
            json!({"type": "mutual_users", "payload": {"type": "request", "name": "nobody"}}),
            404,
        ),
        (
            json!({"type": "mutual_users", "payload": {"type": "response", "name": "bob"}}),
            409,
        ),
        (
            json!({"type": "chat", "payload": {"type": "send", "chat_id": (alice_id ^ bob_id).to_string(), "content": "x".repeat(5000)}}),
            413,
        ),
    ];
    for (frame, code) in cases {
        a.send(frame.clone()).await;
        let error = a.recv().await;
        assert_eq!(
            (error["type"].clone(), error["payload"]["code"].clone()),
            (json!("error"), json!(code)),
            "{frame}"
        );
    }

    // More than 20 frames a second (burst 40) are refused with 429; the socket stays usable.
    for i in 0..60 {
        b.send(json!({"type": "heartbeat", "payload": i})).await;
    }
    let mut limited = 0;
    for _ in 0..60 {
        let frame = b.recv().await;
        if frame["type"] == json!("error") && frame["payload"]["code"] == json!(429) {
            limited += 1;
        }
    }
    assert!(limited > 0, "per-connection rate limit");
    // A frame over 64 KiB closes that socket (1009, message too big) and no other.
    let (mut big, _) = Ws::start(&app, &alice).await;
    big.send_raw(&"x".repeat(70 * 1024)).await;
    assert_eq!(big.closed(Duration::from_secs(5)).await, Some(1009));

    // A silent socket is closed after the heartbeat timeout (a second node with a test-sized
    // timeout); the others go on.
    let quick = env.spawn(&[("HERALD_WS_HEARTBEAT_TIMEOUT", "1s")]).await;
    let (mut silent, _) = Ws::start(&quick, &alice).await;
    assert_eq!(silent.closed(Duration::from_secs(5)).await, Some(4000));
    quick.stop().await;
    a.send(json!({"type": "heartbeat", "payload": 3})).await;
    assert_eq!(a.recv().await["type"], json!("heartbeat"));
    b.send(json!({"type": "heartbeat", "payload": 2})).await;
    assert_eq!(b.recv().await["type"], json!("heartbeat"));
    b.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": bob_carol.to_string(), "content": "still here"}})).await;
    assert_eq!(c.recv().await["payload"]["content"], json!("still here"));

    app.stop().await;
    env.cleanup().await;
}

both_backends!(presence_typing_and_idempotent_send);

async fn presence_typing_and_idempotent_send(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let Friends {
        alice: _,
        bob,
        mut a,
        b,
        alice_auth,
        bob_auth,
    } = alice_and_bob_as_friends(&app, &smtp).await;
    let chat_id = (id_of(&alice_auth["self_user"]) ^ id_of(&bob_auth["self_user"])).to_string();

    // Bob drops: Alice sees him go offline, then online again.
    drop(b);
    let offline = a.recv().await;
    assert_eq!(offline["type"], json!("presence"), "{offline}");
    assert_eq!(
        (
            offline["payload"]["user"]["name"].clone(),
            offline["payload"]["status"].clone()
        ),
        (json!("bob"), json!("offline"))
    );
    let (mut b, _) = Ws::start(&app, &bob).await;
    let online = a.recv().await;
    assert_eq!(online["payload"]["status"], json!("online"), "{online}");

    // Typing reaches the other side only.
    a.send(json!({"type": "typing", "payload": {"chat_id": chat_id}}))
        .await;
    let typing = b.recv().await;
    assert_eq!(typing["type"], json!("typing"));
    assert_eq!(typing["payload"]["user_id"], alice_auth["self_user"]["id"]);

    // The same nonce twice is one message; the repeat is answered to the sender only.
    let send = json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": "once", "nonce": "n-1"}});
    a.send(send.clone()).await;
    let first = a.recv().await;
    assert_eq!(b.recv().await["payload"], first["payload"]);
    a.send(send).await;
    let again = a.recv().await;
    assert_eq!(again["payload"]["id"], first["payload"]["id"]);
    a.send(
        json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": "next"}}),
    )
    .await;
    a.recv().await;
    assert_eq!(
        b.recv().await["payload"]["content"],
        json!("next"),
        "bob got no copy of the repeat"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM chat_messages").await, 2);

    app.stop().await;
    env.cleanup().await;
}

both_backends!(a_group_room_of_three);

async fn a_group_room_of_three(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        tokens.push(
            sign_up(
                &app,
                &smtp,
                name,
                &format!("{name}@example.com"),
                "a long password",
            )
            .await,
        );
    }
    let (mut a, _) = Ws::start(&app, &tokens[0]).await;
    let (mut b, _) = Ws::start(&app, &tokens[1]).await;
    let (mut c, _) = Ws::start(&app, &tokens[2]).await;
    let (mut d, _) = Ws::start(&app, &tokens[3]).await;
    befriend(&mut a, &mut b, "bob", "alice").await;
    // Alice and Carol become friends; the presence frames of the others are not in the way.
    befriend(&mut a, &mut c, "carol", "alice").await;

    a.send(
        json!({"type": "room", "payload": {"type": "create", "name": "team", "members": ["bob"]}}),
    )
    .await;
    let created = a.recv().await;
    assert_eq!(created["payload"]["type"], json!("created"), "{created}");
    assert_eq!(b.recv().await["payload"], created["payload"]);
    let room_id = created["payload"]["room"]["id"]
        .as_str()
        .expect("room id")
        .to_string();
    assert_eq!(
        created["payload"]["room"]["members"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    a.send(
        json!({"type": "room", "payload": {"type": "invite", "room_id": room_id, "name": "carol"}}),
    )
    .await;
    for ws in [&mut a, &mut b, &mut c] {
        let joined = ws.recv().await;
        assert_eq!(
            (
                joined["payload"]["type"].clone(),
                joined["payload"]["user"]["name"].clone()
            ),
            (json!("joined"), json!("carol"))
        );
    }

    c.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": room_id, "content": "hello team"}})).await;
    for ws in [&mut a, &mut b, &mut c] {
        let message = ws.recv().await;
        assert_eq!(
            (
                message["payload"]["content"].clone(),
                message["payload"]["chat_id"].clone()
            ),
            (json!("hello team"), json!(room_id))
        );
    }
    // Dave is no member: he can neither write nor read.
    d.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": room_id, "content": "let me in"}})).await;
    assert_eq!(d.recv().await["payload"]["code"], json!(403));
    d.send(json!({"type": "load", "payload": {"type": "chat", "load_id": room_id, "datetime": b64_time(chrono::Duration::seconds(1)), "count": 5}})).await;
    assert_eq!(d.recv().await["payload"]["code"], json!(403));

    b.send(json!({"type": "load", "payload": {"type": "chat", "load_id": room_id, "datetime": b64_time(chrono::Duration::seconds(1)), "count": 5}})).await;
    assert_eq!(b.recv().await["payload"]["content"], json!("hello team"));
    b.send(json!({"type": "room", "payload": {"type": "members", "room_id": room_id}}))
        .await;
    let members = b.recv().await;
    assert_eq!(
        members["payload"]["room"]["members"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{members}"
    );

    c.send(json!({"type": "room", "payload": {"type": "leave", "room_id": room_id}}))
        .await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(ws.recv().await["payload"]["type"], json!("left"));
    }
    c.send(
        json!({"type": "chat", "payload": {"type": "send", "chat_id": room_id, "content": "gone"}}),
    )
    .await;
    assert_eq!(c.recv().await["payload"]["code"], json!(403));

    app.stop().await;
    env.cleanup().await;
}

both_backends!(a_dropped_socket_resumes_with_exactly_the_missed_frames);

async fn a_dropped_socket_resumes_with_exactly_the_missed_frames(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let Friends {
        alice,
        bob: _,
        mut a,
        mut b,
        alice_auth,
        bob_auth,
    } = alice_and_bob_as_friends(&app, &smtp).await;
    let session = alice_auth["session"]
        .as_str()
        .expect("a session id")
        .to_string();
    let chat_id = (id_of(&alice_auth["self_user"]) ^ id_of(&bob_auth["self_user"])).to_string();
    let say = |text: &str| json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": text}});

    b.send(say("one")).await;
    b.recv_not_presence().await;
    let seen = a.recv().await;
    assert_eq!(seen["payload"]["content"], json!("one"));
    let last_seq = seen["seq"].as_u64().expect("server frames carry seq");

    // Alice's connection drops; Bob writes twice meanwhile.
    drop(a);
    b.send(say("two")).await;
    b.send(say("three")).await;
    b.recv_not_presence().await;
    b.recv_not_presence().await;

    let mut a = Ws::connect(&app).await;
    a.send(json!({"type": "heartbeat", "payload": 1})).await;
    a.recv().await;
    a.send(json!({"type": "resume", "payload": {"session": session, "auth": alice, "last_seq": last_seq}})).await;
    let two = a.recv().await;
    let three = a.recv().await;
    assert_eq!(
        (two["payload"]["content"].clone(), two["seq"].clone()),
        (json!("two"), json!(last_seq + 1))
    );
    assert_eq!(
        (three["payload"]["content"].clone(), three["seq"].clone()),
        (json!("three"), json!(last_seq + 2))
    );
    let resumed = a.recv().await;
    assert_eq!(
        (
            resumed["type"].clone(),
            resumed["payload"]["replayed"].clone()
        ),
        (json!("resumed"), json!(2))
    );
    b.send(say("four")).await;
    let four = a.recv().await;
    assert_eq!(four["payload"]["content"], json!("four"));
    assert!(four["seq"].as_u64().expect("seq") > last_seq + 2);

    // An unknown session, or one already taken over, cannot be resumed.
    let mut other = Ws::connect(&app).await;
    other.send(json!({"type": "heartbeat", "payload": 1})).await;
    other.recv().await;
    other.send(json!({"type": "resume", "payload": {"session": session, "auth": alice, "last_seq": 0}})).await;
    assert_eq!(other.recv().await["payload"]["code"], json!(410));
    other.send(json!({"type": "resume", "payload": {"session": "made-up", "auth": alice, "last_seq": 0}})).await;
    assert_eq!(other.recv().await["payload"]["code"], json!(410));

    app.stop().await;
    env.cleanup().await;
}

both_backends!(push_notifications_arrive_as_chat_messages_from_the_bot);

async fn push_notifications_arrive_as_chat_messages_from_the_bot(env: TestEnv) {
    use herald::testkit::git_repo::GitRepo;
    use reqwest::Method;
    let smtp = FakeSmtp::start().await;
    let repo = GitRepo::new();
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let alice = sign_up(
        &app,
        &smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let (mut a, auth) = Ws::start(&app, &alice).await;
    let alice_id = id_of(&auth["self_user"]);

    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "chat", "address": alice_id.to_string()})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/subscriptions",
            Some(json!({"contact_id": contact["id"], "repository": repo.url(), "branch": "main"})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let sha = repo.commit("a.txt", "1", "Ship chat notifications");
    app.wait_for_head("main", &sha).await;

    let message = a.recv_not_presence().await;
    assert_eq!(message["type"], json!("chat"), "{message}");
    assert!(
        message["payload"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Ship chat notifications")),
        "{message}"
    );
    let bot_id: i64 = message["payload"]["user_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("id");
    assert_eq!(
        message["payload"]["chat_id"],
        json!((bot_id ^ alice_id).to_string())
    );
    // It is a DM like any other: in the history.
    a.send(json!({"type": "load", "payload": {"type": "chat", "load_id": (bot_id ^ alice_id).to_string(), "datetime": b64_time(chrono::Duration::seconds(1)), "count": 5}})).await;
    assert_eq!(a.recv().await["payload"]["id"], message["payload"]["id"]);

    app.stop().await;
    env.cleanup().await;
}

async fn a_dm_to_the_herald_bot_gets_an_answer(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let dana = sign_up(&app, &smtp, "dana", "dana@example.com", "dana's password").await;
    let (mut ws, auth) = Ws::start(&app, &dana).await;
    let dana_id = id_of(&auth["self_user"]);

    // The bot accepts a friend request at once.
    ws.send(json!({"type": "mutual_users", "payload": {"type": "request", "name": "herald"}}))
        .await;
    assert_eq!(ws.recv_not_presence().await["type"], json!("ok"));
    let accepted = ws.recv_not_presence().await;
    assert_eq!(accepted["payload"]["type"], json!("response"), "{accepted}");
    let bot_id = id_of(&accepted["payload"]["user"]);

    let chat_id = (bot_id ^ dana_id).to_string();
    ws.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": "도움말"}}))
        .await;
    let echo = ws.recv_not_presence().await;
    assert_eq!(echo["payload"]["content"], json!("도움말"), "{echo}");
    let answer = ws.recv_not_presence().await;
    assert_eq!(answer["type"], json!("chat"), "{answer}");
    assert_eq!(answer["payload"]["user_id"], json!(bot_id.to_string()));
    assert!(
        answer["payload"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("herald 봇")),
        "{answer}"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn a_dm_to_the_bot_stored_before_a_crash_is_answered_after_restart(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let settings = [("HERALD_SMTP_URL", smtp.url.as_str())];
    let app = env.spawn(&settings).await;
    let token = sign_up(&app, &smtp, "erin", "erin@example.com", "erin's password").await;
    let (_ws, auth) = Ws::start(&app, &token).await;
    let erin = id_of(&auth["self_user"]);
    let bot = app.chat.bot_account_id;
    // What a node does when it acknowledges a DM; it dies before queueing the bot's answer.
    herald::chat::store_message(
        &app.state.db,
        &app.state.ids,
        herald::chat::pair(bot, erin),
        erin,
        "목록",
        None,
    )
    .await
    .expect("store the DM");
    app.stop().await;

    let app = env.spawn(&settings).await;
    let db = app.state.db.clone();
    crate::helpers::wait_until(
        "the bot's answer after the restart",
        crate::helpers::WAIT,
        || {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM chat_messages WHERE user_id = $1 AND high_id = $2",
                )
                .bind(bot)
                .bind(erin)
                .fetch_one(db.reader())
                .await
                .unwrap_or(0)
                    == 1
            }
        },
    )
    .await;
    app.stop().await;
    env.cleanup().await;
}

/// The close code a socket too slow to take its frames gets (resume to catch up).
const CLOSE_TOO_SLOW: u16 = 4001;

/// What a socket saw next: a frame, or the end (with the close code, if a close frame came).
#[derive(Debug)]
enum Seen {
    Frame(Value),
    Closed(Option<u16>),
}

impl Ws {
    /// A client with a small receive buffer, so that what it does not read backs up in herald.
    async fn connect_slow(app: &TestApp) -> Ws {
        let address: std::net::SocketAddr = app
            .address
            .trim_start_matches("http://")
            .parse()
            .expect("the app's address");
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(address).await.expect("connect");
        let url = format!("ws://{address}/ws");
        let (stream, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
                .await
                .expect("websocket");
        Ws(stream)
    }

    /// Heartbeat and auth on a socket already connected; returns the auth payload.
    async fn join(&mut self, token: &str) -> Value {
        self.send(json!({"type": "heartbeat", "payload": 0})).await;
        assert_eq!(self.recv().await["type"], json!("heartbeat"));
        self.send(json!({"type": "auth", "payload": {"auth": token}}))
            .await;
        let auth = self.recv().await;
        assert_eq!(auth["type"], json!("auth"), "{auth}");
        auth["payload"].clone()
    }

    /// The next frame or the end, without a time limit (for `select!`).
    async fn next_seen(&mut self) -> Seen {
        loop {
            match self.0.next().await {
                None | Some(Err(_)) => return Seen::Closed(None),
                Some(Ok(Message::Close(frame))) => {
                    return Seen::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(Message::Text(text))) => {
                    return Seen::Frame(serde_json::from_str(text.as_str()).expect("JSON frame"));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Every frame until the socket ends, and how it ended.
    async fn read_to_end(&mut self, within: Duration) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(within, self.next_seen())
                .await
                .expect("the socket goes on or ends in time")
            {
                Seen::Frame(frame) => frames.push(frame),
                Seen::Closed(code) => return (frames, code),
            }
        }
    }

    /// A fresh socket resuming `session` after `last_seq`: the replayed frames (up to and with
    /// `resumed`), or the error frame it got instead.
    pub(crate) async fn resume(
        app: &TestApp,
        session: &str,
        token: &str,
        last_seq: u64,
    ) -> (Ws, Vec<Value>) {
        let mut ws = Ws::connect(app).await;
        ws.send(json!({"type": "heartbeat", "payload": 1})).await;
        assert_eq!(ws.recv().await["type"], json!("heartbeat"));
        ws.send(json!({"type": "resume", "payload": {"session": session, "auth": token, "last_seq": last_seq}}))
            .await;
        let mut frames = Vec::new();
        loop {
            let frame = ws.recv().await;
            let kind = frame["type"].clone();
            frames.push(frame);
            if kind == json!("resumed") || kind == json!("error") {
                return (ws, frames);
            }
        }
    }
}

pub(crate) async fn account_id(app: &TestApp, name: &str) -> i64 {
    herald::accounts::find_by_name(&app.state.db, name)
        .await
        .expect("read the account")
        .expect("the account exists")
        .id
}

/// Makes two accounts friends the way the protocol's request and response do.
pub(crate) async fn make_friends(app: &TestApp, a: i64, b: i64) {
    let db = &app.state.db;
    herald::chat::request_friend(db, a, b)
        .await
        .expect("request");
    herald::chat::accept_friend(db, b, a).await.expect("accept");
}

fn seq_of(frame: &Value) -> u64 {
    frame["seq"].as_u64().expect("a numbered frame")
}

/// A DM of about 4 KB whose text says who sent it and its place in that sender's order.
fn numbered_dm(chat_id: i64, sender: usize, index: usize) -> Value {
    let content = format!("{sender}:{index}:{}", "x".repeat(3990));
    json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id.to_string(), "content": content}})
}

/// (sender, index) of a DM made by [`numbered_dm`].
fn dm_number(frame: &Value) -> (usize, usize) {
    let content = frame["payload"]["content"].as_str().expect("content");
    let mut parts = content.splitn(3, ':');
    let mut number = || {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a numbered DM")
    };
    (number(), number())
}

/// A friend that sends `count` numbered DMs to `to`, keeping to the frame rate limit and its
/// heartbeat, and reads its own copies as they come.
async fn send_numbered_dms(app: &TestApp, token: &str, me: usize, to: i64, count: usize) {
    let (mut ws, auth) = Ws::start(app, token).await;
    let my_id = id_of(&auth["self_user"]);
    let chat_id = herald::chat::dm_chat_id(my_id, to);
    let mut pace = tokio::time::interval(Duration::from_millis(60));
    let (mut sent, mut echoed, mut tick) = (0, 0, 0usize);
    while echoed < count {
        tokio::select! {
            _ = pace.tick(), if sent < count => {
                tick += 1;
                if tick % 8 == 0 {
                    ws.send(json!({"type": "heartbeat", "payload": tick})).await;
                } else {
                    ws.send(numbered_dm(chat_id, me, sent)).await;
                    sent += 1;
                }
            }
            seen = ws.next_seen() => match seen {
                Seen::Frame(frame) => {
                    assert_ne!(frame["type"], json!("error"), "{frame}");
                    if frame["type"] == json!("chat") {
                        echoed += 1;
                    }
                }
                Seen::Closed(code) => panic!("friend {me} was closed: {code:?}"),
            },
        }
    }
}

both_backends!(
    a_slow_reader_is_closed_as_too_slow_and_resumes_every_message_once_in_order,
    a_socket_blocked_writing_to_a_client_that_never_reads_is_closed_at_the_heartbeat_deadline,
    bad_text_closes_with_1007_and_a_frame_just_over_the_limit_with_1009,
    the_sockets_and_waiting_sessions_of_an_account_are_capped,
    a_resume_past_what_a_session_or_the_node_keeps_is_told_410,
);

async fn a_slow_reader_is_closed_as_too_slow_and_resumes_every_message_once_in_order(env: TestEnv) {
    const FRIENDS: usize = 10;
    const EACH: usize = 100;
    let smtp = FakeSmtp::start().await;
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_WS_HEARTBEAT_TIMEOUT", "5s"),
            ("HERALD_WS_BACKLOG_BYTES", "64KiB"),
            ("HERALD_WS_RESUME_BYTES", "32MiB"),
        ])
        .await;
    let alice = sign_up(&app, &smtp, "alice", "alice@example.com", "a long password").await;
    let alice_id = account_id(&app, "alice").await;
    let mut friends = Vec::new();
    for n in 0..FRIENDS {
        let name = format!("friend{n}");
        let token = sign_up(
            &app,
            &smtp,
            &name,
            &format!("{name}@example.com"),
            "a long password",
        )
        .await;
        make_friends(&app, alice_id, account_id(&app, &name).await).await;
        friends.push(token);
    }

    // Alice reads nothing while her friends write, but keeps sending heartbeats.
    let mut slow = Ws::connect_slow(&app).await;
    let auth = slow.join(&alice).await;
    let session = auth["session"].as_str().expect("a session").to_string();
    {
        let writing = futures_util::future::join_all(
            friends
                .iter()
                .enumerate()
                .map(|(n, token)| send_numbered_dms(&app, token, n, alice_id, EACH)),
        );
        tokio::pin!(writing);
        let mut heartbeat = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut writing => break,
                _ = heartbeat.tick() => slow.send(json!({"type": "heartbeat", "payload": "still here"})).await,
            }
        }
    }

    // She was closed as too slow (not for missing heartbeats), with a close frame after the
    // frames herald had written.
    let (before, code) = slow.read_to_end(Duration::from_secs(20)).await;
    assert_eq!(code, Some(CLOSE_TOO_SLOW));
    let last_seq = before.last().map(seq_of).expect("frames before the close");
    let (_ws, replayed) = Ws::resume(&app, &session, &alice, last_seq).await;
    let resumed = replayed.last().expect("an answer to resume");
    assert_eq!(resumed["type"], json!("resumed"), "{resumed}");
    assert_eq!(
        resumed["payload"]["replayed"],
        json!(replayed.len() - 1),
        "every missed frame was replayed"
    );

    // Every frame of the session exactly once, numbered without a gap; every DM once, each
    // friend's in the order sent.
    let all: Vec<&Value> = before.iter().chain(&replayed).collect();
    let seqs: Vec<u64> = all.iter().map(|f| seq_of(f)).collect();
    assert_eq!(
        seqs,
        (2..2 + all.len() as u64).collect::<Vec<_>>(),
        "auth was 1"
    );
    let mut per_friend = vec![Vec::new(); FRIENDS];
    for frame in all.iter().filter(|f| f["type"] == json!("chat")) {
        let (sender, index) = dm_number(frame);
        per_friend[sender].push(index);
    }
    for (n, indexes) in per_friend.iter().enumerate() {
        assert_eq!(indexes, &(0..EACH).collect::<Vec<_>>(), "friend {n}");
    }

    app.stop().await;
    env.cleanup().await;
}

async fn a_socket_blocked_writing_to_a_client_that_never_reads_is_closed_at_the_heartbeat_deadline(
    env: TestEnv,
) {
    let smtp = FakeSmtp::start().await;
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_WS_HEARTBEAT_TIMEOUT", "2s"),
        ])
        .await;
    let alice = sign_up(&app, &smtp, "alice", "alice@example.com", "a long password").await;
    let bob = sign_up(&app, &smtp, "bob", "bob@example.com", "a long password").await;
    let alice_id = account_id(&app, "alice").await;
    make_friends(&app, alice_id, account_id(&app, "bob").await).await;

    // Alice fills every buffer between herald and her with the echoes of large heartbeats,
    // then neither reads nor writes again.
    let mut stuck = Ws::connect_slow(&app).await;
    stuck.join(&alice).await;
    for i in 0..40 {
        stuck
            .send(json!({"type": "heartbeat", "payload": format!("{i}{}", "x".repeat(60_000))}))
            .await;
    }
    assert_eq!(app.chat.bus.live(alice_id, 0).await, 1);
    // Bob keeps writing to her meanwhile, so that frames keep coming for the stuck socket.
    let writing = send_numbered_dms(&app, &bob, 0, alice_id, 60);
    let bus = app.chat.bus.clone();
    let closed = crate::helpers::wait_until(
        "herald to close the socket it cannot write to",
        Duration::from_secs(20),
        move || {
            let bus = bus.clone();
            async move { bus.live(alice_id, 0).await == 0 }
        },
    );
    tokio::join!(writing, closed);
    drop(stuck);

    app.stop().await;
    env.cleanup().await;
}

async fn bad_text_closes_with_1007_and_a_frame_just_over_the_limit_with_1009(env: TestEnv) {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let app = env.spawn(&[]).await;

    let mut ws = Ws::connect(&app).await;
    ws.send(json!({"type": "heartbeat", "payload": 1})).await;
    ws.recv().await;
    let not_utf8 = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.0.send(Message::Frame(not_utf8)).await.expect("send");
    assert_eq!(ws.closed(Duration::from_secs(5)).await, Some(1007));

    for size in [65_537, 100_000] {
        let mut ws = Ws::connect(&app).await;
        ws.send(json!({"type": "heartbeat", "payload": 1})).await;
        ws.recv().await;
        ws.send_raw(&"x".repeat(size)).await;
        assert_eq!(
            ws.closed(Duration::from_secs(5)).await,
            Some(1009),
            "{size} bytes"
        );
    }
    // 64 KiB exactly is a frame like any other (here, not JSON).
    let mut ws = Ws::connect(&app).await;
    ws.send(json!({"type": "heartbeat", "payload": 1})).await;
    ws.recv().await;
    ws.send_raw(&"x".repeat(65_536)).await;
    assert_eq!(ws.recv().await["payload"]["code"], json!(400));

    app.stop().await;
    env.cleanup().await;
}

async fn the_sockets_and_waiting_sessions_of_an_account_are_capped(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_WS_SOCKETS_PER_ACCOUNT", "2"),
            ("HERALD_WS_DETACHED_PER_ACCOUNT", "1"),
        ])
        .await;
    let alice = sign_up(&app, &smtp, "alice", "alice@example.com", "a long password").await;
    let alice_id = account_id(&app, "alice").await;

    // Two live sockets; a third is refused with an error and a close, and changes nothing.
    let (first, first_auth) = Ws::start(&app, &alice).await;
    let (second, second_auth) = Ws::start(&app, &alice).await;
    let mut third = Ws::connect(&app).await;
    third.send(json!({"type": "heartbeat", "payload": 1})).await;
    third.recv().await;
    third
        .send(json!({"type": "auth", "payload": {"auth": alice}}))
        .await;
    let refused = third.recv().await;
    assert_eq!(
        (refused["type"].clone(), refused["payload"]["code"].clone()),
        (json!("error"), json!(429)),
        "{refused}"
    );
    assert_eq!(third.closed(Duration::from_secs(5)).await, Some(4003));
    assert_eq!(app.chat.bus.live(alice_id, 0).await, 2);

    // Both drop; only the later session waits for resume, the earlier is told 410.
    drop(first);
    drop(second);
    let bus = app.chat.bus.clone();
    crate::helpers::wait_until(
        "both sockets to be gone",
        Duration::from_secs(10),
        move || {
            let bus = bus.clone();
            async move { bus.live(alice_id, 0).await == 0 }
        },
    )
    .await;
    assert_eq!(app.chat.sessions.detached_of(alice_id), 1);
    let sessions: Vec<String> = [first_auth, second_auth]
        .iter()
        .map(|auth| auth["session"].as_str().expect("session").to_string())
        .collect();
    let mut answers = Vec::new();
    for session in &sessions {
        let (_ws, frames) = Ws::resume(&app, session, &alice, 1).await;
        let last = frames.last().expect("an answer").clone();
        answers.push((last["type"].clone(), last["payload"]["code"].clone()));
    }
    // Which one dropped first on the server is up to the scheduler; one of each it must be.
    answers.sort_by_key(|(kind, _)| kind.to_string());
    assert_eq!(
        answers,
        [
            (json!("error"), json!(410)),
            (json!("resumed"), Value::Null)
        ]
    );

    app.stop().await;
    env.cleanup().await;
}

async fn a_resume_past_what_a_session_or_the_node_keeps_is_told_410(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let settings = |resume: &'static str, total: &'static str| {
        vec![
            ("HERALD_WS_BACKLOG_BYTES", "32KiB"),
            ("HERALD_WS_RESUME_BYTES", resume),
            ("HERALD_WS_RESUME_TOTAL_BYTES", total),
        ]
    };
    // First the session's own bound (50 DMs of about 4 KB for a session that keeps 64 KiB),
    // then the node's total (25 DMs fit the session, but with the sender's own copies they
    // pass the total).
    for (resume, total, dms) in [("64KiB", "256MiB", 50), ("128KiB", "160KiB", 25)] {
        let mut extra = settings(resume, total);
        extra.push(("HERALD_SMTP_URL", smtp.url.as_str()));
        let app = env.spawn(&extra).await;
        let email = |name: &str| format!("{name}{}@example.com", resume.len());
        let alice_name = format!("alice{}", resume.len());
        let bob_name = format!("bob{}", resume.len());
        let alice = sign_up(&app, &smtp, &alice_name, &email("alice"), "a long password").await;
        let bob = sign_up(&app, &smtp, &bob_name, &email("bob"), "a long password").await;
        let alice_id = account_id(&app, &alice_name).await;
        make_friends(&app, alice_id, account_id(&app, &bob_name).await).await;

        let (a, auth) = Ws::start(&app, &alice).await;
        let session = auth["session"].as_str().expect("session").to_string();
        drop(a);
        let bus = app.chat.bus.clone();
        crate::helpers::wait_until(
            "alice's socket to be gone",
            Duration::from_secs(10),
            move || {
                let bus = bus.clone();
                async move { bus.live(alice_id, 0).await == 0 }
            },
        )
        .await;
        send_numbered_dms(&app, &bob, 0, alice_id, dms).await;
        let (_ws, frames) = Ws::resume(&app, &session, &alice, 1).await;
        let answer = frames.last().expect("an answer");
        assert_eq!(
            (answer["type"].clone(), answer["payload"]["code"].clone()),
            (json!("error"), json!(410)),
            "{resume} / {total}: {answer}"
        );
        let total_bytes = app.state.settings.ws_resume_total_bytes;
        assert!(
            app.chat.sessions.budget().total() <= total_bytes,
            "{} bytes kept over a total of {total_bytes}",
            app.chat.sessions.budget().total()
        );
        app.stop().await;
    }
    env.cleanup().await;
}
