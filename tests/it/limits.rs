//! Issue 25's attacks on the limits, each beside the legitimate path that must keep working: a
//! stranger's failed logins locking the owner out, guessing the operator token, mail bombing
//! through sign-up. Clients at different addresses bind different loopback addresses
//! (127.0.0.x), which herald sees as their peers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use herald::clock::ManualClock;
use herald::testkit::fake_smtp::FakeSmtp;
use reqwest::Response;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, TestApp, TestEnv};

both_backends!(
    a_strangers_failed_logins_never_lock_the_owner_out,
    a_guessers_waits_grow_with_every_guess_and_are_forgotten_after_an_hour,
    correct_logins_are_not_counted_against_an_address,
    operator_token_guesses_are_limited_per_address,
    sign_ups_mail_a_recipient_once_and_are_limited_per_address,
    a_sign_up_never_tells_whether_an_address_has_an_account,
    a_burst_of_sign_ups_hashes_one_password_per_core_at_most,
    password_changes_and_resets_hash_in_the_same_slots,
    forwarded_addresses_count_only_behind_trusted_proxies,
);

const SIGNED_UP: &str = "successfully created an account creation request.";

/// A client whose connections come from 127.0.0.`last`.
fn client_at(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client")
}

async fn log_in(client: &reqwest::Client, app: &TestApp, email: &str, password: &str) -> Response {
    client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request")
}

async fn register(client: &reqwest::Client, app: &TestApp, name: &str, email: &str) -> Response {
    client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"name": name, "email": email, "password": "long enough"}))
        .send()
        .await
        .expect("register request")
}

/// A refusal by a limit: 429 with `Retry-After` in whole seconds; returns the body.
async fn assert_limited(response: Response) -> Value {
    assert_eq!(response.status().as_u16(), 429);
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    response.json().await.unwrap_or(Value::Null)
}

/// The reference shape of a 429 from the account routes.
async fn assert_reference_limited(response: Response) {
    let body = assert_limited(response).await;
    assert_eq!(body["type"], json!("error"), "{body}");
    assert_eq!(body["payload"]["code"], json!(429), "{body}");
    assert!(
        body["payload"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

/// Sends `attempt` until it is refused with 429, at most `tries` times; returns the statuses
/// before the refusal and the refusal itself.
async fn until_limited<F, Fut>(tries: usize, mut attempt: F) -> (Vec<u16>, Response)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let mut before = Vec::new();
    for n in 0..tries {
        let response = attempt(n).await;
        if response.status().as_u16() == 429 {
            return (before, response);
        }
        before.push(response.status().as_u16());
    }
    panic!("never limited in {tries} tries: {before:?}");
}

async fn a_strangers_failed_logins_never_lock_the_owner_out(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    crate::accounts::sign_up(&app, &smtp, "erin", "erin@example.com", "erin's password").await;

    // The stranger guesses erin's password from 127.0.0.2 until refused.
    let stranger = client_at(2);
    let (before, refusal) = until_limited(20, |n| {
        let (stranger, app) = (&stranger, &app);
        async move { log_in(stranger, app, "erin@example.com", &format!("guess {n}")).await }
    })
    .await;
    assert_eq!(
        before,
        vec![401; 10],
        "ten failures for one account from one address"
    );
    assert_reference_limited(refusal).await;
    // From the stranger's address even the right password is refused: guessing has stopped.
    assert_reference_limited(log_in(&stranger, &app, "erin@example.com", "erin's password").await)
        .await;

    // erin, from her own address, logs in as if nothing had happened.
    let response = log_in(&client_at(3), &app, "erin@example.com", "erin's password").await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["type"], json!("auth"), "{answer}");

    app.stop().await;
    env.cleanup().await;
}

/// The `Retry-After` of a 429, in seconds.
fn retry_after(response: &Response) -> u64 {
    assert_eq!(response.status().as_u16(), 429);
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds")
}

async fn a_guessers_waits_grow_with_every_guess_and_are_forgotten_after_an_hour(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let clock = ManualClock::at("2026-12-07T10:00:00Z");
    let app = env
        .spawn_with_clock(&[("HERALD_SMTP_URL", smtp.url.as_str())], clock.clone())
        .await;
    crate::accounts::sign_up(&app, &smtp, "erin", "erin@example.com", "erin's password").await;
    let stranger = client_at(2);
    let guess = |n: u32| {
        let (stranger, app) = (&stranger, &app);
        async move { log_in(stranger, app, "erin@example.com", &format!("guess {n}")).await }
    };
    for n in 0..10 {
        assert_eq!(guess(n).await.status().as_u16(), 401, "guess {n}");
    }
    // Past ten failures, the first wait is the limit's own pace (ten a minute: six seconds);
    // then one guess after each wait, and each wait twice as long as the last.
    let mut wait = retry_after(&guess(10).await);
    assert_eq!(wait, 6);
    let mut waits = Vec::new();
    for n in 11..16 {
        // A second early is still refused, and not counted.
        clock.advance(Duration::from_secs(wait - 1));
        assert_eq!(retry_after(&guess(n).await), 1, "guess {n} a second early");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            guess(n).await.status().as_u16(),
            401,
            "guess {n} after the wait"
        );
        wait = retry_after(&guess(n).await);
        waits.push(wait);
    }
    assert_eq!(waits, [12, 24, 48, 96, 192]);
    // The owner, from her own address, is not kept out at any point.
    let response = log_in(&client_at(3), &app, "erin@example.com", "erin's password").await;
    assert_eq!(response.status().as_u16(), 200);

    // An hour of quiet after the last wait: the stranger's failures are forgotten.
    clock.advance(Duration::from_secs(wait + 3600));
    for n in 100..110 {
        assert_eq!(guess(n).await.status().as_u16(), 401, "guess {n}");
    }
    assert_eq!(retry_after(&guess(110).await), 6);

    app.stop().await;
    env.cleanup().await;
}

