//! Building and running herald: storage, ids, channels, the HTTP server and the background
//! workers, side by side, with one cancellation token for a graceful stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::channels::email::EmailChannel;
use crate::channels::telegram::TelegramChannel;
use crate::channels::{ChannelMode, ChannelStatus};
use crate::config::Settings;
use crate::http::routes::{Registration, Routes};
use crate::ids::IdGenerator;
use crate::outbox::Channel;
use crate::outbox::worker::Dispatcher;
use crate::state::{AppInner, AppState};
use crate::store::{Db, lease_node_id, release_node_id, renew_node_id};
use crate::watch::github::GithubClient;
use crate::watch::gitremote::GitRemotes;

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    features: Features,
    channels: HashMap<&'static str, Arc<dyn Channel>>,
    /// Set when the worker id is leased (not configured), so it can be renewed and released.
    lease_holder: Option<String>,
    /// Cancelled when the node begins to stop; the sockets close on it.
    stopping: CancellationToken,
    local_receiver: crate::outbox::LocalReceiver,
    /// With `HERALD_REDIS_URL`: the Redis bus's tasks, and the users whose node was lost.
    bus_tasks: Option<(
        crate::chat::bus::redis::BusTasks,
        tokio::sync::mpsc::Receiver<i64>,
    )>,
    /// Stops the queue's cross-node tasks (wake-ups, hook slots' liveness) after the goodbye.
    cluster_stop: CancellationToken,
}

/// The shared infrastructure and each feature's state, built once: the composition root is
/// the one place that knows every feature.
#[derive(Clone)]
struct Features {
    app: AppState,
    accounts: crate::accounts::http::AccountsState,
    bot: crate::bot::Bot,
    chat: crate::chat::ChatState,
    kb: crate::kb::http::KbState,
    push: crate::push::PushState,
    schedules: crate::schedules::SchedulesState,
    digest: crate::digest::DigestState,
    web: crate::web::WebState,
    webex: crate::connectors::webex::WebexState,
}

impl Features {
    /// Every route of the app, with the shared middleware, and the registrations of the routes
    /// (which are in the OpenAPI document, which are not and why). The document is built here
    /// with the router and published for `GET /api/v1/openapi.json`.
    fn routes(&self) -> (axum::Router, Vec<Registration>) {
        let document = crate::http::openapi::Published::default();
        let routes = Routes::new()
            .merge(crate::http::openapi::router(document.clone()))
            .merge(crate::http::ops::router(self.app.clone()))
            .merge(crate::push::hooks::router(self.push.clone()))
            .merge(crate::contacts::reference::router(self.app.clone()))
            .merge(crate::contacts::api::router(self.app.clone()))
            .merge(crate::accounts::http::router(self.accounts.clone()))
            .merge(crate::bot::link::router(self.app.clone()))
            .merge(crate::connectors::kakao::router(self.bot.clone()))
            .merge(crate::connectors::plusfriend::router(self.bot.clone()))
            .merge(crate::connectors::telegram::router(self.bot.clone()))
            .merge(crate::connectors::webex::router(self.webex.clone()))
            .merge(crate::chat::socket::router(self.chat.clone()))
            .merge(crate::projects::api::router(self.app.clone()))
            .merge(crate::projects::pages::router(self.app.clone()))
            .merge(crate::kb::http::router(self.kb.clone()))
            .merge(crate::teams::api::router(crate::teams::api::TeamsState {
                app: self.app.clone(),
                scheduler_wake: self.schedules.wake.clone(),
            }))
            .merge(crate::schedules::api::router(self.schedules.clone()))
            .merge(crate::web::router(self.web.clone()));
        let (router, api, registrations) = routes.into_parts(crate::http::openapi::base());
        document.publish(&api);
        (
            crate::http::serve_layers(router, self.app.db.clone()),
            registrations,
        )
    }
}

/// Deliveries that may wait in memory for this node's worker; more go through the table.
const LOCAL_QUEUE_CAPACITY: usize = 2048;

/// How long a stopping node waits for its chat sockets' close handshakes (each has its own
/// shorter grace; this bounds them all).
const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(6);

