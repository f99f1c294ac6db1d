//! Area E's pages and the dashboard's unread chats, through plain HTTP as a browser without
//! JavaScript sends it: the schedules page (preview, errors next to their field, create,
//! enable and disable, delete, the run history), member days on the teams page, and unread
//! chats counted until the conversation is read. Admins change, members and strangers cannot.
//! Calendar time is a `ManualClock`.

use herald::clock::ManualClock;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, TestApp, TestEnv, WAIT, wait_until};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(
    schedules_are_previewed_made_and_managed_from_their_page,
    member_days_are_listed_and_changed_by_team_admins_only,
    the_dashboard_counts_unread_chats_until_they_are_read,
    a_schedule_is_edited_from_its_page,
    the_operator_announces_to_a_repositorys_subscribers_from_the_page,
);

async fn account_id(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_one(app.state.db.reader())
        .await
        .expect("account")
}

/// An e-mail contact linked to the account `name`; returns its id.
async fn linked_email(app: &TestApp, name: &str, address: &str) -> i64 {
    let db = &app.state.db;
    let account = account_id(app, name).await;
    let contact = herald::contacts::upsert_contact(db, &app.state.ids, "email", address, "")
        .await
        .expect("contact");
    let mut connection = db.writer().acquire().await.expect("connection");
    herald::contacts::link_to_account(&mut connection, contact.id, account)
        .await
        .expect("link");
    contact.id
}

