//! The subscriptions page (`web::subscriptions`), through plain HTTP as a browser without
//! JavaScript sends it: adding a subscription from the branches offered, filters, digest mode,
//! mute, quiet time, the notifications of each subscription, and another account's
//! subscriptions never found; the knowledge-base search page; the teams page.

use herald::testkit::git_repo::GitRepo;

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(
    a_subscription_is_added_from_the_offered_branches_and_tuned,
    another_accounts_subscriptions_are_not_found,
    the_knowledge_base_is_searched_from_a_page,
    teams_are_created_and_managed_by_their_admins,
);

/// An e-mail contact linked to the account `name`; returns the contact's id.
async fn linked_contact(app: &TestApp, name: &str, address: &str) -> i64 {
    let db = &app.state.db;
    let account_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_one(db.reader())
        .await
        .expect("account");
    let contact = herald::contacts::upsert_contact(db, &app.state.ids, "email", address, "")
        .await
        .expect("contact");
    let mut connection = db.writer().acquire().await.expect("connection");
    herald::contacts::link_to_account(&mut connection, contact.id, account_id)
        .await
        .expect("link");
    contact.id
}

fn encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn only_subscription(app: &TestApp, contact_id: i64) -> herald::contacts::Subscription {
    let mut list = herald::contacts::list_subscriptions(&app.state.db, Some(contact_id))
        .await
        .expect("subscriptions");
    assert_eq!(list.len(), 1, "{list:?}");
    list.remove(0)
}

