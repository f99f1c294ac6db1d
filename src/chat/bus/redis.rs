//! The bus across nodes, over Redis (`HERALD_REDIS_URL`).
//!
//! **Frames.** Every frame goes out on one Redis pub/sub channel, `<prefix>:chat:frames`, and is
//! delivered from there on every node — the publisher's own included — to the sockets on that
//! node of the sessions it was meant for. The script that publishes a frame first appends it to
//! the log of each session of its user, kept in Redis, and the message names the number each
//! session gave it (`redis_sessions.rs`): so a session can be resumed on any node, and a node
//! that holds a socket only hands it what it hears, in those numbers. Redis sends a channel's
//! messages to each subscriber in the one order in which it received them, so all sessions of a
//! user, on whatever nodes, see that user's frames in the same order. Each node has one
//! connection that publishes (one task, in order, pipelined) and one that is subscribed,
//! whatever its number of sockets.
//!
//! **Nothing lost silently.** A socket whose node may have missed a frame is closed (4001) and
//! its client resumes from the session's log in Redis: a node whose subscription broke does that
//! to all its sockets (frames published meanwhile never reach it). A node that could not publish
//! some frames (its link was down, a pipeline failed, its outgoing queue was full) knows whose
//! they were: the first message it publishes afterwards names those users (or all, past
//! [`LOST_USERS`]), in a script that first marks their sessions broken in Redis, and every node
//! closes their sockets; their `resume` is answered 410 (the client authenticates again and
//! loads the history, which the database has). Every message also carries its node's name and a
//! number that grows by one per message published; a number skipped without such a report
//! (which Redis should never cause) closes every socket of the receiving node.
//!
//! **Link health.** Each node publishes a ping every second on the same channel; a node that
//! hears nothing for [`LINK_SILENCE`], not even its own ping, counts its link as down even if
//! its connections look open. While the link is down (or not yet up at start) `/readyz`
//! answers 503 with the reason (`health::Readiness`), the gauge `herald_bus_link_up` is 0, and
//! both connections are made again with a growing, jittered delay. `herald_bus_lag_seconds`
//! measures publish → receive from the time written in each message.
//!
//! **Presence.** Whether a user is online must be one answer on every node. Each node keeps its
//! own count of live sockets per user (`LocalLive`) and writes it to Redis: the hash
//! `<prefix>:chat:live:<user>` has one field per node. A node is alive while its score in the
//! sorted set `<prefix>:chat:nodes` (a lease, renewed every second) is in the future; a user's
//! total counts only live nodes. The first node whose renewal finds a lapsed lease claims it
//! (removing it from the set is atomic), drops that node's counts and tells the chat which users
//! may have gone offline with it, so friends hear `offline` even when the node was killed.
//! After Redis lost its data (a restart), a node's renewal finds itself missing and writes all
//! its counts again. The scripts name keys they do not declare: standalone Redis (or a
//! replicated primary), not Redis Cluster.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rand::RngExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::redis_sessions::{
    APPEND_SCRIPT, BREAK_SCRIPT, CREATE_SCRIPT, DETACH_SCRIPT, Here, REFRESH_EVERY, REFRESH_SCRIPT,
    RESUME_SCRIPT, parse_seqs, plausible_id,
};
use super::{Bus, Joined, LocalLive};
use crate::chat::resume::{ChatLimits, RESUME_WINDOW, ResumeBudget, SessionLog};
use crate::health::Readiness;

/// How long a node may hear nothing on the channel (every node pings every second) before it
/// counts its link as down.
pub const LINK_SILENCE: Duration = Duration::from_secs(3);
/// How often a node pings the channel and renews its presence lease.
const TICK: Duration = Duration::from_secs(1);
/// How long a node's presence lease lasts without renewal: a killed node's users stop counting
/// as online this long after its last renewal, and their friends are told.
const NODE_LEASE: Duration = Duration::from_secs(4);
/// How long one Redis command (or pipeline) may take before the link counts as broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of frames waiting to be published; beyond it a frame is dropped (and the receivers
/// see the skipped number).
const OUTGOING_BYTES: usize = 16 << 20;
/// Messages sent in one pipeline.
const BATCH: usize = 256;
/// How long presence keys of users and nodes live without being written.
const PRESENCE_KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// Users whose lost frames a node reports by name; past this many it reports "everyone".
const LOST_USERS: usize = 10_000;
/// The name `/readyz` gives the link.
const LINK: &str = "chat bus (Redis)";

/// Writes this node's count of a user's live sockets and returns the total on live nodes, and
/// whether this node's lease was missing (Redis lost it: the node writes all its counts again).
const LIVE_SCRIPT: &str = r"
local missing = redis.call('ZADD', KEYS[2], 'NX', ARGV[6], ARGV[1])
local count = tonumber(ARGV[3])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
  redis.call('SADD', KEYS[3], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[2])
