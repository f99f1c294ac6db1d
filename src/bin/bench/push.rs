//! Signed GitHub push webhooks for `octo/bench`, the events the watch and webhook scenarios
//! feed herald.

use herald::projects::signing::github_signature;
use serde_json::json;

use super::setup::{Herald, SECRET};

/// A made-up commit id.
pub fn random_sha() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A push of one commit `after` on top of `before` to `main`, as GitHub sends it.
pub fn push_body(before: &str, after: &str, title: &str) -> String {
    json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "created": false, "deleted": false, "forced": false,
        "compare": format!("https://github.com/octo/bench/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [{
            "id": after, "message": title, "timestamp": "2026-11-22T10:00:00+09:00",
            "url": format!("https://github.com/octo/bench/commit/{after}"),
            "author": {"name": "Bench", "email": "bench@example.com", "username": "bench"},
            "committer": {"name": "Bench", "email": "bench@example.com", "username": "bench"},
            "added": ["src/lib.rs"], "removed": [], "modified": []
        }],
        "repository": {"full_name": "octo/bench", "html_url": "https://github.com/octo/bench",
                       "clone_url": "https://github.com/octo/bench.git"},
        "pusher": {"name": "bench", "email": "bench@example.com"}
    })
    .to_string()
}

/// Sends a push webhook with reqwest, signed with the bench's secret.
pub async fn send_push(herald: &Herald, delivery: &str, body: String) -> reqwest::Response {
    herald
        .client
        .post(format!("{}/hooks/github", herald.url))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            github_signature(SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("webhook")
}

/// A signed push webhook as raw HTTP/1.1 bytes, for the generators that write pre-built
/// requests to their own sockets.
pub fn push_request(address: std::net::SocketAddr, delivery: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /hooks/github HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n{body}",
        github_signature(SECRET, body.as_bytes()),
        body.len()
    )
    .into_bytes()
}