/// Makes a team through the teams page (its maker is its admin) and adds `members` by name.
async fn team_with(client: &mut PageClient, app: &TestApp, owner: &str, members: &[&str]) -> i64 {
    client.get("/teams").await;
    let made = client
        .post(
            "/teams",
            &[
                ("name", "Platform"),
                ("time_zone", "Asia/Seoul"),
                ("morning_at", "09:00"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let owner_id = account_id(app, owner).await;
    let team = herald::teams::list_teams(&app.state.db, Some(owner_id))
        .await
        .expect("teams")[0]
        .id;
    for member in members {
        let added = client
            .post(&format!("/teams/{team}/members"), &[("account", member)])
            .await;
        assert_eq!(added.status, 200, "{}", added.body);
    }
    team
}

/// The preview endpoint's answer, for comparing with what the page shows.
async fn api_preview(app: &TestApp, cron: &str, zone: &str, from: &str) -> Vec<String> {
    let answer: Value = app
        .client
        .get(app.url("/api/v1/schedules/preview"))
        .bearer_auth(ADMIN_TOKEN)
        .query(&[("cron", cron), ("time_zone", zone), ("from", from)])
        .send()
        .await
        .expect("preview")
        .json()
        .await
        .expect("json");
    answer["next"]
        .as_array()
        .expect("next")
        .iter()
        .map(|t| t.as_str().expect("instant").to_string())
        .collect()
}

/// The `datetime` attributes of the `<time>` elements in `html` after `marker`, up to the end
/// of that list.
fn times_after(html: &str, marker: &str) -> Vec<String> {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let rest = &html[start..];
    let end = rest.find("</ol>").unwrap_or(rest.len());
    rest[..end]
        .split("<time datetime=\"")
        .skip(1)
        .map(|piece| piece.split('"').next().unwrap_or_default().to_string())
        .collect()
}

async fn schedules_are_previewed_made_and_managed_from_their_page(env: TestEnv) {
    // Monday 1 June 2026, 08:00 in Seoul.
    let now = "2026-06-01T08:00:00+09:00";
    let clock = ManualClock::at(now);
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let db = app.state.db.clone();
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let mut kim = PageClient::new(&app);
    sign_up_and_in(&env, &mut kim, "kim", "kim@example.com", "correct horse").await;
    let judy_id = account_id(&app, "judy").await;
    let kim_id = account_id(&app, "kim").await;
    let team = team_with(&mut judy, &app, "judy", &["kim"]).await;
    let judy_mail = linked_email(&app, "judy", "judy-news@example.com").await;
    let kim_mail = linked_email(&app, "kim", "kim-news@example.com").await;

    let empty = judy.get("/schedules").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    empty.assert_shows("No schedules yet.");
    assert!(
        empty
            .body
            .contains("name=\"time_zone\" type=\"text\" list=\"zones\" value=\"Asia/Seoul\""),
        "{}",
        empty.body
    );
    assert!(
        empty.body.contains("<a href=\"/schedules\">Schedules</a>"),
        "the header links the page: {}",
        empty.body
    );

    // Preview: the next five times, the preview endpoint's, and nothing stored.
    let cron = "0 9 * * 1-5";
    let previewed = judy
        .post(
            "/schedules",
            &[
                ("action", "preview"),
                ("cron", cron),
                ("time_zone", "Asia/Seoul"),
                ("message", "Stand-up at ten"),
                ("audience", &format!("team:{team}")),
            ],
        )
        .await;
    assert_eq!(previewed.status, 200, "{}", previewed.body);
    let expected = api_preview(&app, cron, "Asia/Seoul", now).await;
    assert_eq!(
        expected,
        [
            "2026-06-01T09:00:00+09:00",
            "2026-06-02T09:00:00+09:00",
            "2026-06-03T09:00:00+09:00",
            "2026-06-04T09:00:00+09:00",
            "2026-06-05T09:00:00+09:00",
        ]
    );
    assert_eq!(
        times_after(&previewed.body, "id=\"preview\""),
        expected,
        "{}",
        previewed.body
    );
    previewed.assert_shows("2026-06-01 09:00 Mon (+09:00)");
    assert!(
        previewed.body.contains(">Stand-up at ten</textarea>"),
        "what was typed is kept: {}",
        previewed.body
    );
    assert!(
        herald::schedules::list_schedules(&db, Some(judy_id))
            .await
            .expect("schedules")
            .is_empty()
    );

    // A wrong expression: the error next to the field, what was typed kept, nothing stored.
    let wrong = judy
        .post(
            "/schedules",
            &[
                ("action", "create"),
                ("cron", "61 9 * * *"),
                ("time_zone", "Asia/Seoul"),
                ("message", "Stand-up at ten"),
                ("audience", &format!("team:{team}")),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    wrong.assert_shows("<p class=\"error\" id=\"cron-error\">Not a cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first.</p>");
    wrong.assert_shows("value=\"61 9 * * *\"");
    wrong.assert_shows(">Stand-up at ten</textarea>");
    let wrong_zone = judy
        .post(
            "/schedules",
            &[
                ("action", "preview"),
                ("cron", cron),
                ("time_zone", "Mars/Olympus"),
            ],
        )
        .await;
    assert_eq!(wrong_zone.status, 422, "{}", wrong_zone.body);
    wrong_zone.assert_shows("id=\"time_zone-error\"");
    wrong_zone.assert_lacks("id=\"preview\"");

    // Messengers as the audience: at least one, and only mine.
    let none_checked = judy
        .post(
            "/schedules",
            &[
                ("cron", cron),
                ("time_zone", "Asia/Seoul"),
                ("message", "Hello"),
                ("audience", "contacts"),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(none_checked.status, 422, "{}", none_checked.body);
    none_checked.assert_shows("<p class=\"error\" id=\"audience-error\">Choose a team you administer, or check at least one of your messengers.</p>");
    let kims_contact = judy
        .post(
            "/schedules",
            &[
                ("cron", cron),
                ("time_zone", "Asia/Seoul"),
                ("message", "Hello"),
                ("audience", "contacts"),
                ("contact", &kim_mail.to_string()),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(kims_contact.status, 422, "{}", kims_contact.body);
    assert!(
        herald::schedules::list_schedules(&db, Some(judy_id))
            .await
            .expect("schedules")
            .is_empty()
    );

    // Made: to the team, on e-mail only, urgent, 30 minutes to catch up.
    let made = judy
        .post(
            "/schedules",
            &[
                ("action", "create"),
                ("cron", cron),
                ("time_zone", "Asia/Seoul"),
                ("message", "Stand-up at ten"),
                ("audience", &format!("team:{team}")),
                ("channel", "email"),
                ("urgent", "on"),
                ("enabled", "on"),
                ("catch_up_limit", "30m"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    made.assert_shows("The schedule is created.");
    let stored = herald::schedules::list_schedules(&db, Some(judy_id))
        .await
        .expect("schedules");
    assert_eq!(stored.len(), 1);
    let schedule = &stored[0];
    assert_eq!(schedule.cron, cron);
    assert_eq!(schedule.time_zone, "Asia/Seoul");
    assert_eq!(schedule.message, "Stand-up at ten");
    assert_eq!(
        schedule.audience,
        herald::schedules::Audience::Team { team_id: team }
    );
    assert_eq!(schedule.channels, Some(vec!["email".to_string()]));
    assert!(schedule.urgent && schedule.enabled);
    assert_eq!(schedule.catch_up_limit_ms, 30 * 60 * 1000);
    assert_eq!(schedule.owner_account_id, Some(judy_id));
    assert_eq!(
        schedule.next_due_at,
        Some(
            chrono::DateTime::parse_from_rfc3339(&expected[0])
                .expect("instant")
                .timestamp_millis()
        )
    );
    let id = schedule.id;
    assert_eq!(
        times_after(&made.body, &format!("id=\"schedule-{id}\"")),
        expected,
        "{}",
        made.body
    );
    made.assert_shows("<dd>Team Platform</dd>");

    // A second one, to my own messenger.
    let mine = judy
        .post(
            "/schedules",
            &[
                ("cron", "0 18 * * 5"),
                ("time_zone", "Asia/Seoul"),
                ("message", "Weekend!"),
                ("audience", "contacts"),
                ("contact", &judy_mail.to_string()),
                ("enabled", "on"),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let stored = herald::schedules::list_schedules(&db, Some(judy_id))
        .await
        .expect("schedules");
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[1].audience,
        herald::schedules::Audience::Contacts {
            contact_ids: vec![judy_mail]
        }
    );
    assert_eq!(stored[1].channels, None);
    let own = stored[1].id;

    // A member who is not the team's admin sees neither and changes nothing.
    let kims = kim.get("/schedules").await;
    kims.assert_shows("No schedules yet.");
    kims.assert_lacks("Stand-up at ten");
    assert!(
        !kims.body.contains(&format!("value=\"team:{team}\"")),
        "a team kim does not administer is not offered: {}",
        kims.body
    );
    for path in [
        format!("/schedules/{id}/disable"),
        format!("/schedules/{id}/delete"),
        format!("/schedules/{own}/delete"),
    ] {
        let refused = kim.post(&path, &[]).await;
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
        refused.assert_shows("No such schedule among yours.");
    }
    let to_team = kim
        .post(
            "/schedules",
            &[
                ("cron", cron),
                ("time_zone", "Asia/Seoul"),
                ("message", "Not mine to send"),
                ("audience", &format!("team:{team}")),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(to_team.status, 422, "{}", to_team.body);
    to_team.assert_shows("id=\"audience-error\"");
    assert!(
        herald::schedules::list_schedules(&db, Some(kim_id))
            .await
            .expect("schedules")
            .is_empty()
    );
    let unchanged = herald::schedules::find_schedule(&db, id)
        .await
        .expect("read")
        .expect("still there");
    assert!(unchanged.enabled);

    // Disabled: no next time; enabled again: due from now.
    let disabled = judy.post(&format!("/schedules/{id}/disable"), &[]).await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    disabled.assert_shows("The schedule is disabled.");
    let off = herald::schedules::find_schedule(&db, id)
        .await
        .expect("read")
        .expect("schedule");
    assert_eq!((off.enabled, off.next_due_at), (false, None));
    let enabled = judy.post(&format!("/schedules/{id}/enable"), &[]).await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    let on = herald::schedules::find_schedule(&db, id)
        .await
        .expect("read")
        .expect("schedule");
    assert!(on.enabled);
    assert_eq!(on.next_due_at, schedule.next_due_at);

    // Nine o'clock: the run is in the history, sent to the messengers of the team's members.
    clock.set_rfc3339("2026-06-01T09:00:00+09:00");
    wait_until("the run", WAIT, || async {
        !herald::schedules::list_runs(&db, id, 10)
            .await
            .expect("runs")
            .is_empty()
    })
    .await;
    let history = judy.get("/schedules").await;
    let section_start = history
        .body
        .find(&format!("id=\"schedule-{id}\""))
        .expect("the schedule");
    let section = &history.body[section_start..];
    let section = &section[..section.find("</section>").expect("its end")];
    assert!(
        section.contains("<summary>Run history (1)</summary>"),
        "{section}"
    );
    assert!(
        section.contains(
            "<time datetime=\"2026-06-01T09:00:00+09:00\">2026-06-01 09:00 Mon (+09:00)</time>"
        ),
        "{section}"
    );
    assert!(
        section.contains(
            "<span class=\"badge ok\">sent</span> <span class=\"small\">to 2: email judy-news@example.com, email kim-news@example.com</span>"
        ),
        "{section}"
    );

    // No longer urgent, and Kim's mail quiet until ten (in Seoul): Tuesday's run holds it for
    // Kim's digest, and the history says so.
    for (path, body) in [
        (
            format!("/api/v1/contacts/{kim_mail}"),
            serde_json::json!({"quiet_hours": "08:00-10:00"}),
        ),
        (
            format!("/api/v1/schedules/{id}"),
            serde_json::json!({"urgent": false}),
        ),
    ] {
        let (status, answer) = app.admin(reqwest::Method::PATCH, &path, Some(body)).await;
        assert_eq!(status, 200, "{answer}");
    }
    clock.set_rfc3339("2026-06-02T09:00:00+09:00");
    wait_until("Tuesday's run", WAIT, || async {
        herald::schedules::list_runs(&db, id, 10)
            .await
            .expect("runs")
            .len()
            == 2
    })
    .await;
    let history = judy.get("/schedules").await;
    let section_start = history
        .body
        .find(&format!("id=\"schedule-{id}\""))
        .expect("the schedule");
    let section = &history.body[section_start..];
    let section = &section[..section.find("</section>").expect("its end")];
    assert!(
        section.contains(
            "<span class=\"badge ok\">sent</span> <span class=\"small\">to 2: email judy-news@example.com, email kim-news@example.com (held for the digest 2026-06-02 10:00 Tue (+09:00))</span>"
        ),
        "{section}"
    );

    // Deleted.
    let deleted = judy.post(&format!("/schedules/{id}/delete"), &[]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    deleted.assert_shows("The schedule is deleted.");
    assert!(
        herald::schedules::find_schedule(&db, id)
            .await
            .expect("read")
            .is_none()
    );

    // Korean.
    judy.accept_language = Some("ko".into());
    let korean = judy.get("/schedules").await;
    korean.assert_shows("<h1>내 예약 메시지</h1>");

    app.stop().await;
    env.cleanup().await;
}

async fn member_days_are_listed_and_changed_by_team_admins_only(env: TestEnv) {
    let clock = ManualClock::at("2026-06-01T08:00:00+09:00");
    let app = env.spawn_with_clock(&[], clock).await;
    let db = app.state.db.clone();
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let mut kim = PageClient::new(&app);
    sign_up_and_in(&env, &mut kim, "kim", "kim@example.com", "correct horse").await;
    let mut lee = PageClient::new(&app);
    sign_up_and_in(&env, &mut lee, "lee", "lee@example.com", "correct horse").await;
    let team = team_with(&mut judy, &app, "judy", &["kim"]).await;
    let members = herald::teams::list_members(&db, team)
        .await
        .expect("members");
    let kim_member = members[1].id.to_string();
    let days_path = format!("/teams/{team}/days");

    let page = judy.get("/teams").await;
    page.assert_shows("No upcoming days.");

    // Mistakes are shown next to their field, with what was typed.
    let bad_date = judy
        .post(
            &days_path,
            &[
                ("member", &kim_member),
                ("kind", "off"),
                ("from", "2026-6-3"),
                ("to", ""),
                ("note", "Jeju"),
            ],
        )
        .await;
    assert_eq!(bad_date.status, 422, "{}", bad_date.body);
    bad_date.assert_shows(&format!(
        "<p class=\"error\" id=\"day-from-{team}-error\">Use a date written YYYY-MM-DD.</p>"
    ));
    bad_date.assert_shows("value=\"2026-6-3\"");
    bad_date.assert_shows("value=\"Jeju\"");
    let backwards = judy
        .post(
            &days_path,
            &[
                ("member", &kim_member),
                ("kind", "off"),
                ("from", "2026-06-05"),
                ("to", "2026-06-03"),
            ],
        )
        .await;
    assert_eq!(backwards.status, 422, "{}", backwards.body);
    backwards.assert_shows(&format!(
            "<p class=\"error\" id=\"day-to-{team}-error\">On or after the first day, and at most 366 days later.</p>"
        ));
    let stranger_member = judy
        .post(
            &days_path,
            &[("member", "12345"), ("kind", "off"), ("from", "2026-06-03")],
        )
        .await;
    assert_eq!(stranger_member.status, 422, "{}", stranger_member.body);
    assert!(
        stranger_member
            .body
            .contains("Choose a member of this team."),
        "{}",
        stranger_member.body
    );
    assert!(
        herald::teams::morning::list_days(&db, team)
            .await
            .expect("days")
            .is_empty()
    );

    // Added: a span of days off, and a one-day birthday.
    let added = judy
        .post(
            &days_path,
            &[
                ("member", &kim_member),
                ("kind", "off"),
                ("from", "2026-06-03"),
                ("to", "2026-06-05"),
                ("note", "Jeju"),
            ],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    added.assert_shows("The day is added.");
    let birthday = judy
        .post(
            &days_path,
            &[
                ("member", &kim_member),
                ("kind", "birthday"),
                ("from", "2026-06-10"),
                ("to", ""),
            ],
        )
        .await;
    assert_eq!(birthday.status, 200, "{}", birthday.body);
    // A day in the past is not upcoming.
    herald::teams::morning::add_day(
        &db,
        &app.state.ids,
        team,
        &herald::teams::morning::NewDay {
            member_id: members[0].id,
            from: chrono::NaiveDate::from_ymd_opt(2026, 5, 1).expect("date"),
            to: chrono::NaiveDate::from_ymd_opt(2026, 5, 2).expect("date"),
            kind: "off".into(),
            note: "Past".into(),
        },
    )
    .await
    .expect("add")
    .expect("a member");
    let days = herald::teams::morning::list_days(&db, team)
        .await
        .expect("days");
    assert_eq!(
        days.iter()
            .map(|d| (
                d.from.as_str(),
                d.to.as_str(),
                d.kind.as_str(),
                d.note.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("2026-05-01", "2026-05-02", "off", "Past"),
            ("2026-06-03", "2026-06-05", "off", "Jeju"),
            ("2026-06-10", "2026-06-10", "birthday", ""),
        ]
    );
    let jeju = days[1].id;
    let listed = judy.get("/teams").await;
    listed.assert_shows("<strong>kim</strong> · Day off · <time datetime=\"2026-06-03\">2026-06-03</time> – <time datetime=\"2026-06-05\">2026-06-05</time> <span class=\"small\">— Jeju</span>");
    listed.assert_shows(
        "<strong>kim</strong> · Birthday · <time datetime=\"2026-06-10\">2026-06-10</time>\n",
    );
    listed.assert_lacks("Past");

    // A member sees the days but may not change them; a stranger does not find the team.
    let seen = kim.get("/teams").await;
    seen.assert_shows("— Jeju");
    seen.assert_lacks("/days");
    let refused = kim
        .post(
            &days_path,
            &[
                ("member", &kim_member),
                ("kind", "off"),
                ("from", "2026-06-08"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = kim.post(&format!("{days_path}/{jeju}/remove"), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("Only the team&#39;s admins may do that."),
        "{}",
        refused.body
    );
    lee.get("/teams").await;
    let hidden = lee.post(&format!("{days_path}/{jeju}/remove"), &[]).await;
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    assert_eq!(
        herald::teams::morning::list_days(&db, team)
            .await
            .expect("days")
            .len(),
        3
    );

    let removed = judy.post(&format!("{days_path}/{jeju}/remove"), &[]).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    removed.assert_shows("The day is removed.");
    removed.assert_lacks("Jeju");
    assert_eq!(
        herald::teams::morning::list_days(&db, team)
            .await
            .expect("days")
            .len(),
        2
    );

    app.stop().await;
    env.cleanup().await;
}

/// The dashboard's unread section, as (chat link, name, count) in page order.
fn unread_of(html: &str) -> Vec<(String, String, String)> {
    let Some(start) = html.find("id=\"unread-chats\"") else {
        assert!(html.contains("No unread messages."), "{html}");
        return Vec::new();
    };
    let list = &html[start..];
    let list = &list[..list.find("</ul>").expect("the list's end")];
    list.split("<li><a href=\"")
        .skip(1)
        .map(|item| {
            let (href, rest) = item.split_once("\">").expect("link");
            let (name, rest) = rest.split_once("</a>").expect("name");
            let count = rest
                .split("<span class=\"count\">")
                .nth(1)
                .and_then(|c| c.split('<').next())
                .expect("count");
            (href.to_string(), name.to_string(), count.to_string())
        })
        .collect()
}

async fn the_dashboard_counts_unread_chats_until_they_are_read(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let db = app.state.db.clone();
    let mut hana = PageClient::new(&app);
    sign_up_and_in(&env, &mut hana, "hana", "hana@example.com", "correct horse").await;
    let mut joon = PageClient::new(&app);
    sign_up_and_in(&env, &mut joon, "joon", "joon@example.com", "correct horse").await;
    let mut lee = PageClient::new(&app);
    sign_up_and_in(&env, &mut lee, "lee", "lee@example.com", "correct horse").await;
    let hana_id = account_id(&app, "hana").await;
    let joon_id = account_id(&app, "joon").await;
    herald::chat::request_friend(&db, joon_id, hana_id)
        .await
        .expect("request");
    herald::chat::accept_friend(&db, hana_id, joon_id)
        .await
        .expect("accept");
    let dm = herald::chat::dm_chat_id(hana_id, joon_id);

    let quiet = hana.get("/").await;
    assert_eq!(unread_of(&quiet.body), vec![]);

    // Two messages from joon's page: unread for hana, not for joon.
    joon.get(&format!("/chat/{dm}")).await;
    for text in ["hi", "lunch?"] {
        let sent = joon
            .post(&format!("/chat/{dm}/send"), &[("content", text)])
            .await;
        assert_eq!(sent.status, 303, "{}", sent.body);
    }
    let dashboard = hana.get("/").await;
    assert_eq!(
        unread_of(&dashboard.body),
        vec![(format!("/chat/{dm}"), "joon".to_string(), "2".to_string())]
    );
    assert_eq!(unread_of(&joon.get("/").await.body), vec![]);
    assert_eq!(unread_of(&lee.get("/").await.body), vec![]);

    // Hana opens the conversation: read.
    let opened = hana.get(&format!("/chat/{dm}")).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(unread_of(&hana.get("/").await.body), vec![]);

    // A room with a message from joon; then one more DM.
    let room = herald::chat::create_room(&db, &app.state.ids, "Lunch club", &[joon_id, hana_id])
        .await
        .expect("room");
    let (in_room, _) = herald::chat::store_message(
        &db,
        &app.state.ids,
        herald::chat::room_key(room.id),
        joon_id,
        "noon?",
        None,
    )
    .await
    .expect("message");
    joon.get(&format!("/chat/{dm}")).await;
    joon.post(&format!("/chat/{dm}/send"), &[("content", "or one?")])
        .await;
    let both = unread_of(&hana.get("/").await.body);
    assert_eq!(
        both,
        vec![
            (format!("/chat/{dm}"), "joon".to_string(), "1".to_string()),
            (
                format!("/chat/{}", room.id),
                "Lunch club".to_string(),
                "1".to_string()
            ),
        ]
    );

    // The live page marks what the socket showed (chat.js posts it): read up to that message.
    let created_at = herald::chat::format_created_at(in_room.created_at_us);
    let read = hana
        .post(
            &format!("/chat/{}/read", room.id),
            &[("up_to", created_at.as_str())],
        )
        .await;
    assert_eq!(read.status, 204, "{}", read.body);
    assert_eq!(
        unread_of(&hana.get("/").await.body),
        vec![(format!("/chat/{dm}"), "joon".to_string(), "1".to_string())]
    );
    // Nobody marks a chat that is not theirs.
    lee.get("/").await;
    let not_mine = lee
        .post(
            &format!("/chat/{}/read", room.id),
            &[("up_to", created_at.as_str())],
        )
        .await;
    assert_eq!(not_mine.status, 404, "{}", not_mine.body);
    let unread_for_lee: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM chat_reads WHERE account_id = (SELECT id FROM accounts WHERE name = 'lee')",
    )
    .fetch_one(db.reader())
    .await
    .expect("count");
    assert_eq!(unread_for_lee, 0);

    // Writing marks the conversation read.
    hana.get(&format!("/chat/{}", room.id)).await;
    herald::chat::store_message(
        &db,
        &app.state.ids,
        herald::chat::pair(hana_id, joon_id),
        joon_id,
        "still there?",
        None,
    )
    .await
    .expect("message");
    assert_eq!(
        unread_of(&hana.get("/").await.body),
        vec![(format!("/chat/{dm}"), "joon".to_string(), "2".to_string())]
    );
    hana.post(&format!("/chat/{dm}/send"), &[("content", "yes")])
        .await;
    assert_eq!(unread_of(&hana.get("/").await.body), vec![]);

    app.stop().await;
    env.cleanup().await;
}

async fn a_schedule_is_edited_from_its_page(env: TestEnv) {
    // Monday 1 June 2026, 08:00 in Seoul.
    let now = "2026-06-01T08:00:00+09:00";
    let clock = ManualClock::at(now);
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let db = app.state.db.clone();
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let mut kim = PageClient::new(&app);
    sign_up_and_in(&env, &mut kim, "kim", "kim@example.com", "correct horse").await;
    let team = team_with(&mut judy, &app, "judy", &["kim"]).await;
    let judy_mail = linked_email(&app, "judy", "judy-news@example.com").await;
    judy.get("/schedules").await;
    let made = judy
        .post(
            "/schedules",
            &[
                ("cron", "0 9 * * 1-5"),
                ("time_zone", "Asia/Seoul"),
                ("message", "Stand-up at ten"),
                ("audience", &format!("team:{team}")),
                ("channel", "email"),
                ("enabled", "on"),
                ("catch_up_limit", "30m"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let id = herald::schedules::list_schedules(&db, None)
        .await
        .expect("schedules")[0]
        .id;
    let find = || async {
        herald::schedules::find_schedule(&db, id)
            .await
            .expect("read")
            .expect("schedule")
    };
    let before = find().await;
    assert!(
        made.body
            .contains(&format!("href=\"/schedules/{id}/edit\"")),
        "{}",
        made.body
    );

    // The edit page shows the schedule's settings in the form.
    let page = judy.get(&format!("/schedules/{id}/edit")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("action=\"/schedules/{id}/edit\""))
    );
    page.assert_shows("value=\"0 9 * * 1-5\"");
    page.assert_shows(">Stand-up at ten</textarea>");
    page.assert_shows("value=\"30m\"");
    assert!(
        page.body
            .contains(&format!("<option value=\"team:{team}\" selected>")),
        "{}",
        page.body
    );
    page.assert_shows("value=\"email\" checked");
    assert!(
        page.body
            .contains("id=\"enabled\" name=\"enabled\" type=\"checkbox\" value=\"on\" checked")
    );

    // Errors next to their fields, what was typed kept, nothing stored.
    let wrong = judy
        .post(
            &format!("/schedules/{id}/edit"),
            &[
                ("cron", "61 9 * * *"),
                ("time_zone", "Asia/Seoul"),
                ("message", ""),
                ("audience", &format!("team:{team}")),
                ("catch_up_limit", "forever"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    for expected in [
        "<p class=\"error\" id=\"cron-error\">Not a cron expression",
        "<p class=\"error\" id=\"message-error\">Write a message of 1 to 10,000 characters.</p>",
        "<p class=\"error\" id=\"catch_up_limit-error\">Use a duration such as 30m or 1h, at most 31 days.</p>",
        "value=\"61 9 * * *\"",
        "value=\"forever\"",
    ] {
        assert!(wrong.body.contains(expected), "{expected}: {}", wrong.body);
    }
    assert_eq!(find().await.updated_at, before.updated_at);

    // Preview shows the next times of what was typed, and stores nothing.
    let previewed = judy
        .post(
            &format!("/schedules/{id}/edit"),
            &[
                ("action", "preview"),
                ("cron", "30 10 * * *"),
                ("time_zone", "UTC"),
                ("message", "Retro"),
            ],
        )
        .await;
    assert_eq!(previewed.status, 200, "{}", previewed.body);
    let expected = api_preview(&app, "30 10 * * *", "UTC", now).await;
    assert_eq!(times_after(&previewed.body, "id=\"preview\""), expected);
    previewed.assert_shows(">Retro</textarea>");
    assert_eq!(find().await.cron, "0 9 * * 1-5");

    // Saved: every setting the API's PATCH takes, and the next time counted anew.
    let saved = judy
        .post(
            &format!("/schedules/{id}/edit"),
            &[
                ("action", "save"),
                ("cron", "30 10 * * *"),
                ("time_zone", "UTC"),
                ("message", "Retro"),
                ("audience", "contacts"),
                ("contact", &judy_mail.to_string()),
                ("channel", "email"),
                ("channel", "telegram"),
                ("urgent", "on"),
                ("enabled", "on"),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    saved.assert_shows("The schedule is saved.");
    let after = find().await;
    assert_eq!(after.cron, "30 10 * * *");
    assert_eq!(after.time_zone, "UTC");
    assert_eq!(after.message, "Retro");
    assert_eq!(
        after.audience,
        herald::schedules::Audience::Contacts {
            contact_ids: vec![judy_mail]
        }
    );
    assert_eq!(
        after.channels,
        Some(vec!["email".to_string(), "telegram".to_string()])
    );
    assert!(after.urgent && after.enabled);
    assert_eq!(after.catch_up_limit_ms, 60 * 60 * 1000);
    assert_eq!(
        after.next_due_at,
        Some(
            chrono::DateTime::parse_from_rfc3339(&expected[0])
                .expect("instant")
                .timestamp_millis()
        )
    );
    assert_eq!(expected[0], "2026-06-01T10:30:00+00:00");

    // Saving without changing the timing keeps the next due time; unchecking "enabled" turns
    // it off.
    let saved = judy
        .post(
            &format!("/schedules/{id}/edit"),
            &[
                ("cron", "30 10 * * *"),
                ("time_zone", "UTC"),
                ("message", "Retro, moved"),
                ("audience", "contacts"),
                ("contact", &judy_mail.to_string()),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let off = find().await;
    assert_eq!(off.message, "Retro, moved");
    assert!(!off.enabled && !off.urgent);
    assert_eq!(off.channels, None);
    assert_eq!(off.next_due_at, None);

    // Kim, a member of the team but not its admin, may neither see nor change it; a form
    // without its token is refused.
    assert_eq!(kim.get(&format!("/schedules/{id}/edit")).await.status, 404);
    kim.get("/schedules").await;
    let refused = kim
        .post(
            &format!("/schedules/{id}/edit"),
            &[
                ("cron", "* * * * *"),
                ("time_zone", "UTC"),
                ("message", "x"),
            ],
        )
        .await;
    assert_eq!(refused.status, 404);
    let forged = judy
        .post_raw(
            &format!("/schedules/{id}/edit"),
            &[
                ("cron", "* * * * *"),
                ("time_zone", "UTC"),
                ("message", "x"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(find().await.message, "Retro, moved");
    app.stop().await;
    env.cleanup().await;
}

async fn the_operator_announces_to_a_repositorys_subscribers_from_the_page(env: TestEnv) {
    use herald::testkit::git_repo::GitRepo;
    use reqwest::Method;
    let clock = ManualClock::at("2026-06-01T08:00:00+09:00");
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let db = app.state.db.clone();
    let repo = GitRepo::new();
    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(serde_json::json!({"channel": "email", "address": "watcher@example.com"})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/subscriptions",
            Some(serde_json::json!({"contact_id": contact["id"], "repository": repo.url(), "branch": "main"})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let unwatched = GitRepo::new();

    // The operator's header leads to the schedules page, whose form offers a repository.
    let mut operator = crate::web_operator::operator_browser(&app).await;
    let page = operator.get("/schedules").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_shows(
        "<option value=\"repository\">Subscribers of a repository (operator only)</option>",
    );
    page.assert_shows("id=\"repository\" name=\"repository\"");
    // An account is offered no repository, and one posted anyway is refused.
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let page = judy.get("/schedules").await;
    page.assert_lacks("value=\"repository\"");
    let refused = judy
        .post(
            "/schedules",
            &[
                ("cron", "0 9 * * *"),
                ("time_zone", "UTC"),
                ("message", "Release day"),
                ("audience", "repository"),
                ("repository", &repo.url()),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_shows("id=\"audience-error\"");

    // A repository nobody watches is refused next to its field, with what was typed.
    let form = |url: String| {
        vec![
            ("cron".to_string(), "0 9 * * *".to_string()),
            ("time_zone".to_string(), "UTC".to_string()),
            ("message".to_string(), "Release day".to_string()),
            ("audience".to_string(), "repository".to_string()),
            ("repository".to_string(), url),
            ("branch".to_string(), "main".to_string()),
            ("enabled".to_string(), "on".to_string()),
            ("catch_up_limit".to_string(), "1h".to_string()),
        ]
    };
    let fields = form(unwatched.url());
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wrong = operator.post("/schedules", &pairs).await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    wrong.assert_shows("<p class=\"error\" id=\"repository-error\">Give the URL of a repository someone is subscribed to.</p>");
    assert!(
        wrong
            .body
            .contains(&format!("value=\"{}\"", unwatched.url()))
    );
    assert!(
        herald::schedules::list_schedules(&db, None)
            .await
            .expect("schedules")
            .is_empty()
    );

    // The watched one is made, the operator's (no owner), with its branch.
    let fields = form(repo.url());
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let made = operator.post("/schedules", &pairs).await;
    assert_eq!(made.status, 200, "{}", made.body);
    made.assert_shows("The schedule is created.");
    let stored = herald::schedules::list_schedules(&db, None)
        .await
        .expect("schedules");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].owner_account_id, None);
    let herald::schedules::Audience::Repository { branch, .. } = &stored[0].audience else {
        panic!("a repository audience: {:?}", stored[0].audience);
    };
    assert_eq!(branch.as_deref(), Some("main"));
    let id = stored[0].id;
    // Judy does not see it; the operator edits it and keeps its audience.
    assert!(
        !judy
            .get("/schedules")
            .await
            .body
            .contains(&format!("schedule-{id}"))
    );
    assert_eq!(judy.get(&format!("/schedules/{id}/edit")).await.status, 404);
    let page = operator.get(&format!("/schedules/{id}/edit")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_shows("<option value=\"kept\" selected>");
    let saved = operator
        .post(
            &format!("/schedules/{id}/edit"),
            &[
                ("cron", "0 9 * * *"),
                ("time_zone", "UTC"),
                ("message", "Release day, moved"),
                ("audience", "kept"),
                ("enabled", "on"),
                ("catch_up_limit", "1h"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let after = herald::schedules::find_schedule(&db, id)
        .await
        .expect("read")
        .expect("schedule");
    assert_eq!(after.message, "Release day, moved");
    assert_eq!(after.audience, stored[0].audience);
    app.stop().await;
    env.cleanup().await;
}
