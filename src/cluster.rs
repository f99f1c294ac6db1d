//! The Redis link that the queue's cross-node parts share (`HERALD_REDIS_URL`): the delivery
//! wake-ups between nodes (`outbox::wake`) and the hooks' limits held across nodes
//! (`channels::hook_limits`). The chat bus keeps links of its own (`chat::bus::redis`), since
//! its publishing must keep one order and its link health is what `/readyz` reports.
//!
//! A command that fails drops the connection, and the next one connects again: a Redis restart
//! costs the commands in flight at that moment, nothing more.

use std::time::Duration;

use rand::RngExt;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

/// How long one command may take, or a connection to be made, before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One multiplexed connection to Redis, made on first use and again after an error.
pub struct RedisLink {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisLink {
    /// A link to `url` (checked here, connected on first use).
    pub fn new(url: &str) -> redis::RedisResult<RedisLink> {
        Ok(RedisLink {
            client: redis::Client::open(url)?,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The connection, made first if there is none. A clone: commands on it are pipelined
    /// with everyone else's.
    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self.connect().await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `commands`; an error that broke the connection drops it, so that the next call
    /// connects again.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        commands: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut connection = self.connection().await?;
        let result = commands.query_async(&mut connection).await;
        if let Err(error) = &result
            && (error.is_connection_dropped()
                || error.is_io_error()
                || error.is_timeout()
                || error.is_unrecoverable_error())
        {
            self.connection.lock().await.take();
        }
        result
    }
}

/// A growing, jittered delay between attempts to reach Redis again.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Backoff::FIRST)
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(2);

    pub fn reset(&mut self) {
        self.0 = Backoff::FIRST;
    }

    /// Waits the delay (or until `stop`); `false` if stopped.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let jittered = self.0.mul_f64(rand::rng().random_range(0.5..1.0));
        self.0 = (self.0 * 2).min(Backoff::MOST);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => true,
            _ = stop.cancelled() => false,
        }
    }
}
