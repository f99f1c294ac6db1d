//! The schedules page in a real browser: a schedule is previewed and made from the form, its
//! next fire times shown, then edited from its own page; the header stays one row on a desktop and tidy on a phone. The teams
//! page with member days and the dashboard with an unread chat are photographed at both
//! widths. A child of `web_browser`, whose WebDriver client it uses.

use serde_json::{Value, json};

use super::{Browser, DESKTOP, PHONE};
use crate::both_backends;
use crate::helpers::TestEnv;
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(a_schedule_is_previewed_and_made_in_a_browser);

/// Runs `script` in the page and returns its value.
async fn run(browser: &Browser, script: &str) -> Value {
    browser
        .command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
}

/// The header's height and the right edge of its furthest element, in CSS pixels.
async fn header_box(browser: &Browser) -> (f64, f64) {
    let found = run(
        browser,
        "var h = document.querySelector('.site-header .bar'); \
         var right = 0; h.querySelectorAll('a, button').forEach(function (e) { \
           right = Math.max(right, e.getBoundingClientRect().right); }); \
         return [h.getBoundingClientRect().height, right];",
    )
    .await;
    (
        found[0].as_f64().expect("height"),
        found[1].as_f64().expect("right"),
    )
}

async fn a_schedule_is_previewed_and_made_in_a_browser(env: TestEnv) {
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
    let clock = herald::clock::ManualClock::at("2026-06-01T08:00:00+09:00");
    let app = env.spawn_with_clock(&[], clock).await;
    let db = app.state.db.clone();
    let base = app.address.clone();
    let backend = format!("{:?}", env.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");

    // Ada administers a team with Ben, who is away this week and wrote to her.
    let mut ada = PageClient::new(&app);
    sign_up_and_in(&env, &mut ada, "ada", "ada@example.com", "correct horse").await;
    let mut ben = PageClient::new(&app);
    sign_up_and_in(&env, &mut ben, "ben", "ben@example.com", "correct horse").await;
    ada.get("/teams").await;
    ada.post(
        "/teams",
        &[
            ("name", "Platform"),
            ("time_zone", "Asia/Seoul"),
            ("morning_at", "09:00"),
        ],
    )
    .await;
    let ada_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = 'ada'")
        .fetch_one(db.reader())
        .await
        .expect("ada");
    let ben_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = 'ben'")
        .fetch_one(db.reader())
        .await
        .expect("ben");
    let team = herald::teams::list_teams(&db, Some(ada_id))
        .await
        .expect("teams")[0]
        .id;
    ada.post(&format!("/teams/{team}/members"), &[("account", "ben")])
        .await;
    let ben_member = herald::teams::list_members(&db, team)
        .await
        .expect("members")[1]
        .id
        .to_string();
    let day = ada
        .post(
            &format!("/teams/{team}/days"),
            &[
                ("member", ben_member.as_str()),
                ("kind", "off"),
                ("from", "2026-06-02"),
                ("to", "2026-06-04"),
                ("note", "Jeju"),
            ],
        )
        .await;
    assert_eq!(day.status, 200, "{}", day.body);
    herald::chat::request_friend(&db, ben_id, ada_id)
        .await
        .expect("request");
    herald::chat::accept_friend(&db, ada_id, ben_id)
        .await
        .expect("accept");
    let dm = herald::chat::dm_chat_id(ada_id, ben_id);
    ben.get(&format!("/chat/{dm}")).await;
    ben.post(
        &format!("/chat/{dm}/send"),
        &[("content", "back on Friday")],
    )
    .await;

    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.goto(&format!("{base}/signin")).await;
    browser.fill("#email", "ada@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_text("h1", "Hello, ada").await;
    browser
        .wait_text(&format!("#unread-chats a[href='/chat/{dm}']"), "ben")
        .await;
    browser.screenshot(&shot("dashboard-unread-desktop")).await;
    // One row of header on a desktop.
    let (height, right) = header_box(&browser).await;
    assert!(height < 60.0, "the desktop header is {height}px high");
    assert!(right <= f64::from(DESKTOP.0), "{right}");

    // The schedules page from the header; the preview of what is typed.
    browser.click("header a[href='/schedules']").await;
    browser.wait_text("h1", "My schedules").await;
    assert_eq!(
        browser.property("#time_zone", "value").await,
        json!("Asia/Seoul")
    );
    browser.fill("#cron", "30 9 * * 1-5").await;
    browser.fill("#message", "Stand-up in the small room").await;
    browser.click("#preview-button").await;
    browser
        .wait_text("#preview strong", "The next 5 times")
        .await;
    let times = run(
        &browser,
        "return Array.from(document.querySelectorAll('#preview time'))\
         .map(function (t) { return t.getAttribute('datetime'); })",
    )
    .await;
    assert_eq!(
        times,
        json!([
            "2026-06-01T09:30:00+09:00",
            "2026-06-02T09:30:00+09:00",
            "2026-06-03T09:30:00+09:00",
            "2026-06-04T09:30:00+09:00",
            "2026-06-05T09:30:00+09:00"
        ])
    );
    assert_eq!(
        browser.text("#preview li:first-child").await,
        "2026-06-01 09:30 Mon (+09:00)"
    );
    assert_eq!(
        browser.property("#message", "value").await,
        json!("Stand-up in the small room")
    );
    run(
        &browser,
        "document.getElementById('preview').scrollIntoView()",
    )
    .await;
    browser.screenshot(&shot("schedules-preview-desktop")).await;
    browser.resize(PHONE.0, PHONE.1).await;
    run(
        &browser,
        "document.getElementById('preview').scrollIntoView()",
    )
    .await;
    browser.screenshot(&shot("schedules-preview-phone")).await;
    browser.resize(DESKTOP.0, DESKTOP.1).await;

    // A wrong expression is shown next to its field.
    browser.fill("#cron", "30 25 * * *").await;
    browser.click("#create-button").await;
    browser
        .wait_text(
            "#cron-error",
            "Not a cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first.",
        )
        .await;
    assert_eq!(
        browser.property("#cron", "value").await,
        json!("30 25 * * *")
    );
    browser.screenshot(&shot("schedules-error-desktop")).await;

    // Made: to the team (the first audience offered), its next times listed.
    browser.fill("#cron", "30 9 * * 1-5").await;
    browser.click("#create-button").await;
    browser
        .wait_text(".notice", "The schedule is created.")
        .await;
    assert_eq!(
        browser.text(".schedule .next-times li:first-child").await,
        "2026-06-01 09:30 Mon (+09:00)"
    );
    assert_eq!(
        browser.text(".schedule .facts dd:first-of-type").await,
        "Team Platform"
    );
    browser.screenshot(&shot("schedules-desktop")).await;
    let stored = herald::schedules::list_schedules(&db, Some(ada_id))
        .await
        .expect("schedules");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message, "Stand-up in the small room");

    // Edited from its page: the form shows its settings; an error stays next to its field with
    // what was typed; saved, the list shows the new times.
    let id = stored[0].id;
    browser.click(&format!("#edit-{id}")).await;
    browser.wait_text("h1", "Edit the schedule").await;
    assert_eq!(
        browser.property("#cron", "value").await,
        json!("30 9 * * 1-5")
    );
    assert_eq!(
        browser.property("#message", "value").await,
        json!("Stand-up in the small room")
    );
    browser.screenshot(&shot("schedule-edit-desktop")).await;
    browser.resize(PHONE.0, PHONE.1).await;
    let (_, right) = header_box(&browser).await;
    assert!(right <= f64::from(PHONE.0), "{right}");
    browser.screenshot(&shot("schedule-edit-phone")).await;
    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.fill("#catch_up_limit", "a while").await;
    browser.fill("#message", "Stand-up, later").await;
    browser.click("#save-button").await;
    browser
        .wait_text(
            "#catch_up_limit-error",
            "Use a duration such as 30m or 1h, at most 31 days.",
        )
        .await;
    assert_eq!(
        browser.property("#message", "value").await,
        json!("Stand-up, later")
    );
    browser
        .screenshot(&shot("schedule-edit-error-desktop"))
        .await;
    browser.fill("#catch_up_limit", "1h").await;
    browser.fill("#cron", "0 10 * * 1-5").await;
    browser.click("#save-button").await;
    browser.wait_text(".notice", "The schedule is saved.").await;
    assert_eq!(
        browser.text(".schedule .next-times li:first-child").await,
        "2026-06-01 10:00 Mon (+09:00)"
    );
    assert_eq!(
        browser.text(".schedule .schedule-message").await,
        "Stand-up, later"
    );
    let edited = herald::schedules::find_schedule(&db, id)
        .await
        .expect("read")
        .expect("schedule");
    assert_eq!(edited.cron, "0 10 * * 1-5");
    assert_eq!(edited.catch_up_limit_ms, 3_600_000);

    browser.goto(&format!("{base}/teams")).await;
    browser.wait_text("h1", "My teams").await;
    assert_eq!(
        browser.text("ul.days li strong").await,
        "ben",
        "the member's day is listed"
    );
    browser.click("details.sub-settings summary").await;
    run(
        &browser,
        "document.querySelector('ul.days').scrollIntoView()",
    )
    .await;
    browser.screenshot(&shot("teams-days-desktop")).await;

    // At a phone's width: the header wraps tidily, nothing sticks out; and in Korean.
    browser.resize(PHONE.0, PHONE.1).await;
    for (path, name) in [
        ("/", "dashboard-unread"),
        ("/schedules", "schedules"),
        ("/teams", "teams-days"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        let (_, right) = header_box(&browser).await;
        assert!(right <= f64::from(PHONE.0), "{path}: {right}");
        browser.screenshot(&shot(&format!("{name}-phone"))).await;
        if path == "/teams" {
            browser.click("details.sub-settings summary").await;
            run(
                &browser,
                "document.querySelector('ul.days').scrollIntoView()",
            )
            .await;
            browser.screenshot(&shot("teams-days-form-phone")).await;
        }
    }
    browser.click("a[lang=ko]").await;
    browser.wait_text("h1", "내 팀").await;
    browser.goto(&format!("{base}/schedules")).await;
    browser.wait_text("h1", "내 예약 메시지").await;
    browser.screenshot(&shot("schedules-ko-phone")).await;
    browser.resize(DESKTOP.0, DESKTOP.1).await;
    let (height, _) = header_box(&browser).await;
    assert!(
        height < 60.0,
        "the Korean desktop header is {height}px high"
    );
    browser.screenshot(&shot("schedules-ko-desktop")).await;
    browser.click("a[lang=en]").await;
    browser.wait_text("h1", "My schedules").await;

    browser.quit().await;
    drop(browser);
    app.stop().await;
    env.cleanup().await;
}