async fn correct_logins_are_not_counted_against_an_address(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "3"),
        ])
        .await;
    crate::accounts::sign_up(
        &app,
        &smtp,
        "frank",
        "frank@example.com",
        "frank's password",
    )
    .await;

    // Logging in again and again with the right password is never refused.
    let frank = client_at(4);
    for _ in 0..6 {
        let response = log_in(&frank, &app, "frank@example.com", "frank's password").await;
        assert_eq!(response.status().as_u16(), 200);
    }

    // Failures from one address are limited whatever account they name.
    let stranger = client_at(5);
    let (before, refusal) = until_limited(10, |n| {
        let (stranger, app) = (&stranger, &app);
        async move {
            log_in(
                stranger,
                app,
                &format!("nobody{n}@example.com"),
                "whatever1",
            )
            .await
        }
    })
    .await;
    assert_eq!(before, vec![401; 3]);
    assert_reference_limited(refusal).await;
    assert_reference_limited(
        log_in(&stranger, &app, "frank@example.com", "frank's password").await,
    )
    .await;
    let response = log_in(&frank, &app, "frank@example.com", "frank's password").await;
    assert_eq!(response.status().as_u16(), 200);

    app.stop().await;
    env.cleanup().await;
}

async fn api_get(client: &reqwest::Client, app: &TestApp, path: &str, token: &str) -> Response {
    client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn login_form(client: &reqwest::Client, app: &TestApp, token: &str) -> Response {
    client
        .post(app.url("/login"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("login form")
}

/// The JSON API's 429: `{"error":{"code":"too_many_requests",…}}` with `Retry-After`.
async fn assert_api_limited(response: Response) {
    let body = assert_limited(response).await;
    assert_eq!(body["error"]["code"], json!("too_many_requests"), "{body}");
}

async fn operator_token_guesses_are_limited_per_address(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;

    // Guesses in the Authorization header, on an operator-only route.
    let guesser = client_at(6);
    let (before, refusal) = until_limited(20, |n| {
        let (guesser, app) = (&guesser, &app);
        async move { api_get(guesser, app, "/api/v1/contacts", &format!("guess-{n}")).await }
    })
    .await;
    assert_eq!(before, vec![401; 10]);
    assert_api_limited(refusal).await;
    // From that address the right token is not even compared, on any route or the login form.
    assert_api_limited(api_get(&guesser, &app, "/api/v1/contacts", ADMIN_TOKEN).await).await;
    assert_api_limited(api_get(&guesser, &app, "/api/v1/projects", "guess").await).await;
    assert_limited(login_form(&guesser, &app, ADMIN_TOKEN).await).await;
    // The operator, elsewhere, is served.
    let response = api_get(&client_at(7), &app, "/api/v1/contacts", ADMIN_TOKEN).await;
    assert_eq!(response.status().as_u16(), 200);

    // Guesses through the login page are limited the same way.
    let guesser = client_at(8);
    let (before, refusal) = until_limited(20, |n| {
        let (guesser, app) = (&guesser, &app);
        async move { login_form(guesser, app, &format!("guess-{n}")).await }
    })
    .await;
    assert_eq!(before, vec![401; 10]);
    assert_limited(refusal).await;
    let response = login_form(&client_at(9), &app, ADMIN_TOKEN).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("set-cookie"));

    // An account's login token is not a guess at the operator's, even on operator-only routes.
    let token =
        crate::accounts::sign_up(&app, &smtp, "gina", "gina@example.com", "gina's password").await;
    let gina = client_at(10);
    for _ in 0..15 {
        let response = api_get(&gina, &app, "/api/v1/contacts", &token).await;
        assert_eq!(response.status().as_u16(), 401);
    }
    let response = api_get(&gina, &app, "/api/v1/projects", &token).await;
    assert_eq!(response.status().as_u16(), 200);
    let response = api_get(&gina, &app, "/api/v1/contacts", ADMIN_TOKEN).await;
    assert_eq!(response.status().as_u16(), 200);

    app.stop().await;
    env.cleanup().await;
}

async fn a_sign_up_never_tells_whether_an_address_has_an_account(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_SIGNUP_MAIL_INTERVAL", "1ms"),
        ])
        .await;
    crate::accounts::sign_up(&app, &smtp, "gina", "gina@example.com", "gina's password").await;
    let mails_before = smtp.mails().len();

    // A stranger signs up with gina's address (in other letters): the answer is a new
    // sign-up's, word for word, and nothing is created.
    let response = register(&client_at(7), &app, "notgina", "GINA@example.com").await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(
        answer,
        json!({"type": "info", "payload": {"message": SIGNED_UP}})
    );
    // gina is told by mail, with where to sign in or reset her password.
    herald::testkit::wait_until(
        "the mail to gina",
        std::time::Duration::from_secs(10),
        || async { smtp.mails().len() > mails_before },
    )
    .await;
    let told = smtp
        .last_mail_to("gina@example.com")
        .expect("a mail to gina")
        .body_text();
    assert!(
        told.contains("which already has one (named gina)"),
        "{told}"
    );
    assert!(
        told.contains("/signin") && told.contains("/forgot"),
        "{told}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM signup_requests WHERE name = 'notgina'")
            .await,
        0
    );
    // A taken name is said: names are public (friends find each other by them).
    let response = register(&client_at(8), &app, "gina", "someone@example.com").await;
    assert_eq!(response.status().as_u16(), 409);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(
        answer["payload"]["reason"],
        json!("that name is already taken"),
        "{answer}"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn sign_ups_mail_a_recipient_once_and_are_limited_per_address(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_SIGNUPS_PER_MINUTE", "10"),
        ])
        .await;

    // Thirty sign-ups for one victim at once, from thirty addresses: each is answered as any
    // sign-up is, and one mail goes out.
    let clients: Vec<reqwest::Client> = (0..30).map(|n| client_at(100 + n)).collect();
    let answers = futures_util::future::join_all(clients.iter().enumerate().map(|(n, client)| {
        let app = &app;
        async move {
            let response = register(client, app, &format!("victim{n}"), "victim@example.org").await;
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    }))
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(
            *answer,
            json!({"type": "info", "payload": {"message": SIGNED_UP}})
        );
    }
    herald::testkit::accounts::verification_link(&smtp, "victim@example.org").await;
    app.wait_for_outbox_drained().await;
    let mails_to_victim = smtp
        .mails()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == "victim@example.org"))
        .count();
    assert_eq!(mails_to_victim, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE destination = 'victim@example.org'")
            .await,
        1
    );

    // One address signing up many recipients is limited.
    let spammer = client_at(50);
    let (before, refusal) = until_limited(20, |n| {
        let (spammer, app) = (&spammer, &app);
        async move {
            register(
                spammer,
                app,
                &format!("spam{n}"),
                &format!("spam{n}@example.org"),
            )
            .await
        }
    })
    .await;
    assert_eq!(before, vec![200; 10]);
    assert_reference_limited(refusal).await;

    // A real sign-up from elsewhere gets its mail and its account.
    let token = herald::testkit::accounts::sign_up(
        &client_at(51),
        &app.address,
        &smtp,
        "hana",
        "hana@example.com",
        "hana's password",
    )
    .await;
    assert!(!token.is_empty());

    app.stop().await;
    env.cleanup().await;
}

