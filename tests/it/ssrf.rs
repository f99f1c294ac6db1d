//! Issue 25, blind SSRF: with private targets not allowed (the default), no address a user
//! chooses — a git remote (the default-branch lookup included), a webhook, a Kakao callback —
//! makes herald send anything to an internal address, whatever its spelling, and no answer
//! says what an internal name resolves to.
//!
//! The internal name is this machine's own host name, which resolves to one of its own
//! addresses from the hosts file (no resolver is touched); a listener on every interface
//! counts whatever reaches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    repositories_at_internal_addresses_are_never_contacted,
    hooks_and_callbacks_at_internal_addresses_are_refused_once,
);

const PRIVATE_OFF: (&str, &str) = ("HERALD_ALLOW_PRIVATE_TARGETS", "false");

/// A listener on every interface that counts the connections made to it.
struct Trap {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Trap {
    async fn start() -> Trap {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind the trap");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Trap { port, connections }
    }

    fn reached(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// This machine's host name, after checking that it resolves only to addresses herald must
/// not call (its own, from the hosts file).
async fn internal_name() -> (String, Vec<String>) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string();
    let addresses: Vec<String> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .expect("the host name resolves")
        .map(|a| a.ip().to_string())
        .collect();
    assert!(!addresses.is_empty());
    for address in &addresses {
        let ip: std::net::IpAddr = address.parse().expect("ip");
        assert!(
            !herald::netguard::is_public_ip(ip),
            "{name} resolves to the public {ip}; this test needs a host name that resolves to a local address"
        );
    }
    (name, addresses)
}

fn skill_payload(user: &str, text: &str, callback: Option<&str>) -> Value {
    let mut payload = json!({
        "userRequest": {
            "utterance": text,
            "lang": "en",
            "user": {"id": user, "type": "botUserKey", "properties": {}}
        },
    });
    if let Some(url) = callback {
        payload["userRequest"]["callbackUrl"] = json!(url);
    }
    payload
}

async fn skill_text(app: &TestApp, user: &str, text: &str) -> String {
    let response = app
        .client
        .post(app.url("/kakao/skill"))
        .json(&skill_payload(user, text, None))
        .send()
        .await
        .expect("skill request");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["template"]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["simpleText"]["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_reveals_nothing(text: &str, addresses: &[String]) {
    for address in addresses {
        assert!(
            !text.contains(address.as_str()),
            "{text:?} reveals {address}"
        );
    }
    assert!(!text.contains("127.0.0.1"), "{text:?}");
}

async fn repositories_at_internal_addresses_are_never_contacted(env: TestEnv) {
    let trap = Trap::start().await;
    let (name, addresses) = internal_name().await;
    let app = env.spawn(&[PRIVATE_OFF]).await;
    let port = trap.port;

    // The default-branch lookup (no branch given) and a named branch, through the bot.
    for text in [
        format!("commits http://{name}:{port}/team/app.git"),
        format!("commits http://{name}:{port}/team/app.git main"),
        format!("subscribe http://{name}:{port}/team/app.git"),
    ] {
        let answer = skill_text(&app, "ssrf-user", &text).await;
        assert_reveals_nothing(&answer, &addresses);
    }
    // Other spellings of loopback are loopback.
    for spelling in [
        format!("http://2130706433:{port}/x.git"),
        format!("http://0x7f.1:{port}/x.git"),
        format!("http://0177.0.0.1:{port}/x.git"),
        format!("http://%31%32%37.0.0.1:{port}/x.git"),
        format!("http://[::ffff:127.0.0.1]:{port}/x.git"),
    ] {
        let answer = skill_text(&app, "ssrf-user", &format!("commits {spelling} main")).await;
        assert!(
            answer.contains("HERALD_ALLOW_PRIVATE_TARGETS"),
            "{spelling}: {answer}"
        );
    }

    // A project without `branches` (the default-branch lookup), and one with.
    for branches in [None, Some("main")] {
        let mut body = json!({"owner": "ops", "name": "app", "repository": format!("http://{name}:{port}/team/app.git")});
        if let Some(branches) = branches {
            body["branches"] = json!(branches);
        }
        let (status, answer) = app
            .admin(Method::POST, "/api/v1/projects", Some(body))
            .await;
        assert!((400..500).contains(&status), "{status} {answer}");
        assert_reveals_nothing(&answer.to_string(), &addresses);
    }

    // The reference API: refused without saying what the name resolves to.
    let (_, answer) = app
        .post_reference(
            json!({"id": "42", "fav_repository": format!("http://{name}:{port}/team/app.git"), "nick_name": "x", "type": "telegram", "branch": "main"})
                .to_string(),
        )
        .await;
    assert_ne!(answer["code"], json!(200), "{answer}");
    let text = answer.to_string();
    assert_reveals_nothing(&text, &addresses);
    assert!(text.contains("HERALD_ALLOW_PRIVATE_TARGETS"), "{text}");

    assert_eq!(trap.reached(), 0, "nothing may reach the internal address");
    assert_eq!(app.count("SELECT COUNT(*) FROM repositories").await, 0);
    app.stop().await;
    env.cleanup().await;
}

async fn hooks_and_callbacks_at_internal_addresses_are_refused_once(env: TestEnv) {
    let trap = Trap::start().await;
    let (name, addresses) = internal_name().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = env
        .spawn(&[
            PRIVATE_OFF,
            ("HERALD_GITHUB_API", github.base_url.as_str()),
            ("HERALD_DELIVERY_TIMEOUT", "10s"),
        ])
        .await;
    let port = trap.port;

    let (status, project) = app
        .admin(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"owner": "ops", "name": "hello", "repository": "octo/hello", "branches": "main"})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    for (url, by_name) in [
        (format!("http://{name}:{port}/hook"), true),
        (format!("http://2130706433:{port}/hook"), false),
        (format!("http://[64:ff9b::7f00:1]:{port}/hook"), false),
        (format!("http://[::127.0.0.1]:{port}/hook"), false),
        (format!("http://[fec0::1]:{port}/hook"), false),
    ] {
        let (status, answer) = app
            .admin(
                Method::POST,
                "/api/v1/projects/ops/hello/webhooks",
                Some(json!({"payload_url": url})),
            )
            .await;
        assert_eq!(status, 422, "{url}: {answer}");
        let text = answer.to_string();
        assert!(text.contains("HERALD_ALLOW_PRIVATE_TARGETS"), "{text}");
        if by_name {
            assert_reveals_nothing(&text, &addresses);
        }
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);

    // A slow command's answer is posted to the callback URL, which names the internal host:
    // refused when it is sent, and not retried (the refusal cannot change).
    github.set_delay(std::time::Duration::from_millis(2500));
    let callback = format!("http://{name}:{port}/callback/cb1");
    let response = app
        .client
        .post(app.url("/kakao/skill"))
        .json(&skill_payload(
            "callback-user",
            "commits octo/hello main",
            Some(&callback),
        ))
        .send()
        .await
        .expect("skill request");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["useCallback"], true, "{body}");
    wait_until("the refused callback to fail", WAIT, || async {
        app.count("SELECT COUNT(*) FROM deliveries WHERE channel = 'kakao-callback' AND status = 'failed'")
            .await
            == 1
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.channel = 'kakao-callback'")
            .await,
        1,
        "a refused callback is tried once"
    );
    assert_eq!(trap.reached(), 0, "nothing may reach the internal address");
    app.stop().await;
    env.cleanup().await;
}