end
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local counts = fields[i] == ARGV[1]
  if not counts then
    local lease = redis.call('ZSCORE', KEYS[2], fields[i])
    counts = lease and tonumber(lease) > tonumber(ARGV[4])
  end
  if counts then
    total = total + tonumber(fields[i + 1])
  end
end
if total > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return {total, missing}
";

/// Removes nodes whose lease lapsed (atomically, so one node claims each) with their counts;
/// returns the users they had live sockets for.
const CLAIM_SCRIPT: &str = r"
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 16)
local users = {}
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  local key = ARGV[2] .. ':node-users:' .. node
  for _, user in ipairs(redis.call('SMEMBERS', key)) do
    redis.call('HDEL', ARGV[2] .. ':live:' .. user, node)
    table.insert(users, user)
  end
  redis.call('DEL', key)
end
return users
";

pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// `<prefix>:chat`, the start of every key and channel.
    keys: String,
    channel: String,
    /// This node's name on the bus, new for every run of the process.
    node: String,
    /// The sessions whose sockets are on this node.
    here: Here,
    limits: ChatLimits,
    /// The node's budget for the session logs it holds in memory.
    budget: Arc<ResumeBudget>,
    live: LocalLive,
    outgoing: Mutex<Outgoing>,
    outgoing_ready: Notify,
    /// The connection for presence commands (not pub/sub), made again after an error.
    commands: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// One presence change at a time, so that the count written last is the count now.
    presence_turn: tokio::sync::Mutex<()>,
    /// A count of this node could not be written (the link was down): all are written again
    /// at the next renewal.
    presence_stale: std::sync::atomic::AtomicBool,
    link: Mutex<Link>,
    readiness: Arc<Readiness>,
}

struct Outgoing {
    queue: VecDeque<Message>,
    bytes: usize,
    /// Whether the publishing connection is up; while it is not, frames are dropped.
    connected: bool,
    /// Frames that could not be published since the last report, if any.
    lost: Option<Lost>,
}

/// A message waiting to be published; it gets its number when it is.
struct Message {
    /// `None` for a ping.
    user: Option<i64>,
    /// For a frame to one session only (an answer to its socket): that session.
    session: Option<String>,
    sent_us: i64,
    frame: Arc<str>,
}

/// The users whose frames were not published.
#[derive(Default)]
struct Lost {
    users: std::collections::HashSet<i64>,
    everyone: bool,
}

impl Lost {
    fn add(&mut self, user: Option<i64>) {
        if let Some(user) = user
            && !self.everyone
        {
            self.users.insert(user);
            if self.users.len() > LOST_USERS {
                self.everyone = true;
                self.users.clear();
            }
        }
    }

    fn merge(&mut self, other: Lost) {
        self.everyone |= other.everyone;
        for user in other.users {
            self.add(Some(user));
        }
    }

    /// `*` for everyone, else the users' ids separated by commas.
    fn text(&self) -> String {
        if self.everyone {
            return "*".into();
        }
        let ids: Vec<String> = self.users.iter().map(i64::to_string).collect();
        ids.join(",")
    }
}

impl Outgoing {
    fn lose(&mut self, user: Option<i64>) {
        self.lost.get_or_insert_with(Lost::default).add(user);
        metrics::counter!("herald_bus_frames_dropped_total").increment(1);
    }
}

/// Each half of the link: `Err` holds why it is down.
struct Link {
    publisher: Result<(), String>,
    receiver: Result<(), String>,
}

/// The bus's background tasks; [`stop`](Self::stop) ends them (dropping does too, without
/// waiting).
pub struct BusTasks {
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl BusTasks {
    /// Stops publishing and receiving and gives this node's presence lease up, so that another
    /// node tells its users' friends at once.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(RESPONSE_TIMEOUT * 2, all)
            .await
            .is_err()
        {
            tracing::warn!("the chat bus's tasks did not stop in time");
        }
    }
}

impl Drop for BusTasks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisBus {
    /// Connects the bus (in the background: the node is unready until the link is up) and
    /// starts its tasks. The receiver gets users who may have gone offline because the node
    /// they were on stopped renewing its lease.
    pub fn start(
        url: &str,
        prefix: &str,
        readiness: Arc<Readiness>,
        limits: ChatLimits,
        budget: Arc<ResumeBudget>,
    ) -> anyhow::Result<(Arc<RedisBus>, BusTasks, mpsc::Receiver<i64>)> {
        let client = redis::Client::open(url).map_err(|error| {
            anyhow::anyhow!("HERALD_REDIS_URL is not a valid Redis URL: {error}")
        })?;
        let mut name = [0u8; 8];
        rand::rng().fill(&mut name);
        let keys = format!("{prefix}:chat");
        let inner = Arc::new(Inner {
            client,
            channel: format!("{keys}:frames"),
            keys,
            node: hex::encode(name),
            here: Here::default(),
            limits,
            budget,
            live: LocalLive::default(),
            outgoing: Mutex::new(Outgoing {
                queue: VecDeque::new(),
                bytes: 0,
                connected: false,
                lost: None,
            }),
            outgoing_ready: Notify::new(),
            commands: tokio::sync::Mutex::new(None),
            presence_turn: tokio::sync::Mutex::new(()),
            presence_stale: std::sync::atomic::AtomicBool::new(false),
            link: Mutex::new(Link {
                publisher: Err("connecting".into()),
                receiver: Err("connecting".into()),
            }),
            readiness,
        });
        inner.show_link();
        let stop = CancellationToken::new();
        let (offline, offline_receiver) = mpsc::channel(1024);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(publish_loop(inner.clone(), stop.clone()));
        tasks.spawn(receive_loop(inner.clone(), stop.clone()));
        tasks.spawn(lease_loop(inner.clone(), offline, stop.clone()));
        tracing::info!(node = %inner.node, channel = %inner.channel, "the chat bus runs over Redis");
        Ok((
            Arc::new(RedisBus { inner }),
            BusTasks { stop, tasks },
            offline_receiver,
        ))
    }
}

