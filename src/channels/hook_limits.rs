//! A hook's `max_concurrency` and `rate_per_second` held across every node (with
//! `HERALD_REDIS_URL`): one Lua script in Redis takes a send's slot and its rate cell together,
//! or neither, so N nodes send a hook no more than one node would.
//!
//! **Slots.** `<prefix>:hooks:slots:<hook>` is a sorted set of the permits held now: a member
//! `<node id>:<random>` per send in flight, scored by when it runs out (the longest a send may
//! take, [`crate::outbox::lease_for`] the delivery timeout). A send ends by removing its member.
//! A node that dies cannot do that, so each node holding permits keeps a liveness key,
//! `<prefix>:hooks:node:<node id>`, alive for `HERALD_NODE_LEASE` (set with each permit taken
//! and renewed every `HERALD_NODE_RENEW_INTERVAL` while the node is live by its database lease,
//! `node::NodeLease::is_live`); when a hook's slots are all taken, the script drops the permits
//! of nodes whose key is gone. A killed node's slots are so free again about when its claims
//! are taken over, not when the permits' own leases run out.
//!
//! **Rate.** `<prefix>:hooks:rate:<hook>` is a GCRA ("generic cell rate algorithm") bucket: the
//! theoretical arrival time of the next cell, in microseconds of Redis's own clock (so the
//! nodes' clocks do not matter). A hook gets `rate` cells a second with a burst of `rate`, the
//! same quota `governor` gives a single node (`Quota::per_second`).
//!
//! Redis unreachable: sends of hooks wait (the delivery is deferred, not attempted), rather
//! than break the limits by falling back to each node's own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::RngExt;

use crate::cluster::RedisLink;
use crate::node::NodeLease;

/// Takes a slot and a rate cell for one send, both or neither. Returns `{1, 0, 0}` when
/// granted, `{0, 0, ms}` when every slot is taken and has been for `ms` (since a send last
/// found one free, on any node), `{0, ms, 0}` when the rate allows the next send in `ms`.
///
/// KEYS: slots, rate bucket, when a slot was last free. ARGV: max concurrency, rate per second
/// (0: none), permit lease ms, member, prefix of nodes' liveness keys, this node's liveness
/// key, its time to live ms.
const ACQUIRE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local held = redis.call('ZCARD', KEYS[1])
if held >= max then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local node = string.match(member, '^([^:]+):')
    if node and redis.call('EXISTS', ARGV[5] .. node) == 0 then
      redis.call('ZREM', KEYS[1], member)
      held = held - 1
    end
  end
  if held >= max then
    local free = tonumber(redis.call('GET', KEYS[3]) or now_ms)
    return {0, 0, now_ms - free}
  end
end
local rate = tonumber(ARGV[2])
if rate > 0 then
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local interval = 1000000 / rate
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat < now_us then
    tat = now_us
  end
  local next_tat = tat + interval
  local early = next_tat - now_us - 1000000
  if early > 0 then
    return {0, math.ceil(early / 1000), 0}
  end
  redis.call('SET', KEYS[2], string.format('%.0f', next_tat), 'PX', 2000)
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
redis.call('SET', ARGV[6], '1', 'PX', tonumber(ARGV[7]))
redis.call('SET', KEYS[3], now_ms, 'PX', tonumber(ARGV[3]) + 1000)
return {1, 0, 0}
";

/// What a send of a hook may do now.
pub enum Admission {
    /// Send; the slot is held until this is dropped.
    Granted(SharedPermit),
    /// Every slot is taken (on some node), and has been for this long.
    Busy(Duration),
    /// Over the rate: the next cell is free in this long.
    RateLimited(Duration),
    /// Redis did not answer: wait this long and try again.
    Unavailable(Duration),
}

/// The hooks' limits as one cluster sees them, through Redis.
pub struct SharedHookLimits {
    link: Arc<RedisLink>,
    /// `<prefix>:hooks`, the start of every key here.
    keys: String,
    node: Arc<NodeLease>,
    /// How long a permit lasts at most (its holder normally removes it sooner).
    permit_lease: Duration,
    /// Permits this node holds now; its liveness key is renewed only while there are some.
    held: AtomicUsize,
    /// The liveness key was not set the last time it was tried (Redis was down): say so once.
    quiet_failures: std::sync::atomic::AtomicBool,
}

impl SharedHookLimits {
    pub fn new(
        link: Arc<RedisLink>,
        prefix: &str,
        node: Arc<NodeLease>,
        permit_lease: Duration,
    ) -> Arc<SharedHookLimits> {
        Arc::new(SharedHookLimits {
            link,
            keys: format!("{prefix}:hooks"),
            node,
            permit_lease,
            held: AtomicUsize::new(0),
            quiet_failures: Default::default(),
        })
    }

