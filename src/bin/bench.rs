//! herald's benchmarks. Each scenario starts the release `herald` binary as its own process (so
//! its CPU and memory can be read from /proc), with local fakes of GitHub and Telegram served by
//! this process, and prints the figures that go into BENCHMARKS.md.
//!
//!     cargo build --release --bin herald-bench --bin herald
//!     target/release/herald-bench <scenario> [--backend postgres]
//!
//! This file is the command line and the dispatch; each scenario lives in its area's module
//! in `src/bin/bench/`, next to the shared set-up (`setup`), the reporting (`report`), the push
//! webhooks the load is made of (`push`) and the load generators' own client (`raw_client`).
//! A new scenario is a module there with a `clap::Args` struct and a function, declared in
//! `mod bench` below, with one variant of `Scenario` and one arm in `main`.

// A crate root looks for `mod x;` beside itself (src/bin/x.rs); the path on this inline module
// makes its modules' files src/bin/bench/x.rs instead.
#[path = "bench"]
// The load generators' own receivers are plain axum routers, not herald's routes (clippy.toml).
#[allow(clippy::disallowed_methods)]
mod bench {
    pub mod chat;
    pub mod chat_memory;
    pub mod cluster;
    pub mod delivery_latency;
    pub mod delivery_log;
    pub mod digest;
    pub mod kakao;
    pub mod kb;
    pub mod login;
    pub mod push;
    pub mod raw_client;
    pub mod relay;
    pub mod report;
    pub mod schedules;
    pub mod setup;
    pub mod signups;
    pub mod watch;
    pub mod webhooks;
}

use bench::{
    chat, chat_memory, cluster, delivery_latency, delivery_log, digest, kakao, kb, login, relay,
    schedules, setup, signups, watch, webhooks,
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "herald benchmarks (run against a release build)")]
struct Cli {
    #[command(flatten)]
    common: setup::Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Signed push webhook → fake Telegram received sendMessage, one push at a time.
    WebhookLatency(watch::WebhookLatency),
    /// Unchanged GitHub branches polled with conditional requests.
    GithubPolling(watch::GithubPolling),
    /// Unchanged local git remotes polled with ls-remote.
    GitPolling(watch::GitPolling),
    /// Sustained signed webhook deliveries/s: pushes in a closed loop, fanned out to N endpoints.
    WebhookThroughput(webhooks::WebhookThroughput),
    /// Enqueue → delivered latency at a fixed delivery rate, fanned out to N endpoints.
    DeliveryLatency(delivery_latency::DeliveryLatency),
    /// Idle authenticated chat sockets: memory per socket, CPU at rest with heartbeats.
    ChatSockets(chat::ChatSockets),
    /// Large DMs to one user with many sockets: herald's RSS growth (bounded by the chat's
    /// settings).
    ChatMemory(chat_memory::ChatMemory),
    /// DM sender → recipient latency at a fixed rate across pairs of friends.
    ChatLatency(chat::ChatLatency),
    /// argon2id password checks per second (what a login costs), with herald's parameters.
    Login(login::Login),
    /// `POST /kakao/skill` with a command reply under closed-loop load from this process (raw
    /// HTTP/1.1 keep-alive connections), next to a bare axum handler that only parses the
    /// SkillPayload and echoes it, measured the same way.
    KakaoSkill(kakao::KakaoSkill),
    /// (internal) The relay `delivery-latency --floor` measures.
    #[command(hide = true)]
    RelayServer(relay::RelayServer),
    /// (internal) The bare axum echo handler the kakao-skill scenario compares against.
    #[command(hide = true)]
    EchoServer(kakao::EchoServer),
    /// Knowledge search: import N generated Korean/English documents through the API, then
    /// search them one query at a time.
    KbSearch(kb::KbSearch),
    /// One push to a branch with many subscribers.
    Fanout(watch::Fanout),
    /// Scheduled announcements: N jobs, M of them due at each minute boundary — lag from due
    /// time to queued, and CPU between boundaries.
    Schedules(schedules::Schedules),
    /// The delivery-log page of a hook with 1,000,000 attempts: first page and filtered pages
    /// deep in the log, beside /healthz.
    DeliveryLog(delivery_log::DeliveryLog),
    /// Digests: N contacts with a digest due at the same instant, each with held pushes — time
    /// from the due time until every digest is queued, beside plain inserts of as many rows.
    Digest(digest::DigestScenario),
    /// N nodes on one PostgreSQL + Redis: signed deliveries/s with pushes spread over the nodes,
    /// and DM latency with sender and recipient on different nodes, with each part's CPU.
    Cluster(cluster::Cluster),
    /// Many sign-ups at once (argon2id and a mail to the spool each) while pairs of friends
    /// exchange DMs: herald's peak memory, and the DMs' latency during the burst beside the
    /// floor without it.
    Signups(signups::Signups),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let common = &cli.common;
    setup::print_machine();
    match &cli.scenario {
        Scenario::WebhookLatency(run) => watch::webhook_latency(common, run).await,
        Scenario::GithubPolling(run) => watch::github_polling(common, run).await,
        Scenario::GitPolling(run) => watch::git_polling(common, run).await,
        Scenario::WebhookThroughput(run) => webhooks::webhook_throughput(common, run).await,
        Scenario::DeliveryLatency(run) => delivery_latency::delivery_latency(common, run).await,
        Scenario::ChatSockets(run) => chat::chat_sockets(common, run).await,
        Scenario::ChatLatency(run) => chat::chat_latency(common, run).await,
        Scenario::ChatMemory(run) => chat_memory::chat_memory(common, run).await,
        Scenario::Login(run) => login::login_cost(run).await,
        Scenario::KakaoSkill(run) => kakao::kakao_skill(common, run).await,
        Scenario::RelayServer(run) => relay::relay_server(run).await,
        Scenario::EchoServer(run) => kakao::echo_server(run).await,
        Scenario::KbSearch(run) => kb::kb_search(common, run).await,
        Scenario::Fanout(run) => watch::fanout(common, run).await,
        Scenario::Schedules(run) => schedules::schedules(common, run).await,
        Scenario::DeliveryLog(run) => delivery_log::delivery_log(common, run).await,
        Scenario::Digest(run) => digest::digest(common, run).await,
        Scenario::Cluster(run) => cluster::cluster(common, run).await,
        Scenario::Signups(run) => signups::signups(common, run).await,
    }
}
