//! Area D, the bot: `POST /kakao/skill` under closed-loop load, next to a bare axum handler that
//! only parses the SkillPayload and echoes it (the hidden `echo-server` scenario), each in a
//! process of its own and loaded the same way.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::raw_client::http_load;
use super::report::describe;
use super::setup::{Common, Herald, start_server_process};

#[derive(clap::Args)]
pub struct KakaoSkill {
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct Kakao users the requests come from.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value = "도움말")]
    text: String,
}

#[derive(clap::Args)]
pub struct EchoServer {
    #[arg(long)]
    port: u16,
}

/// A realistic SkillPayload from `user` saying `text`, as raw HTTP/1.1 bytes.
fn skill_request(host: &str, user: &str, text: &str) -> Vec<u8> {
    let body = json!({
        "intent": {"id": "block", "name": "fallback"},
        "userRequest": {"timezone": "Asia/Seoul", "params": {}, "block": {"id": "block", "name": "fallback"},
                        "utterance": text, "lang": "ko",
                        "user": {"id": user, "type": "botUserKey", "properties": {"botUserKey": user}}},
        "bot": {"id": "bench-bot", "name": "herald"},
        "action": {"id": "skill", "name": "herald", "params": {}, "detailParams": {}, "clientExtra": {}}
    })
    .to_string();
    format!(
        "POST /kakao/skill HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub async fn echo_server(run: &EchoServer) {
    let port = run.port;
    async fn echo(axum::Json(payload): axum::Json<Value>) -> axum::Json<Value> {
        let text = payload["userRequest"]["utterance"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        axum::Json(
            json!({"version": "2.0", "template": {"outputs": [{"simpleText": {"text": text}}]}}),
        )
    }
    let router = axum::Router::new().route("/kakao/skill", axum::routing::post(echo));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}

pub async fn kakao_skill(common: &Common, run: &KakaoSkill) {
    let KakaoSkill {
        connections,
        seconds,
        users,
        ref text,
    } = *run;
    let report = |name: &str, ok: u64, failed: u64, latencies: Vec<Duration>, cpu: Option<f64>| {
        println!(
            "{name}: {:.0} req/s ({ok} answered 200, {failed} other) over {seconds} s with {connections} connections{}",
            ok as f64 / seconds as f64,
            cpu.map(|c| format!(", server CPU {:.0} %", c * 100.0 / seconds as f64))
                .unwrap_or_default()
        );
        describe(name, latencies);
    };
    // The bare handler first, in its own process like herald.
    let (mut echo, echo_address) = start_server_process("echo-server", &[]).await;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..users)
            .map(|u| skill_request(&echo_address.to_string(), &format!("bench-user-{u}"), text))
            .collect(),
    );
    http_load(
        echo_address,
        requests.clone(),
        connections,
        Duration::from_secs(2),
    )
    .await;
    let (ok, failed, latencies) = http_load(
        echo_address,
        requests,
        connections,
        Duration::from_secs(seconds),
    )
    .await;
    report("bare axum echo", ok, failed, latencies, None);
    let _ = echo.kill().await;

    let herald = Herald::start(common, &[]).await;
    let address = herald.address();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..users)
            .map(|u| skill_request(&address.to_string(), &format!("bench-user-{u}"), text))
            .collect(),
    );
    // Warm-up: every user talks once (creating its contact), then a short closed loop.
    http_load(
        address,
        requests.clone(),
        connections.min(users),
        Duration::from_secs(3),
    )
    .await;
    let (cpu_before, _) = herald.usage();
    let (ok, failed, latencies) =
        http_load(address, requests, connections, Duration::from_secs(seconds)).await;
    let (cpu_after, rss) = herald.usage();
    report(
        &format!("herald /kakao/skill {text:?}"),
        ok,
        failed,
        latencies,
        Some(cpu_after - cpu_before),
    );
    println!("herald RSS {} MiB", rss / 1024);
}
