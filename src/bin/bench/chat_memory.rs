//! Memory under a burst of large DMs to one user with many sockets: herald's RSS growth.
//!
//! Before the chat's logs were bounded in bytes, 1,000 DMs of about 16 KB to one user with 21
//! open sockets grew herald by about half a gigabyte: every socket's session kept its own
//! numbered copy of the last 1,000 frames. Now a frame's text is shared by the sessions it goes
//! to and every session log is bounded by `HERALD_WS_RESUME_BYTES` (and all of them by
//! `HERALD_WS_RESUME_TOTAL_BYTES`), so the growth is bounded by the settings whatever the burst.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::chat::{bench_account, chat_socket};
use super::setup::{Common, Herald};

#[derive(clap::Args)]
pub struct ChatMemory {
    /// Sockets the receiving user has open (all authenticated, all reading).
    #[arg(long, default_value_t = 21)]
    sockets: usize,
    /// DMs sent to that user in all.
    #[arg(long, default_value_t = 1000)]
    dms: usize,
    /// Friends sending them, each at the per-socket frame limit.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// HERALD_WS_RESUME_BYTES for the run (herald's default if unset).
    #[arg(long)]
    resume_bytes: Option<String>,
    /// HERALD_WS_RESUME_TOTAL_BYTES for the run (herald's default if unset).
    #[arg(long)]
    resume_total_bytes: Option<String>,
}

/// About 16 KB of text in the 4,000 characters a message may have: four bytes each.
fn content(sender: usize, index: usize) -> String {
    format!("{sender}:{index}:{}", "😀".repeat(3990))
}

pub async fn chat_memory(common: &Common, options: &ChatMemory) {
    let smtp = herald::testkit::fake_smtp::FakeSmtp::start().await;
    let mut env = vec![("HERALD_SMTP_URL", smtp.url.clone())];
    if let Some(bytes) = &options.resume_bytes {
        env.push(("HERALD_WS_RESUME_BYTES", bytes.clone()));
    }
    if let Some(bytes) = &options.resume_total_bytes {
        env.push(("HERALD_WS_RESUME_TOTAL_BYTES", bytes.clone()));
    }
    let herald = Herald::start(common, &env).await;
    let url = format!("{}/ws", herald.url.replace("http://", "ws://"));
    let target = bench_account(&herald, &smtp, "target").await;
    let mut senders = Vec::new();
    for n in 0..options.senders {
        senders.push(bench_account(&herald, &smtp, &format!("sender{n}")).await);
    }

    // Friendships the protocol's way: each sender asks, the target accepts.
    let (mut inbox, target_auth) = chat_socket(&url, &target).await;
    let target_id = id(&target_auth["self_user"]);
    let mut sockets = Vec::new();
    for (n, token) in senders.iter().enumerate() {
        let (mut ws, auth) = chat_socket(&url, token).await;
        send(
            &mut ws,
            json!({"type": "mutual_users", "payload": {"type": "request", "name": "target"}}),
        )
        .await;
        next_of(&mut inbox, "mutual_users").await;
        send(&mut inbox, json!({"type": "mutual_users", "payload": {"type": "response", "name": format!("sender{n}")}})).await;
        next_of(&mut ws, "mutual_users").await;
        sockets.push((ws, id(&auth["self_user"])));
    }
    drop(inbox);

    // The receiving user's sockets, each reading and counting its DMs.
    let per_sender = options.dms / options.senders.max(1);
    let expected = per_sender * options.senders;
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..options.sockets {
        let (mut ws, _) = chat_socket(&url, &target).await;
        readers.spawn(async move {
            let mut got = 0;
            while got < expected {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                        if frame["type"] == json!("chat") {
                            got += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break,
                }
            }
            (got, ws)
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, rss_before) = herald.usage();

    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for (n, (mut ws, my_id)) in sockets.into_iter().enumerate() {
        let chat_id = herald::chat::dm_chat_id(my_id, target_id).to_string();
        writers.spawn(async move {
            // 18 frames a second keeps under the per-socket limit of 20, heartbeats included.
            let mut pace = tokio::time::interval(Duration::from_millis(55));
            for index in 0..per_sender {
                pace.tick().await;
                if index % 20 == 19 {
                    send(&mut ws, json!({"type": "heartbeat", "payload": index})).await;
                }
                send(&mut ws, json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id, "content": content(n, index)}})).await;
            }
            ws
        });
    }
    let mut peak = rss_before;
    let mut finished = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while !readers.is_empty() {
        tokio::select! {
            _ = ticker.tick() => peak = peak.max(herald.usage().1),
            done = readers.join_next() => if let Some(Ok(result)) = done {
                finished.push(result);
            },
        }
    }
    let elapsed = started.elapsed();
    let (_, rss_after) = herald.usage();
    peak = peak.max(rss_after);
    let complete = finished.iter().filter(|(got, _)| *got == expected).count();
    writers.abort_all();
    println!(
        "backend: {:?}; {expected} DMs of {} bytes to one user with {} sockets in {:.1} s; {complete} sockets got all",
        common.backend,
        content(0, 0).len(),
        options.sockets,
        elapsed.as_secs_f64()
    );
    println!(
        "herald RSS: {} MiB before, peak {} MiB (+{} MiB), {} MiB after (+{} MiB); resume bytes per session {}, total {}",
        rss_before / 1024,
        peak / 1024,
        peak.saturating_sub(rss_before) / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) / 1024,
        options.resume_bytes.as_deref().unwrap_or("default"),
        options.resume_total_bytes.as_deref().unwrap_or("default"),
    );
}

fn id(user: &Value) -> i64 {
    user["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a user id")
}

async fn send(ws: &mut super::chat::Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send a frame");
}

/// Reads until a frame of type `kind` comes.
async fn next_of(ws: &mut super::chat::Ws, kind: &str) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                if frame["type"] == json!(kind) {
                    return frame;
                }
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => panic!("the socket closed while waiting for {kind}"),
        }
    }
}