impl Bus for RedisBus {
    fn publish(&self, user: i64, frame: Arc<str>) {
        self.inner.send(Some(user), None, frame);
    }

    fn open(
        &self,
        account: i64,
        id: String,
        wake: Arc<Notify>,
        first: String,
    ) -> BoxFuture<'static, Option<Joined>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if !inner.link_up() {
                return None;
            }
            let log = SessionLog::starting_at(inner.limits, &inner.budget, 1);
            inner.here.wait_for(&id, account, log.clone());
            let mut script = redis::pipe();
            script
                .cmd("EVAL")
                .arg(CREATE_SCRIPT)
                .arg(0)
                .arg(&inner.keys)
                .arg(&id)
                .arg(account)
                .arg(&first)
                .arg(RESUME_WINDOW.as_millis() as u64)
                .arg(crate::ids::now_ms());
            if let Err(error) = inner.with_commands::<(i64,)>(&script).await {
                tracing::warn!(%error, account, "could not open a chat session in Redis");
                inner.here.remove(&id, &log);
                return None;
            }
            let mut token = None;
            let ready = inner
                .here
                .ready(&id, &log, 1, inner.limits.resume_bytes, |log| {
                    let _ = log.append(Arc::from(first));
                    token = log.attach_at(0, wake);
                });
            match (ready, token) {
                (true, Some(token)) => Some(Joined {
                    id,
                    account,
                    log,
                    token,
                    handle: 1,
                }),
                _ => {
                    inner.here.remove(&id, &log);
                    None
                }
            }
        })
    }

    fn send(&self, joined: &Joined, frame: Arc<str>) {
        self.inner
            .send(Some(joined.account), Some(joined.id.clone()), frame);
    }

    fn leave(&self, joined: Joined) {
        joined.log.detach(joined.token);
        self.inner.here.remove(&joined.id, &joined.log);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut script = redis::pipe();
            script
                .cmd("EVAL")
                .arg(DETACH_SCRIPT)
                .arg(0)
                .arg(&inner.keys)
                .arg(&joined.id)
                .arg(joined.handle)
                .arg(RESUME_WINDOW.as_millis() as u64)
                .arg(joined.account)
                .arg(inner.limits.detached_per_account.max(1))
                .arg(crate::ids::now_ms());
            if let Err(error) = inner.with_commands::<(i64,)>(&script).await {
                // The session still ends by itself when its time to live runs out.
                tracing::debug!(%error, "could not tell Redis that a chat socket let go of its session");
            }
        });
    }

    fn resume(
        &self,
        account: i64,
        id: String,
        last_seq: u64,
        wake: Arc<Notify>,
        resumed: Box<dyn FnOnce(u64) -> String + Send>,
    ) -> BoxFuture<'static, Option<Joined>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if !inner.link_up() || !plausible_id(&id) {
                return None;
            }
            // The `resumed` frame is written by the script, which alone knows the count: the
            // frame is cut around a count no real one can be.
            let template = resumed(u64::MAX);
            let (before, after) = template.split_once(&u64::MAX.to_string())?;
            let log =
                SessionLog::starting_at(inner.limits, &inner.budget, last_seq.saturating_add(1));
            inner.here.wait_for(&id, account, log.clone());
            let mut script = redis::pipe();
            script
                .cmd("EVAL")
                .arg(RESUME_SCRIPT)
                .arg(0)
                .arg(&inner.keys)
                .arg(&inner.channel)
                .arg(&id)
                .arg(account)
                .arg(last_seq)
                .arg(before)
                .arg(after)
                .arg(RESUME_WINDOW.as_millis() as u64)
                .arg(inner.limits.resume_bytes)
                .arg(&inner.node)
                .arg(crate::chat::now_micros());
            let answer = match inner.with_commands::<(Vec<String>,)>(&script).await {
                Ok((answer,)) => answer,
                Err(error) => {
                    tracing::warn!(%error, account, "could not resume a chat session from Redis");
                    inner.here.remove(&id, &log);
                    return None;
                }
            };
            let Some((epoch, frames)) = answer
                .split_first()
                .and_then(|(epoch, frames)| Some((epoch.parse::<u64>().ok()?, frames)))
            else {
                inner.here.remove(&id, &log);
                return None;
            };
            let resumed = format!("{before}{}{after}", frames.len());
            let mut token = None;
            let ready = inner
                .here
                .ready(&id, &log, epoch, inner.limits.resume_bytes, |log| {
                    for frame in frames {
                        let _ = log.append(Arc::from(frame.as_str()));
                    }
                    let _ = log.append(Arc::from(resumed));
                    token = log.attach_at(last_seq, wake);
                });
            match (ready, token) {
                (true, Some(token)) => {
                    log.trim_budget();
                    Some(Joined {
                        id,
                        account,
                        log,
                        token,
                        handle: epoch,
                    })
                }
                _ => {
                    inner.here.remove(&id, &log);
                    None
                }
            }
        })
    }

    fn live(&self, user: i64, change: i64) -> BoxFuture<'static, usize> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // The change is made in its turn: the count written and the total answered are
            // those right after it, so that exactly one socket finds itself the first.
            let _turn = inner.presence_turn.lock().await;
            let here = inner.live.change(user, change);
            // While the link is down, sockets do not wait for Redis: this node's count is the
            // best answer there is, and the counts are written again once the link is back.
            let link_up = {
                let link = inner.link.lock().unwrap_or_else(|p| p.into_inner());
                link.publisher.is_ok() && link.receiver.is_ok()
            };
            let written = if link_up {
                inner.write_presence(user, here).await
            } else {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the chat bus's link is down",
                )))
            };
            match written {
                Ok(total) => total,
                Err(error) => {
                    inner
                        .presence_stale
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%error, user, "could not count a chat user's sockets on the other nodes; counting this node's only");
                    here
                }
            }
        })
    }
}

