//! The operator's pages (`web::operator`) and the reference webhook pages the operator uses,
//! through plain HTTP as a browser without JavaScript sends it. The operator is the holder of
//! the `herald_admin` cookie that `/login` sets; accounts are not.

use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, TestApp, TestEnv, WAIT, wait_until};
use crate::web_pages::{PageClient, sign_up_and_in};

both_backends!(
    the_operator_view_shows_queues_channels_failures_and_nodes,
    only_the_operator_sees_the_operator_pages,
    the_operator_edits_the_knowledge_base_and_search_finds_it,
    the_reference_webhook_forms_need_their_csrf_token_and_have_no_inline_style,
    the_header_knows_the_operator_and_only_the_operator,
);

/// A browser signed in as the operator through `/login`.
pub async fn operator_browser(app: &TestApp) -> PageClient {
    let mut browser = PageClient::new(app);
    let login = browser.post_raw("/login", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        browser.cookie("herald_admin").is_some(),
        "the operator's cookie is set"
    );
    browser
}

async fn create_project(app: &TestApp, repository: &str) {
    let (status, project) = app
        .admin(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"owner": "octo", "name": "app", "repository": repository})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
}

/// The part of `html` from `start` to the next `end`.
fn section<'h>(html: &'h str, start: &str, end: &str) -> &'h str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} in the page: {html}"));
    let rest = &html[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// A hook that cannot be reached: its ping fails and waits an hour for its retry.
pub async fn failing_hook(app: &TestApp) {
    let repo = GitRepo::new();
    create_project(app, &repo.url()).await;
    let (status, hook) = app
        .admin(
            Method::POST,
            "/api/v1/projects/octo/app/webhooks",
            Some(json!({"payload_url": "http://127.0.0.1:9/unreachable-hook"})),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    wait_until("the ping's failed attempt", WAIT, || async {
        app.count("SELECT COUNT(*) FROM delivery_attempts WHERE error IS NOT NULL")
            .await
            == 1
    })
    .await;
}

async fn the_operator_view_shows_queues_channels_failures_and_nodes(env: TestEnv) {
    let app = env.spawn(&[("HERALD_RETRY_SCHEDULE", "1h")]).await;
    failing_hook(&app).await;
    let mut operator = operator_browser(&app).await;

    let page = operator.get("/operator").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let html = &page.body;
    // The queue per channel: the ping waits for its retry, nothing else waits.
    let webhook = section(html, "id=\"channel-webhook\"", "</tbody>");
    assert!(webhook.contains("class=\"badge on\""), "{webhook}");
    assert!(
        webhook.contains("<td class=\"num pending\">1</td>"),
        "one webhook delivery pending: {webhook}"
    );
    let chat = section(html, "id=\"channel-chat\"", "</tbody>");
    assert!(chat.contains("<td class=\"num pending\">0</td>"), "{chat}");
    // Channels that are off say which settings are missing; mail without SMTP is spooled.
    let telegram = section(html, "id=\"channel-telegram\"", "</tbody>");
    assert!(telegram.contains("class=\"badge off\""), "{telegram}");
    assert!(telegram.contains("HERALD_TELEGRAM_BOT_TOKEN"), "{telegram}");
    let kakao = section(html, "id=\"channel-kakao\"", "</tbody>");
    assert!(
        kakao.contains("HERALD_KAKAO_BOT_ID, HERALD_KAKAO_REST_KEY"),
        "{kakao}"
    );
    let email = section(html, "id=\"channel-email\"", "</tbody>");
    assert!(email.contains("class=\"badge spool\""), "{email}");
    assert!(email.contains("HERALD_SMTP_URL"), "{email}");
    // The failed attempt, with where it went and why.
    let failures = section(html, "id=\"failures\"", "</ol>");
    assert_eq!(failures.matches("<li>").count(), 1, "{failures}");
    assert!(
        failures.contains("http://127.0.0.1:9/unreachable-hook"),
        "{failures}"
    );
    assert!(failures.contains("<code>webhook</code>"), "{failures}");
    assert!(failures.contains("no answer"), "{failures}");
    // This node, with its version.
    let nodes = section(html, "id=\"nodes\"", "</ul>");
    let worker = app.state.ids.worker_id();
    assert!(nodes.contains(&format!("Worker id {worker}")), "{nodes}");
    assert!(nodes.contains("this node"), "{nodes}");
    assert!(nodes.contains(env!("CARGO_PKG_VERSION")), "{nodes}");

    // A configured channel is on and says nothing more.
    app.stop().await;
    let app = env.spawn(&[("HERALD_TELEGRAM_BOT_TOKEN", "123:abc")]).await;
    let mut operator = operator_browser(&app).await;
    let page = operator.get("/operator").await;
    assert_eq!(page.status, 200);
    let telegram = section(&page.body, "id=\"channel-telegram\"", "</tbody>");
    assert!(telegram.contains("class=\"badge on\""), "{telegram}");
    assert!(
        !telegram.contains("HERALD_TELEGRAM_BOT_TOKEN"),
        "{telegram}"
    );
    // In Korean too.
    operator.accept_language = Some("ko".into());
    let page = operator.get("/operator").await;
    page.assert_shows("운영자 화면");
    app.stop().await;
    env.cleanup().await;
}

async fn only_the_operator_sees_the_operator_pages(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut stranger = PageClient::new(&app);
    let mut account = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut account,
        "mallory",
        "mallory@example.com",
        "correct horse",
    )
    .await;
    for path in ["/operator", "/operator/kb", "/operator/kb/edit?id=vacation"] {
        for (who, client) in [("stranger", &mut stranger), ("account", &mut account)] {
            let page = client.get(path).await;
            assert_eq!(page.status, 403, "{who} {path}: {}", page.body);
            assert!(
                page.body.contains("href=\"/login\""),
                "{who} {path}: {}",
                page.body
            );
            page.assert_lacks("id=\"channels\"");
        }
    }
    // A wrong operator cookie is no better.
    let response = app
        .client
        .get(app.url("/operator"))
        .header("cookie", "herald_admin=guess")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    // An account's forms, with its own valid token, change nothing.
    account.get("/kb").await;
    let before = app.count("SELECT COUNT(*) FROM kb_documents").await;
    let refused = account
        .post(
            "/operator/kb/save",
            &[
                ("id", "planted"),
                ("title", "Planted"),
                ("body", "not the operator's"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = account
        .post("/operator/kb/synonyms", &[("synonyms", "a, b")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = account
        .post("/operator/kb/delete", &[("id", "vacation")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM kb_documents").await, before);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM kb_documents WHERE id = 'planted'")
            .await,
        0
    );
    // The operator's forms without the page's token are refused too.
    let mut operator = operator_browser(&app).await;
    let forged = operator
        .post_raw(
            "/operator/kb/save",
            &[("id", "planted"), ("title", "Planted"), ("body", "x")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM kb_documents WHERE id = 'planted'")
            .await,
        0
    );
    app.stop().await;
    env.cleanup().await;
}

async fn the_operator_edits_the_knowledge_base_and_search_finds_it(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut operator = operator_browser(&app).await;
    let mut reader = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut reader,
        "reader",
        "reader@example.com",
        "correct horse",
    )
    .await;
    let hits = |body: &str| body.contains("Printer on floor 3");

    let list = operator.get("/operator/kb").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains("id=\"documents\""),
        "the sample is listed: {}",
        list.body
    );
    let form = operator.get("/operator/kb/edit").await;
    assert_eq!(form.status, 200);
    let saved = operator
        .post(
            "/operator/kb/save",
            &[
                ("id", "printer-howto"),
                ("title", "Printer on floor 3"),
                ("body", "Print through the queue named quokka."),
                ("tags", "office, printer"),
                ("url", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(saved.location(), Some("/operator/kb?done=saved"));
    let search = reader.get("/kb?q=quokka").await;
    assert!(hits(&search.body), "{}", search.body);

    // Edited: the new text is found, the old is not.
    let edit = operator.get("/operator/kb/edit?id=printer-howto").await;
    assert_eq!(edit.status, 200);
    edit.assert_shows("value=\"Printer on floor 3\"");
    edit.assert_shows("value=\"office, printer\"");
    let saved = operator
        .post(
            "/operator/kb/save",
            &[
                ("existing", "1"),
                ("id", "printer-howto"),
                ("title", "Printer on floor 3"),
                ("body", "Print through the queue named wombat."),
                ("tags", "office"),
                ("url", "https://wiki.example.com/printer"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let search = reader.get("/kb?q=wombat").await;
    assert!(hits(&search.body), "{}", search.body);
    assert!(
        search
            .body
            .contains("href=\"https://wiki.example.com/printer\""),
        "{}",
        search.body
    );
    let search = reader.get("/kb?q=quokka").await;
    assert!(!hits(&search.body), "{}", search.body);

    // Refused input is shown next to its field, with what was typed.
    operator.get("/operator/kb/edit").await;
    let refused = operator
        .post(
            "/operator/kb/save",
            &[
                ("id", "second"),
                ("title", "   "),
                ("body", "kept as typed"),
                ("tags", ""),
                ("url", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_shows("id=\"title-error\"");
    refused.assert_shows("kept as typed");
    let refused = operator
        .post(
            "/operator/kb/save",
            &[
                ("id", "second"),
                ("title", "Second"),
                ("url", "ftp://example.com/"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_shows("id=\"url-error\"");

    // Synonyms: a query for one word finds the other.
    let list = operator.get("/operator/kb").await;
    list.assert_shows("printer-howto");
    let search = reader.get("/kb?q=marsupial").await;
    assert!(!hits(&search.body), "{}", search.body);
    let saved = operator
        .post(
            "/operator/kb/synonyms",
            &[("synonyms", "wombat, marsupial\r\n")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let search = reader.get("/kb?q=marsupial").await;
    assert!(hits(&search.body), "{}", search.body);
    let list = operator.get("/operator/kb?done=synonyms").await;
    list.assert_shows("wombat, marsupial");
    let refused = operator
        .post("/operator/kb/synonyms", &[("synonyms", "a => b => c")])
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_shows("id=\"synonyms-error\"");
    assert!(
        refused.body.contains("a =&#62; b =&#62; c"),
        "kept: {}",
        refused.body
    );
    let search = reader.get("/kb?q=marsupial").await;
    assert!(
        hits(&search.body),
        "the stored list is unchanged: {}",
        search.body
    );

    // Deleted: no longer found.
    operator.get("/operator/kb").await;
    let deleted = operator
        .post("/operator/kb/delete", &[("id", "printer-howto")])
        .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let search = reader.get("/kb?q=wombat").await;
    assert!(!hits(&search.body), "{}", search.body);
    let missing = operator.get("/operator/kb/edit?id=printer-howto").await;
    assert_eq!(missing.status, 404);
    app.stop().await;
    env.cleanup().await;
}

async fn the_reference_webhook_forms_need_their_csrf_token_and_have_no_inline_style(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let repo = GitRepo::new();
    create_project(&app, &repo.url()).await;
    let mut operator = operator_browser(&app).await;

    let page = operator.get("/octo/app/webhooks").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_lacks("<style");
    page.assert_lacks(" style=");
    assert!(
        page.body
            .contains("<link rel=\"stylesheet\" href=\"/assets/reference.css\">"),
        "{}",
        page.body
    );
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("style-src 'self'"), "{csp}");
    let add_form = section(
        &page.body,
        "<form method=\"post\" action=\"/octo/app/webhooks\">",
        "</form>",
    );
    assert!(add_form.contains("name=\"csrf\""), "{add_form}");
    assert!(add_form.contains("name=\"payloadUrl\""), "{add_form}");
    let css = app
        .client
        .get(app.url("/assets/reference.css"))
        .send()
        .await
        .expect("style sheet");
    assert_eq!(css.status().as_u16(), 200);
    assert!(css.text().await.expect("css").contains("border-collapse"));

    // Without the token, a form posted with the operator's cookie changes nothing.
    let hooks = "SELECT COUNT(*) FROM webhooks";
    let forged = operator
        .post_raw(
            "/octo/app/webhooks",
            &[("payloadUrl", "http://127.0.0.1:9/forged"), ("secret", "")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(app.count(hooks).await, 0);
    // With it, the hook is added and its secret shown once (on a page without inline style).
    let added = operator
        .post(
            "/octo/app/webhooks",
            &[("payloadUrl", "http://127.0.0.1:9/added"), ("secret", "")],
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    added.assert_shows("whsec_");
    added.assert_lacks("<style");
    assert_eq!(app.count(hooks).await, 1);
    // A refused form is shown again with its token.
    let refused = operator
        .post(
            "/octo/app/webhooks",
            &[("payloadUrl", "ftp://example.com/x")],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_shows("name=\"csrf\"");

    // Programs are not browsers: the bearer token or a JSON body needs no form token.
    let response = app
        .client
        .post(app.url("/octo/app/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .form(&[("payloadUrl", "http://127.0.0.1:9/program")])
        .send()
        .await
        .expect("form with a bearer token");
    assert_eq!(response.status().as_u16(), 201);
    let response = app
        .client
        .post(app.url("/octo/app/webhooks"))
        .header("cookie", format!("herald_admin={ADMIN_TOKEN}"))
        .json(&json!({"payload_url": "http://127.0.0.1:9/json"}))
        .send()
        .await
        .expect("JSON with the cookie");
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(app.count(hooks).await, 3);

    // Deleting: the page's delete forms carry the token; without it nothing is deleted.
    let page = operator.get("/octo/app/webhooks").await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM webhooks ORDER BY id LIMIT 1")
        .fetch_one(app.state.db.reader())
        .await
        .expect("a hook");
    let delete = format!("/octo/app/webhooks/{id}");
    let delete_form = section(&page.body, &format!("action=\"{delete}\""), "</form>");
    assert!(delete_form.contains("name=\"csrf\""), "{delete_form}");
    let forged = operator.post_raw(&delete, &[]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(app.count(hooks).await, 3);
    let deleted = operator.post(&delete, &[]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(app.count(hooks).await, 2);
    app.stop().await;
    env.cleanup().await;
}

/// The site header of a page: from `<header` to `</header>`.
fn header(html: &str) -> &str {
    section(html, "<header class=\"site-header\">", "</header>")
}

async fn the_header_knows_the_operator_and_only_the_operator(env: TestEnv) {
    let app = env.spawn(&[]).await;
    // The operator without an account session: a link to the operator view and a sign-out of
    // its own, on the operator's pages and on the others.
    let mut operator = operator_browser(&app).await;
    for path in ["/operator", "/operator/kb", "/"] {
        let page = operator.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let top = header(&page.body);
        assert!(
            top.contains("<a class=\"operator-link\" href=\"/operator\">Operator view</a>"),
            "{path}: {top}"
        );
        assert!(
            top.contains("action=\"/operator/signout\""),
            "{path}: {top}"
        );
        assert!(!top.contains("href=\"/signin\""), "{path}: {top}");
    }
    operator.accept_language = Some("ko".into());
    let page = operator.get("/").await;
    assert!(
        header(&page.body).contains(">운영자 화면</a>"),
        "{}",
        page.body
    );
    operator.accept_language = None;

    // An account that is not the operator gets no such link, nor does a wrong cookie.
    let mut account = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut account,
        "mallory",
        "mallory@example.com",
        "correct horse",
    )
    .await;
    for path in ["/", "/chat", "/schedules"] {
        let page = account.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        let top = header(&page.body);
        assert!(!top.contains("href=\"/operator\""), "{path}: {top}");
        assert!(top.contains("action=\"/signout\""), "{path}: {top}");
    }
    let guess = app
        .client
        .get(app.url("/"))
        .header("cookie", "herald_admin=guess")
        .send()
        .await
        .expect("request");
    assert_eq!(guess.status().as_u16(), 200);
    // A wrong cookie (say, the token was changed since) is counted once and dropped.
    let dropped: Vec<&str> = guess
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|c| c.starts_with("herald_admin=;") && c.contains("Max-Age=0"))
        .collect();
    assert_eq!(dropped.len(), 1, "{:?}", guess.headers());
    let body = guess.text().await.expect("body");
    assert!(!header(&body).contains("href=\"/operator\""), "{body}");
    assert!(header(&body).contains("href=\"/signin\""), "{body}");

    // The operator's sign-out needs the page's token, drops the cookie, and the header offers
    // "Sign in" again.
    let forged = operator.post_raw("/operator/signout", &[]).await;
    assert_eq!(forged.status, 403);
    assert!(operator.cookie("herald_admin").is_some());
    operator.get("/operator").await;
    let out = operator.post("/operator/signout", &[]).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location(), Some("/"));
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("herald_admin=;") && c.contains("Max-Age=0")),
        "{:?}",
        out.set_cookies()
    );
    assert!(operator.cookie("herald_admin").is_none());
    assert_eq!(operator.get("/operator").await.status, 403);
    let page = operator.get("/").await;
    let top = header(&page.body);
    assert!(top.contains("href=\"/signin\""), "{top}");
    assert!(!top.contains("href=\"/operator\""), "{top}");
    app.stop().await;
    env.cleanup().await;
}
