//! Settings, in layers: defaults, then an optional `herald.toml`, then `HERALD_*` environment
//! variables. Every value is parsed and validated here, once, so the rest of herald only ever sees
//! typed settings; an unknown or malformed setting is a start-up error that names it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// A string that never prints: tokens, passwords, shared secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every setting herald understands, with its default and a one-line meaning. The names are part
/// of herald's interface (SPEC §0); `herald check-config` prints this table with the values in use.
///
/// This table is the only place a default is written: a setting that is not given takes the
/// default here ([`Settings::from_map`]), and a test checks that the README's settings table
/// shows each one. An empty default means unset; the defaults of [`DERIVED_DEFAULTS`] describe
/// a value made from other settings (`http://<listen>`) and are documentation only.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    ("HERALD_LISTEN", "127.0.0.1:8080", "address to bind"),
    (
        "HERALD_PUBLIC_URL",
        "http://<listen>",
        "external base URL used in links",
    ),
    (
        "HERALD_DATA_DIR",
        "./herald-data",
        "SQLite file, git caches, mail spool",
    ),
    (
        "HERALD_DATABASE_URL",
        "sqlite://<data dir>/herald.db",
        "sqlite://… or postgres://…",
    ),
    (
        "HERALD_REDIS_URL",
        "",
        "Redis for what nodes share (chat bus, hooks' limits, delivery wake-ups); unset = single node",
    ),
    (
        "HERALD_REDIS_PREFIX",
        "herald",
        "prefix of every Redis key and channel herald uses",
    ),
    (
        "HERALD_NODE_ID",
        "",
        "snowflake worker id 0..1023; unset = leased from the database",
    ),
    (
        "HERALD_POLL_INTERVAL",
        "1m",
        "how often each watched branch is checked",
    ),
    (
        "HERALD_GITHUB_API",
        "https://api.github.com",
        "GitHub REST base URL",
    ),
    ("HERALD_GITHUB_TOKEN", "", "optional GitHub token"),
    (
        "HERALD_GIT_WEBHOOK_SECRET",
        "",
        "secret for inbound push webhooks",
    ),
    (
        "HERALD_TELEGRAM_API",
        "https://api.telegram.org",
        "Telegram Bot API base URL",
    ),
    (
        "HERALD_TELEGRAM_BOT_TOKEN",
        "",
        "Telegram bot token; unset = Telegram disabled",
    ),
    (
        "HERALD_TELEGRAM_WEBHOOK_SECRET",
        "",
        "Telegram secret_token for inbound updates",
    ),
    (
        "HERALD_TELEGRAM_RATE",
        "30",
        "Telegram messages per second, all chats together",
    ),
    (
        "HERALD_TELEGRAM_CHAT_RATE",
        "1",
        "Telegram messages per second to one chat",
    ),
    (
        "HERALD_KAKAO_API",
        "https://bot-api.kakao.com",
        "Kakao bot API base URL",
    ),
    ("HERALD_KAKAO_BOT_ID", "", "Kakao bot id"),
    (
        "HERALD_KAKAO_REST_KEY",
        "",
        "Kakao REST key for the Event API",
    ),
    (
        "HERALD_KAKAO_EVENT_NAME",
        "herald_notification",
        "the Event API event (block) that carries herald's notifications",
    ),
    (
        "HERALD_KAKAO_SKILL_SECRET",
        "",
        "secret in the skill URL (/kakao/skill/<secret>) and plus-friend base URL (/kakao/plusfriend/<secret>); unset = Kakao requests unauthenticated",
    ),
    (
        "HERALD_KAKAO_ALLOWED_IPS",
        "",
        "addresses or CIDR networks the legacy /plusfriend/* requests may come from, comma-separated",
    ),
    (
        "HERALD_WEBEX_API",
        "https://webexapis.com/v1",
        "Webex API base URL",
    ),
    ("HERALD_WEBEX_BOT_TOKEN", "", "Webex bot token"),
    ("HERALD_WEBEX_WEBHOOK_SECRET", "", "Webex webhook secret"),
    (
        "HERALD_SMTP_URL",
        "",
        "smtp://user:pass@host:port or smtps://…; unset = mail spool",
    ),
    (
        "HERALD_MAIL_FROM",
        "herald <herald@localhost>",
        "sender address",
    ),
    (
        "HERALD_RETRY_SCHEDULE",
        "5s,5m,30m,2h,5h,10h,10h",
        "delays between delivery retries",
    ),
    (
        "HERALD_DELIVERY_TIMEOUT",
        "15s",
        "how long one outgoing delivery may take",
    ),
    (
        "HERALD_DELIVERY_RETENTION",
        "30d",
        "how long finished deliveries and their attempt log are kept (`forever` = never pruned)",
    ),
    (
        "HERALD_PUSH_HISTORY_RETENTION",
        "30d",
        "how long accepted pushes and the commits seen on each branch are kept (`forever` = never pruned)",
    ),
    (
        "HERALD_SCHEDULE_HISTORY_RETENTION",
        "90d",
        "how long scheduled announcements' runs and teams' morning records are kept (`forever` = never pruned)",
    ),
    (
        "HERALD_DELIVERY_CONCURRENCY",
        "64",
        "outgoing deliveries in flight per node",
    ),
    (
        "HERALD_NODE_LEASE",
        "3s",
        "how long a node counts as live after its last renewal; then others take its claims over",
    ),
    (
        "HERALD_NODE_RENEW_INTERVAL",
        "1s",
        "how often a node renews its lease and looks for lapsed nodes (less than HERALD_NODE_LEASE)",
    ),
    (
        "HERALD_SHUTDOWN_GRACE",
        "5s",
        "at a graceful stop, how long sends in flight may finish before they are put back unsent",
    ),
    (
        "HERALD_ALLOW_PRIVATE_TARGETS",
        "false",
        "allow loopback/private targets and local remotes",
    ),
    (
        "HERALD_ADMIN_TOKEN",
        "",
        "bootstrap operator bearer token; unset = none",
    ),
    ("HERALD_LOG_FORMAT", "text", "text or json"),
    (
        "HERALD_WS_HEARTBEAT_TIMEOUT",
        "45s",
        "close a chat socket silent this long (40 s + 5 s grace)",
    ),
    (
        "HERALD_WS_BACKLOG_BYTES",
        "4MiB",
        "close a chat socket as too slow when this much waits to be written to it",
    ),
    (
        "HERALD_WS_RESUME_BYTES",
        "8MiB",
        "frames kept per chat session for resume",
    ),
    (
        "HERALD_WS_RESUME_TOTAL_BYTES",
        "256MiB",
        "frames kept for resume by all chat sessions of a node",
    ),
    (
        "HERALD_WS_SOCKETS_PER_ACCOUNT",
        "32",
        "live chat sockets per account",
    ),
    (
        "HERALD_WS_DETACHED_PER_ACCOUNT",
        "16",
        "dropped chat sessions kept for resume per account",
    ),
    (
        "HERALD_TRUSTED_PROXIES",
        "",
        "addresses or CIDR networks of reverse proxies whose X-Forwarded-For names the client",
    ),
    (
        "HERALD_HEADER_READ_TIMEOUT",
        "10s",
        "close a connection that sends no complete request head this long after connecting or after its last answer",
    ),
    (
        "HERALD_MAX_CONNECTIONS",
        "auto",
        "open connections in total (auto = the open-file limit minus a quarter for everything else)",
    ),
    (
        "HERALD_MAX_CONNECTIONS_PER_ADDRESS",
        "256",
        "open connections from one client address (IPv6: one /64)",
    ),
    (
        "HERALD_LOGIN_ATTEMPTS_PER_MINUTE",
        "30",
        "failed logins allowed per client address per minute",
    ),
    (
        "HERALD_ADMIN_TOKEN_ATTEMPTS_PER_MINUTE",
        "10",
        "wrong operator tokens allowed per client address per minute",
    ),
    (
        "HERALD_SIGNUPS_PER_MINUTE",
        "10",
        "sign-ups allowed per client address per minute",
    ),
    (
        "HERALD_PASSWORD_HASHES",
        "auto",
        "password hashes (argon2id: sign-ups, logins, password changes) run at once; more wait up to 3 s, then get 503 (auto = one per core)",
    ),
    (
        "HERALD_SIGNUP_MAIL_INTERVAL",
        "5m",
        "at most one sign-up verification mail per recipient this often",
    ),
    (
        "HERALD_SQLITE_BATCHED_LOG",
        "false",
        "write each SQLite commit's log frames with one system call (experimental: loses acknowledged commits on a full disk, docs/full-disk-findings.md)",
    ),
];