async fn a_subscription_is_added_from_the_offered_branches_and_tuned(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;

    let empty = judy.get("/subscriptions").await;
    assert_eq!(empty.status, 200);
    assert!(
        empty
            .body
            .contains("Link a messenger first: subscriptions belong to a messenger contact."),
        "{}",
        empty.body
    );

    let contact_id = linked_contact(&app, "judy", "judy-inbox@example.com").await;
    let repo = GitRepo::new();
    repo.checkout_new_branch("release/1.0");
    repo.commit("notes.md", "1.0\n", "Release notes");
    repo.checkout("main");

    // Step 1: the repository's branches are offered, main first.
    let lookup = judy
        .get(&format!(
            "/subscriptions/new?contact={contact_id}&repository={}",
            encoded(&repo.url())
        ))
        .await;
    assert_eq!(lookup.status, 200, "{}", lookup.body);
    assert!(
        lookup
            .body
            .contains("Branches: <code>main</code>, <code>release/1.0</code>"),
        "{}",
        lookup.body
    );
    assert!(
        lookup
            .body
            .contains("name=\"branch\" type=\"text\" list=\"branch-list\" value=\"main\""),
        "{}",
        lookup.body
    );

    // A missing branch is refused next to the branch field, with what was typed kept.
    let missing = judy
        .post(
            "/subscriptions",
            &[
                ("contact", &contact_id.to_string()),
                ("repository", &repo.url()),
                ("branch", "nope"),
                ("paths", "src/**"),
                ("exclude_authors", ""),
            ],
        )
        .await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    missing.assert_shows(
        "<p class=\"error\" id=\"branch-error\">The repository has no such branch.</p>",
    );
    missing.assert_shows("value=\"nope\"");
    missing.assert_shows(">src/**</textarea>");
    assert!(
        herald::contacts::list_subscriptions(&app.state.db, Some(contact_id))
            .await
            .expect("subscriptions")
            .is_empty()
    );

    let added = judy
        .post(
            "/subscriptions",
            &[
                ("contact", &contact_id.to_string()),
                ("repository", &repo.url()),
                ("branch", "main"),
                ("paths", "src/**\ndocs/**"),
                ("exclude_authors", "dependabot*"),
            ],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    added.assert_shows("Subscribed.");
    let subscription = only_subscription(&app, contact_id).await;
    assert_eq!(subscription.branch, "main");
    assert_eq!(subscription.paths, vec!["src/**", "docs/**"]);
    assert_eq!(subscription.exclude_authors, vec!["dependabot*"]);
    assert_eq!(subscription.digest, "instant");
    let id = subscription.id;

    // A push that passes the filters is announced and shown under the subscription.
    let sha = repo.commit("src/lib.rs", "fn main() {}", "Change code");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    let listed = judy.get("/subscriptions").await;
    listed.assert_shows(&format!(
        "<code>{}</code> main <span class=\"small\">",
        &sha[..7]
    ));
    assert!(
        listed
            .body
            .contains("<span class=\"badge ok\">delivered</span>"),
        "{}",
        listed.body
    );

    // Settings: a bad digest mode is refused next to its field, nothing stored.
    let bad = judy
        .post(
            &format!("/subscriptions/{id}/settings"),
            &[
                ("paths", "lib/**"),
                ("exclude_authors", ""),
                ("digest", "weekly"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    bad.assert_shows(&format!(
        "<p class=\"error\" id=\"digest-{id}-error\">Use instant, hourly or daily@HH:MM.</p>"
    ));
    bad.assert_shows("value=\"weekly\"");
    bad.assert_shows(">lib/**</textarea>");
    assert_eq!(
        only_subscription(&app, contact_id).await.paths,
        vec!["src/**", "docs/**"]
    );

    let saved = judy
        .post(
            &format!("/subscriptions/{id}/settings"),
            &[
                ("paths", "lib/**"),
                ("exclude_authors", "ci@example.com"),
                ("digest", "daily@09:00"),
                ("urgent", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    saved.assert_shows("Saved.");
    let subscription = only_subscription(&app, contact_id).await;
    assert_eq!(subscription.paths, vec!["lib/**"]);
    assert_eq!(subscription.exclude_authors, vec!["ci@example.com"]);
    assert_eq!(subscription.digest, "daily@09:00");
    assert!(subscription.urgent);

    let muted = judy.post(&format!("/subscriptions/{id}/mute"), &[]).await;
    assert_eq!(muted.status, 200, "{}", muted.body);
    muted.assert_shows("The subscription is muted.");
    assert!(only_subscription(&app, contact_id).await.muted);
    let unmuted = judy.post(&format!("/subscriptions/{id}/unmute"), &[]).await;
    assert_eq!(unmuted.status, 200, "{}", unmuted.body);
    assert!(!only_subscription(&app, contact_id).await.muted);

    // The contact's quiet time: a bad zone is refused and kept; a good one is stored.
    let default_zone = herald::contacts::find_contact(&app.state.db, contact_id)
        .await
        .expect("read")
        .expect("contact")
        .time_zone;
    let quiet_path = format!("/subscriptions/contacts/{contact_id}/quiet");
    let bad_zone = judy
        .post(
            &quiet_path,
            &[
                ("time_zone", "Mars/Olympus"),
                ("quiet_hours", "22:00-07:00"),
            ],
        )
        .await;
    assert_eq!(bad_zone.status, 422, "{}", bad_zone.body);
    bad_zone.assert_shows(&format!(
            "<p class=\"error\" id=\"tz-{contact_id}-error\">Unknown time zone; use an IANA name such as Asia/Seoul.</p>"
        ));
    bad_zone.assert_shows("value=\"Mars/Olympus\"");
    let contact = herald::contacts::find_contact(&app.state.db, contact_id)
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(contact.time_zone, default_zone);
    assert_eq!(contact.quiet_hours, None);

    let quiet = judy
        .post(
            &quiet_path,
            &[
                ("time_zone", "Europe/Berlin"),
                ("quiet_hours", "22:00-07:00"),
                ("quiet_weekends", "on"),
            ],
        )
        .await;
    assert_eq!(quiet.status, 200, "{}", quiet.body);
    let contact = herald::contacts::find_contact(&app.state.db, contact_id)
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(contact.time_zone, "Europe/Berlin");
    assert_eq!(contact.quiet_hours.as_deref(), Some("22:00-07:00"));
    assert!(contact.quiet_weekends);

    // Without its CSRF token a form is refused and changes nothing.
    let forged = judy
        .post_raw(&format!("/subscriptions/{id}/delete"), &[])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    only_subscription(&app, contact_id).await;

    judy.get("/subscriptions").await;
    let removed = judy.post(&format!("/subscriptions/{id}/delete"), &[]).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    removed.assert_shows("The subscription is removed.");
    assert!(
        herald::contacts::list_subscriptions(&app.state.db, Some(contact_id))
            .await
            .expect("subscriptions")
            .is_empty()
    );

    app.stop().await;
    env.cleanup().await;
}

async fn another_accounts_subscriptions_are_not_found(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let mut kim = PageClient::new(&app);
    sign_up_and_in(&env, &mut kim, "kim", "kim@example.com", "correct horse").await;
    let judys_contact = linked_contact(&app, "judy", "judy-inbox@example.com").await;
    let kims_contact = linked_contact(&app, "kim", "kim-inbox@example.com").await;
    let default_zone = herald::contacts::find_contact(&app.state.db, judys_contact)
        .await
        .expect("read")
        .expect("contact")
        .time_zone;
    let repo = GitRepo::new();
    judy.get("/subscriptions").await;
    let added = judy
        .post(
            "/subscriptions",
            &[
                ("contact", &judys_contact.to_string()),
                ("repository", &repo.url()),
                ("branch", "main"),
            ],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let id = only_subscription(&app, judys_contact).await.id;

    let page = kim.get("/subscriptions").await;
    assert_eq!(page.status, 200);
    page.assert_lacks(&repo.url());
    page.assert_lacks("judy-inbox");

    for path in [
        format!("/subscriptions/{id}/mute"),
        format!("/subscriptions/{id}/unmute"),
        format!("/subscriptions/{id}/delete"),
        format!("/subscriptions/{id}/settings"),
        format!("/subscriptions/contacts/{judys_contact}/quiet"),
    ] {
        let refused = kim
            .post(
                &path,
                &[("digest", "hourly"), ("time_zone", "Europe/Berlin")],
            )
            .await;
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
        refused.assert_shows("No such subscription among yours.");
    }
    // Subscribing someone else's contact is refused at the contact field.
    kim.get("/subscriptions/new").await;
    let theirs = kim
        .post(
            "/subscriptions",
            &[
                ("contact", &judys_contact.to_string()),
                ("repository", &repo.url()),
                ("branch", "main"),
            ],
        )
        .await;
    assert_eq!(theirs.status, 422, "{}", theirs.body);
    theirs.assert_shows("Choose one of your messengers.");
    let subscription = only_subscription(&app, judys_contact).await;
    assert_eq!(subscription.id, id);
    assert!(!subscription.muted);
    assert_eq!(subscription.digest, "instant");
    let judys = herald::contacts::find_contact(&app.state.db, judys_contact)
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(judys.time_zone, default_zone);
    assert!(
        herald::contacts::list_subscriptions(&app.state.db, Some(kims_contact))
            .await
            .expect("subscriptions")
            .is_empty()
    );

    app.stop().await;
    env.cleanup().await;
}

async fn the_knowledge_base_is_searched_from_a_page(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut visitor = PageClient::new(&app);
    let closed = visitor.get("/kb?q=vacation").await;
    assert_eq!(closed.status, 303);
    assert_eq!(closed.location(), Some("/signin"));

    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let form = judy.get("/kb").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body
            .contains("<input id=\"q\" name=\"q\" type=\"search\" value=\"\" required>"),
        "{}",
        form.body
    );
    form.assert_lacks("Results");

    // The sample knowledge base: `연차` is a synonym of `휴가`.
    let found = judy.get(&format!("/kb?q={}", encoded("연차 신청"))).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let first = found
        .body
        .find("<li><strong>")
        .map(|i| &found.body[i..])
        .unwrap_or_default();
    assert!(
        first.starts_with(
            "<li><strong><a href=\"https://wiki.example.com/hr/leave-request\">휴가 신청 방법</a></strong>"
        ),
        "{}",
        found.body
    );
    found.assert_shows("value=\"연차 신청\"");

    let nothing = judy.get("/kb?q=zzqxwv").await;
    assert_eq!(nothing.status, 200, "{}", nothing.body);
    nothing.assert_shows("Nothing matches; try other words.");

    let long = "a".repeat(1001);
    let too_long = judy.get(&format!("/kb?q={long}")).await;
    assert_eq!(too_long.status, 422, "{}", too_long.body);
    too_long.assert_shows(
        "<p class=\"error\" id=\"q-error\">The search text is too long (at most 1000 bytes).</p>",
    );
    too_long.assert_shows(&format!("value=\"{long}\""));

    app.stop().await;
    env.cleanup().await;
}

async fn account_id(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_one(app.state.db.reader())
        .await
        .expect("account")
}

async fn teams_are_created_and_managed_by_their_admins(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let mut kim = PageClient::new(&app);
    sign_up_and_in(&env, &mut kim, "kim", "kim@example.com", "correct horse").await;
    let mut lee = PageClient::new(&app);
    sign_up_and_in(&env, &mut lee, "lee", "lee@example.com", "correct horse").await;
    let db = &app.state.db;
    let judy_id = account_id(&app, "judy").await;
    let kim_id = account_id(&app, "kim").await;

    judy.get("/teams").await;
    let bad = judy
        .post(
            "/teams",
            &[
                ("name", "Platform"),
                ("time_zone", "Asia/Seoul"),
                ("morning_at", "9am"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body
            .contains("<p class=\"error\" id=\"team-morning-error\">Use HH:MM, e.g. 09:00.</p>"),
        "{}",
        bad.body
    );
    bad.assert_shows("value=\"Platform\"");
    bad.assert_shows("value=\"9am\"");
    assert!(
        herald::teams::list_teams(db, Some(judy_id))
            .await
            .expect("teams")
            .is_empty()
    );

    let made = judy
        .post(
            "/teams",
            &[
                ("name", "Platform"),
                ("time_zone", "Asia/Seoul"),
                ("morning_at", "08:30"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(
        made.body
            .contains("The team is created; you are its admin."),
        "{}",
        made.body
    );
    let teams = herald::teams::list_teams(db, Some(judy_id))
        .await
        .expect("teams");
    assert_eq!(teams.len(), 1);
    let team = &teams[0];
    assert_eq!(
        (
            team.name.as_str(),
            team.time_zone.as_str(),
            team.morning_at.as_str()
        ),
        ("Platform", "Asia/Seoul", "08:30")
    );
    let add_path = format!("/teams/{}/members", team.id);

    let nobody = judy.post(&add_path, &[("account", "nobody")]).await;
    assert_eq!(nobody.status, 422, "{}", nobody.body);
    nobody.assert_shows(&format!(
        "<p class=\"error\" id=\"member-{}-error\">No herald account has this name.</p>",
        team.id
    ));
    nobody.assert_shows("value=\"nobody\"");
    let added = judy.post(&add_path, &[("account", "kim")]).await;
    assert_eq!(added.status, 200, "{}", added.body);
    added.assert_shows("The member is added.");
    let again = judy.post(&add_path, &[("account", "kim")]).await;
    assert_eq!(again.status, 422, "{}", again.body);
    again.assert_shows("This account is already a member.");
    let members = herald::teams::list_members(db, team.id)
        .await
        .expect("members");
    assert_eq!(
        members
            .iter()
            .map(|m| (m.account_id, m.admin))
            .collect::<Vec<_>>(),
        vec![(Some(judy_id), true), (Some(kim_id), false)]
    );
    let judy_member = members[0].id;
    let kim_member = members[1].id;

    // A member sees the team but may not manage it.
    let seen = kim.get("/teams").await;
    seen.assert_shows("<h2 id=\"team-");
    seen.assert_shows(">Platform</h2>");
    seen.assert_lacks("/members/");
    let refused = kim
        .post(
            &format!("/teams/{}/members/{judy_member}/remove", team.id),
            &[],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("Only the team&#39;s admins may do that."),
        "{}",
        refused.body
    );

    // A stranger neither sees nor finds it.
    let strangers = lee.get("/teams").await;
    strangers.assert_lacks("Platform");
    let hidden = lee.post(&add_path, &[("account", "lee")]).await;
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    hidden.assert_shows("No such team among yours.");
    assert_eq!(
        herald::teams::list_members(db, team.id)
            .await
            .expect("members")
            .len(),
        2
    );

    let removed = judy
        .post(
            &format!("/teams/{}/members/{kim_member}/remove", team.id),
            &[],
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    removed.assert_shows("The member is removed.");
    let gone = kim.get("/teams").await;
    gone.assert_lacks("Platform");

    app.stop().await;
    env.cleanup().await;
}