    fn node_key(&self, node_id: i64) -> String {
        format!("{}:node:{node_id}", self.keys)
    }

    /// Asks for a slot (and a rate cell, with a rate) of hook `hook_id` for one send.
    pub async fn admit(
        self: &Arc<Self>,
        hook_id: i64,
        max_concurrency: i64,
        rate_per_second: Option<i64>,
    ) -> Admission {
        if !self.node.is_live() {
            // Fenced: its liveness key may have lapsed, and so its permits with it.
            return Admission::Unavailable(Duration::from_secs(1));
        }
        let node_id = self.node.id();
        let member = format!("{node_id}:{:016x}", rand::rng().random::<u64>());
        let mut script = redis::pipe();
        script
            .cmd("EVAL")
            .arg(ACQUIRE_SCRIPT)
            .arg(3)
            .arg(format!("{}:slots:{hook_id}", self.keys))
            .arg(format!("{}:rate:{hook_id}", self.keys))
            .arg(format!("{}:free:{hook_id}", self.keys))
            .arg(max_concurrency.clamp(1, 1000))
            .arg(rate_per_second.unwrap_or(0).clamp(0, 100_000))
            .arg(self.permit_lease.as_millis() as i64)
            .arg(&member)
            .arg(format!("{}:node:", self.keys))
            .arg(self.node_key(node_id))
            .arg(self.node.lease.as_millis() as i64);
        let answer: redis::RedisResult<((i64, i64, i64),)> = self.link.query(&script).await;
        match answer {
            Ok(((1, _, _),)) => {
                self.held.fetch_add(1, Ordering::AcqRel);
                Admission::Granted(SharedPermit {
                    limits: self.clone(),
                    key: format!("{}:slots:{hook_id}", self.keys),
                    member,
                })
            }
            Ok(((_, 0, busy_ms),)) => Admission::Busy(Duration::from_millis(busy_ms.max(0) as u64)),
            Ok(((_, wait_ms, _),)) => {
                Admission::RateLimited(Duration::from_millis(wait_ms.max(1) as u64))
            }
            Err(error) => {
                tracing::warn!(%error, hook = hook_id, "could not take a hook's slot in Redis; its sends wait");
                Admission::Unavailable(Duration::from_secs(1))
            }
        }
    }

    async fn release(&self, key: String, member: String) {
        let mut release = redis::pipe();
        release.cmd("ZREM").arg(&key).arg(&member).ignore();
        if let Err(error) = self.link.query::<()>(&release).await {
            // Its node's liveness key or its own lease frees it later.
            tracing::debug!(%error, "could not give a hook's slot back in Redis");
        }
        self.held.fetch_sub(1, Ordering::AcqRel);
    }

    /// Keeps this node's liveness key alive while it holds permits and is live, every
    /// `every`; at `stop`, deletes it (the node's permits are given back one by one before).
    pub async fn keep_alive(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => break,
            }
            if self.held.load(Ordering::Acquire) == 0 || !self.node.is_live() {
                continue;
            }
            let mut renew = redis::pipe();
            renew
                .cmd("SET")
                .arg(self.node_key(self.node.id()))
                .arg(1)
                .arg("PX")
                .arg(self.node.lease.as_millis() as i64)
                .ignore();
            match self.link.query::<()>(&renew).await {
                Ok(()) => {
                    if self.quiet_failures.swap(false, Ordering::AcqRel) {
                        tracing::info!("this node's hook slots are renewed in Redis again");
                    }
                }
                Err(error) => {
                    if !self.quiet_failures.swap(true, Ordering::AcqRel) {
                        tracing::warn!(%error, "could not renew this node's hook slots in Redis; the other nodes free them when they lapse");
                    }
                }
            }
        }
        let mut goodbye = redis::pipe();
        goodbye
            .cmd("DEL")
            .arg(self.node_key(self.node.id()))
            .ignore();
        if let Err(error) = self.link.query::<()>(&goodbye).await {
            tracing::debug!(%error, "could not delete this node's hook liveness key; it lapses");
        }
    }
}

/// A hook's slot held for one send; given back when dropped (also when the send is
/// abandoned).
pub struct SharedPermit {
    limits: Arc<SharedHookLimits>,
    key: String,
    member: String,
}

impl Drop for SharedPermit {
    fn drop(&mut self) {
        let limits = self.limits.clone();
        let key = std::mem::take(&mut self.key);
        let member = std::mem::take(&mut self.member);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { limits.release(key, member).await });
            }
            // No runtime (the process is ending): the permit lapses with its node's key.
            Err(_) => {
                limits.held.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}