/// Settings whose default is made from other settings; [`SETTINGS`] describes it in words.
const DERIVED_DEFAULTS: &[&str] = &["HERALD_PUBLIC_URL", "HERALD_DATABASE_URL"];

/// Settings that exist only to pick the file; they are read before the file is.
const META_SETTINGS: &[&str] = &["HERALD_CONFIG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("unknown setting {name} (see `herald check-config` for the list)")]
    Unknown { name: String },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

fn invalid(name: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub api: Url,
    pub bot_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    /// Messages per second across all chats.
    pub rate_per_second: u32,
    /// Messages per second to one chat.
    pub chat_rate_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct KakaoSettings {
    pub api: Url,
    pub bot_id: Option<String>,
    pub rest_key: Option<Secret>,
    /// The event name of the Open Builder block that shows `{{#event.data.text}}`.
    pub event_name: String,
    /// When set, the skill answers only at `/kakao/skill/<secret>` and the plus-friend API only
    /// under `/kakao/plusfriend/<secret>/`.
    pub skill_secret: Option<Secret>,
    /// When not empty, the legacy plus-friend requests are taken only from these networks.
    pub allowed_ips: Vec<ipnet::IpNet>,
}

impl KakaoSettings {
    /// Whether Kakao's inbound routes take requests from anyone (neither a secret nor an
    /// allow-list is set): anyone can then speak for any Kakao user.
    pub fn is_unauthenticated(&self) -> bool {
        self.skill_secret.is_none() && self.allowed_ips.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct WebexSettings {
    pub api: Url,
    pub bot_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None` means "derive from the bound address", which matters when listening on port 0.
    pub public_url: Option<Url>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<Secret>,
    /// Prefix of herald's Redis keys and channels, so that several clusters (or tests) can share
    /// one Redis.
    pub redis_prefix: String,
    pub node_id: Option<u16>,
    pub poll_interval: Duration,
    pub github_api: Url,
    pub github_token: Option<Secret>,
    pub git_webhook_secret: Option<Secret>,
    pub telegram: TelegramSettings,
    pub kakao: KakaoSettings,
    pub webex: WebexSettings,
    pub smtp_url: Option<Secret>,
    pub mail_from: String,
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub delivery_concurrency: usize,
    /// How long finished deliveries (with their attempts and stored payloads) and inbound
    /// delivery ids are kept; `None` keeps them forever.
    pub delivery_retention: Option<Duration>,
    /// How long a node counts as live after its last renewal (`node`).
    pub node_lease: Duration,
    /// How often a node renews its lease and takes lapsed nodes' claims over.
    pub node_renew_interval: Duration,
    /// At a graceful stop, how long sends in flight may still finish.
    pub shutdown_grace: Duration,
    /// How long `push_events` and `seen_commits` rows are kept; `None` keeps them forever.
    pub push_history_retention: Option<Duration>,
    /// How long `schedule_runs` and `team_mornings` rows are kept (by due time); `None` keeps
    /// them forever.
    pub schedule_history_retention: Option<Duration>,
    pub allow_private_targets: bool,
    pub admin_token: Option<Secret>,
    pub log_format: LogFormat,
    pub ws_heartbeat_timeout: Duration,
    /// Bytes queued for a chat socket and not yet written, past which it is closed as too slow.
    pub ws_backlog_bytes: usize,
    pub ws_resume_bytes: usize,
    pub ws_resume_total_bytes: usize,
    pub ws_sockets_per_account: usize,
    pub ws_detached_per_account: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed (`http::auth::forwarded_client`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub header_read_timeout: Duration,
    /// `None`: derived from the open-file limit at start (`http::serve`).
    pub max_connections: Option<usize>,
    pub max_connections_per_address: usize,
    pub login_attempts_per_minute: u32,
    pub admin_token_attempts_per_minute: u32,
    pub signups_per_minute: u32,
    pub signup_mail_interval: Duration,
    /// How many password hashes may run at once (`accounts::PasswordHashing`); `None`: one per
    /// core.
    pub password_hashes: Option<usize>,
    /// On SQLite in a file, the writer's log goes through the batching VFS (`store/walbatch.rs`).
    pub sqlite_batched_log: bool,
}

impl Settings {
    /// Reads the layers the way the binary does: `HERALD_CONFIG` or `config_path` names an
    /// optional TOML file; the process environment overrides it.
    pub fn load(config_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(key, _)| key.starts_with("HERALD_"))
            .collect();
        let path = config_path
            .map(Path::to_path_buf)
            .or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
        let mut raw = BTreeMap::new();
        match path {
            Some(path) => raw.extend(read_toml_file(&path, true)?),
            None => raw.extend(read_toml_file(Path::new("herald.toml"), false)?),
        }
        raw.extend(env);
        Settings::from_map(raw)
    }

    /// Builds settings from `HERALD_*` names to raw strings; anything missing takes its default.
    pub fn from_map(mut raw: BTreeMap<String, String>) -> Result<Settings, ConfigError> {
        for meta in META_SETTINGS {
            raw.remove(*meta);
        }
        for name in raw.keys() {
            if !SETTINGS.iter().any(|(known, _, _)| known == name) {
                return Err(ConfigError::Unknown { name: name.clone() });
            }
        }
        // An empty value means "unset", as in most .env files.
        raw.retain(|_, value| !value.trim().is_empty());
        let get = |name: &str| {
            raw.get(name)
                .map(|value| value.trim().to_string())
                .or_else(|| default_of(name).map(str::to_string))
        };

        let listen: SocketAddr = parse_setting(&get, "HERALD_LISTEN", |v| {
            v.parse()
                .map_err(|e| format!("{e} (expected host:port, e.g. 127.0.0.1:8080)"))
        })?;
        let public_url = get("HERALD_PUBLIC_URL")
            .map(|v| parse_url("HERALD_PUBLIC_URL", &v))
            .transpose()?;
        let data_dir = PathBuf::from(get("HERALD_DATA_DIR").unwrap_or_default());
        let database_url = match get("HERALD_DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("sqlite:")
                    || url.starts_with("postgres:")
                    || url.starts_with("postgresql:"))
                {
                    return Err(invalid(
                        "HERALD_DATABASE_URL",
                        "must start with sqlite: or postgres://",
                    ));
                }
                url
            }
            None => format!("sqlite://{}", data_dir.join("herald.db").display()),
        };
        let redis_url = get("HERALD_REDIS_URL").map(|v| {
            if v.starts_with("redis://") {
                Ok(Secret::new(v))
            } else if v.starts_with("rediss://") {
                // The Redis client is built without TLS, which would bring a second crypto
                // provider's choice into the build; refused here rather than at connect time.
                Err(invalid(
                    "HERALD_REDIS_URL",
                    "rediss:// (TLS) is not supported yet; use redis:// (a private network or a TLS tunnel)",
                ))
            } else {
                Err(invalid("HERALD_REDIS_URL", "must start with redis://"))
            }
        });
        let redis_url = redis_url.transpose()?;
        let redis_prefix = parse_setting(&get, "HERALD_REDIS_PREFIX", |v| {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.:".contains(c);
            if !v.is_empty() && v.len() <= 64 && v.chars().all(allowed) {
                Ok(v.to_string())
            } else {
                Err("must be 1 to 64 letters, digits, _ - . or :".to_string())
            }
        })?;
        let node_id = get("HERALD_NODE_ID")
            .map(|v| match v.parse::<u16>() {
                Ok(id) if id < 1024 => Ok(id),
                _ => Err(invalid(
                    "HERALD_NODE_ID",
                    "must be a whole number from 0 to 1023",
                )),
            })
            .transpose()?;
        let poll_interval = parse_setting(&get, "HERALD_POLL_INTERVAL", parse_duration)?;
        if poll_interval.is_zero() {
            return Err(invalid("HERALD_POLL_INTERVAL", "must be longer than zero"));
        }
        let url = |name: &str| -> Result<Url, ConfigError> {
            parse_url(name, &get(name).unwrap_or_default())
        };
        let secret = |name: &str| get(name).map(Secret::new);
        let rate = |name: &str| -> Result<u32, ConfigError> {
            parse_setting(&get, name, |v| match v.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err("must be a whole number above zero".to_string()),
            })
        };

        let retry_schedule = parse_setting(&get, "HERALD_RETRY_SCHEDULE", |v| {
            v.split(',')
                .map(|part| parse_duration(part.trim()))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let delivery_concurrency = parse_setting(&get, "HERALD_DELIVERY_CONCURRENCY", |v| {
            match v.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => Ok(n),
                _ => Err("must be a whole number from 1 to 10000".to_string()),
            }
        })?;
        let retention = |v: &str| {
            if v.eq_ignore_ascii_case("forever") {
                return Ok(None);
            }
            match parse_duration(v)? {
                d if d.is_zero() => Err("must be longer than zero, or forever".to_string()),
                d => Ok(Some(d)),
            }
        };
        let delivery_retention = parse_setting(&get, "HERALD_DELIVERY_RETENTION", retention)?;
        let push_history_retention =
            parse_setting(&get, "HERALD_PUSH_HISTORY_RETENTION", retention)?;
        let schedule_history_retention =
            parse_setting(&get, "HERALD_SCHEDULE_HISTORY_RETENTION", retention)?;
        let positive = |name: &str| -> Result<Duration, ConfigError> {
            parse_setting(&get, name, |v| match parse_duration(v)? {
                d if d.is_zero() => Err("must be longer than zero".to_string()),
                d => Ok(d),
            })
        };
        let node_lease = positive("HERALD_NODE_LEASE")?;
        let node_renew_interval = positive("HERALD_NODE_RENEW_INTERVAL")?;
        // A lease must survive at least one missed renewal, or a node lapses between two
        // renewals that both succeed.
        if node_renew_interval * 2 > node_lease {
            return Err(invalid(
                "HERALD_NODE_RENEW_INTERVAL",
                "must be at most half of HERALD_NODE_LEASE",
            ));
        }
        let shutdown_grace = parse_setting(&get, "HERALD_SHUTDOWN_GRACE", parse_duration)?;
        let allow_private_targets =
            parse_setting(&get, "HERALD_ALLOW_PRIVATE_TARGETS", parse_bool)?;
        let sqlite_batched_log = parse_setting(&get, "HERALD_SQLITE_BATCHED_LOG", parse_bool)?;
        let ws_backlog_bytes = parse_setting(&get, "HERALD_WS_BACKLOG_BYTES", parse_bytes)?;
        let ws_resume_bytes = parse_setting(&get, "HERALD_WS_RESUME_BYTES", parse_bytes)?;
        let ws_resume_total_bytes =
            parse_setting(&get, "HERALD_WS_RESUME_TOTAL_BYTES", parse_bytes)?;
        // A socket must be closed as too slow before its session's log drops frames it has not
        // written, or a client that resumes would be told 410 where it could have caught up.
        if ws_backlog_bytes >= ws_resume_bytes {
            return Err(invalid(
                "HERALD_WS_BACKLOG_BYTES",
                "must be less than HERALD_WS_RESUME_BYTES",
            ));
        }
        if ws_resume_bytes > ws_resume_total_bytes {
            return Err(invalid(
                "HERALD_WS_RESUME_BYTES",
                "must not be more than HERALD_WS_RESUME_TOTAL_BYTES",
            ));
        }
        let per_account = |name: &str| -> Result<usize, ConfigError> {
            parse_setting(&get, name, |v| match v.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                _ => Err("must be a whole number from 1 to 100000".to_string()),
            })
        };
        let header_read_timeout =
            parse_setting(&get, "HERALD_HEADER_READ_TIMEOUT", parse_duration)?;
        if header_read_timeout.is_zero() {
            return Err(invalid(
                "HERALD_HEADER_READ_TIMEOUT",
                "must be longer than zero",
            ));
        }
        let connections = |v: &str| match v.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err("must be a whole number from 1 to 1000000".to_string()),
        };
        let max_connections = parse_setting(&get, "HERALD_MAX_CONNECTIONS", |v| {
            if v.eq_ignore_ascii_case("auto") {
                Ok(None)
            } else {
                connections(v)
                    .map(Some)
                    .map_err(|e| format!("{e}, or auto"))
            }
        })?;
        let max_connections_per_address =
            parse_setting(&get, "HERALD_MAX_CONNECTIONS_PER_ADDRESS", connections)?;
        let password_hashes = parse_setting(&get, "HERALD_PASSWORD_HASHES", |v| {
            if v.eq_ignore_ascii_case("auto") {
                return Ok(None);
            }
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err("must be a whole number above zero, or auto".to_string()),
            }
        })?;
        let log_format = parse_setting(&get, "HERALD_LOG_FORMAT", |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be text or json".to_string()),
        })?;

        Ok(Settings {
            listen,
            public_url,
            data_dir,
            database_url,
            redis_url,
            redis_prefix,
            node_id,
            poll_interval,
            github_api: url("HERALD_GITHUB_API")?,
            github_token: secret("HERALD_GITHUB_TOKEN"),
            git_webhook_secret: secret("HERALD_GIT_WEBHOOK_SECRET"),
            telegram: TelegramSettings {
                api: url("HERALD_TELEGRAM_API")?,
                bot_token: secret("HERALD_TELEGRAM_BOT_TOKEN"),
                webhook_secret: secret("HERALD_TELEGRAM_WEBHOOK_SECRET"),
                rate_per_second: rate("HERALD_TELEGRAM_RATE")?,
                chat_rate_per_second: rate("HERALD_TELEGRAM_CHAT_RATE")?,
            },
            kakao: KakaoSettings {
                api: url("HERALD_KAKAO_API")?,
                bot_id: get("HERALD_KAKAO_BOT_ID"),
                rest_key: secret("HERALD_KAKAO_REST_KEY"),
                event_name: get("HERALD_KAKAO_EVENT_NAME").unwrap_or_default(),
                skill_secret: get("HERALD_KAKAO_SKILL_SECRET")
                    .map(|v| parse_path_secret("HERALD_KAKAO_SKILL_SECRET", &v))
                    .transpose()?,
                allowed_ips: get("HERALD_KAKAO_ALLOWED_IPS")
                    .map(|v| parse_networks("HERALD_KAKAO_ALLOWED_IPS", &v))
                    .transpose()?
                    .unwrap_or_default(),
            },
            webex: WebexSettings {
                api: url("HERALD_WEBEX_API")?,
                bot_token: secret("HERALD_WEBEX_BOT_TOKEN"),
                webhook_secret: secret("HERALD_WEBEX_WEBHOOK_SECRET"),
            },
            smtp_url: get("HERALD_SMTP_URL")
                .map(|v| {
                    if v.starts_with("smtp://") || v.starts_with("smtps://") {
                        Ok(Secret::new(v))
                    } else {
                        Err(invalid(
                            "HERALD_SMTP_URL",
                            "must start with smtp:// or smtps://",
                        ))
                    }
                })
                .transpose()?,
            mail_from: get("HERALD_MAIL_FROM").unwrap_or_default(),
            retry_schedule,
            delivery_timeout: parse_setting(&get, "HERALD_DELIVERY_TIMEOUT", parse_duration)?,
            delivery_concurrency,
            delivery_retention,
            node_lease,
            node_renew_interval,
            shutdown_grace,
            push_history_retention,
            schedule_history_retention,
            allow_private_targets,
            admin_token: secret("HERALD_ADMIN_TOKEN"),
            log_format,
            ws_heartbeat_timeout: parse_setting(
                &get,
                "HERALD_WS_HEARTBEAT_TIMEOUT",
                parse_duration,
            )?,
            ws_backlog_bytes,
            ws_resume_bytes,
            ws_resume_total_bytes,
            ws_sockets_per_account: per_account("HERALD_WS_SOCKETS_PER_ACCOUNT")?,
            ws_detached_per_account: per_account("HERALD_WS_DETACHED_PER_ACCOUNT")?,
            trusted_proxies: get("HERALD_TRUSTED_PROXIES")
                .map(|v| parse_networks("HERALD_TRUSTED_PROXIES", &v))
                .transpose()?
                .unwrap_or_default(),
            header_read_timeout,
            max_connections,
            max_connections_per_address,
            login_attempts_per_minute: rate("HERALD_LOGIN_ATTEMPTS_PER_MINUTE")?,
            admin_token_attempts_per_minute: rate("HERALD_ADMIN_TOKEN_ATTEMPTS_PER_MINUTE")?,
            signups_per_minute: rate("HERALD_SIGNUPS_PER_MINUTE")?,
            signup_mail_interval: parse_setting(
                &get,
                "HERALD_SIGNUP_MAIL_INTERVAL",
                parse_duration,
            )?,
            password_hashes,
            sqlite_batched_log,
        })
    }

    /// The base URL for links: the configured one, or one made from the address actually bound.
    pub fn public_url_for(&self, bound: SocketAddr) -> Url {
        match &self.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{bound}")).unwrap_or_else(|_| {
                // A SocketAddr always formats as a valid authority; this branch is unreachable.
                Url::parse("http://127.0.0.1:8080").expect("static URL")
            }),
        }
    }

    /// Lines for `herald check-config`: every setting with its effective value, secrets hidden.
    pub fn describe(&self) -> Vec<(String, String)> {
        let hide = |s: &Option<Secret>| match s {
            Some(_) => "(set)".to_string(),
            None => "(unset)".to_string(),
        };
        let show = |s: &Option<String>| s.clone().unwrap_or("(unset)".into());
        vec![
            ("HERALD_LISTEN".into(), self.listen.to_string()),
            (
                "HERALD_PUBLIC_URL".into(),
                self.public_url_for(self.listen).to_string(),
            ),
            (
                "HERALD_DATA_DIR".into(),
                self.data_dir.display().to_string(),
            ),
            ("HERALD_DATABASE_URL".into(), redact_url(&self.database_url)),
            ("HERALD_REDIS_URL".into(), hide(&self.redis_url)),
            ("HERALD_REDIS_PREFIX".into(), self.redis_prefix.clone()),
            (
                "HERALD_NODE_ID".into(),
                self.node_id
                    .map(|n| n.to_string())
                    .unwrap_or("(leased)".into()),
            ),
            (
                "HERALD_POLL_INTERVAL".into(),
                humantime::format_duration(self.poll_interval).to_string(),
            ),
            ("HERALD_GITHUB_API".into(), self.github_api.to_string()),
            ("HERALD_GITHUB_TOKEN".into(), hide(&self.github_token)),
            (
                "HERALD_GIT_WEBHOOK_SECRET".into(),
                hide(&self.git_webhook_secret),
            ),
            ("HERALD_TELEGRAM_API".into(), self.telegram.api.to_string()),
            (
                "HERALD_TELEGRAM_BOT_TOKEN".into(),
                hide(&self.telegram.bot_token),
            ),
            (
                "HERALD_TELEGRAM_RATE".into(),
                self.telegram.rate_per_second.to_string(),
            ),
            (
                "HERALD_TELEGRAM_CHAT_RATE".into(),
                self.telegram.chat_rate_per_second.to_string(),
            ),
            ("HERALD_KAKAO_BOT_ID".into(), show(&self.kakao.bot_id)),
            (
                "HERALD_KAKAO_SKILL_SECRET".into(),
                hide(&self.kakao.skill_secret),
            ),
            (
                "HERALD_KAKAO_ALLOWED_IPS".into(),
                show_networks(&self.kakao.allowed_ips),
            ),
            ("HERALD_WEBEX_BOT_TOKEN".into(), hide(&self.webex.bot_token)),
            ("HERALD_SMTP_URL".into(), hide(&self.smtp_url)),
            ("HERALD_MAIL_FROM".into(), self.mail_from.clone()),
            (
                "HERALD_RETRY_SCHEDULE".into(),
                self.retry_schedule
                    .iter()
                    .map(|d| humantime::format_duration(*d).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "HERALD_DELIVERY_RETENTION".into(),
                self.delivery_retention.map_or("forever".into(), |d| {
                    humantime::format_duration(d).to_string()
                }),
            ),
            (
                "HERALD_NODE_LEASE".into(),
                humantime::format_duration(self.node_lease).to_string(),
            ),
            (
                "HERALD_NODE_RENEW_INTERVAL".into(),
                humantime::format_duration(self.node_renew_interval).to_string(),
            ),
            (
                "HERALD_SHUTDOWN_GRACE".into(),
                humantime::format_duration(self.shutdown_grace).to_string(),
            ),
            (
                "HERALD_PUSH_HISTORY_RETENTION".into(),
                self.push_history_retention.map_or("forever".into(), |d| {
                    humantime::format_duration(d).to_string()
                }),
            ),
            (
                "HERALD_SCHEDULE_HISTORY_RETENTION".into(),
                self.schedule_history_retention
                    .map_or("forever".into(), |d| {
                        humantime::format_duration(d).to_string()
                    }),
            ),
            (
                "HERALD_ALLOW_PRIVATE_TARGETS".into(),
                self.allow_private_targets.to_string(),
            ),
            ("HERALD_ADMIN_TOKEN".into(), hide(&self.admin_token)),
            (
                "HERALD_SQLITE_BATCHED_LOG".into(),
                self.sqlite_batched_log.to_string(),
            ),
            (
                "HERALD_TRUSTED_PROXIES".into(),
                show_networks(&self.trusted_proxies),
            ),
            (
                "HERALD_HEADER_READ_TIMEOUT".into(),
                humantime::format_duration(self.header_read_timeout).to_string(),
            ),
            (
                "HERALD_MAX_CONNECTIONS".into(),
                self.max_connections
                    .map_or("auto".into(), |n| n.to_string()),
            ),
            (
                "HERALD_MAX_CONNECTIONS_PER_ADDRESS".into(),
                self.max_connections_per_address.to_string(),
            ),
            (
                "HERALD_PASSWORD_HASHES".into(),
                self.password_hashes
                    .map_or("auto".into(), |n| n.to_string()),
            ),
        ]
    }
}

fn show_networks(networks: &[ipnet::IpNet]) -> String {
    if networks.is_empty() {
        return "(unset)".into();
    }
    networks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Settings {
    /// What the operator should know about these settings before herald takes traffic:
    /// `herald check-config` prints it, and start-up logs each as a warning.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.kakao.is_unauthenticated() {
            warnings.push(
                "Kakao requests are unauthenticated: anyone who can reach /kakao/skill or \
                 /plusfriend/* can act as any Kakao user (read their subscriptions, link their \
                 identity to another account, stop their notifications). Set \
                 HERALD_KAKAO_SKILL_SECRET (and HERALD_KAKAO_ALLOWED_IPS for the legacy \
                 plus-friend API); see docs/bot.md."
                    .to_string(),
            );
        }
        warnings
    }
}

/// One finding of [`Settings::cluster_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterFinding {
    /// What a cluster node needs and this one has.
    Ok(String),
    /// What stops this node from working as one of several.
    Problem(String),
    /// What the operator should see to, which herald cannot check from one node.
    Advice(String),
}

impl Settings {
    /// Whether this node is set up to run as one of several (SPEC §0: same PostgreSQL, same
    /// Redis, behind a load balancer). Without `HERALD_REDIS_URL` the node is a single node
    /// and only that is said.
    pub fn cluster_check(&self) -> Vec<ClusterFinding> {
        use ClusterFinding::{Advice, Ok, Problem};
        let mut findings = Vec::new();
        if self.redis_url.is_none() {
            findings.push(Advice(
                "single node: HERALD_REDIS_URL is unset, so chat frames stay on this node. For a \
                 cluster, set HERALD_REDIS_URL (the same Redis) and HERALD_DATABASE_URL (the same \
                 PostgreSQL) on every node."
                    .into(),
            ));
            return findings;
        }
        findings.push(Ok(
            "HERALD_REDIS_URL is set: chat frames, presence and resumable sessions go through Redis"
                .into(),
        ));
        if self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
        {
            findings.push(Ok("HERALD_DATABASE_URL is PostgreSQL".into()));
        } else {
            findings.push(Problem(
                "HERALD_DATABASE_URL is not PostgreSQL: every node would have its own SQLite file \
                 and see other rows. Point all nodes at one postgres://… database."
                    .into(),
            ));
        }
        match &self.public_url {
            Some(url) => findings.push(Ok(format!(
                "HERALD_PUBLIC_URL is {url}: links, mails and webhook registrations name it"
            ))),
            None => findings.push(Problem(format!(
                "HERALD_PUBLIC_URL is unset: links, mails and webhook registrations would name \
                 this node ({}) instead of the load balancer. Set it to the address people use, \
                 the same on every node.",
                self.public_url_for(self.listen)
            ))),
        }
        if self.trusted_proxies.is_empty() {
            findings.push(Advice(
                "HERALD_TRUSTED_PROXIES is unset: behind a load balancer every request seems to \
                 come from it, so per-client limits (logins, sign-ups, connections per address) \
                 count all clients together. Set it to the balancer's address."
                    .into(),
            ));
        } else {
            findings.push(Ok(format!(
                "HERALD_TRUSTED_PROXIES is {}: clients are told apart behind them",
                show_networks(&self.trusted_proxies)
            )));
        }
        findings.push(Advice(match self.node_id {
            Some(id) => format!(
                "HERALD_NODE_ID is {id}: it must differ on every node (or leave it unset to \
                 lease one from the database)"
            ),
            None => "HERALD_NODE_ID is unset: each node leases its own worker id".into(),
        }));
        findings.push(Advice(format!(
            "every node needs the same HERALD_REDIS_PREFIX (here {:?}) and its own \
             HERALD_DATA_DIR (here {}; the search index is per node); the load balancer must \
             pass WebSocket upgrades on /ws (see deploy/)",
            self.redis_prefix,
            self.data_dir.display()
        )));
        findings
    }
}

fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The default of a setting as [`SETTINGS`] gives it, when it is a value (not unset, not
/// derived from other settings).
pub fn default_of(name: &str) -> Option<&'static str> {
    if DERIVED_DEFAULTS.contains(&name) {
        return None;
    }
    SETTINGS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map(|(_, default, _)| *default)
        .filter(|default| !default.is_empty())
}

/// Parses a setting that has a default (given, or from [`SETTINGS`]).
fn parse_setting<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let value = get(name).unwrap_or_default();
    parse(&value).map_err(|reason| invalid(name, format!("{value:?}: {reason}")))
}

/// A secret that is written into a URL path: long enough not to be guessed, and only characters
/// that need no encoding in a path segment.
fn parse_path_secret(name: &str, value: &str) -> Result<Secret, ConfigError> {
    let ok = (16..=200).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(invalid(
            name,
            "must be 16 to 200 letters, digits, '-' or '_' (it goes into a URL), e.g. the output of `openssl rand -hex 24`",
        ));
    }
    Ok(Secret::new(value))
}

/// A comma-separated list of addresses (`192.0.2.7`) and networks (`192.0.2.0/24`, `2001:db8::/32`).
pub fn parse_networks(name: &str, value: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    invalid(
                        name,
                        format!("{part:?} is not an address or a network (e.g. 192.0.2.0/24)"),
                    )
                })
        })
        .collect()
}