/// Renews this node's lease every `HERALD_NODE_RENEW_INTERVAL` and, while it is live, takes
/// over the claims of nodes whose lease lapsed. A renewal that finds the row gone (this node
/// was taken for dead) registers the node again under a new id: its old claims are the
/// others' now, and it claims again only under the new one.
async fn keep_node_alive(state: AppState, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        match state.node.renew(&state.db).await {
            Ok(renewal) => {
                if failing {
                    tracing::info!("this node's lease is renewed again");
                    failing = false;
                }
                if let crate::node::Renewal::Registered { lapsed_id, new_id } = renewal {
                    tracing::warn!(
                        lapsed = lapsed_id,
                        node = new_id,
                        "this node's lease had lapsed, so its claims went to the other nodes; registered again under a new node id"
                    );
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        %error,
                        "could not renew this node's lease; it stops claiming when the lease lapses"
                    );
                    failing = true;
                }
            }
        }
        if state.node.is_live() {
            take_over_lapsed_nodes(&state).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(state.settings.node_renew_interval) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

/// Frees the claims of every node whose lease lapsed (each in one commit with the deletion of
/// its row, so one node takes each over) and wakes this node's delivery worker for them.
async fn take_over_lapsed_nodes(state: &AppState) {
    let now = crate::ids::now_ms();
    let lapsed = match crate::node::lapsed(&state.db, now).await {
        Ok(lapsed) => lapsed,
        Err(error) => {
            tracing::warn!(%error, "could not look for lapsed nodes");
            return;
        }
    };
    for node_id in lapsed {
        match take_over(state, node_id, now).await {
            Ok(Some((deliveries, checks))) => {
                metrics::counter!("herald_node_takeovers_total").increment(1);
                tracing::info!(
                    lapsed = node_id,
                    deliveries,
                    watch_checks = checks,
                    "took over the claims of a node whose lease lapsed"
                );
                if deliveries > 0 {
                    state.outbox_wake.notify_one();
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, lapsed = node_id, "could not take over a lapsed node's claims")
            }
        }
    }
}

/// One lapsed node's takeover: its row deleted, its deliveries freed, its recent watch checks
/// made due again, in one commit. `None` when another node did it first (or it renewed).
async fn take_over(
    state: &AppState,
    node_id: i64,
    now: i64,
) -> Result<Option<(u64, u64)>, crate::store::StoreError> {
    let mut tx = state.db.writer().begin().await?;
    let Some(lapsed) = crate::node::forget_lapsed(&mut tx, node_id, now).await? else {
        return Ok(None);
    };
    let deliveries = crate::outbox::free_claims_of(&mut tx, node_id, now).await?;
    let since = lapsed.renewed_at - crate::watch::LONGEST_CHECK.as_millis() as i64;
    let checks = crate::watch::recheck_claims_of(&mut tx, node_id, since, now).await?;
    tx.commit().await?;
    Ok(Some((deliveries, checks)))
}

/// A stopping node's goodbye: its row deleted and every delivery still leased to it freed (the
/// sends abandoned after the grace, anything handed over and not sent), in one commit, so that
/// the other nodes take them at once. If it fails, they do so when the lease lapses.
async fn say_goodbye(state: &AppState) {
    let result = async {
        let mut tx = state.db.writer().begin().await?;
        let freed =
            crate::outbox::free_claims_of(&mut tx, state.node.id(), crate::ids::now_ms()).await?;
        state.node.goodbye(&mut tx).await?;
        tx.commit().await?;
        Ok::<u64, crate::store::StoreError>(freed)
    }
    .await;
    match result {
        Ok(freed) => tracing::info!(
            node = state.node.id(),
            freed,
            "said goodbye: this node's lease is deleted and its unsent deliveries are free for the other nodes"
        ),
        Err(error) => tracing::warn!(
            %error,
            "could not say goodbye; the other nodes take over when this node's lease lapses"
        ),
    }
}

/// Connects to the database and applies migrations; what `herald migrate` does.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    Db::open(&settings.database_url, settings.into()).await
}

