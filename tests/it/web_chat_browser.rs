//! The chat page live in two real browsers (two chromedriver sessions): two accounts become
//! friends and chat both ways over `/ws`, see each other typing, and one side's connection is
//! dropped and resumed without losing what was sent meanwhile; then a group room is made,
//! a friend invited into it and the room left, from its page. A child of `web_browser`, whose
//! WebDriver client it uses.

use serde_json::{Value, json};

use super::{Browser, DESKTOP, PHONE};
use crate::both_backends;
use crate::helpers::{TestEnv, WAIT, wait_until};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(two_people_chat_live_in_two_browsers_across_a_dropped_connection);

impl Browser {
    /// Runs `script` in the page and returns its value.
    async fn eval(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits until `script` returns `expected`.
    async fn wait_eval(&self, script: &str, expected: Value) {
        wait_until(&format!("{script} to be {expected}"), WAIT, || async {
            self.eval(script).await == expected
        })
        .await;
    }

    /// Waits until the chat page's socket is authenticated.
    async fn wait_live(&self) {
        self.wait_eval(
            "return document.getElementById('chat').dataset.state || null",
            json!("live"),
        )
        .await;
    }

    async fn sign_in(&self, base: &str, email: &str) {
        self.goto(&format!("{base}/signin")).await;
        self.fill("#email", email).await;
        self.fill("#password", "correct horse").await;
        self.click("main form button[type=submit]").await;
        self.wait_path("/").await;
    }
}

/// The texts of the conversation's messages, oldest first.
const MESSAGES: &str = "return Array.from(document.querySelectorAll('#messages .content'))\
    .map(function (p) { return p.textContent; })";

async fn start_or_skip() -> Option<Browser> {
    match Browser::start().await {
        Ok(browser) => Some(browser),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the chat browser test: {why}");
            None
        }
    }
}