fn parse_url(name: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| invalid(name, format!("{value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(name, format!("{value:?}: must be an http(s) URL")));
    }
    Ok(url)
}

pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (expected e.g. 30s, 5m, 2h)"))
}

/// A size in bytes: a whole number, optionally with `KiB`, `MiB` or `GiB`.
fn parse_bytes(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err("expected bytes, e.g. 65536, 512KiB, 8MiB or 1GiB".to_string()),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| "expected bytes above zero, e.g. 65536, 512KiB, 8MiB or 1GiB".to_string())
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_string()),
    }
}

/// Reads a flat TOML file whose keys are setting names without the `HERALD_` prefix, in any
/// case (`listen = "0.0.0.0:8080"`, `telegram_bot_token = "…"`).
fn read_toml_file(path: &Path, required: bool) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(file_error(e.to_string())),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let mut raw = BTreeMap::new();
    for (key, value) in table {
        let name = format!("HERALD_{}", key.to_ascii_uppercase());
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => return Err(file_error(format!("{key}: expected a plain value"))),
        };
        raw.insert(name, value);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's settings table lists every setting, one row each, with its true default
    /// (`[`value`]`, or `[unset…` when there is none), and nothing that is not a setting.
    #[test]
    fn the_readme_lists_every_setting_with_its_default() {
        let readme = include_str!("../README.md");
        let rows: Vec<&str> = readme
            .lines()
            .filter(|line| line.starts_with("| `HERALD_"))
            .collect();
        for (name, default, _) in SETTINGS {
            let prefix = format!("| `{name}` |");
            let row = rows
                .iter()
                .find(|row| row.starts_with(&prefix))
                .unwrap_or_else(|| panic!("README's settings table has no row for {name}"));
            if default.is_empty() {
                assert!(row.contains("[unset"), "{name} has no default: {row}");
            } else {
                let shown = format!("[`{default}`]");
                assert!(
                    row.ends_with(&format!("{shown} |")),
                    "{name} should show {shown}: {row}"
                );
            }
        }
        for row in rows {
            assert!(
                SETTINGS
                    .iter()
                    .any(|(name, _, _)| row.starts_with(&format!("| `{name}` |"))),
                "README lists a setting herald does not have: {row}"
            );
        }
    }

    /// Every default written in [`SETTINGS`] is one the parser accepts.
    #[test]
    fn every_default_parses() {
        let settings = Settings::from_map(BTreeMap::new()).expect("the defaults are valid");
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.poll_interval, Duration::from_secs(60));
        assert_eq!(settings.mail_from, "herald <herald@localhost>");
        assert_eq!(settings.kakao.event_name, "herald_notification");
        assert_eq!(settings.data_dir, PathBuf::from("./herald-data"));
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let settings = Settings::from_map(BTreeMap::new()).expect("defaults are valid");
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert!(settings.database_url.starts_with("sqlite://"));
        assert_eq!(settings.retry_schedule.len(), 7);
        assert_eq!(settings.poll_interval, Duration::from_secs(60));
        assert_eq!(
            settings.delivery_retention,
            Some(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn the_delivery_log_can_be_kept_forever_but_not_for_nothing() {
        let forever = Settings::from_map(map(&[("HERALD_DELIVERY_RETENTION", "forever")]));
        assert_eq!(forever.expect("valid").delivery_retention, None);
        let week = Settings::from_map(map(&[("HERALD_DELIVERY_RETENTION", "7d")]));
        assert_eq!(
            week.expect("valid").delivery_retention,
            Some(Duration::from_secs(7 * 86_400))
        );
        let err = Settings::from_map(map(&[("HERALD_DELIVERY_RETENTION", "0s")])).unwrap_err();
        assert!(
            err.to_string().contains("HERALD_DELIVERY_RETENTION"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let err = Settings::from_map(map(&[("HERALD_POLL_INTERVAL", "soon")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_POLL_INTERVAL"), "{err}");
        let err = Settings::from_map(map(&[("HERALD_LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_LISTN"), "{err}");
        let err = Settings::from_map(map(&[("HERALD_NODE_ID", "4000")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_NODE_ID"), "{err}");
    }

    #[test]
    fn a_node_lease_outlives_a_missed_renewal() {
        let default = Settings::from_map(BTreeMap::new()).expect("valid");
        assert_eq!(default.node_lease, Duration::from_secs(3));
        assert_eq!(default.node_renew_interval, Duration::from_secs(1));
        assert_eq!(default.shutdown_grace, Duration::from_secs(5));
        let err = Settings::from_map(map(&[("HERALD_NODE_RENEW_INTERVAL", "2s")])).unwrap_err();
        assert!(
            err.to_string().contains("HERALD_NODE_RENEW_INTERVAL"),
            "{err}"
        );
        let err = Settings::from_map(map(&[("HERALD_NODE_LEASE", "0s")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_NODE_LEASE"), "{err}");
        let longer = Settings::from_map(map(&[
            ("HERALD_NODE_LEASE", "10s"),
            ("HERALD_NODE_RENEW_INTERVAL", "5s"),
        ]));
        assert_eq!(longer.expect("valid").node_lease, Duration::from_secs(10));
    }

    #[test]
    fn the_batched_sqlite_log_is_off_unless_turned_on() {
        let default = Settings::from_map(BTreeMap::new()).expect("valid");
        assert!(!default.sqlite_batched_log);
        let on = Settings::from_map(map(&[("HERALD_SQLITE_BATCHED_LOG", "true")]));
        assert!(on.expect("valid").sqlite_batched_log);
        let err = Settings::from_map(map(&[("HERALD_SQLITE_BATCHED_LOG", "maybe")])).unwrap_err();
        assert!(
            err.to_string().contains("HERALD_SQLITE_BATCHED_LOG"),
            "{err}"
        );
    }

    #[test]
    fn chat_limits_take_sizes_and_must_fit_inside_one_another() {
        let settings =
            Settings::from_map(map(&[("HERALD_WS_RESUME_BYTES", "16MiB")])).expect("valid");
        assert_eq!(settings.ws_resume_bytes, 16 << 20);
        assert_eq!(settings.ws_backlog_bytes, 4 << 20);
        let err = Settings::from_map(map(&[("HERALD_WS_BACKLOG_BYTES", "8MiB")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_WS_BACKLOG_BYTES"), "{err}");
        let err = Settings::from_map(map(&[("HERALD_WS_RESUME_BYTES", "lots")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_WS_RESUME_BYTES"), "{err}");
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn kakao_secret_and_networks_are_checked() {
        let settings = Settings::from_map(map(&[
            ("HERALD_KAKAO_SKILL_SECRET", "0123456789abcdef-_XY"),
            (
                "HERALD_KAKAO_ALLOWED_IPS",
                "110.76.143.234, 110.76.143.0/30,2001:db8::1/32",
            ),
        ]))
        .expect("valid");
        assert!(!settings.kakao.is_unauthenticated());
        assert_eq!(
            show_networks(&settings.kakao.allowed_ips),
            "110.76.143.234/32,110.76.143.0/30,2001:db8::/32"
        );
        assert!(settings.warnings().is_empty());
        assert_eq!(
            Settings::from_map(BTreeMap::new())
                .expect("valid")
                .warnings()
                .len(),
            1
        );
        for bad in ["short", "has a space in it ok", "slash/in/the/secret/x"] {
            let err = Settings::from_map(map(&[("HERALD_KAKAO_SKILL_SECRET", bad)])).unwrap_err();
            assert!(
                err.to_string().contains("HERALD_KAKAO_SKILL_SECRET"),
                "{err}"
            );
        }
        let err =
            Settings::from_map(map(&[("HERALD_KAKAO_ALLOWED_IPS", "10.0.0.0/33")])).unwrap_err();
        assert!(
            err.to_string().contains("HERALD_KAKAO_ALLOWED_IPS"),
            "{err}"
        );
    }

    #[test]
    fn the_redis_url_is_plain_redis_and_the_prefix_a_simple_word() {
        let url = |v: &str| Settings::from_map(map(&[("HERALD_REDIS_URL", v)]));
        assert!(url("redis://127.0.0.1:6379").is_ok());
        for wrong in ["rediss://example.com:6380", "http://example.com"] {
            let error = url(wrong).expect_err(wrong).to_string();
            assert!(error.contains("HERALD_REDIS_URL"), "{error}");
        }
        let prefix = |v: &str| Settings::from_map(map(&[("HERALD_REDIS_PREFIX", v)]));
        assert_eq!(
            prefix("team-a:herald").expect("valid").redis_prefix,
            "team-a:herald"
        );
        assert_eq!(
            Settings::from_map(map(&[])).expect("defaults").redis_prefix,
            "herald"
        );
        let error = prefix("has space").expect_err("a space").to_string();
        assert!(error.contains("HERALD_REDIS_PREFIX"), "{error}");
    }

    #[test]
    fn secrets_never_print() {
        let settings =
            Settings::from_map(map(&[("HERALD_ADMIN_TOKEN", "hunter2")])).expect("valid");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