/// 100 sign-ups at once: at most one argon2id hash per core runs at any moment (each holds
/// 19 MiB), the rest wait their turn or are told to come back (503 with `Retry-After`), and
/// nothing is stored for those.
async fn a_burst_of_sign_ups_hashes_one_password_per_core_at_most(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let client = reqwest::Client::new();
    let answers = futures_util::future::join_all((0..100).map(|n| {
        let (client, app) = (&client, &app);
        async move {
            let response = register(
                client,
                app,
                &format!("burst{n}"),
                &format!("burst{n}@example.org"),
            )
            .await;
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            (status, retry_after)
        }
    }))
    .await;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(app.hashing.size(), cores);
    assert_eq!(
        app.hashing.peak(),
        cores,
        "the hashing slots were all in use, and never more"
    );
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    for (status, retry_after) in &answers {
        match status {
            200 => {}
            503 => assert_eq!(
                retry_after.as_ref().map(|v| v.to_str().ok()),
                Some(Some("1"))
            ),
            other => panic!("a sign-up got {other}"),
        }
    }
    assert!(accepted > 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM signup_requests").await,
        accepted as i64
    );
    // Afterwards a sign-up goes through as ever.
    let response = register(&client, &app, "afterwards", "afterwards@example.org").await;
    assert_eq!(response.status().as_u16(), 200);
    app.stop().await;
    env.cleanup().await;
}

