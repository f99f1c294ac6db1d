//! The pages for people (`web`), through plain HTTP as a browser without JavaScript sends it:
//! cookies, forms with their CSRF token, redirects. The real browser runs in `web_browser.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use herald::testkit::fake_smtp::Mail;
use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    sign_up_verify_sign_in_and_out_through_the_pages,
    a_form_without_its_csrf_token_is_refused,
    form_errors_are_shown_next_to_their_field_with_what_was_typed,
    password_reset_is_single_use_and_ends_every_session,
    another_account_never_sees_my_data,
    pages_speak_the_visitors_language,
    pages_carry_security_headers_and_cached_assets,
    a_messenger_is_linked_with_the_code_the_page_gives_and_unlinked,
    cookies_are_secure_when_the_public_url_is_https,
    the_dashboard_shows_my_subscriptions_and_their_notifications,
    the_sign_in_form_shares_the_failed_login_limit,
    the_icon_is_linked_from_every_page_and_served_at_favicon_ico,
);

/// A browser without JavaScript: keeps cookies, follows nothing by itself, and reads the CSRF
/// token of the last page it got.
pub struct PageClient {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    pub csrf: Option<String>,
    pub accept_language: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// Fails, showing the page, unless its HTML holds `html` (text as the page escapes it).
    #[track_caller]
    pub fn assert_shows(&self, html: &str) {
        assert!(
            self.body.contains(html),
            "the page (status {}) does not hold {html:?}:\n{}",
            self.status,
            self.body
        );
    }

    /// Fails, showing the page, if its HTML holds `html`.
    #[track_caller]
    pub fn assert_lacks(&self, html: &str) {
        assert!(
            !self.body.contains(html),
            "the page (status {}) holds {html:?}:\n{}",
            self.status,
            self.body
        );
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }
}

/// The value of the first `name="csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

impl PageClient {
    pub fn new(app: &TestApp) -> PageClient {
        PageClient {
            base: app.address.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
            csrf: None,
            accept_language: None,
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(reqwest::header::COOKIE, header);
        }
        if let Some(language) = &self.accept_language {
            request = request.header(reqwest::header::ACCEPT_LANGUAGE, language);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.expect("request");
        let page = Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        };
        for cookie in page.set_cookies() {
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if cookie.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        if let Some(token) = csrf_of(&page.body) {
            self.csrf = Some(token);
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    /// Posts a form with the CSRF token of the last page.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self
            .csrf
            .clone()
            .expect("a page with a form was loaded first");
        let mut form: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        form.extend_from_slice(fields);
        self.send(Method::POST, path, Some(&form)).await
    }

    /// Posts a form exactly as given (no token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(fields)).await
    }
}

/// The newest mail to `to` in the spool (`HERALD_SMTP_URL` unset), once one is there.
pub async fn spooled_mail(data_dir: &Path, to: &str, newer_than: usize) -> Mail {
    let spool = data_dir.join("mail");
    let suffix = format!("-{to}.eml");
    let list = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(&spool)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.ends_with(&suffix))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    };
    wait_until(
        &format!("mail number {} to {to}", newer_than + 1),
        WAIT,
        || {
            let count = list().len();
            async move { count > newer_than }
        },
    )
    .await;
    let newest = list().pop().expect("a mail");
    Mail {
        from: String::new(),
        to: vec![to.to_string()],
        data: std::fs::read_to_string(newest).expect("read the mail"),
    }
}

/// How many mails to `to` are in the spool.
pub fn spooled_count(data_dir: &Path, to: &str) -> usize {
    let suffix = format!("-{to}.eml");
    std::fs::read_dir(data_dir.join("mail"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .count()
        })
        .unwrap_or(0)
}

/// The path of the first link in a mail that goes to `path_prefix` (`/verify/`, `/reset/`).
pub fn link_path(mail: &Mail, path_prefix: &str) -> String {
    let text = mail.body_text();
    let start = text
        .find(path_prefix)
        .unwrap_or_else(|| panic!("a {path_prefix} link in the mail: {text}"));
    text[start..]
        .split_whitespace()
        .next()
        .expect("link")
        .to_string()
}

