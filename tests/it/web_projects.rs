//! The project pages (`web::projects`) through plain HTTP, as a browser without JavaScript:
//! my projects, a project's hooks (secret shown once, ping, disable, enable, delete) and a
//! hook's delivery log (filters, search, keyset pages, attempts, redeliver, recover), with bad
//! input, missing CSRF tokens and another account's requests.

use std::collections::BTreeSet;

use herald::testkit::git_repo::GitRepo;
use herald::testkit::receiver::{Receiver, Reply};
use reqwest::Method;

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(
    projects_and_hooks_are_managed_through_the_pages,
    the_delivery_log_filters_pages_and_redelivers,
    another_account_gets_404_and_forms_need_their_token,
);

/// The ids of the deliveries a log page lists, in its order.
fn listed(html: &str) -> Vec<i64> {
    html.split("class=\"card delivery\" id=\"delivery-")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// The `href` of the log's "older" link, unescaped.
fn older_link(html: &str) -> Option<String> {
    let end = html.find("\" rel=\"next\"")?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    Some(html[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

async fn hook_ids(app: &TestApp) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM webhooks ORDER BY id")
        .fetch_all(app.state.db.reader())
        .await
        .expect("hooks")
}

async fn count_status(app: &TestApp, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE webhook_id IS NOT NULL AND status = $1",
    )
    .bind(status.to_string())
    .fetch_one(app.state.db.reader())
    .await
    .expect("count")
}

/// Signs `name` up and in and creates the project `{name}/app` on `repo` through the form.
async fn with_project(env: &TestEnv, app: &TestApp, name: &str, repo: &GitRepo) -> PageClient {
    let mut browser = PageClient::new(app);
    sign_up_and_in(
        env,
        &mut browser,
        name,
        &format!("{name}@example.com"),
        "correct horse",
    )
    .await;
    browser.get("/projects").await;
    let created = browser
        .post(
            "/projects",
            &[
                ("name", "app"),
                ("repository", &repo.url()),
                ("branches", ""),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let expected = format!("/{name}/app/webhooks");
    assert_eq!(created.location(), Some(expected.as_str()));
    browser
}

async fn projects_and_hooks_are_managed_through_the_pages(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let receiver = Receiver::start().await;
    let repo = GitRepo::new();
    let mut alice = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut alice,
        "alice",
        "alice@example.com",
        "correct horse",
    )
    .await;

    let empty = alice.get("/projects").await;
    assert_eq!(empty.status, 200);
    empty.assert_shows("You have no projects.");
    assert!(
        empty.body.contains("href=\"/projects\""),
        "the header links here"
    );

    // Bad input: refused next to its field, what was typed kept, nothing stored.
    let missing = alice
        .post("/projects", &[("name", "my-app"), ("repository", "  ")])
        .await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    missing.assert_shows("value=\"my-app\"");
    assert!(
        missing
            .body
            .contains("id=\"repository-error\">Please fill this in."),
        "{}",
        missing.body
    );
    let bad_name = alice
        .post(
            "/projects",
            &[("name", "my app!"), ("repository", &repo.url())],
        )
        .await;
    assert_eq!(bad_name.status, 422, "{}", bad_name.body);
    bad_name.assert_shows("value=\"my app!\"");
    assert!(
        bad_name
            .body
            .contains("id=\"name-error\">Use 1 to 100 letters"),
        "{}",
        bad_name.body
    );
    let nowhere = alice
        .post(
            "/projects",
            &[
                ("name", "my-app"),
                ("repository", "/nonexistent/herald-repo"),
                ("branches", "main"),
            ],
        )
        .await;
    assert_eq!(nowhere.status, 422, "{}", nowhere.body);
    nowhere.assert_shows("value=\"/nonexistent/herald-repo\"");
    nowhere.assert_shows("id=\"repository-error\">");
    assert_eq!(app.count("SELECT COUNT(*) FROM projects").await, 0);

    let created = alice
        .post(
            "/projects",
            &[
                ("name", "app"),
                ("repository", &repo.url()),
                ("branches", ""),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(created.location(), Some("/alice/app/webhooks"));
    let again = alice
        .post("/projects", &[("name", "app"), ("repository", &repo.url())])
        .await;
    assert_eq!(again.status, 422);
    assert!(
        again
            .body
            .contains("id=\"name-error\">You have a project with this name already."),
        "{}",
        again.body
    );
    let list = alice.get("/projects").await;
    list.assert_shows("href=\"/alice/app/webhooks\"");
    assert!(
        list.body.contains("<code>main</code>"),
        "the default branch: {}",
        list.body
    );

    let page = alice.get("/alice/app/webhooks").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_shows("No webhooks.");

    // A bad URL is refused next to the field and kept.
    let refused = alice
        .post(
            "/projects/alice/app/hooks",
            &[("payload_url", "ftp://example.com/x"), ("secret", "")],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_shows("value=\"ftp://example.com/x\"");
    assert!(
        refused
            .body
            .contains("id=\"payload_url-error\">must be http or https, not ftp"),
        "{}",
        refused.body
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);

    // Added without a secret: the generated one is shown once.
    let added = alice
        .post(
            "/projects/alice/app/hooks",
            &[("payload_url", receiver.url.as_str()), ("secret", "")],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let marker = "<code id=\"created-secret\">";
    let at = added.body.find(marker).expect("the secret is shown") + marker.len();
    let secret = &added.body[at..at + added.body[at..].find('<').expect("end")];
    assert!(secret.starts_with("whsec_"), "{secret}");
    let stored: String = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(app.state.db.reader())
        .await
        .expect("secret");
    assert_eq!(stored, secret);
    let later = alice.get("/alice/app/webhooks").await;
    assert!(!later.body.contains(secret), "shown only once");
    later.assert_shows(&receiver.url);
    later.assert_shows(">healthy</span>");
    wait_until("the ping", WAIT, || async { receiver.count() == 1 }).await;

    // A test ping.
    let hook = hook_ids(&app).await[0];
    let pinged = alice
        .post(&format!("/projects/alice/app/hooks/{hook}/ping"), &[])
        .await;
    assert_eq!(pinged.status, 303, "{}", pinged.body);
    assert_eq!(pinged.location(), Some("/alice/app/webhooks?done=ping"));
    let told = alice.get("/alice/app/webhooks?done=ping").await;
    told.assert_shows("A test ping is queued.");
    wait_until("the test ping", WAIT, || async { receiver.count() == 2 }).await;
    assert_eq!(receiver.received()[1].header("x-github-event"), "ping");

    // Disabled: shown so; enabled again: healthy.
    let disabled = alice
        .post(&format!("/projects/alice/app/hooks/{hook}/disable"), &[])
        .await;
    assert_eq!(disabled.status, 303);
    let page = alice.get("/alice/app/webhooks").await;
    page.assert_shows(">disabled</span>");
    page.assert_shows("/enable\"");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhooks WHERE active = 0")
            .await,
        1
    );
    let enabled = alice
        .post(&format!("/projects/alice/app/hooks/{hook}/enable"), &[])
        .await;
    assert_eq!(enabled.status, 303);
    let page = alice.get("/alice/app/webhooks?done=enable").await;
    page.assert_shows("The webhook is enabled again.");
    page.assert_shows(">healthy</span>");

    let deleted = alice
        .post(&format!("/projects/alice/app/hooks/{hook}/delete"), &[])
        .await;
    assert_eq!(deleted.status, 303);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);
    let page = alice.get("/alice/app/webhooks?done=delete").await;
    page.assert_shows("No webhooks.");

    app.stop().await;
    env.cleanup().await;
}

async fn the_delivery_log_filters_pages_and_redelivers(env: TestEnv) {
    // One retry, so that a refused delivery fails soon.
    let app = env.spawn(&[("HERALD_RETRY_SCHEDULE", "50ms")]).await;
    let receiver = Receiver::start().await;
    let repo = GitRepo::new();
    let mut alice = with_project(&env, &app, "alice", &repo).await;
    // The ping is refused (and its retry too); everything after it is taken.
    receiver.set_always(Some(Reply::Status(400)));
    alice.get("/alice/app/webhooks").await;
    let added = alice
        .post(
            "/projects/alice/app/hooks",
            &[("payload_url", receiver.url.as_str()), ("secret", "s3cret")],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(
        !added.body.contains("created-secret"),
        "a given secret is not shown"
    );
    let hook = hook_ids(&app).await[0];
    wait_until("the refused ping", WAIT, || async {
        count_status(&app, "failed").await == 1
    })
    .await;
    receiver.set_always(None);
    let failed_id: i64 = sqlx::query_scalar("SELECT id FROM deliveries WHERE status = 'failed'")
        .fetch_one(app.state.db.reader())
        .await
        .expect("failed");

    // A push reaches the hook; then 28 test pings: 30 deliveries in all.
    let before = repo.head("main");
    repo.push_commits(&[("a.txt", "1", "First")]);
    assert_ne!(before, repo.head("main"));
    wait_until("the push", WAIT, || async {
        count_status(&app, "delivered").await == 1
    })
    .await;
    for _ in 0..28 {
        let pinged = alice
            .post(&format!("/projects/alice/app/hooks/{hook}/ping"), &[])
            .await;
        assert_eq!(pinged.status, 303);
    }
    wait_until("every ping", WAIT, || async {
        count_status(&app, "delivered").await == 29
    })
    .await;

    // Keyset pages: 25, then the 5 older ones, newest first, nothing twice.
    let log = format!("/alice/app/webhooks/{hook}");
    let first = alice.get(&log).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first_ids = listed(&first.body);
    assert_eq!(first_ids.len(), 25, "{}", first.body);
    assert!(first_ids.windows(2).all(|w| w[0] > w[1]));
    first.assert_shows("HTTP 204");
    let older = older_link(&first.body).expect("an older page");
    assert_eq!(older, format!("{log}?before={}", first_ids[24]));
    let second = alice.get(&older).await;
    let second_ids = listed(&second.body);
    assert_eq!(second_ids.len(), 5, "{}", second.body);
    assert_eq!(older_link(&second.body), None);
    let all: BTreeSet<i64> = first_ids.iter().chain(&second_ids).copied().collect();
    assert_eq!(all.len(), 30);
    assert_eq!(second_ids.last(), Some(&failed_id), "the ping came first");
    second.assert_shows(">push</strong>");

    // Filters: outcome, the last answer's class, time; each keeps what was chosen.
    let failed = alice.get(&format!("{log}?outcome=failed")).await;
    assert_eq!(listed(&failed.body), vec![failed_id], "{}", failed.body);
    failed.assert_shows("HTTP 400");
    failed.assert_shows("<option value=\"failed\" selected>");
    let client_errors = alice.get(&format!("{log}?class=4xx")).await;
    assert_eq!(listed(&client_errors.body), vec![failed_id]);
    let successes = alice
        .get(&format!("{log}?class=2xx&outcome=delivered"))
        .await;
    assert_eq!(listed(&successes.body), first_ids, "{}", successes.body);
    let older_successes = older_link(&successes.body).expect("older");
    assert_eq!(
        older_successes,
        format!("{log}?outcome=delivered&class=2xx&before={}", first_ids[24])
    );
    assert_eq!(listed(&alice.get(&older_successes).await.body).len(), 4);
    let none = alice.get(&format!("{log}?class=none")).await;
    assert!(listed(&none.body).is_empty());
    none.assert_shows("No deliveries match.");
    let long_ago = alice.get(&format!("{log}?to=2000-01-01T00:00")).await;
    assert!(listed(&long_ago.body).is_empty(), "{}", long_ago.body);
    let since_then = alice.get(&format!("{log}?from=2000-01-01T00:00")).await;
    assert_eq!(listed(&since_then.body), first_ids);
    let bad_time = alice.get(&format!("{log}?from=yesterday")).await;
    assert_eq!(bad_time.status, 422);
    bad_time.assert_shows("value=\"yesterday\"");
    assert!(
        bad_time
            .body
            .contains("id=\"from-error\">Use a date and time such as"),
        "{}",
        bad_time.body
    );

    // Search by delivery id.
    let found = alice.get(&format!("{log}?q={failed_id}")).await;
    assert_eq!(listed(&found.body), vec![failed_id]);
    let not_a_number = alice.get(&format!("{log}?q=abc")).await;
    assert_eq!(not_a_number.status, 422);
    assert!(
        not_a_number
            .body
            .contains("id=\"q-error\">A delivery id is a number."),
        "{}",
        not_a_number.body
    );

    // Redeliver the refused ping: sent again with the same id, now taken.
    let first_ping = receiver.received()[0]
        .header("x-github-delivery")
        .to_string();
    let redelivered = alice
        .post(
            &format!("/projects/alice/app/hooks/{hook}/redeliver"),
            &[("delivery", &failed_id.to_string())],
        )
        .await;
    assert_eq!(redelivered.status, 303, "{}", redelivered.body);
    let shown = redelivered.location().expect("back to the log").to_string();
    assert_eq!(shown, format!("{log}?q={failed_id}&done=redeliver"));
    wait_until("the redelivery", WAIT, || async {
        count_status(&app, "delivered").await == 30
    })
    .await;
    assert_eq!(
        receiver
            .received()
            .last()
            .expect("sent")
            .header("x-github-delivery"),
        first_ping
    );
    let timeline = alice.get(&shown).await;
    assert!(
        timeline
            .body
            .contains("The delivery is queued again, with the same id."),
        "{}",
        timeline.body
    );
    let statuses: Vec<&str> = ["HTTP 400", "HTTP 204"]
        .into_iter()
        .filter(|s| timeline.body.contains(s))
        .collect();
    assert_eq!(
        statuses,
        ["HTTP 400", "HTTP 204"],
        "both attempts: {}",
        timeline.body
    );
    assert!(
        timeline.body.find("HTTP 400") < timeline.body.find("HTTP 204"),
        "in order"
    );

    // Recover: a bad time is kept and marked; a good one recovers what failed (nothing now).
    let bad = alice
        .post(
            &format!("/projects/alice/app/hooks/{hook}/recover"),
            &[("since", "last week")],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    bad.assert_shows("value=\"last week\"");
    bad.assert_shows("id=\"since-error\"");
    let recovered = alice
        .post(
            &format!("/projects/alice/app/hooks/{hook}/recover"),
            &[("since", "2000-01-01T00:00")],
        )
        .await;
    assert_eq!(recovered.status, 303);
    let told = alice.get(recovered.location().expect("log")).await;
    told.assert_shows("Failed deliveries queued again: 0");

    app.stop().await;
    env.cleanup().await;
}

async fn another_account_gets_404_and_forms_need_their_token(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let receiver = Receiver::start().await;
    let repo = GitRepo::new();
    let mut alice = with_project(&env, &app, "alice", &repo).await;
    alice.get("/alice/app/webhooks").await;
    let added = alice
        .post(
            "/projects/alice/app/hooks",
            &[("payload_url", receiver.url.as_str()), ("secret", "s3cret")],
        )
        .await;
    assert_eq!(added.status, 200);
    let hook = hook_ids(&app).await[0];
    wait_until("the ping", WAIT, || async { receiver.count() == 1 }).await;
    let ping: i64 = sqlx::query_scalar("SELECT id FROM deliveries WHERE webhook_id IS NOT NULL")
        .fetch_one(app.state.db.reader())
        .await
        .expect("ping");

    let mut bob = PageClient::new(&app);
    sign_up_and_in(&env, &mut bob, "bob", "bob@example.com", "correct horse").await;
    let mine = bob.get("/projects").await;
    mine.assert_lacks("alice");
    mine.assert_lacks(&repo.url());
    for path in [
        "/alice/app/webhooks".to_string(),
        format!("/alice/app/webhooks/{hook}"),
        format!("/alice/app/webhooks/{hook}?q={ping}"),
        "/alice/nothing/webhooks".to_string(),
    ] {
        let page = bob.get(&path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(!page.body.contains(&receiver.url), "{path}");
    }
    for (path, fields) in [
        (
            "/projects/alice/app/hooks".to_string(),
            vec![("payload_url", "http://127.0.0.1:9/bob")],
        ),
        (format!("/projects/alice/app/hooks/{hook}/delete"), vec![]),
        (format!("/projects/alice/app/hooks/{hook}/disable"), vec![]),
        (format!("/projects/alice/app/hooks/{hook}/ping"), vec![]),
        (
            format!("/projects/alice/app/hooks/{hook}/redeliver"),
            vec![("delivery", "1")],
        ),
        (
            format!("/projects/alice/app/hooks/{hook}/recover"),
            vec![("since", "2000-01-01T00:00")],
        ),
    ] {
        let refused = bob.post(&path, &fields).await;
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhooks WHERE active = 1")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE webhook_id IS NOT NULL")
            .await,
        1
    );

    // Alice's own forms without their token: refused, nothing changed.
    for (path, fields) in [
        (
            "/projects".to_string(),
            vec![("name", "other"), ("repository", "x")],
        ),
        (
            "/projects/alice/app/hooks".to_string(),
            vec![("payload_url", "http://127.0.0.1:9/x")],
        ),
        (format!("/projects/alice/app/hooks/{hook}/delete"), vec![]),
        (
            format!("/projects/alice/app/hooks/{hook}/redeliver"),
            vec![("delivery", "1")],
        ),
    ] {
        let refused = alice.post_raw(&path, &fields).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        let wrong_token = [vec![("csrf", "0000")], fields.clone()].concat();
        assert_eq!(alice.post_raw(&path, &wrong_token).await.status, 403);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM projects").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 1);

    // The operator's reference answers at the same addresses are unchanged.
    let (status, hooks) = app.admin(Method::GET, "/alice/app/webhooks", None).await;
    assert_eq!(status, 200, "{hooks}");
    let (status, log) = app
        .admin(Method::GET, &format!("/alice/app/webhooks/{hook}"), None)
        .await;
    assert_eq!(status, 200, "{log}");
    let stranger = app
        .client
        .get(app.url("/alice/app/webhooks"))
        .send()
        .await
        .expect("stranger");
    assert_eq!(stranger.status().as_u16(), 404);

    app.stop().await;
    env.cleanup().await;
}
