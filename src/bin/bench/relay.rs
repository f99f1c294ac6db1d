//! The floor of `delivery-latency --floor`: herald's HTTP path without its database or queue,
//! run as a process of its own (the hidden `relay-server` scenario) so that it is measured the
//! way herald is.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::setup::{SECRET, start_server_process};

#[derive(clap::Args)]
pub struct RelayServer {
    #[arg(long)]
    port: u16,
    /// The receiver's base URL; the relay sends to `{receiver}/hook/0` … `/hook/{endpoints-1}`.
    #[arg(long)]
    receiver: String,
    #[arg(long)]
    endpoints: usize,
}

/// Starts the relay for `endpoints` endpoints of `receiver`; returns it and its address.
pub async fn start_relay(
    receiver: &str,
    endpoints: usize,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let endpoints = endpoints.to_string();
    start_server_process(
        "relay-server",
        &["--receiver", receiver, "--endpoints", &endpoints],
    )
    .await
}

/// herald's HTTP path without its database or queue: checks a push's GitHub signature, parses
/// it, answers 202 and sends it to every endpoint at once, signed both ways, through herald's
/// hook client (`delivery-latency --floor`).
pub async fn relay_server(run: &RelayServer) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use herald::channels::webhook::signed_headers;
    use herald::projects::signing::github_signature;
    #[derive(Clone)]
    struct Relay {
        client: Arc<herald::channels::hook_client::HookClient>,
        targets: Arc<Vec<Uri>>,
        next_id: Arc<std::sync::atomic::AtomicI64>,
    }
    async fn push(
        State(relay): State<Relay>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let signed = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok());
        if signed != Some(github_signature(SECRET, &body).as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(event) if event["after"].is_string() => {}
            _ => return StatusCode::BAD_REQUEST,
        }
        for target in relay.targets.iter() {
            let (client, target, body) = (relay.client.clone(), target.clone(), body.clone());
            let id = relay
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let headers = signed_headers(SECRET, id, 0, "push", &body);
                let _ = client.post(&target, headers, body, 4096).await;
            });
        }
        StatusCode::ACCEPTED
    }
    let relay = Relay {
        client: Arc::new(
            herald::channels::hook_client::HookClient::new(Duration::from_secs(15), true)
                .expect("hook client"),
        ),
        targets: Arc::new(
            (0..run.endpoints)
                .map(|n| {
                    format!("{}/hook/{n}", run.receiver)
                        .parse()
                        .expect("receiver URL")
                })
                .collect(),
        ),
        next_id: Arc::default(),
    };
    let router = axum::Router::new()
        .route("/hooks/github", axum::routing::post(push))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", run.port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}