/// Signs up through the pages, confirms through the mail and signs in; the client is then
/// signed in.
pub async fn sign_up_and_in(
    env: &TestEnv,
    client: &mut PageClient,
    name: &str,
    email: &str,
    password: &str,
) {
    client.get("/signup").await;
    let mailed = client
        .post(
            "/signup",
            &[("name", name), ("email", email), ("password", password)],
        )
        .await;
    assert_eq!(mailed.status, 200, "{}", mailed.body);
    let mail = spooled_mail(env.data_dir.path(), email, 0).await;
    let verify = link_path(&mail, "/verify/");
    let confirm = client.get(&verify).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let done = client.post(&verify, &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    client.get("/signin").await;
    let signed_in = client
        .post("/signin", &[("email", email), ("password", password)])
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), Some("/"));
}

async fn sign_up_verify_sign_in_and_out_through_the_pages(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);

    let landing = browser.get("/").await;
    assert_eq!(landing.status, 200);
    landing.assert_shows("href=\"/signup\"");
    let csrf_cookie = landing
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("herald_csrf="))
        .expect("the first page sets the CSRF cookie");
    assert!(csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");
    assert!(csrf_cookie.contains("SameSite=Lax"), "{csrf_cookie}");
    assert!(!csrf_cookie.contains("Secure"), "plain http: {csrf_cookie}");

    browser.get("/signup").await;
    let mailed = browser
        .post(
            "/signup",
            &[
                ("name", "alice"),
                ("email", "alice@example.com"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(mailed.status, 200, "{}", mailed.body);
    mailed.assert_shows("Check your mail");
    let mail = spooled_mail(env.data_dir.path(), "alice@example.com", 0).await;
    let verify = link_path(&mail, "/verify/");
    assert!(verify.starts_with("/verify/"), "{verify}");
    assert!(
        mail.body_text()
            .contains(&format!("{}{verify}", app.address)),
        "the link is absolute: {}",
        mail.body_text()
    );

    // Opening the link uses nothing up; the button does.
    assert_eq!(browser.get(&verify).await.status, 200);
    assert_eq!(browser.get(&verify).await.status, 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM accounts WHERE name = 'alice'")
            .await,
        0
    );
    let done = browser.post(&verify, &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM accounts WHERE name = 'alice'")
            .await,
        1
    );
    assert_eq!(browser.post(&verify, &[]).await.status, 404, "single use");

    browser.get("/signin").await;
    let wrong = browser
        .post(
            "/signin",
            &[("email", "alice@example.com"), ("password", "wrong horse")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    wrong.assert_shows("Wrong e-mail or password.");
    wrong.assert_shows("value=\"alice@example.com\"");
    assert!(browser.cookie("herald_session").is_none());

    let signed_in = browser
        .post(
            "/signin",
            &[
                ("email", "Alice@Example.com "),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let session = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("herald_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let token = browser
        .cookie("herald_session")
        .expect("session")
        .to_string();
    // The session is a login token: the API takes it too.
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status().as_u16(), 200);

    // Signing in again from a signed-in browser replaces its session.
    let mut again = PageClient::new(&app);
    again.get("/signin").await;
    again
        .post(
            "/signin",
            &[
                ("email", "alice@example.com"),
                ("password", "correct horse"),
            ],
        )
        .await;
    let first = again.cookie("herald_session").expect("session").to_string();
    again.get("/account").await;
    again
        .post(
            "/signin",
            &[
                ("email", "alice@example.com"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_ne!(again.cookie("herald_session"), Some(first.as_str()));
    let replaced = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&first)
        .send()
        .await
        .expect("me");
    assert_eq!(
        replaced.status().as_u16(),
        401,
        "the replaced session ended"
    );

    let dashboard = browser.get("/").await;
    assert_eq!(dashboard.status, 200);
    dashboard.assert_shows("Hello, alice");
    dashboard.assert_shows("action=\"/signout\"");
    assert_eq!(browser.get("/signin").await.location(), Some("/"));

    // The token of a signed-out page no longer works once signed in.
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200);
    account.assert_shows("alice@example.com");

    let out = browser.post("/signout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), Some("/signin?out=1"));
    assert!(browser.cookie("herald_session").is_none());
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status().as_u16(), 401, "signing out revokes the token");
    assert_eq!(browser.get("/account").await.location(), Some("/signin"));
    let after = browser.get("/").await;
    assert!(after.body.contains("href=\"/signup\""), "landing again");

    app.stop().await;
    env.cleanup().await;
}

async fn a_form_without_its_csrf_token_is_refused(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);
    browser.get("/signup").await;
    let fields = [
        ("name", "mallory"),
        ("email", "mallory@example.com"),
        ("password", "correct horse"),
    ];

    let without = browser.post_raw("/signup", &fields).await;
    assert_eq!(without.status, 403, "{}", without.body);
    without.assert_shows("This form has expired");

    let mut wrong = vec![("csrf", "0".repeat(64))];
    wrong.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(browser.post_raw("/signup", &wrong).await.status, 403);

    // Another browser's token does not fit this browser's cookie.
    let mut other = PageClient::new(&app);
    other.get("/signup").await;
    let others_token = other.csrf.clone().expect("token");
    assert_ne!(Some(&others_token), browser.csrf.as_ref());
    let mut borrowed = vec![("csrf", others_token.as_str())];
    borrowed.extend_from_slice(&fields);
    assert_eq!(browser.post_raw("/signup", &borrowed).await.status, 403);

    // A browser without any cookie (what another site's form would send from a fresh browser).
    let mut fresh = PageClient::new(&app);
    let mut stolen = vec![("csrf", others_token.as_str())];
    stolen.extend_from_slice(&fields);
    assert_eq!(fresh.post_raw("/signup", &stolen).await.status, 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM signup_requests").await, 0);

    // Signing in changes the token: a form from before is refused in the new session.
    sign_up_and_in(
        &env,
        &mut browser,
        "bob",
        "bob@example.com",
        "correct horse",
    )
    .await;
    let before = browser.csrf.clone().expect("token");
    browser.get("/account").await;
    let signed_in_token = browser.csrf.clone().expect("token");
    assert_ne!(before, signed_in_token);
    let mut old = vec![("csrf", before.as_str())];
    old.push(("current_password", "correct horse"));
    old.push(("password", "another horse"));
    assert_eq!(
        browser.post_raw("/account/password", &old).await.status,
        403
    );
    assert_eq!(browser.post_raw("/account/sessions", &[]).await.status, 403);
    assert_eq!(browser.post_raw("/signout", &[]).await.status, 403);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM auth_tokens WHERE revoked = 0")
            .await,
        1,
        "nothing was signed out"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn form_errors_are_shown_next_to_their_field_with_what_was_typed(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);
    browser.get("/signup").await;
    let page = browser
        .post(
            "/signup",
            &[
                ("name", "x"),
                ("email", "not-an-address"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    page.assert_shows("value=\"x\"");
    page.assert_shows("value=\"not-an-address\"");
    assert!(
        !page.body.contains("value=\"short\""),
        "passwords are never shown again"
    );
    for (field, message) in [
        (
            "name",
            "Use 2 to 32 letters, digits, &#39;_&#39;, &#39;-&#39; or &#39;.&#39;.",
        ),
        ("email", "This is not an e-mail address."),
        (
            "password",
            "Use at least 8 characters (at most 1024 bytes).",
        ),
    ] {
        assert!(
            page.body.contains(&format!(
                "aria-invalid=\"true\" aria-describedby=\"{field}-error\""
            )),
            "{field}: {}",
            page.body
        );
        assert!(
            page.body.contains(&format!(
                "<p class=\"error\" id=\"{field}-error\">{message}</p>"
            )),
            "{field}: {}",
            page.body
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM signup_requests").await, 0);

    // A name that is taken is told next to the name, the rest kept.
    sign_up_and_in(
        &env,
        &mut PageClient::new(&app),
        "carol",
        "carol@example.com",
        "correct horse",
    )
    .await;
    browser.get("/signup").await;
    let taken = browser
        .post(
            "/signup",
            &[
                ("name", "carol"),
                ("email", "carol2@example.com"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    taken.assert_shows(
        "<p class=\"error\" id=\"name-error\">This name is taken; choose another.</p>",
    );
    taken.assert_shows("value=\"carol2@example.com\"");

    // Hostile input is shown as text, never as markup.
    let hostile = browser
        .post(
            "/signup",
            &[
                ("name", "<script>x</script>"),
                ("email", "a@b.c"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(hostile.status, 422);
    assert!(
        hostile
            .body
            .contains("value=\"&#60;script&#62;x&#60;/script&#62;\"")
            || hostile
                .body
                .contains("value=\"&lt;script&gt;x&lt;/script&gt;\""),
        "{}",
        hostile.body
    );
    hostile.assert_lacks("<script>");

    app.stop().await;
    env.cleanup().await;
}

async fn password_reset_is_single_use_and_ends_every_session(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut browser,
        "dave",
        "dave@example.com",
        "correct horse",
    )
    .await;
    let old_session = browser
        .cookie("herald_session")
        .expect("session")
        .to_string();

    let mut stranger = PageClient::new(&app);
    stranger.get("/forgot").await;
    let unknown = stranger
        .post("/forgot", &[("email", "nobody@example.com")])
        .await;
    let known = stranger
        .post("/forgot", &[("email", "dave@example.com")])
        .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(known.status, 200);
    assert_eq!(
        unknown.body, known.body,
        "the answer tells nothing about which e-mails exist"
    );
    let mail = spooled_mail(env.data_dir.path(), "dave@example.com", 1).await;
    let reset = link_path(&mail, "/reset/");
    assert_eq!(spooled_count(env.data_dir.path(), "nobody@example.com"), 0);

    let form = stranger.get(&reset).await;
    assert_eq!(form.status, 200);
    let short = stranger.post(&reset, &[("password", "short")]).await;
    assert_eq!(short.status, 422, "a bad password keeps the link usable");
    short.assert_shows("id=\"password-error\"");
    let done = stranger
        .post(&reset, &[("password", "battery staple")])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        stranger
            .post(&reset, &[("password", "battery staple 2")])
            .await
            .status,
        404
    );
    assert_eq!(stranger.get(&reset).await.status, 404);

    // A link past its hour is refused, even unused.
    let mut later = PageClient::new(&app);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM password_resets").await,
        0,
        "a used key is gone with its siblings"
    );
    later.get("/forgot").await;
    sqlx::query(
        "INSERT INTO password_resets (key_hash, account_id, expires_at, created_at) \
                 SELECT $1, id, $2, $2 FROM accounts WHERE name = 'dave'",
    )
    .bind(herald::accounts::secret_hash("an-expired-key"))
    .bind(herald::ids::now_ms() - 1)
    .execute(app.state.db.writer())
    .await
    .expect("an expired key");
    assert_eq!(later.get("/reset/an-expired-key").await.status, 404);
    let expired = later
        .post("/reset/an-expired-key", &[("password", "battery staple 3")])
        .await;
    assert_eq!(expired.status, 404, "{}", expired.body);

    // Every session ended, the browser that was signed in included.
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&old_session)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status().as_u16(), 401);
    assert_eq!(browser.get("/account").await.location(), Some("/signin"));

    browser.get("/signin").await;
    let old = browser
        .post(
            "/signin",
            &[("email", "dave@example.com"), ("password", "correct horse")],
        )
        .await;
    assert_eq!(old.status, 401);
    let new = browser
        .post(
            "/signin",
            &[
                ("email", "dave@example.com"),
                ("password", "battery staple"),
            ],
        )
        .await;
    assert_eq!(new.status, 303);

    // Changing the password needs the current one; signing out everywhere ends every session.
    browser.get("/account").await;
    let wrong = browser
        .post(
            "/account/password",
            &[
                ("current_password", "correct horse"),
                ("password", "new horse battery"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong
            .body
            .contains("id=\"current_password-error\">This is not your current password."),
        "{}",
        wrong.body
    );
    let changed = browser
        .post(
            "/account/password",
            &[
                ("current_password", "battery staple"),
                ("password", "new horse battery"),
            ],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    changed.assert_shows("Your password is changed.");
    let mut second = PageClient::new(&app);
    second.get("/signin").await;
    assert_eq!(
        second
            .post(
                "/signin",
                &[
                    ("email", "dave@example.com"),
                    ("password", "new horse battery")
                ]
            )
            .await
            .status,
        303
    );
    browser.get("/account").await;
    let everywhere = browser.post("/account/sessions", &[]).await;
    assert_eq!(everywhere.status, 303);
    assert_eq!(second.get("/account").await.location(), Some("/signin"));
    assert_eq!(browser.get("/account").await.location(), Some("/signin"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM auth_tokens WHERE revoked = 0")
            .await,
        0
    );

    app.stop().await;
    env.cleanup().await;
}

async fn another_account_never_sees_my_data(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut erin = PageClient::new(&app);
    let mut frank = PageClient::new(&app);
    sign_up_and_in(&env, &mut erin, "erin", "erin@example.com", "correct horse").await;
    sign_up_and_in(
        &env,
        &mut frank,
        "frank",
        "frank@example.com",
        "correct horse",
    )
    .await;

    // Erin has a project with a hook and a linked messenger with a subscription.
    let repo = GitRepo::new();
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"owner": "erin", "name": "secret-app", "repository": repo.url()})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/projects/erin/secret-app/webhooks",
            Some(json!({"payloadUrl": "http://127.0.0.1:9/erin-hook"})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let db = &app.state.db;
    let erin_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = 'erin'")
        .fetch_one(db.reader())
        .await
        .expect("erin");
    let contact =
        herald::contacts::upsert_contact(db, &app.state.ids, "telegram", "4242", "erin-phone")
            .await
            .expect("contact");
    let mut connection = db.writer().acquire().await.expect("connection");
    herald::contacts::link_to_account(&mut connection, contact.id, erin_id)
        .await
        .expect("link");
    drop(connection);

    let mine = erin.get("/").await;
    mine.assert_shows("erin/secret-app");
    mine.assert_shows("http://127.0.0.1:9/erin-hook");
    mine.assert_shows("erin-phone");

    let theirs = frank.get("/").await;
    assert_eq!(theirs.status, 200);
    theirs.assert_shows("Hello, frank");
    for secret in [
        "secret-app",
        "erin-hook",
        "erin-phone",
        "4242",
        "erin@example.com",
    ] {
        assert!(
            !theirs.body.contains(secret),
            "frank sees {secret}: {}",
            theirs.body
        );
    }
    let account = frank.get("/account").await;
    account.assert_lacks("erin");

    // Frank's forms act on Frank only, whatever he sends.
    frank.get("/account").await;
    let attempt = frank
        .post(
            "/account/password",
            &[
                ("current_password", "correct horse"),
                ("password", "taken over"),
                ("name", "erin"),
            ],
        )
        .await;
    assert_eq!(attempt.status, 200);
    let mut check = PageClient::new(&app);
    check.get("/signin").await;
    assert_eq!(
        check
            .post(
                "/signin",
                &[("email", "erin@example.com"), ("password", "correct horse")]
            )
            .await
            .status,
        303,
        "erin's password is unchanged"
    );
    frank.get("/account").await;
    frank.post("/account/sessions", &[]).await;
    assert_eq!(
        erin.get("/account").await.status,
        200,
        "erin is still signed in"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn pages_speak_the_visitors_language(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);
    browser.accept_language = Some("ko-KR,ko;q=0.9,en;q=0.5".into());
    let korean = browser.get("/").await;
    korean.assert_shows("<html lang=\"ko\">");
    korean.assert_shows("코드가 바뀌면 바로 알려 드립니다");

    let switched = browser.get("/lang/en?next=%2Fsignin").await;
    assert_eq!(switched.status, 303);
    assert_eq!(switched.location(), Some("/signin"));
    assert_eq!(browser.cookie("herald_lang"), Some("en"));
    let english = browser.get("/signin").await;
    english.assert_shows("<html lang=\"en\">");
    english.assert_shows("Sign in to herald");
    english.assert_shows("href=\"/lang/ko?next=%2Fsignin\"");

    // Errors too are in the visitor's language.
    browser.get("/lang/ko?next=/signup").await;
    browser.get("/signup").await;
    let errors = browser
        .post("/signup", &[("name", ""), ("email", "x"), ("password", "")])
        .await;
    errors.assert_shows("이 칸을 채워 주세요.");
    errors.assert_shows("이메일 주소가 아닙니다.");

    // Only local paths are followed back.
    let away = browser.get("/lang/en?next=//evil.example/").await;
    assert_eq!(away.location(), Some("/"));

    app.stop().await;
    env.cleanup().await;
}

async fn pages_carry_security_headers_and_cached_assets(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);
    for path in ["/", "/signin", "/signup", "/forgot", "/verify/unknown-key"] {
        let page = browser.get(path).await;
        let csp = page
            .headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path} has a Content-Security-Policy"));
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            page.headers
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{path}"
        );
        assert!(!page.body.contains("<script"), "{path} has no script");
        assert!(
            !page.body.contains("style=\""),
            "{path} has no inline style"
        );
    }
    assert_eq!(browser.get("/verify/unknown-key").await.status, 200);
    assert_eq!(browser.get("/reset/unknown-key").await.status, 404);

    let landing = browser.get("/").await;
    let start = landing
        .body
        .find("/assets/herald.css?v=")
        .expect("stylesheet link");
    let href = &landing.body[start..start + landing.body[start..].find('"').expect("end")];
    let css = browser.get(href).await;
    assert_eq!(css.status, 200);
    assert_eq!(
        css.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        css.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=31536000, immutable")
    );
    let etag = css
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string();
    let again = browser
        .http
        .get(app.url(href))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(browser.get("/assets/nothing.css").await.status, 404);

    app.stop().await;
    env.cleanup().await;
}

async fn a_messenger_is_linked_with_the_code_the_page_gives_and_unlinked(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut heidi = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut heidi,
        "heidi",
        "heidi@example.com",
        "correct horse",
    )
    .await;
    let empty = heidi.get("/messengers").await;
    assert_eq!(empty.status, 200);
    empty.assert_shows("No messenger is linked");

    let with_code = heidi.post("/messengers/code", &[]).await;
    assert_eq!(with_code.status, 200, "{}", with_code.body);
    let start = with_code
        .body
        .find("<code id=\"link-text\">")
        .expect("the text to send")
        + "<code id=\"link-text\">".len();
    let text = &with_code.body[start..start + with_code.body[start..].find('<').expect("end")];
    assert!(
        text.starts_with("link ") && text.len() == "link ".len() + 8,
        "{text}"
    );

    // The bot conversation, as KakaoTalk's skill server sends it.
    let answer = crate::bot::skill(&app, "kakao-heidi", text).await;
    assert!(crate::bot::texts(&answer).contains("heidi"), "{answer}");

    let linked = heidi.get("/messengers").await;
    linked.assert_shows("<code>kakao-heidi</code>");
    let dashboard = heidi.get("/").await;
    dashboard.assert_shows("kakao-heidi");
    let action_start = linked
        .body
        .find("action=\"/messengers/")
        .expect("unlink form")
        + "action=\"".len();
    let action = &linked.body
        [action_start..action_start + linked.body[action_start..].find('"').expect("end")];
    assert!(action.ends_with("/unlink"), "{action}");

    // Someone else can neither see nor unlink it.
    let mut ivan = PageClient::new(&app);
    sign_up_and_in(&env, &mut ivan, "ivan", "ivan@example.com", "correct horse").await;
    let theirs = ivan.get("/messengers").await;
    theirs.assert_lacks("kakao-heidi");
    assert_eq!(ivan.post(action, &[]).await.status, 404);
    assert!(heidi.get("/messengers").await.body.contains("kakao-heidi"));

    heidi.get("/messengers").await;
    let unlinked = heidi.post(action, &[]).await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    unlinked.assert_shows("The messenger is unlinked");
    unlinked.assert_lacks("kakao-heidi");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM contacts WHERE account_id IS NOT NULL")
            .await,
        0
    );

    app.stop().await;
    env.cleanup().await;
}

async fn cookies_are_secure_when_the_public_url_is_https(env: TestEnv) {
    let app = env
        .spawn(&[("HERALD_PUBLIC_URL", "https://herald.example.com")])
        .await;
    let mut browser = PageClient::new(&app);
    let landing = browser.get("/").await;
    let csrf = landing
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("herald_csrf="))
        .expect("CSRF cookie");
    assert!(csrf.ends_with("; Secure"), "{csrf}");
    let switched = browser.get("/lang/ko?next=/").await;
    let lang = switched
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("herald_lang="))
        .expect("language cookie");
    assert!(
        lang.contains("HttpOnly; SameSite=Lax") && lang.ends_with("; Secure"),
        "{lang}"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn the_dashboard_shows_my_subscriptions_and_their_notifications(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut judy = PageClient::new(&app);
    sign_up_and_in(&env, &mut judy, "judy", "judy@example.com", "correct horse").await;
    let repo = GitRepo::new();
    // An e-mail contact subscribed through the reference API, then linked to Judy's account.
    app.subscribe_reference("email", "judy-inbox@example.com", &repo.url(), "main")
        .await;
    let db = &app.state.db;
    let judy_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = 'judy'")
        .fetch_one(db.reader())
        .await
        .expect("judy");
    let contact_id: i64 =
        sqlx::query_scalar("SELECT id FROM contacts WHERE address = 'judy-inbox@example.com'")
            .fetch_one(db.reader())
            .await
            .expect("contact");
    let mut connection = db.writer().acquire().await.expect("connection");
    herald::contacts::link_to_account(&mut connection, contact_id, judy_id)
        .await
        .expect("link");
    drop(connection);

    let sha = repo.commit("src/lib.rs", "fn main() {}", "Change code");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    let dashboard = judy.get("/").await;
    assert!(
        dashboard
            .body
            .contains(&format!("<code>{}</code>", repo.url())),
        "{}",
        dashboard.body
    );
    dashboard.assert_shows("judy-inbox@example.com");
    assert!(
        dashboard
            .body
            .contains(&format!("<code>{}</code> main", &sha[..7])),
        "{}",
        dashboard.body
    );
    assert!(
        dashboard
            .body
            .contains("<span class=\"badge ok\">delivered</span>"),
        "{}",
        dashboard.body
    );

    let mut other = PageClient::new(&app);
    sign_up_and_in(&env, &mut other, "kim", "kim@example.com", "correct horse").await;
    let theirs = other.get("/").await;
    theirs.assert_lacks(&sha[..7]);
    theirs.assert_lacks("judy-inbox");

    app.stop().await;
    env.cleanup().await;
}

async fn the_sign_in_form_shares_the_failed_login_limit(env: TestEnv) {
    let app = env
        .spawn(&[("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "2")])
        .await;
    let mut browser = PageClient::new(&app);
    browser.get("/signin").await;
    for _ in 0..2 {
        let wrong = browser
            .post(
                "/signin",
                &[("email", "who@example.com"), ("password", "guess guess")],
            )
            .await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
    }
    let limited = browser
        .post(
            "/signin",
            &[("email", "who@example.com"), ("password", "guess guess")],
        )
        .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    limited.assert_shows("Too many attempts from here.");
    // The API counts the same failures: it is one limit, not two.
    let api = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "who@example.com", "password": "guess guess"}))
        .send()
        .await
        .expect("login");
    assert_eq!(api.status().as_u16(), 429);

    app.stop().await;
    env.cleanup().await;
}

async fn the_icon_is_linked_from_every_page_and_served_at_favicon_ico(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let mut browser = PageClient::new(&app);
    let header = |page: &Page, name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let icon = browser.get("/favicon.ico").await;
    assert_eq!(icon.status, 200);
    assert_eq!(
        header(&icon, "content-type").as_deref(),
        Some("image/svg+xml")
    );
    assert_eq!(
        header(&icon, "cache-control").as_deref(),
        Some("public, max-age=604800")
    );
    assert!(
        icon.body
            .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{}",
        icon.body
    );
    for path in ["/", "/signin", "/signup"] {
        let page = browser.get(path).await;
        let start = page
            .body
            .find("<link rel=\"icon\" href=\"")
            .unwrap_or_else(|| panic!("{path} links the icon: {}", page.body))
            + "<link rel=\"icon\" href=\"".len();
        let href = &page.body[start..start + page.body[start..].find('"').expect("end")];
        assert!(href.starts_with("/assets/favicon.svg?v="), "{href}");
        let linked = browser.get(href).await;
        assert_eq!(linked.status, 200);
        assert_eq!(linked.body, icon.body);
        assert_eq!(
            header(&linked, "content-type").as_deref(),
            Some("image/svg+xml")
        );
        assert_eq!(
            header(&linked, "cache-control").as_deref(),
            Some("public, max-age=31536000, immutable")
        );
    }
    app.stop().await;
    env.cleanup().await;
}