impl Inner {
    /// Whether both halves of the link are up.
    fn link_up(&self) -> bool {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.publisher.is_ok() && link.receiver.is_ok()
    }

    /// Queues a frame for `user` (`None`: a ping; `session`: that session only) for publishing,
    /// or drops it (and notes whose it was) when the link is down or the queue full.
    fn send(&self, user: Option<i64>, session: Option<String>, frame: Arc<str>) {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        if !outgoing.connected || outgoing.bytes + frame.len() > OUTGOING_BYTES {
            outgoing.lose(user);
            return;
        }
        outgoing.bytes += frame.len();
        outgoing.queue.push_back(Message {
            user,
            session,
            sent_us: crate::chat::now_micros(),
            frame,
        });
        drop(outgoing);
        self.outgoing_ready.notify_one();
    }

    /// Up to [`BATCH`] queued messages, in order, and the report of lost frames to publish
    /// before them.
    fn take_batch(&self) -> (Option<Lost>, Vec<Message>) {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        let n = outgoing.queue.len().min(BATCH);
        let batch: Vec<Message> = outgoing.queue.drain(..n).collect();
        outgoing.bytes -= batch.iter().map(|m| m.frame.len()).sum::<usize>();
        (outgoing.lost.take(), batch)
    }

    /// A batch (and the report before it) may not have been published: they are reported
    /// again, with the batch's users.
    fn failed(&self, report: Option<Lost>, batch: Vec<Message>) {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        let lost = outgoing.lost.get_or_insert_with(Lost::default);
        if let Some(report) = report {
            lost.merge(report);
        }
        for message in &batch {
            lost.add(message.user);
        }
        metrics::counter!("herald_bus_frames_dropped_total").increment(batch.len() as u64);
    }

    /// Whether the publishing connection is up; when it goes down, what waits is dropped.
    fn set_publishing(&self, connected: bool) {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        outgoing.connected = connected;
        if !connected {
            let waiting: Vec<Message> = outgoing.queue.drain(..).collect();
            outgoing.bytes = 0;
            for message in waiting {
                outgoing.lose(message.user);
            }
        }
    }

    fn set_link(&self, change: impl FnOnce(&mut Link)) {
        change(&mut self.link.lock().unwrap_or_else(|p| p.into_inner()));
        self.show_link();
    }