/// A password change and a reset hash through the same bounded slots as sign-ups and logins
/// (`HERALD_PASSWORD_HASHES`), and a guessed reset key costs no hash at all.
async fn password_changes_and_resets_hash_in_the_same_slots(env: TestEnv) {
    use crate::web_pages::{PageClient, link_path, sign_up_and_in, spooled_mail};
    let app = env.spawn(&[("HERALD_PASSWORD_HASHES", "1")]).await;
    assert_eq!(app.hashing.size(), 1);
    let mut browser = PageClient::new(&app);
    sign_up_and_in(
        &env,
        &mut browser,
        "mina",
        "mina@example.com",
        "mina's first",
    )
    .await;
    // The sign-up's hash and the sign-in's check.
    assert_eq!(app.hashing.runs(), 2);

    browser.get("/account").await;
    let changed = browser
        .post(
            "/account/password",
            &[
                ("current_password", "mina's first"),
                ("password", "mina's second"),
            ],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    // The current password's check and the new one's hash.
    assert_eq!(app.hashing.runs(), 4);

    let mut stranger = PageClient::new(&app);
    stranger.get("/forgot").await;
    for n in 0..20 {
        let guessed = stranger
            .post(
                &format!("/reset/guessed-key-{n}"),
                &[("password", "a stranger's password")],
            )
            .await;
        assert_eq!(guessed.status, 404, "{}", guessed.body);
    }
    assert_eq!(app.hashing.runs(), 4, "a guessed reset key costs no hash");

    let asked = stranger
        .post("/forgot", &[("email", "mina@example.com")])
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    let mail = spooled_mail(env.data_dir.path(), "mina@example.com", 1).await;
    let reset = link_path(&mail, "/reset/");
    stranger.get(&reset).await;
    let done = stranger.post(&reset, &[("password", "mina's third")]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(app.hashing.runs(), 5);
    assert_eq!(app.hashing.peak(), 1);
    app.stop().await;
    env.cleanup().await;
}

async fn guess_forwarded(
    client: &reqwest::Client,
    app: &TestApp,
    forwarded: &str,
    n: usize,
) -> Response {
    client
        .get(app.url("/api/v1/contacts"))
        .bearer_auth(format!("guess-{n}"))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .expect("request")
}

/// Behind a reverse proxy every request comes from the proxy: with `HERALD_TRUSTED_PROXIES`
/// the limits count the client the proxy names (the right-most untrusted `X-Forwarded-For`
/// entry); from anyone else the header is ignored.
async fn forwarded_addresses_count_only_behind_trusted_proxies(env: TestEnv) {
    let app = env
        .spawn(&[("HERALD_TRUSTED_PROXIES", "127.0.0.5/32")])
        .await;
    let proxy = client_at(5);

    // Guesses from 203.0.113.5 through the proxy are limited…
    let (before, refusal) = until_limited(20, |n| {
        let (proxy, app) = (&proxy, &app);
        async move { guess_forwarded(proxy, app, "203.0.113.5", n).await }
    })
    .await;
    assert_eq!(before, vec![401; 10]);
    assert_api_limited(refusal).await;
    // …also when the client writes another address in front of its own…
    assert_api_limited(guess_forwarded(&proxy, &app, "198.51.100.1, 203.0.113.5", 99).await).await;
    // …while another client behind the same proxy, and the operator, are served.
    assert_eq!(
        guess_forwarded(&proxy, &app, "203.0.113.6", 0)
            .await
            .status()
            .as_u16(),
        401
    );
    let operator = proxy
        .get(app.url("/api/v1/contacts"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("request");
    assert_eq!(operator.status().as_u16(), 200);

    // A client that is not a trusted proxy cannot pick its address with the header.
    let stranger = client_at(6);
    let (before, refusal) = until_limited(20, |n| {
        let (stranger, app) = (&stranger, &app);
        async move { guess_forwarded(stranger, app, &format!("192.0.2.{n}"), n).await }
    })
    .await;
    assert_eq!(before, vec![401; 10]);
    assert_api_limited(refusal).await;
    app.stop().await;
    env.cleanup().await;
}
