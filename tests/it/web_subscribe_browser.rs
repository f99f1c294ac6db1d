//! A new user's first errand in a real browser: link a Telegram chat with the code the
//! messengers page gives (the bot conversation through the fake Telegram's `getUpdates`),
//! subscribe that chat to a real git repository from the offered branches, push, and find the
//! notification, delivered, on the dashboard. A child of `web_browser`, whose WebDriver client
//! it uses.

use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::GitRepo;

use super::{Browser, DESKTOP, PHONE};
use crate::both_backends;
use crate::helpers::{TestEnv, WAIT, wait_until};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(a_person_links_telegram_subscribes_and_sees_a_push_on_the_dashboard);

/// The Telegram chat that links itself.
const CHAT: i64 = 770_001;

async fn a_person_links_telegram_subscribes_and_sees_a_push_on_the_dashboard(env: TestEnv) {
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the browser test: {why}");
            return;
        }
    };
    let telegram = FakeTelegram::start().await;
    let app = env
        .spawn(&[
            ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
            ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
        ])
        .await;
    let base = app.address.clone();
    let backend = format!("{:?}", env.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");
    let repo = GitRepo::new();

    let mut pages = PageClient::new(&app);
    sign_up_and_in(&env, &mut pages, "kim", "kim@example.com", "correct horse").await;
    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.goto(&format!("{base}/signin")).await;
    browser.fill("#email", "kim@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.click("form button[type=submit]").await;
    browser.wait_text("h1", "Hello, kim").await;

    // The messengers page gives the text to send; the chat sends it to the bot.
    browser.click("header a[href='/messengers']").await;
    browser
        .click("form[action='/messengers/code'] button")
        .await;
    let text = browser.text("#link-text").await;
    assert!(text.starts_with("link ") && text.len() == 13, "{text}");
    telegram.push_update(FakeTelegram::text_update(CHAT, &text));
    wait_until("the bot's answer to the link", WAIT, || async {
        telegram
            .delivered()
            .iter()
            .any(|m| m.chat_id == serde_json::json!(CHAT) && m.text.contains("kim"))
    })
    .await;
    wait_until("the chat on the messengers page", WAIT, || async {
        browser.goto(&format!("{base}/messengers")).await;
        browser
            .text_now("main")
            .await
            .is_some_and(|main| main.contains(&CHAT.to_string()))
    })
    .await;
    browser.screenshot(&shot("messengers-linked-desktop")).await;

    // Subscribe the chat: the repository's branches are offered, main filled in.
    browser.goto(&format!("{base}/subscriptions/new")).await;
    browser.fill("#repository", &repo.url()).await;
    browser
        .click("form[action='/subscriptions/new'] button")
        .await;
    browser.wait_text_starting("#branch-title", "").await;
    assert_eq!(
        browser.property("#branch", "value").await,
        serde_json::json!("main")
    );
    browser.screenshot(&shot("subscription-new-desktop")).await;
    browser
        .click("form[action='/subscriptions'] button[type=submit]")
        .await;
    browser.wait_text(".notice.ok", "Subscribed.").await;

    // A push: the chat is told, and the dashboard shows it delivered.
    let sha = repo.commit("src/lib.rs", "fn main() {}\n", "Make it run");
    app.wait_for_head("main", &sha).await;
    wait_until("the push notification in the chat", WAIT, || async {
        telegram
            .delivered()
            .iter()
            .any(|m| m.chat_id == serde_json::json!(CHAT) && m.text.contains("Make it run"))
    })
    .await;
    app.wait_for_outbox_drained().await;
    browser.goto(&format!("{base}/")).await;
    let dashboard = browser.text("main").await;
    assert!(dashboard.contains(&sha[..7]), "{dashboard}");
    assert!(dashboard.contains("delivered"), "{dashboard}");
    browser
        .screenshot(&shot("dashboard-notified-desktop"))
        .await;
    browser.resize(PHONE.0, PHONE.1).await;
    browser.screenshot(&shot("dashboard-notified-phone")).await;

    browser.quit().await;
    drop(browser);
    app.stop().await;
    env.cleanup().await;
}
