//! Building and running herald: storage, ids, channels, the HTTP server and the background
//! workers, side by side, with one cancellation token for a graceful stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channels::email::EmailChannel;
use crate::channels::telegram::TelegramChannel;
use crate::config::Settings;
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
    local_receiver: crate::outbox::LocalReceiver,
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
    webex: crate::connectors::webex::WebexState,
}

impl Features {
    /// Every route of the app, with the shared middleware.
    fn routes(&self) -> axum::Router {
        crate::http::serve_layers(
            axum::Router::new()
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
                .merge(crate::kb::http::router(self.kb.clone())),
        )
    }
}

/// Deliveries that may wait in memory for this node's worker; more go through the table.
const LOCAL_QUEUE_CAPACITY: usize = 2048;

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
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "could not create HERALD_DATA_DIR {}",
                settings.data_dir.display()
            )
        })?;
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

        let http = reqwest::Client::builder()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.delivery_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .context("could not build the HTTP client")?;

        let mut channels: HashMap<&'static str, Arc<dyn Channel>> = HashMap::new();
        match TelegramChannel::new(http.clone(), &settings.telegram) {
            Some(telegram) => {
                channels.insert("telegram", telegram);
            }
            None => tracing::info!("Telegram is disabled: HERALD_TELEGRAM_BOT_TOKEN is not set"),
        }
        match crate::channels::kakao::KakaoChannel::new(http.clone(), &settings.kakao) {
            Some(kakao) => {
                channels.insert("kakao", kakao);
            }
            None => tracing::info!(
                "Kakao notifications are disabled: HERALD_KAKAO_BOT_ID and HERALD_KAKAO_REST_KEY are not both set"
            ),
        }
        channels.insert(
            "kakao-callback",
            crate::channels::kakao::KakaoCallbackChannel::new(
                crate::channels::webhook::guarded_client(
                    settings.delivery_timeout,
                    settings.allow_private_targets,
                )
                .context("could not build the Kakao callback HTTP client")?,
            ),
        );
        match crate::channels::webex::WebexChannel::new(http.clone(), &settings.webex) {
            Some(webex) => {
                channels.insert("webex", webex);
            }
            None => tracing::info!("Webex is disabled: HERALD_WEBEX_BOT_TOKEN is not set"),
        }
        let email = EmailChannel::new(&settings)?;
        if email.is_spool() {
            tracing::info!(
                spool = %settings.data_dir.join("mail").display(),
                "HERALD_SMTP_URL is not set: e-mail is written to the spool folder instead of sent"
            );
        }
        channels.insert("email", email);
        let webhooks = crate::channels::webhook::WebhookChannel::new(
            db.clone(),
            settings.delivery_timeout,
            settings.allow_private_targets,
        )
        .context("could not build the webhook HTTP client")?;
        channels.insert("webhook", webhooks);

        let ids = Arc::new(IdGenerator::new(worker_id));
        let bus: Arc<dyn crate::chat::bus::Bus> =
            Arc::new(crate::chat::bus::InProcessBus::default());
        let bot_id = crate::accounts::ensure_bot_account(&db, &ids)
            .await
            .context("could not create the herald bot account")?;
        channels.insert(
            "chat",
            crate::channels::chat::ChatChannel::new(db.clone(), ids.clone(), bus.clone(), bot_id),
        );
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
        let (local_queue, local_receiver) = crate::outbox::LocalQueue::new(
            LOCAL_QUEUE_CAPACITY,
            crate::outbox::lease_for(settings.delivery_timeout),
        );
        let app = AppState::new(AppInner {
            local_queue,
            public_url: settings.public_url_for(address),
            github: GithubClient::new(
                http.clone(),
                &settings.github_api,
                settings.github_token.clone(),
            ),
            git: GitRemotes::new(&settings.data_dir),
            db,
            ids,
            http,
            outbox_wake: Arc::new(Notify::new()),
            metrics: crate::http::ops::metrics_handle(),
            operator_token_failures: crate::limits::WindowLimit::new(
                settings.admin_token_attempts_per_minute,
                Duration::from_secs(60),
            ),
            login_token_is_live: crate::accounts::is_live_token,
            settings,
        });
        let bot = crate::bot::Bot::new(app.clone(), kb.clone());
        let features = Features {
            accounts: crate::accounts::http::AccountsState::new(app.clone()),
            chat: crate::chat::ChatState {
                app: app.clone(),
                bus,
                sessions: Arc::default(),
                bot: bot.clone(),
                bot_account_id: bot_id,
            },
            kb: crate::kb::http::KbState {
                app: app.clone(),
                kb,
            },
            push: crate::push::PushState::new(app.clone()),
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
            local_receiver,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.features.app
    }

    /// The chat's state: its bus, its resumable sessions, the herald bot's account.
    pub fn chat(&self) -> &crate::chat::ChatState {
        &self.features.chat
    }

    /// This node's knowledge base (its search index over the database's documents).
    pub fn knowledge_base(&self) -> &Arc<crate::kb::KnowledgeBase> {
        &self.features.kb.kb
    }

    /// Serves until `shutdown` is cancelled, then stops taking requests, lets in-flight
    /// deliveries finish, and releases the node id.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            address,
            features,
            channels,
            lease_holder,
            local_receiver,
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
            wake: state.outbox_wake.clone(),
            retry_schedule: state.settings.retry_schedule.clone(),
            timeout: state.settings.delivery_timeout,
            concurrency: state.settings.delivery_concurrency,
            busy: Default::default(),
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
        tasks.spawn(crate::chat::bot::answer_missed(features.chat.clone()));
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
        if let Some(holder) = lease_holder.clone() {
            let db = state.db.clone();
            let worker_id = state.ids.worker_id();
            tasks.spawn(every(
                Duration::from_secs(30),
                shutdown.clone(),
                move || {
                    let (db, holder) = (db.clone(), holder.clone());
                    async move {
                        if let Err(error) = renew_node_id(&db, worker_id, &holder).await {
                            tracing::warn!(%error, "could not renew the node id lease");
                        }
                    }
                },
            ));
        }

        let app = features.routes();
        // Small frames (chat, webhook answers) must not wait for Nagle's algorithm.
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY");
                }
            });
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        if let Some(holder) = lease_holder {
            let _ = release_node_id(&state.db, state.ids.worker_id(), &holder).await;
        }
        state.db.close().await;
        tracing::info!("herald stopped");
        served.context("the HTTP server failed")
    }
}
