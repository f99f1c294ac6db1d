//! The pages in a real headless browser: Debian's `chromium` driven by `chromedriver` over
//! WebDriver (W3C), with a small client of our own on reqwest. Without chromedriver the test
//! prints why it is skipped, unless `CI=true`, where it fails. Screenshots of every page at
//! desktop (1280×800) and phone (390×844) widths go to `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestEnv, WAIT, wait_until};
use crate::web_pages::{link_path, spooled_mail};

both_backends!(a_person_signs_up_signs_in_and_resets_the_password_in_a_browser);

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A headless Chromium behind a chromedriver this test started; both end when it is dropped.
struct Browser {
    http: reqwest::Client,
    session_url: String,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a browser session, or says why it cannot.
    async fn start() -> Result<Browser, String> {
        let driver_program = find_program(&["chromedriver"])
            .ok_or("no chromedriver on PATH (apt-get install chromium chromium-driver)")?;
        let chromium = find_program(&["chromium", "chromium-browser"])
            .ok_or("no chromium on PATH (apt-get install chromium chromium-driver)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let driver = Command::new(&driver_program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", driver_program.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            http,
            session_url: String::new(),
            driver,
        };
        let status_url = format!("{base}/status");
        let client = browser.http.clone();
        wait_until("chromedriver to answer", WAIT, || {
            let (client, url) = (client.clone(), status_url.clone());
            async move {
                match client.get(&url).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == json!(true)),
                    Err(_) => false,
                }
            }
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--lang=en-US", "--hide-scrollbars"],
                "prefs": {"intl.accept_languages": "en-US,en"}
            }
        }}});
        let answer: Value = browser
            .http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("chromedriver made no session: {answer}"))?;
        browser.session_url = format!("{base}/session/{session}");
        Ok(browser)
    }

    /// A WebDriver command; `Err` with the driver's answer when it reports an error.
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if answer["value"]["error"].is_string() {
            return Err(answer);
        }
        Ok(answer["value"].clone())
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method.clone(), path, body)
            .await
            .unwrap_or_else(|answer| panic!("WebDriver {method} {path}: {answer}"))
    }

    /// The text of the element `css` on the page shown now, if there is one.
    async fn text_now(&self, css: &str) -> Option<String> {
        let found = self
            .try_command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        let element = found[ELEMENT].as_str()?.to_string();
        self.try_command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .ok()?
        .as_str()
        .map(str::to_string)
    }

    /// Waits until the page (the next one, after a click) shows `expected` in `css`.
    async fn wait_text(&self, css: &str, expected: &str) {
        wait_until(&format!("{css} to read {expected:?}"), WAIT, || async {
            self.text_now(css).await.as_deref() == Some(expected)
        })
        .await;
    }

    async fn wait_text_starting(&self, css: &str, expected: &str) {
        wait_until(
            &format!("{css} to start with {expected:?}"),
            WAIT,
            || async {
                self.text_now(css)
                    .await
                    .is_some_and(|text| text.starts_with(expected))
            },
        )
        .await;
    }

    async fn wait_path(&self, expected: &str) {
        wait_until(&format!("the page {expected}"), WAIT, || async {
            self.path().await == expected
        })
        .await;
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn path(&self) -> String {
        let url = self.url().await;
        url::Url::parse(&url)
            .map(|u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            })
            .unwrap_or(url)
    }

    /// Finds `css` on the page shown now and runs `then` on it (`None` for `GET …/text` and
    /// the like), waiting up to `WAIT` while the element is not there yet or belongs to a page
    /// that was just replaced: a click that starts a navigation may return before the next page
    /// is loaded, so the next command can meet the old page or none.
    async fn on_element(
        &self,
        css: &str,
        method: reqwest::Method,
        then: &str,
        body: Option<Value>,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let attempt = async {
                let found = self
                    .try_command(
                        reqwest::Method::POST,
                        "/element",
                        Some(json!({"using": "css selector", "value": css})),
                    )
                    .await?;
                let element = found[ELEMENT].as_str().unwrap_or_default().to_string();
                self.try_command(
                    method.clone(),
                    &format!("/element/{element}{then}"),
                    body.clone(),
                )
                .await
            };
            match attempt.await {
                Ok(value) => return value,
                Err(answer) => {
                    let error = answer["value"]["error"].as_str().unwrap_or_default();
                    let passing = matches!(
                        error,
                        "no such element" | "stale element reference" | "element not interactable"
                    );
                    if !passing || tokio::time::Instant::now() >= deadline {
                        panic!("WebDriver {method} {then} on {css}: {answer}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, reqwest::Method::POST, "/clear", Some(json!({})))
            .await;
        self.on_element(
            css,
            reqwest::Method::POST,
            "/value",
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "/click", Some(json!({})))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "/text", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn property(&self, css: &str, name: &str) -> Value {
        self.on_element(
            css,
            reqwest::Method::GET,
            &format!("/property/{name}"),
            None,
        )
        .await
    }

    async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("write screenshot");
    }

    async fn delete_cookies(&self) {
        self.command(reqwest::Method::DELETE, "/cookie", None).await;
    }

    async fn quit(&self) {
        let _ = self.http.delete(&self.session_url).send().await;
    }
}

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

async fn a_person_signs_up_signs_in_and_resets_the_password_in_a_browser(env: TestEnv) {
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
    let app = env.spawn(&[]).await;
    let base = app.address.clone();
    let backend = format!("{:?}", env.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");
    browser.resize(DESKTOP.0, DESKTOP.1).await;

    // The landing page offers to sign up.
    browser.goto(&format!("{base}/")).await;
    browser.wait_text("h1", "Know when your code moves").await;
    browser.screenshot(&shot("landing-desktop")).await;
    browser.click("a.button[href='/signup']").await;
    browser.wait_path("/signup").await;

    // A mistake is shown next to its field, with what was typed kept.
    browser.fill("#name", "grace").await;
    browser.fill("#email", "grace-at-example").await;
    browser.fill("#password", "correct horse").await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_text("#email-error", "This is not an e-mail address.")
        .await;
    assert_eq!(browser.property("#name", "value").await, json!("grace"));
    browser.screenshot(&shot("signup-errors-desktop")).await;
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.click("form button[type=submit]").await;
    browser.wait_text("h1", "Check your mail").await;
    browser.screenshot(&shot("signup-mailed-desktop")).await;

    // The mail's link, then the button that creates the account.
    let mail = spooled_mail(env.data_dir.path(), "grace@example.com", 0).await;
    let verify = link_path(&mail, "/verify/");
    browser.goto(&format!("{base}{verify}")).await;
    browser.screenshot(&shot("verify-desktop")).await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_text(".notice", "Your account is ready. Sign in to start.")
        .await;

    // Sign in: the dashboard.
    browser.click("main a[href='/signin']").await;
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.screenshot(&shot("signin-desktop")).await;
    browser.click("form button[type=submit]").await;
    browser.wait_path("/").await;
    browser.wait_text("h1", "Hello, grace").await;
    browser.screenshot(&shot("dashboard-desktop")).await;
    browser.goto(&format!("{base}/account")).await;
    browser.screenshot(&shot("account-desktop")).await;
    browser.click("header a[href='/messengers']").await;
    browser
        .click("form[action='/messengers/code'] button")
        .await;
    let text = browser.text("#link-text").await;
    assert!(text.starts_with("link ") && text.len() == 13, "{text}");
    browser.screenshot(&shot("messengers-desktop")).await;
    // subscriptions, teams and schedules, knowledge base pages
    for (path, heading, name) in [
        ("/subscriptions", "My subscriptions", "subscriptions"),
        ("/kb?q=vacation", "Knowledge base", "kb"),
        ("/teams", "My teams", "teams"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_text("h1", heading).await;
        browser.screenshot(&shot(&format!("{name}-desktop"))).await;
        browser.resize(PHONE.0, PHONE.1).await;
        browser.screenshot(&shot(&format!("{name}-phone"))).await;
        browser.resize(DESKTOP.0, DESKTOP.1).await;
    }

    // The same pages at a phone's width, and in Korean.
    browser.resize(PHONE.0, PHONE.1).await;
    browser.goto(&format!("{base}/")).await;
    browser.screenshot(&shot("dashboard-phone")).await;
    browser.goto(&format!("{base}/messengers")).await;
    browser.screenshot(&shot("messengers-phone")).await;
    browser.goto(&format!("{base}/account")).await;
    browser.screenshot(&shot("account-phone")).await;
    browser.click("a[lang=ko]").await;
    browser.wait_path("/account").await;
    browser.wait_text("h1", "내 계정").await;
    browser.screenshot(&shot("account-ko-phone")).await;
    browser.click("a[lang=en]").await;
    browser.wait_text("h1", "Your account").await;

    // Sign out from the header.
    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.click("header form button").await;
    browser.wait_path("/signin?out=1").await;
    browser.wait_text(".notice", "You are signed out.").await;

    // Forgot the password: the mailed link sets a new one.
    browser.click("a[href='/forgot']").await;
    browser.wait_path("/forgot").await;
    browser.fill("#email", "grace@example.com").await;
    browser.screenshot(&shot("forgot-desktop")).await;
    browser.click("form button[type=submit]").await;
    let mail = spooled_mail(env.data_dir.path(), "grace@example.com", 1).await;
    let reset = link_path(&mail, "/reset/");
    browser.goto(&format!("{base}{reset}")).await;
    browser.fill("#password", "battery staple").await;
    browser.screenshot(&shot("reset-desktop")).await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_text_starting(".notice", "Your password is changed")
        .await;
    browser.goto(&format!("{base}/signin")).await;
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_text("form .notice", "Wrong e-mail or password.")
        .await;
    browser.screenshot(&shot("signin-wrong-desktop")).await;
    browser.fill("#password", "battery staple").await;
    browser.click("form button[type=submit]").await;
    browser.wait_text("h1", "Hello, grace").await;

    // The signed-out pages at a phone's width.
    browser.delete_cookies().await;
    browser.resize(PHONE.0, PHONE.1).await;
    for (path, name) in [
        ("/", "landing"),
        ("/signup", "signup"),
        ("/signin", "signin"),
        ("/forgot", "forgot"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.screenshot(&shot(&format!("{name}-phone"))).await;
    }
    browser.goto(&format!("{base}/signup")).await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_text("#name-error", "Please fill this in.")
        .await;
    browser.screenshot(&shot("signup-errors-phone")).await;

    browser.quit().await;
    drop(browser);
    app.stop().await;
    env.cleanup().await;
}

// --- web::projects in the browser -------------------------------------------------------------

both_backends!(a_person_creates_a_project_and_a_hook_and_redelivers_from_its_log_in_a_browser);

/// Create a project and a hook → push → see the delivery and its attempts → redeliver.
async fn a_person_creates_a_project_and_a_hook_and_redelivers_from_its_log_in_a_browser(
    env: TestEnv,
) {
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
    let app = env.spawn(&[]).await;
    let receiver = herald::testkit::receiver::Receiver::start().await;
    let repo = herald::testkit::git_repo::GitRepo::new();
    let base = app.address.clone();
    let backend = format!("{:?}", env.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");
    let mut pages = crate::web_pages::PageClient::new(&app);
    crate::web_pages::sign_up_and_in(
        &env,
        &mut pages,
        "hopper",
        "hopper@example.com",
        "correct horse",
    )
    .await;
    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.goto(&format!("{base}/signin")).await;
    browser.fill("#email", "hopper@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.click("form button[type=submit]").await;
    browser.wait_text("h1", "Hello, hopper").await;

    // A project, from the header's link.
    browser.click("header a[href='/projects']").await;
    browser.wait_text("h1", "My projects").await;
    browser.fill("#name", "compiler").await;
    browser.fill("#repository", &repo.url()).await;
    browser.click("form[action='/projects'] button").await;
    browser.wait_path("/hopper/compiler/webhooks").await;
    browser.wait_text("h1", "Webhooks hopper/compiler").await;

    // A hook: its generated secret is shown once.
    browser.fill("#payload_url", &receiver.url).await;
    browser
        .click("form[action='/projects/hopper/compiler/hooks'] button")
        .await;
    browser
        .wait_text_starting("#created-secret", "whsec_")
        .await;
    browser.screenshot(&shot("project-secret-desktop")).await;
    wait_until("the ping", WAIT, || async { receiver.count() == 1 }).await;

    // A push reaches it; the log shows the delivery and its attempt.
    repo.push_commits(&[("a.txt", "1", "First")]);
    wait_until("the push", WAIT, || async { receiver.count() == 2 }).await;
    browser
        .goto(&format!("{base}/hopper/compiler/webhooks"))
        .await;
    browser.screenshot(&shot("project-desktop")).await;
    browser.click("#hooks a").await;
    browser.wait_text("h1", "Delivery log").await;
    browser
        .wait_text("#deliveries > li:first-child strong", "push")
        .await;
    browser
        .wait_text_starting("#deliveries > li:first-child .attempt", "20")
        .await;
    let attempt = browser.text("#deliveries > li:first-child .attempt").await;
    assert!(attempt.contains("HTTP 204"), "{attempt}");
    browser.screenshot(&shot("webhook-log-desktop")).await;

    // Redeliver the push: a second attempt in its timeline.
    browser
        .click("#deliveries > li:first-child form button")
        .await;
    browser
        .wait_text(".notice", "The delivery is queued again, with the same id.")
        .await;
    wait_until("the redelivery", WAIT, || async { receiver.count() == 3 }).await;
    let received = receiver.received();
    assert_eq!(
        received[2].header("x-github-delivery"),
        received[1].header("x-github-delivery")
    );
    let again = browser.path().await;
    wait_until("two attempts on the page", WAIT, || async {
        browser.goto(&format!("{base}{again}")).await;
        browser
            .text_now("#deliveries .attempt:nth-child(2)")
            .await
            .is_some()
    })
    .await;
    browser
        .screenshot(&shot("webhook-redelivered-desktop"))
        .await;

    // Filtered to failures: none.
    browser
        .goto(&format!("{base}/hopper/compiler/webhooks"))
        .await;
    browser.click("#hooks a").await;
    browser.wait_text("h1", "Delivery log").await;
    let log = browser.path().await;
    browser.goto(&format!("{base}{log}?outcome=failed")).await;
    browser
        .wait_text("#no-deliveries", "No deliveries match.")
        .await;

    // At a phone's width, and in Korean.
    browser.resize(PHONE.0, PHONE.1).await;
    for (path, name) in [
        ("/projects".to_string(), "projects"),
        ("/hopper/compiler/webhooks".to_string(), "project"),
        (log.clone(), "webhook-log"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.screenshot(&shot(&format!("{name}-phone"))).await;
    }
    browser.click("a[lang=ko]").await;
    browser.wait_text("h1", "전송 기록").await;
    browser.screenshot(&shot("webhook-log-ko-phone")).await;
    browser.click("a[lang=en]").await;
    browser.wait_text("h1", "Delivery log").await;

    browser.quit().await;
    drop(browser);
    app.stop().await;
    env.cleanup().await;
}
// The chat page in two browsers (issue 22).
#[path = "web_chat_browser.rs"]
mod chat;

both_backends!(the_operator_signs_in_and_reads_the_operator_view_in_a_browser);

async fn the_operator_signs_in_and_reads_the_operator_view_in_a_browser(env: TestEnv) {
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
    let app = env.spawn(&[("HERALD_RETRY_SCHEDULE", "1h")]).await;
    crate::web_operator::failing_hook(&app).await;
    let base = app.address.clone();
    let backend = format!("{:?}", env.backend).to_lowercase();
    let shot = |name: &str| format!("{backend}-{name}");

    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.goto(&format!("{base}/login")).await;
    browser
        .fill("input[name=token]", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("form button").await;
    browser.wait_text("h1", "Signed in").await;
    browser.click("a[href='/operator']").await;
    browser.wait_text("h1", "Operator view").await;
    browser.wait_text("#channel-webhook .pending", "1").await;
    let failure = browser.text("#failures li").await;
    assert!(failure.contains("unreachable-hook"), "{failure}");
    browser.screenshot(&shot("operator-desktop")).await;
    browser
        .goto(&format!("{base}/operator#failures-title"))
        .await;
    browser.screenshot(&shot("operator-failures-desktop")).await;
    browser.goto(&format!("{base}/operator")).await;

    browser.click(".operator-nav a[href='/operator/kb']").await;
    browser.wait_text("h1", "Knowledge base documents").await;
    browser.screenshot(&shot("operator-kb-desktop")).await;
    browser.click("a.button[href='/operator/kb/edit']").await;
    browser.wait_text("h1", "New document").await;
    browser.fill("#id", "browser-doc").await;
    browser.fill("#title", "Written in a browser").await;
    browser
        .fill("#body", "The night shift uses the quokka printer.")
        .await;
    browser
        .click("form[action='/operator/kb/save'] button")
        .await;
    browser.wait_text(".notice", "The document is saved.").await;

    browser.resize(PHONE.0, PHONE.1).await;
    for (path, name) in [
        ("/operator", "operator"),
        ("/operator#failures-title", "operator-failures"),
        ("/operator/kb", "operator-kb"),
        ("/operator/kb/edit?id=browser-doc", "operator-kb-edit"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.screenshot(&shot(&format!("{name}-phone"))).await;
    }
    browser.click("a[lang=ko]").await;
    browser.wait_text("h1", "문서 고치기").await;
    browser.goto(&format!("{base}/operator")).await;
    browser.wait_text("h1", "운영자 화면").await;
    browser.screenshot(&shot("operator-ko-phone")).await;
    browser.click("a[lang=en]").await;
    browser.wait_text("h1", "Operator view").await;

    browser.quit().await;
    drop(browser);
    app.stop().await;
    env.cleanup().await;
}

// The schedules page, member days and unread chats in a browser (issue 22, area E's pages).
#[path = "web_schedules_browser.rs"]
mod schedules;

// Linking Telegram, subscribing and seeing a push on the dashboard, in a browser (issue 22).
#[path = "web_subscribe_browser.rs"]
mod subscribe;