    /// Tells `/readyz` and the gauge what the link is now.
    fn show_link(&self) {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let problem = match (&link.publisher, &link.receiver) {
            (Ok(()), Ok(())) => None,
            (Err(why), _) => Some(format!("cannot publish: {why}")),
            (_, Err(why)) => Some(format!("not receiving: {why}")),
        };
        match problem {
            None => {
                self.readiness.up(LINK);
                metrics::gauge!("herald_bus_link_up").set(1.0);
            }
            Some(problem) => {
                self.readiness.down(LINK, problem);
                metrics::gauge!("herald_bus_link_up").set(0.0);
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Runs `command` on the presence connection, making it first if needed; an error drops
    /// it, so that the next command connects again. `command` must be safe to run twice.
    async fn with_commands<T: redis::FromRedisValue>(
        &self,
        commands: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut slot = self.commands.lock().await;
        let (mut connection, reused) = match slot.take() {
            Some(connection) => (connection, true),
            None => (self.connect().await?, false),
        };
        let mut result = commands.query_async(&mut connection).await;
        if reused
            && result
                .as_ref()
                .is_err_and(|e| e.is_connection_dropped() || e.is_io_error())
        {
            // A connection kept from before a break (a Redis restart) fails its first command;
            // every command here can run twice, so it is tried once more on a new one.
            connection = self.connect().await?;
            result = commands.query_async(&mut connection).await;
        }
        if result.is_ok() {
            *slot = Some(connection);
        }
        result
    }

    /// Writes this node's count of `user`'s live sockets; returns the total on live nodes.
    async fn write_presence(&self, user: i64, here: usize) -> redis::RedisResult<usize> {
        let now = crate::ids::now_ms();
        let mut script = redis::pipe();
        script
            .cmd("EVAL")
            .arg(LIVE_SCRIPT)
            .arg(3)
            .arg(format!("{}:live:{user}", self.keys))
            .arg(format!("{}:nodes", self.keys))
            .arg(format!("{}:node-users:{}", self.keys, self.node))
            .arg(&self.node)
            .arg(user)
            .arg(here)
            .arg(now)
            .arg(PRESENCE_KEY_TTL_MS)
            .arg(now + NODE_LEASE.as_millis() as i64);
        let ((total, lease_was_missing),): ((usize, i64),) = self.with_commands(&script).await?;
        if lease_was_missing == 1 {
            // Counts this node wrote before are gone with the lease: the next renewal writes
            // them all again.
            self.presence_stale
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(total)
    }

    /// Renews this node's lease; after Redis lost it (a restart, or this node was taken for
    /// dead), writes every count of this node again.
    async fn renew(&self) -> redis::RedisResult<()> {
        let expires = crate::ids::now_ms() + NODE_LEASE.as_millis() as i64;
        let nodes = format!("{}:nodes", self.keys);
        let mut renewal = redis::pipe();
        renewal
            .zadd(&nodes, &self.node, expires)
            // Keys of a cluster (or a test) that stopped for good go by themselves.
            .pexpire(&nodes, PRESENCE_KEY_TTL_MS)
            .ignore()
            .pexpire(
                format!("{}:node-users:{}", self.keys, self.node),
                PRESENCE_KEY_TTL_MS,
            )
            .ignore();
        let (added,): (i64,) = self.with_commands(&renewal).await?;
        let stale = self
            .presence_stale
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if (added == 1 || stale)
            && let Err(error) = self.write_all_presence().await
        {
            self.presence_stale
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(error);
        }
        Ok(())
    }

    /// Writes every count of this node again, and clears those of users who have no live
    /// socket here any more.
    async fn write_all_presence(&self) -> redis::RedisResult<()> {
        let _turn = self.presence_turn.lock().await;
        let all: HashMap<i64, usize> = self.live.all().into_iter().collect();
        let mut members = redis::pipe();
        members
            .cmd("SMEMBERS")
            .arg(format!("{}:node-users:{}", self.keys, self.node));
        let (written,): (Vec<String>,) = self.with_commands(&members).await?;
        let gone = written
            .iter()
            .filter_map(|user| user.parse::<i64>().ok())
            .filter(|user| !all.contains_key(user));
        let counts: Vec<(i64, usize)> = gone
            .map(|user| (user, 0))
            .chain(all.iter().map(|(user, count)| (*user, *count)))
            .collect();
        if !counts.is_empty() {
            tracing::info!(
                users = counts.len(),
                "the chat bus wrote this node's live sockets to Redis again"
            );
        }
        for (user, count) in counts {
            self.write_presence(user, count).await?;
        }
        Ok(())
    }

    /// Claims lapsed leases of other nodes; returns the users they had live sockets for who
    /// now have none anywhere.
    async fn claim_lapsed(&self) -> redis::RedisResult<Vec<i64>> {
        let now = crate::ids::now_ms();
        let mut script = redis::pipe();
        script
            .cmd("EVAL")
            .arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(format!("{}:nodes", self.keys))
            .arg(now)
            .arg(&self.keys);
        let (users,): (Vec<String>,) = self.with_commands(&script).await?;
        let mut gone = Vec::new();
        for user in users.iter().filter_map(|u| u.parse::<i64>().ok()) {
            let _turn = self.presence_turn.lock().await;
            let here = self.live.change(user, 0);
            if self.write_presence(user, here).await? == 0 {
                gone.push(user);
            }
        }
        Ok(gone)
    }

    /// Renews the time to live of the sessions whose sockets are here, so that they last
    /// while held and [`RESUME_WINDOW`] after their node stops.
    async fn refresh_sessions(&self) -> redis::RedisResult<()> {
        let held = self.here.held();
        for chunk in held.chunks(512) {
            let mut pipe = redis::pipe();
            for (id, epoch) in chunk {
                pipe.cmd("EVAL")
                    .arg(REFRESH_SCRIPT)
                    .arg(0)
                    .arg(&self.keys)
                    .arg(id)
                    .arg(*epoch)
                    .arg(RESUME_WINDOW.as_millis() as u64)
                    .ignore();
            }
            self.with_commands::<()>(&pipe).await?;
        }
        Ok(())
    }

    /// Gives this node's lease up: another node claims it at its next renewal.
    async fn say_goodbye(&self) -> redis::RedisResult<()> {
        let mut goodbye = redis::pipe();
        goodbye
            .cmd("ZADD")
            .arg(format!("{}:nodes", self.keys))
            .arg(0)
            .arg(&self.node)
            .ignore();
        self.with_commands(&goodbye).await
    }
}

/// A growing, jittered delay between attempts to connect again.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(2);

    fn new() -> Backoff {
        Backoff(Backoff::FIRST)
    }

    fn reset(&mut self) {
        self.0 = Backoff::FIRST;
    }

    /// Waits the delay (or until `stop`); `false` if stopped.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let jittered = self.0.mul_f64(rand::rng().random_range(0.5..1.0));
        self.0 = (self.0 * 2).min(Backoff::MOST);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => true,
            _ = stop.cancelled() => false,
        }
    }
}

/// Publishes the queued messages in order, one pipeline at a time, on one connection.
async fn publish_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let mut backoff = Backoff::new();
    // The number of the last message published (or tried); a report of lost frames explains
    // the numbers skipped before it.
    let mut next_seq: u64 = 0;
    loop {
        let connected = tokio::select! {
            connected = inner.connect() => connected,
            _ = stop.cancelled() => return,
        };
        // Frames are appended to sessions by a script, loaded once per connection (a Redis
        // that restarted forgot it, and the connection broke with it).
        let connected = match connected {
            Ok(mut connection) => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(APPEND_SCRIPT);
                let loaded = tokio::select! {
                    loaded = load.query_async::<String>(&mut connection) => loaded,
                    _ = stop.cancelled() => return,
                };
                loaded.map(|sha| (connection, sha))
            }
            Err(error) => Err(error),
        };
        let (mut connection, append_sha) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                tracing::debug!(%error, "the chat bus cannot connect to Redis to publish");
                inner.set_link(|link| link.publisher = Err(error.to_string()));
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        inner.set_publishing(true);
        inner.set_link(|link| link.publisher = Ok(()));
        let failure = loop {
            let (report, batch) = inner.take_batch();
            if report.is_none() && batch.is_empty() {
                tokio::select! {
                    _ = inner.outgoing_ready.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            }
            let mut pipe = redis::pipe();
            let now = crate::chat::now_micros();
            let node = &inner.node;
            if let Some(report) = &report {
                next_seq += 1;
                let users = report.text();
                let text = format!("l:{node}:{next_seq}:{now}:{users}");
                // The sessions of those users lose their logs too, before anyone hears it.
                pipe.cmd("EVAL")
                    .arg(BREAK_SCRIPT)
                    .arg(0)
                    .arg(&inner.keys)
                    .arg(&inner.channel)
                    .arg(text);
                if report.everyone {
                    pipe.arg("*");
                } else {
                    for user in &report.users {
                        pipe.arg(*user);
                    }
                }
                pipe.ignore();
            }
            for message in &batch {
                next_seq += 1;
                let Message {
                    user,
                    session,
                    sent_us,
                    frame,
                } = message;
                match user {
                    Some(user) => {
                        pipe.cmd("EVALSHA")
                            .arg(&append_sha)
                            .arg(0)
                            .arg(&inner.keys)
                            .arg(&inner.channel)
                            .arg(node)
                            .arg(next_seq)
                            .arg(sent_us)
                            .arg(user)
                            .arg(frame.as_bytes())
                            .arg(inner.limits.resume_bytes)
                            .arg(session.as_deref().unwrap_or(""))
                            .ignore();
                    }
                    None => {
                        let text = format!("p:{node}:{next_seq}:{sent_us}");
                        pipe.cmd("PUBLISH").arg(&inner.channel).arg(text).ignore();
                    }
                }
            }
            if let Err(error) = pipe.query_async::<()>(&mut connection).await {
                inner.failed(report, batch);
                break error;
            }
        };
        tracing::warn!(error = %failure, "the chat bus lost its Redis link while publishing; connecting again");
        inner.set_publishing(false);
        inner.set_link(|link| link.publisher = Err(failure.to_string()));
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// One message from the channel.
enum Received<'a> {
    /// A frame and the number each session it was appended to gave it.
    Frame {
        sessions: Vec<(&'a str, u64)>,
        frame: &'a str,
    },
    /// A session was taken over (its `epoch`-th taking) by a `resume`.
    Moved {
        session: &'a str,
        epoch: u64,
    },
    Ping,
    /// Frames of these users (`None`: of anyone) were not published.
    Lost(Option<Vec<i64>>),
}

/// `(origin node, number, sent at µs, what)`, or `None` for a message that is not ours.
fn parse(payload: &[u8]) -> Option<(&str, u64, i64, Received<'_>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (kind, rest) = text.split_once(':')?;
    let (origin, rest) = rest.split_once(':')?;
    let (seq, rest) = rest.split_once(':')?;
    let seq = seq.parse().ok()?;
    match kind {
        "p" => Some((origin, seq, rest.parse().ok()?, Received::Ping)),
        "l" => {
            let (sent, users) = rest.split_once(':')?;
            let users = match users {
                "*" => None,
                "" => Some(Vec::new()),
                list => Some(
                    list.split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<i64>, _>>()
                        .ok()?,
                ),
            };
            Some((origin, seq, sent.parse().ok()?, Received::Lost(users)))
        }
        "f" => {
            let (sent, rest) = rest.split_once(':')?;
            let (_user, rest) = rest.split_once(':')?;
            let (sessions, frame) = rest.split_once(':')?;
            Some((
                origin,
                seq,
                sent.parse().ok()?,
                Received::Frame {
                    sessions: parse_seqs(sessions)?,
                    frame,
                },
            ))
        }
        "m" => {
            let (sent, rest) = rest.split_once(':')?;
            let (session, epoch) = rest.split_once(':')?;
            Some((
                origin,
                seq,
                sent.parse().ok()?,
                Received::Moved {
                    session,
                    epoch: epoch.parse().ok()?,
                },
            ))
        }
        _ => None,
    }
}

/// The last number heard from each node, to notice a skipped one.
#[derive(Default)]
struct Origins(HashMap<String, (u64, Instant)>);

impl Origins {
    /// Notes `seq` from `origin`; `false` if numbers were skipped since the last one (a report of
    /// lost frames says `explained`).
    fn in_order(&mut self, origin: &str, seq: u64, explained: bool) -> bool {
        let now = Instant::now();
        match self.0.get_mut(origin) {
            Some((last, seen)) => {
                let in_order = seq == *last + 1 || explained;
                *last = seq;
                *seen = now;
                in_order
            }
            None => {
                // Nodes that stopped are forgotten; each node pings every second.
                if self.0.len() > 64 {
                    self.0
                        .retain(|_, (_, seen)| now.duration_since(*seen) < LINK_SILENCE * 20);
                }
                self.0.insert(origin.to_string(), (seq, now));
                true
            }
        }
    }
}

/// Receives the channel and hands each frame to this node's sessions of its user.
async fn receive_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let mut backoff = Backoff::new();
    let mut subscribed_before = false;
    loop {
        let subscribe = async {
            let mut pubsub = inner.client.get_async_pubsub().await?;
            pubsub.subscribe(&inner.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let subscribed = tokio::select! {
            subscribed = tokio::time::timeout(RESPONSE_TIMEOUT, subscribe) => subscribed,
            _ = stop.cancelled() => return,
        };
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                tracing::debug!(%error, "the chat bus cannot subscribe on Redis");
                inner.set_link(|link| link.receiver = Err(error.to_string()));
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                inner.set_link(|link| {
                    link.receiver = Err("Redis did not answer the subscription in time".into())
                });
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        if subscribed_before {
            // Whatever was published while this node was not listening is lost to it, also
            // to the sessions that began meanwhile.
            let ended = inner.here.lose(None);
            tracing::warn!(
                sessions = ended,
                "the chat bus is subscribed again after a break; this node's sockets may have missed frames and were closed (their clients resume)"
            );
        }
        subscribed_before = true;
        let mut origins = Origins::default();
        let mut stream = pubsub.into_on_message();
        let failure = loop {
            let message = tokio::select! {
                message = tokio::time::timeout(LINK_SILENCE, stream.next()) => message,
                _ = stop.cancelled() => return,
            };
            let message = match message {
                Err(_) => break "heard nothing, not even this node's own ping".to_string(),
                Ok(None) => break "the subscription's connection closed".to_string(),
                Ok(Some(message)) => message,
            };
            let Some((origin, seq, sent_us, received)) = parse(message.get_payload_bytes()) else {
                tracing::debug!("a message on the chat channel is not herald's; ignored");
                continue;
            };
            if inner
                .link
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .receiver
                .is_err()
            {
                backoff.reset();
                inner.set_link(|link| link.receiver = Ok(()));
            }
            let lag = (crate::chat::now_micros() - sent_us).max(0) as f64 / 1e6;
            metrics::histogram!("herald_bus_lag_seconds").record(lag);
            let explained = matches!(received, Received::Lost(_));
            // Number 0: published by a script outside the node's numbered stream.
            if seq != 0 && !origins.in_order(origin, seq, explained) {
                let ended = inner.here.lose(None);
                metrics::counter!("herald_bus_gaps_total").increment(1);
                tracing::warn!(
                    origin,
                    sessions = ended,
                    "a message on the chat bus went missing; this node's sockets were closed (their clients resume)"
                );
            }
            match received {
                Received::Frame { sessions, frame } => {
                    if !sessions.is_empty() {
                        let frame: Arc<str> = Arc::from(frame);
                        for (session, seq) in sessions {
                            inner
                                .here
                                .deliver(session, seq, &frame, inner.limits.resume_bytes);
                        }
                    }
                }
                Received::Moved { session, epoch } => inner.here.moved(session, epoch),
                Received::Lost(users) => {
                    let ended = match users {
                        None => inner.here.lose(None),
                        Some(users) => users
                            .into_iter()
                            .map(|user| inner.here.lose(Some(user)))
                            .sum(),
                    };
                    if ended > 0 {
                        tracing::warn!(
                            origin,
                            sessions = ended,
                            "another node could not publish some frames; the sessions they were for were ended (clients load the history)"
                        );
                    }
                }
                Received::Ping => {}
            }
        };
        tracing::warn!(reason = %failure, "the chat bus stopped receiving from Redis; subscribing again");
        inner.set_link(|link| link.receiver = Err(failure));
        // Frames are being missed from now on: the clients are told at once (and the sessions
        // made until the subscription is back are ended when it is). Their logs in Redis go
        // on, so they resume.
        inner.here.lose(None);
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// Every [`TICK`]: pings the channel, renews this node's presence lease and claims lapsed
/// ones; at the end, gives the lease up.
async fn lease_loop(inner: Arc<Inner>, offline: mpsc::Sender<i64>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut last_refresh = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        inner.send(None, None, Arc::from(""));
        if last_refresh.elapsed() >= REFRESH_EVERY {
            last_refresh = Instant::now();
            if let Err(error) = inner.refresh_sessions().await {
                tracing::warn!(%error, "could not renew the time to live of this node's chat sessions in Redis");
            }
        }
        let renewed = async {
            inner.renew().await?;
            inner.claim_lapsed().await
        };
        match tokio::time::timeout(RESPONSE_TIMEOUT * 2, renewed).await {
            Ok(Ok(gone)) => {
                failing = false;
                for user in gone {
                    if offline.send(user).await.is_err() {
                        break;
                    }
                }
            }
            Ok(Err(error)) if !failing => {
                failing = true;
                tracing::warn!(%error, "could not renew the chat bus's presence lease in Redis");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("renewing the chat bus's presence lease in Redis took too long");
            }
            _ => {}
        }
    }
    if let Err(error) = inner.say_goodbye().await {
        tracing::debug!(%error, "could not give the chat bus's presence lease up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_back_with_colons_in_the_frame() {
        let Some((origin, seq, sent, Received::Frame { sessions, frame })) = parse(
            br#"f:ab12:7:1700000000000000:42:s-1=3,s_2=9:{"type":"chat","payload":{"c":"a:b"}}"#,
        ) else {
            panic!("a frame");
        };
        assert_eq!(
            (origin, seq, sent, sessions),
            (
                "ab12",
                7,
                1_700_000_000_000_000,
                vec![("s-1", 3), ("s_2", 9)]
            )
        );
        assert_eq!(frame, r#"{"type":"chat","payload":{"c":"a:b"}}"#);
        assert!(matches!(
            parse(b"p:ab12:8:5"),
            Some(("ab12", 8, 5, Received::Ping))
        ));
        assert!(matches!(
            parse(b"l:ab12:9:5:3,4"),
            Some(("ab12", 9, 5, Received::Lost(Some(users)))) if users == [3, 4]
        ));
        assert!(matches!(
            parse(b"l:ab12:9:5:*"),
            Some((_, _, _, Received::Lost(None)))
        ));
        assert!(matches!(
            parse(b"m:ab12:0:5:s-1:4"),
            Some((
                "ab12",
                0,
                5,
                Received::Moved {
                    session: "s-1",
                    epoch: 4
                }
            ))
        ));
        assert!(matches!(
            parse(b"f:ab12:10:5:42::{}"),
            Some((_, _, _, Received::Frame { sessions, frame: "{}" })) if sessions.is_empty()
        ));
        assert!(parse(b"hello").is_none());
    }

    #[test]
    fn a_skipped_number_is_noticed_per_node() {
        let mut origins = Origins::default();
        assert!(
            origins.in_order("a", 5, false),
            "a node first heard of starts anywhere"
        );
        assert!(origins.in_order("a", 6, false));
        assert!(origins.in_order("b", 1, false));
        assert!(!origins.in_order("a", 8, false), "7 went missing");
        assert!(origins.in_order("a", 9, false));
        assert!(
            origins.in_order("a", 12, true),
            "a report of lost frames explains a gap"
        );
    }
}