/// Runs `step` every `period` until `shutdown` is cancelled.
async fn every<F, Fut>(period: Duration, shutdown: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => break,
        }
        step().await;
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with_clock(settings, Arc::new(crate::clock::SystemClock)).await
    }

    /// [`Application::build`] with the clock that calendar-time features read (tests drive a
    /// `clock::ManualClock`).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "could not create HERALD_DATA_DIR {}",
                settings.data_dir.display()
            )
        })?;
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let db = open_database(&settings).await?;
        // The recorder is installed first, so that the start-up gauge is recorded.
        crate::http::ops::metrics_handle();
        db.announce_write_path();
        let (worker_id, lease_holder) = match settings.node_id {
            Some(id) => (id, None),
            None => {
                let holder = format!("{}-{}", std::process::id(), crate::ids::now_ms());
                let id = lease_node_id(&db, &holder)
                    .await
                    .context("could not lease a node id")?;
                (id, Some(holder))
            }
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("could not listen on HERALD_LISTEN={}", settings.listen))?;
        let address = listener.local_addr()?;
        let node = Arc::new(
            crate::node::NodeLease::register(
                &db,
                worker_id,
                lease_holder
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", std::process::id(), crate::ids::now_ms())),
                settings.public_url_for(address).to_string(),
                settings.node_lease,
            )
            .await
            .context("could not register this node in the database")?,
        );

        let http = reqwest::Client::builder()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.delivery_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .context("could not build the HTTP client")?;

        let mut channels: HashMap<&'static str, Arc<dyn Channel>> = HashMap::new();
        // Each channel's state, as decided here: logged, and shown on the operator's page.
        let mut channel_states = Vec::new();
        match TelegramChannel::new(http.clone(), &settings.telegram) {
            Some(telegram) => {
                channels.insert("telegram", telegram);
                channel_states.push(ChannelStatus::on("telegram"));
            }
            None => channel_states.push(ChannelStatus::off(
                "telegram",
                &["HERALD_TELEGRAM_BOT_TOKEN"],
            )),
        }
        match crate::channels::kakao::KakaoChannel::new(http.clone(), &settings.kakao) {
            Some(kakao) => {
                channels.insert("kakao", kakao);
                channel_states.push(ChannelStatus::on("kakao"));
            }
            None => channel_states.push(ChannelStatus::off(
                "kakao",
                &["HERALD_KAKAO_BOT_ID", "HERALD_KAKAO_REST_KEY"],
            )),
        }
        channels.insert(
            "kakao-callback",
            crate::channels::kakao::KakaoCallbackChannel::new(
                crate::channels::webhook::guarded_client(
                    settings.delivery_timeout,
                    settings.allow_private_targets,
                )
                .context("could not build the Kakao callback HTTP client")?,
                settings.allow_private_targets,
            ),
        );
        channel_states.push(ChannelStatus::on("kakao-callback"));
        match crate::channels::webex::WebexChannel::new(http.clone(), &settings.webex) {
            Some(webex) => {
                channels.insert("webex", webex);
                channel_states.push(ChannelStatus::on("webex"));
            }
            None => channel_states.push(ChannelStatus::off("webex", &["HERALD_WEBEX_BOT_TOKEN"])),
        }
        let email = EmailChannel::new(&settings)?;
        channel_states.push(if email.is_spool() {
            ChannelStatus {
                name: "email",
                mode: ChannelMode::Spool {
                    folder: settings.data_dir.join("mail"),
                },
            }
        } else {
            ChannelStatus::on("email")
        });
        channels.insert("email", email);
        // With Redis, the nodes share hooks' limits and wake each other's delivery workers
        // (one link for both); alone, each is this process's own.
        let cluster_stop = CancellationToken::new();
        let cluster_link = match &settings.redis_url {
            None => None,
            Some(url) => Some(Arc::new(
                crate::cluster::RedisLink::new(url.expose())
                    .context("HERALD_REDIS_URL is not a Redis URL")?,
            )),
        };
        let hook_limits = cluster_link.as_ref().map(|link| {
            let limits = crate::channels::hook_limits::SharedHookLimits::new(
                link.clone(),
                &settings.redis_prefix,
                node.clone(),
                crate::outbox::lease_for(settings.delivery_timeout),
            );
            tokio::spawn(
                limits
                    .clone()
                    .keep_alive(settings.node_renew_interval, cluster_stop.clone()),
            );
            limits
        });
        let outbox_wake = match &cluster_link {
            None => Arc::new(crate::outbox::wake::Wake::single_node()),
            Some(link) => crate::outbox::wake::Wake::across_nodes(
                link.clone(),
                &settings.redis_prefix,
                cluster_stop.clone(),
            ),
        };
        let webhooks = crate::channels::webhook::WebhookChannel::new(
            db.clone(),
            settings.delivery_timeout,
            settings.allow_private_targets,
            hook_limits,
        )
        .context("could not build the webhook HTTP client")?;
        channels.insert("webhook", webhooks);
        channel_states.push(ChannelStatus::on("webhook"));

        let ids = Arc::new(IdGenerator::new(worker_id));
        let readiness = Arc::new(crate::health::Readiness::default());
        let chat_limits = crate::chat::resume::ChatLimits::from_settings(&settings);
        let chat_sessions = Arc::new(crate::chat::resume::Sessions::default());
        let (bus, bus_tasks): (Arc<dyn crate::chat::bus::Bus>, _) = match &settings.redis_url {
            None => (
                Arc::new(crate::chat::bus::InProcessBus::new(
                    chat_limits,
                    chat_sessions.clone(),
                )),
                None,
            ),
            Some(url) => {
                let (bus, tasks, lost_users) = crate::chat::bus::redis::RedisBus::start(
                    url.expose(),
                    &settings.redis_prefix,
                    readiness.clone(),
                    chat_limits,
                    chat_sessions.budget().clone(),
                )?;
                (bus, Some((tasks, lost_users)))
            }
        };
        let bot_id = crate::accounts::ensure_bot_account(&db, &ids)
            .await
            .context("could not create the herald bot account")?;
        channels.insert(
            "chat",
            crate::channels::chat::ChatChannel::new(db.clone(), ids.clone(), bus.clone(), bot_id),
        );
        channel_states.push(ChannelStatus::on("chat"));
        for status in &channel_states {
            status.log();
        }
        if let Some(count) = crate::kb::sample::import_if_new(&db)
            .await
            .context("could not import the sample knowledge base")?
        {
            tracing::info!(
                documents = count,
                "the knowledge base was empty: imported the sample (replace it with `herald kb import --replace`)"
            );
        }
        let kb = Arc::new(
            crate::kb::KnowledgeBase::open(&settings.data_dir.join("kb-index"), &db)
                .await
                .context("could not open the knowledge-base index")?,
        );
        // With other nodes to take them, a node keeps in memory only what its worker can start
        // sending at once; the rest are queued unleased and wake the others (`outbox::wake`).
        let (local_queue, local_receiver) = match cluster_link {
            None => crate::outbox::LocalQueue::new(
                LOCAL_QUEUE_CAPACITY,
                crate::outbox::lease_for(settings.delivery_timeout),
                node.clone(),
            ),
            Some(_) => {
                let (queue, receiver) = crate::outbox::LocalQueue::new(
                    settings.delivery_concurrency,
                    crate::outbox::lease_for(settings.delivery_timeout),
                    node.clone(),
                );
                (queue.counting_sends(), receiver)
            }
        };
        let app = AppState::new(AppInner {
            local_queue,
            public_url: settings.public_url_for(address),
            github: GithubClient::new(
                http.clone(),
                &settings.github_api,
                settings.github_token.clone(),
            ),
            git: GitRemotes::new(&settings.data_dir, settings.allow_private_targets),
            db,
            ids,
            node,
            http,
            outbox_wake,
            metrics: crate::http::ops::metrics_handle(),
            clock,
            operator_token_failures: crate::limits::WindowLimit::new(
                settings.admin_token_attempts_per_minute,
                Duration::from_secs(60),
            ),
            login_token_is_live: crate::accounts::is_live_token,
            readiness,
            settings,
        });
        let bot = crate::bot::Bot::new(app.clone(), kb.clone());
        let digest = crate::digest::DigestState::new(app.clone());
        let accounts = crate::accounts::http::AccountsState::new(app.clone());
        let stopping = CancellationToken::new();
        let chat = crate::chat::ChatState {
            app: app.clone(),
            bus,
            sessions: chat_sessions,
            bot: bot.clone(),
            bot_account_id: bot_id,
            stopping: stopping.clone(),
            sockets: tokio_util::task::TaskTracker::new(),
        };
        let schedules = crate::schedules::SchedulesState::new(app.clone(), digest.wake.clone());
        let features = Features {
            web: crate::web::WebState {
                app: app.clone(),
                accounts: accounts.clone(),
                chat: chat.clone(),
                kb: kb.clone(),
                schedules_wake: schedules.wake.clone(),
                operator: Arc::new(crate::web::OperatorFacts {
                    channels: channel_states,
                }),
            },
            accounts,
            chat,
            kb: crate::kb::http::KbState {
                app: app.clone(),
                kb,
            },
            push: crate::push::PushState::new(app.clone(), digest.wake.clone()),
            schedules,
            digest,
            webex: crate::connectors::webex::WebexState::new(bot.clone()),
            bot,
            app,
        };
        Ok(Application {
            listener,
            address,
            features,
            channels,
            lease_holder,
            stopping,
            local_receiver,
            bus_tasks,
            cluster_stop,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.features.app
    }

    /// Every route the app serves: each is in the OpenAPI document or says why it is not
    /// (`http::routes`).
    pub fn registered_routes(&self) -> Vec<Registration> {
        self.features.routes().1
    }

    /// The chat's state: its bus, its resumable sessions, the herald bot's account.
    pub fn chat(&self) -> &crate::chat::ChatState {
        &self.features.chat
    }

    /// Password hashing for sign-ups and logins, with its bound.
    pub fn password_hashing(&self) -> Arc<crate::accounts::PasswordHashing> {
        self.features.accounts.hashing.clone()
    }

    /// This node's knowledge base (its search index over the database's documents).
    pub fn knowledge_base(&self) -> &Arc<crate::kb::KnowledgeBase> {
        &self.features.kb.kb
    }

    /// Serves until `shutdown` is cancelled, then stops: takes no more requests or claims,
    /// closes the chat sockets with 1012 (reconnect elsewhere), lets in-flight deliveries finish
    /// for `HERALD_SHUTDOWN_GRACE` and puts the rest back unsent, says goodbye (its row deleted
    /// and its claims freed in one commit, so other nodes take over at once), and releases the
    /// node id.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            address,
            features,
            channels,
            lease_holder,
            stopping,
            local_receiver,
            bus_tasks,
            cluster_stop,
        } = self;
        let state = features.app.clone();
        tracing::info!(
            url = %state.public_url,
            listen = %address,
            node = state.ids.worker_id(),
            backend = ?state.db.backend,
            "herald is running; open {}",
            state.public_url
        );
        let dispatcher = Arc::new(Dispatcher {
            db: state.db.clone(),
            ids: state.ids.clone(),
            channels,
            wake: state.outbox_wake.local(),
            retry_schedule: state.settings.retry_schedule.clone(),
            timeout: state.settings.delivery_timeout,
            concurrency: state.settings.delivery_concurrency,
            busy: Default::default(),
            node: state.node.clone(),
            shutdown_grace: state.settings.shutdown_grace,
            // With Redis, hooks' limits are the cluster's and a hook at its limit is common:
            // its deferred deliveries wait in memory rather than churn through the table.
            parking: state
                .settings
                .redis_url
                .is_some()
                .then(crate::outbox::worker::Parking::default),
            // The tables an attempt's outcome changes belong to these modules, not the queue.
            observers: vec![
                Arc::new(crate::projects::health::WebhookHealth),
                Arc::new(crate::contacts::GoneContacts),
            ],
        });
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(dispatcher.run(shutdown.clone(), local_receiver, state.local_queue.clone()));
        tasks.spawn(crate::push::poller::run(
            features.push.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::digest::worker::run(
            features.digest.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::chat::bot::answer_missed(features.chat.clone()));
        tasks.spawn(crate::schedules::scheduler::run(
            features.schedules.clone(),
            shutdown.clone(),
        ));
        let bus_tasks = bus_tasks.map(|(bus_tasks, lost_users)| {
            // Not in `tasks`: it ends when the bus stops, after the server.
            tokio::spawn(crate::chat::socket::announce_offline_from_lost_nodes(
                features.chat.clone(),
                lost_users,
            ));
            bus_tasks
        });
        if state.settings.telegram.bot_token.is_some() {
            tasks.spawn(crate::connectors::telegram::run(
                features.bot.clone(),
                shutdown.clone(),
            ));
        }
        if state.settings.webex.bot_token.is_some() {
            tasks.spawn(crate::connectors::webex::run(
                features.webex.clone(),
                shutdown.clone(),
            ));
        }
        if state.db.backend == crate::store::Backend::Sqlite {
            let db = state.db.clone();
            tasks.spawn(every(Duration::from_secs(1), shutdown.clone(), move || {
                let db = db.clone();
                async move {
                    if let Err(error) = db.checkpoint().await {
                        db.storage().note(&error);
                        tracing::warn!(%error, "SQLite checkpoint failed");
                    }
                }
            }));
        }
        if let Some(retention) = state.settings.delivery_retention {
            tasks.spawn(crate::outbox::retention::run(
                state.db.clone(),
                retention,
                shutdown.clone(),
            ));
        }
        tasks.spawn(crate::history::run(state.clone(), shutdown.clone()));
        if let Some(holder) = lease_holder.clone() {
            let db = state.db.clone();
            let worker_id = state.ids.worker_id();
            let stop = shutdown.clone();
            tasks.spawn(every(
                Duration::from_secs(30),
                shutdown.clone(),
                move || {
                    let (db, holder, stop) = (db.clone(), holder.clone(), stop.clone());
                    async move {
                        match renew_node_id(&db, worker_id, &holder).await {
                            Ok(true) => {}
                            // Fencing for ids: unreachable for the id's whole lease, the node
                            // may share its worker id with a newer node now. It stops (its
                            // supervisor restarts it with a fresh id) rather than mint more.
                            Ok(false) => {
                                tracing::error!(
                                    worker_id,
                                    "this node's worker id lease lapsed and may be another node's now; stopping so that no id is minted twice"
                                );
                                stop.cancel();
                            }
                            Err(error) => {
                                tracing::warn!(%error, "could not renew the node id lease")
                            }
                        }
                    }
                },
            ));
        }
        tasks.spawn(keep_node_alive(state.clone(), shutdown.clone()));
        // The sockets close as soon as the node begins to stop, beside the server's drain.
        tokio::spawn({
            let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
            async move {
                shutdown.cancelled().await;
                stopping.cancel();
            }
        });

        let (app, _) = features.routes();
        let limits = crate::http::serve::ConnectionLimits {
            header_read_timeout: state.settings.header_read_timeout,
            max_connections: state.settings.max_connections.unwrap_or_else(|| {
                crate::http::serve::derived_connection_cap(
                    crate::http::serve::current_open_file_limit(),
                )
            }),
            max_per_address: state.settings.max_connections_per_address,
            trusted_proxies: Arc::new(state.settings.trusted_proxies.clone()),
        };
        tracing::info!(
            trusted_proxies = limits.trusted_proxies.len(),
            max_connections = limits.max_connections,
            max_per_address = limits.max_per_address,
            header_read_timeout = ?limits.header_read_timeout,
            "taking connections"
        );
        let served = crate::http::serve::serve(listener, app, limits, shutdown.clone()).await;
        shutdown.cancel();
        stopping.cancel();
        state.node.stop_claiming();
        while tasks.join_next().await.is_some() {}
        say_goodbye(&state).await;
        // After the goodbye freed this node's rows: the others are woken for them, and its
        // hook slots' liveness key is deleted.
        state.outbox_wake.tell_others().await;
        cluster_stop.cancel();
        // The sockets' close frames, answered or not, within their own grace.
        features.chat.sockets.close();
        if tokio::time::timeout(SOCKETS_CLOSE_WITHIN, features.chat.sockets.wait())
            .await
            .is_err()
        {
            tracing::info!(
                open = features.chat.sockets.len(),
                "shutdown: some chat sockets had not finished closing"
            );
        }
        if let Some(bus_tasks) = bus_tasks {
            bus_tasks.stop().await;
        }
        if let Some(holder) = lease_holder {
            let _ = release_node_id(&state.db, state.ids.worker_id(), &holder).await;
        }
        state.db.close().await;
        tracing::info!("herald stopped");
        served.context("the HTTP server failed")
    }
}