async fn two_people_chat_live_in_two_browsers_across_a_dropped_connection(env: TestEnv) {
    let Some(hana) = start_or_skip().await else {
        return;
    };
    let Some(ivan) = start_or_skip().await else {
        return;
    };
    let app = env.spawn(&[]).await;
    let base = app.address.clone();
    let backend = format!("{:?}", env.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-chat-{name}");
    for (name, email) in [("hana", "hana@example.com"), ("ivan", "ivan@example.com")] {
        let mut client = PageClient::new(&app);
        sign_up_and_in(&env, &mut client, name, email, "correct horse").await;
    }
    hana.resize(DESKTOP.0, DESKTOP.1).await;
    ivan.resize(DESKTOP.0, DESKTOP.1).await;
    hana.sign_in(&base, "hana@example.com").await;
    ivan.sign_in(&base, "ivan@example.com").await;

    // Hana asks Ivan; Ivan accepts; Hana's live list shows her new friend, online.
    hana.click("header a[href='/chat']").await;
    hana.wait_path("/chat").await;
    hana.wait_live().await;
    hana.fill("#friend-name", "ivan").await;
    hana.click(".chat-add button").await;
    hana.wait_text(".notice", "Friend request sent to ivan")
        .await;
    hana.wait_live().await;
    ivan.goto(&format!("{base}/chat")).await;
    ivan.wait_text(".requests strong", "hana").await;
    ivan.screenshot(&shot("requests-desktop")).await;
    ivan.click(".requests button[value=accept]").await;
    ivan.wait_text(".notice", "You are now friends with hana")
        .await;
    ivan.wait_live().await;
    hana.wait_text(".people li a", "ivan").await;
    hana.wait_text(".people li .presence", "online").await;
    hana.wait_live().await;
    hana.screenshot(&shot("list-desktop")).await;

    // Both open their DM and write to each other.
    hana.click(".people li a").await;
    ivan.click(".people li a").await;
    hana.wait_live().await;
    ivan.wait_live().await;
    hana.fill("#message-text", "hello ivan").await;
    hana.click("#compose button").await;
    ivan.wait_eval(MESSAGES, json!(["hello ivan"])).await;
    hana.wait_eval(MESSAGES, json!(["hello ivan"])).await;
    // Typing shows on the other side, then the answer.
    ivan.fill("#message-text", "hi hana").await;
    hana.wait_text("#typing", "ivan is typing…").await;
    ivan.click("#compose button").await;
    hana.wait_eval(MESSAGES, json!(["hello ivan", "hi hana"]))
        .await;
    hana.wait_text("#typing", "").await;
    ivan.wait_eval(MESSAGES, json!(["hello ivan", "hi hana"]))
        .await;

    // Hana's connection drops; Ivan writes meanwhile (from the form, without typing); Hana's
    // page reconnects, resumes its session and gets exactly the frame it missed.
    hana.eval("window.heraldChat.drop(true)").await;
    hana.wait_eval(
        "return document.getElementById('chat').dataset.state",
        json!("lost"),
    )
    .await;
    ivan.wait_text(".people li .presence", "offline").await;
    ivan.eval(
        "document.getElementById('message-text').value = 'while you were away'; \
         document.getElementById('compose').requestSubmit()",
    )
    .await;
    ivan.wait_eval(
        MESSAGES,
        json!(["hello ivan", "hi hana", "while you were away"]),
    )
    .await;
    assert_eq!(
        hana.eval(MESSAGES).await,
        json!(["hello ivan", "hi hana"]),
        "nothing arrives while dropped"
    );
    hana.eval("window.heraldChat.reconnect()").await;
    hana.wait_live().await;
    hana.wait_eval(
        MESSAGES,
        json!(["hello ivan", "hi hana", "while you were away"]),
    )
    .await;
    assert_eq!(
        hana.eval("return document.getElementById('chat').dataset.replayed")
            .await,
        json!("1")
    );
    ivan.wait_text(".people li .presence", "online").await;
    hana.fill("#message-text", "back again").await;
    hana.click("#compose button").await;
    ivan.wait_eval(
        MESSAGES,
        json!(["hello ivan", "hi hana", "while you were away", "back again"]),
    )
    .await;
    hana.screenshot(&shot("dm-desktop")).await;
    ivan.screenshot(&shot("dm-other-desktop")).await;

    // A reload shows the same history from the server, as a browser without script sees it.
    ivan.goto(&format!("{base}/chat")).await;
    ivan.click(".people li a").await;
    ivan.wait_eval(
        MESSAGES,
        json!(["hello ivan", "hi hana", "while you were away", "back again"]),
    )
    .await;
    ivan.resize(PHONE.0, PHONE.1).await;
    ivan.screenshot(&shot("dm-phone")).await;
    ivan.goto(&format!("{base}/chat")).await;
    ivan.screenshot(&shot("list-phone")).await;

    // A group room: Hana makes one with Ivan from the list, writes in it, invites Jin, a friend
    // of hers; Ivan sees it all live, then leaves it from its page.
    let db = app.state.db.clone();
    let mut jin = PageClient::new(&app);
    sign_up_and_in(&env, &mut jin, "jin", "jin@example.com", "correct horse").await;
    let id_of = |name: &'static str| {
        let db = db.clone();
        async move {
            herald::accounts::find_by_name(&db, name)
                .await
                .expect("read")
                .expect("account")
                .id
        }
    };
    let (hana_id, jin_id) = (id_of("hana").await, id_of("jin").await);
    herald::chat::request_friend(&db, jin_id, hana_id)
        .await
        .expect("request");
    herald::chat::accept_friend(&db, hana_id, jin_id)
        .await
        .expect("accept");
    ivan.resize(DESKTOP.0, DESKTOP.1).await;
    hana.goto(&format!("{base}/chat")).await;
    hana.wait_live().await;
    hana.fill("#room-name", "Crew").await;
    hana.click("input[name=member][value=ivan]").await;
    hana.click("form[action='/chat/rooms'] button").await;
    hana.wait_text_starting("h1", "Crew").await;
    let room_path = hana.path().await;
    assert!(room_path.starts_with("/chat/"), "{room_path}");
    hana.wait_live().await;
    ivan.goto(&format!("{base}/chat")).await;
    ivan.wait_text(&format!("a[href='{room_path}']"), "Crew")
        .await;
    ivan.click(&format!("a[href='{room_path}']")).await;
    ivan.wait_text_starting("h1", "Crew").await;
    ivan.wait_live().await;
    hana.fill("#message-text", "welcome to the crew").await;
    hana.click("#compose button").await;
    ivan.wait_eval(MESSAGES, json!(["welcome to the crew"]))
        .await;
    assert_eq!(hana.text("#invite-name option").await, "jin");
    hana.eval("document.getElementById('invite').scrollIntoView()")
        .await;
    hana.screenshot(&shot("room-invite-desktop")).await;
    hana.click("#invite button").await;
    hana.wait_text(".room-forms .notice", "Invited to the room: jin")
        .await;
    hana.wait_text(
        ".room-forms .card p.small",
        "All your friends are in this room.",
    )
    .await;
    hana.screenshot(&shot("room-desktop")).await;
    hana.resize(PHONE.0, PHONE.1).await;
    hana.eval("document.querySelector('.room-forms').scrollIntoView()")
        .await;
    hana.screenshot(&shot("room-phone")).await;
    ivan.click("#leave button").await;
    // The list again (its script may reload it when the `left` frame comes), without the room.
    ivan.wait_eval(
        &format!(
            "return document.getElementById('rooms-title') !== null && \
             document.querySelectorAll(\"a[href='{room_path}']\").length === 0"
        ),
        json!(true),
    )
    .await;
    ivan.screenshot(&shot("room-left-desktop")).await;
    let members: Vec<String> = herald::chat::room_members(
        &db,
        room_path
            .trim_start_matches("/chat/")
            .parse()
            .expect("room id"),
    )
    .await
    .expect("members")
    .into_iter()
    .map(|a| a.name)
    .collect();
    assert_eq!(members, ["hana", "jin"]);

    hana.quit().await;
    ivan.quit().await;
    app.stop().await;
    env.cleanup().await;
}
