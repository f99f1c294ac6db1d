//! Counting what clients do, per key, in memory that forgets: the limits on failed logins, on
//! guesses at the operator token and on sign-ups and their mails. Each node counts alone.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A client as the limits count it: an IPv4 address, or the /64 network of an IPv6 address. One
/// subscriber usually holds a whole IPv6 /64, so counting single IPv6 addresses would let one
/// client act as countless others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl From<IpAddr> for ClientKey {
    fn from(address: IpAddr) -> ClientKey {
        match address {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientKey(IpAddr::V6(network.into()))
                }
            },
        }
    }
}

/// Allows `limit` events per `window` for each key and refuses more, as a leaky bucket: every
/// event adds `window / limit` to the key's bucket, which drains with time, so a client that
/// stops is let back in one event at a time instead of all at once when a fixed window ends.
///
/// With [`WindowLimit::growing`], a key that went past its limit is not let back at the
/// bucket's pace: each refusal period is followed by one allowed event, and that event starts
/// the next refusal period, twice as long as the last (up to a maximum). A key that stays quiet
/// for a while after its last refusal period starts afresh. This is how the failed-login limits
/// slow a persistent guesser down to a handful of guesses an hour, while someone who mistypes a
/// few times a minute never notices them.
///
/// A key whose bucket has drained (and whose refusals are forgotten) is the same as one never
/// seen, so it is dropped: memory holds only the keys that acted lately.
pub struct WindowLimit<K> {
    /// What one event adds to a bucket; also the first refusal period of a growing limit.
    cost: Duration,
    /// How full a bucket may be after an allowed event.
    capacity: Duration,
    growth: Option<Growth>,
    buckets: Mutex<Buckets<K>>,
}

/// How the refusal periods of a [`WindowLimit::growing`] limit grow and end.
#[derive(Debug, Clone, Copy)]
struct Growth {
    /// The longest refusal period.
    max_wait: Duration,
    /// How long after its last refusal period ended a key starts afresh.
    forget_after: Duration,
}

struct Buckets<K> {
    keys: HashMap<K, Key>,
    /// The size past which forgotten keys are swept out; it follows the live size, so each
    /// sweep is paid for by as many insertions as it visits.
    sweep_at: usize,
}

/// One key's state.
#[derive(Debug, Clone, Copy)]
struct Key {
    /// When its bucket is empty again.
    empty_at: Instant,
    /// Refusal periods so far (growing limits only; 0 while the key is within its limit).
    strikes: u32,
    /// The end of the current, or last, refusal period (growing limits only).
    refused_until: Option<Instant>,
}

impl Key {
    fn fresh(now: Instant) -> Key {
        Key {
            empty_at: now,
            strikes: 0,
            refused_until: None,
        }
    }

    /// Whether this key is the same as one never seen.
    fn forgotten(&self, now: Instant, growth: Option<Growth>) -> bool {
        let refusals_over = match (self.refused_until, growth) {
            (Some(until), Some(growth)) => until + growth.forget_after <= now,
            _ => true,
        };
        self.empty_at <= now && refusals_over
    }
}

/// The smallest map that is swept.
const MIN_SWEEP: usize = 1024;

impl<K: Hash + Eq + Clone> WindowLimit<K> {
    /// `limit` events per `window` (at least one).
    pub fn new(limit: u32, window: Duration) -> WindowLimit<K> {
        let limit = limit.max(1);
        WindowLimit {
            cost: window / limit,
            capacity: window,
            growth: None,
            buckets: Mutex::new(Buckets {
                keys: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// `limit` events per `window`; past it, refusal periods that start at `window / limit`
    /// and double with every further event, up to `max_wait`, until the key has been quiet for
    /// `forget_after` after its last one.
    pub fn growing(
        limit: u32,
        window: Duration,
        max_wait: Duration,
        forget_after: Duration,
    ) -> WindowLimit<K> {
        WindowLimit {
            growth: Some(Growth {
                max_wait,
                forget_after,
            }),
            ..WindowLimit::new(limit, window)
        }
    }

    /// The refusal period after `strikes` of them.
    fn refusal_period(&self, strikes: u32, growth: Growth) -> Duration {
        let doublings = strikes.saturating_sub(1).min(32);
        self.cost
            .saturating_mul(1u32 << doublings.min(31))
            .min(growth.max_wait)
    }

    /// Counts one event for `key` if the limit allows it; otherwise counts nothing and says how
    /// long until one more event would be allowed.
    pub fn acquire(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.lock();
        let mut state = buckets
            .keys
            .get(key)
            .copied()
            .filter(|state| !state.forgotten(now, self.growth))
            .unwrap_or_else(|| Key::fresh(now));
        if let Some(until) = state.refused_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        let filled = state.empty_at.max(now) + self.cost;
        match self.growth {
            Some(growth) if state.strikes > 0 => {
                // Past the limit: this event is allowed and starts the next, longer refusal.
                state.strikes += 1;
                state.refused_until = Some(now + self.refusal_period(state.strikes, growth));
                state.empty_at = filled;
            }
            _ => {
                let over = filled.saturating_duration_since(now);
                if over > self.capacity {
                    let Some(growth) = self.growth else {
                        return Err(over - self.capacity);
                    };
                    state.strikes = 1;
                    let wait = self.refusal_period(1, growth);
                    state.refused_until = Some(now + wait);
                    buckets.keys.insert(key.clone(), state);
                    return Err(wait);
                }
                state.empty_at = filled;
            }
        }
        buckets.keys.insert(key.clone(), state);
        if buckets.keys.len() >= buckets.sweep_at {
            let growth = self.growth;
            buckets
                .keys
                .retain(|_, state| !state.forgotten(now, growth));
            buckets.sweep_at = (buckets.keys.len() * 2).max(MIN_SWEEP);
        }
        Ok(())
    }

    /// Takes back one event counted by [`acquire`](Self::acquire): what was tried succeeded, and
    /// only failures count. An event allowed past the limit takes back the refusal period it
    /// started.
    pub fn release(&self, key: &K, now: Instant) {
        let mut buckets = self.lock();
        if let Some(state) = buckets.keys.get_mut(key) {
            state.empty_at = state
                .empty_at
                .checked_sub(self.cost)
                .unwrap_or(state.empty_at);
            if state.strikes > 1 {
                state.strikes -= 1;
                state.refused_until = Some(now);
            }
        }
    }

    /// Forgets `key` altogether: it proved itself (the right password for its account).
    pub fn forget(&self, key: &K) {
        self.lock().keys.remove(key);
    }

    /// How many keys are held (for tests of the forgetting).
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        // The map holds only instants and counts: a panic elsewhere cannot leave it inconsistent.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Seconds for a `Retry-After` header: whole seconds, rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn allows_the_limit_then_refuses_and_lets_one_back_per_share_of_the_window() {
        let limit = WindowLimit::new(3, MINUTE);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.acquire(&"a", start), Ok(()));
        }
        assert_eq!(limit.acquire(&"a", start), Err(Duration::from_secs(20)));
        // Other keys are not affected.
        assert_eq!(limit.acquire(&"b", start), Ok(()));
        let later = start + Duration::from_secs(20);
        assert_eq!(limit.acquire(&"a", later), Ok(()));
        assert!(limit.acquire(&"a", later).is_err());
    }

    #[test]
    fn a_released_event_does_not_count() {
        let limit = WindowLimit::new(2, MINUTE);
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(limit.acquire(&"a", now), Ok(()));
            limit.release(&"a", now);
        }
        assert_eq!(limit.acquire(&"a", now), Ok(()));
        assert_eq!(limit.acquire(&"a", now), Ok(()));
        assert!(limit.acquire(&"a", now).is_err());
    }

    #[test]
    fn one_per_window_refuses_until_the_window_has_passed() {
        let limit = WindowLimit::new(1, Duration::from_secs(300));
        let now = Instant::now();
        assert_eq!(limit.acquire(&"victim", now), Ok(()));
        assert_eq!(
            limit.acquire(&"victim", now + Duration::from_secs(100)),
            Err(Duration::from_secs(200))
        );
        assert_eq!(
            limit.acquire(&"victim", now + Duration::from_secs(300)),
            Ok(())
        );
    }

    #[test]
    fn drained_keys_are_forgotten() {
        let limit = WindowLimit::new(10, MINUTE);
        let now = Instant::now();
        for n in 0..(MIN_SWEEP * 4) {
            limit.acquire(&n, now).expect("a new key is allowed");
        }
        // A minute on, the first keys have drained; the next sweep drops every one of them.
        let later = now + MINUTE;
        for n in 0..(MIN_SWEEP * 4) {
            limit
                .acquire(&(n + 1_000_000), later)
                .expect("a new key is allowed");
        }
        assert_eq!(limit.len(), MIN_SWEEP * 4);
    }

    fn growing() -> WindowLimit<&'static str> {
        WindowLimit::growing(
            2,
            MINUTE,
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn past_a_growing_limit_each_wait_is_twice_the_last_up_to_the_longest() {
        let limit = growing();
        let mut now = Instant::now();
        assert_eq!(limit.acquire(&"a", now), Ok(()));
        assert_eq!(limit.acquire(&"a", now), Ok(()));
        // The first wait is the bucket's own: one event's share of the window.
        assert_eq!(limit.acquire(&"a", now), Err(Duration::from_secs(30)));
        // Asking again during a wait neither shortens nor lengthens it.
        assert_eq!(
            limit.acquire(&"a", now + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        // Then one event after each wait, and each wait twice as long, up to five minutes.
        let mut waits = Vec::new();
        now += Duration::from_secs(30);
        for _ in 0..6 {
            assert_eq!(limit.acquire(&"a", now), Ok(()));
            let wait = limit.acquire(&"a", now).expect_err("refused after one");
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(waits, [60, 120, 240, 300, 300, 300]);
        // Other keys are not affected.
        assert_eq!(limit.acquire(&"b", now), Ok(()));
    }

    #[test]
    fn a_growing_limit_forgets_a_key_quiet_for_long_enough() {
        let limit = growing();
        let now = Instant::now();
        for _ in 0..2 {
            limit.acquire(&"a", now).expect("within the limit");
        }
        let wait = limit.acquire(&"a", now).expect_err("past the limit");
        // Quiet for less than an hour after the wait: still past the limit.
        let soon = now + wait + Duration::from_secs(3599);
        assert_eq!(limit.acquire(&"a", soon), Ok(()));
        assert_eq!(limit.acquire(&"a", soon), Err(Duration::from_secs(60)));
        // Quiet for an hour after the last wait: the limit's whole allowance again.
        let later = soon + Duration::from_secs(60) + Duration::from_secs(3600);
        assert_eq!(limit.acquire(&"a", later), Ok(()));
        assert_eq!(limit.acquire(&"a", later), Ok(()));
        assert_eq!(limit.acquire(&"a", later), Err(Duration::from_secs(30)));
        // A key forgotten that way is not held in memory either.
        for n in 0..(MIN_SWEEP * 2) {
            let key: &'static str = Box::leak(n.to_string().into_boxed_str());
            limit
                .acquire(&key, later + Duration::from_secs(7200))
                .expect("a new key is allowed");
        }
        assert_eq!(limit.len(), MIN_SWEEP * 2, "only the new keys are held");
    }

    #[test]
    fn a_released_event_past_a_growing_limit_takes_back_its_wait() {
        let limit = growing();
        let now = Instant::now();
        for _ in 0..2 {
            limit.acquire(&"a", now).expect("within the limit");
        }
        let wait = limit.acquire(&"a", now).expect_err("past the limit");
        let after = now + wait;
        assert_eq!(limit.acquire(&"a", after), Ok(()));
        limit.release(&"a", after);
        // Not a failure: the next attempt needs no wait, and the one after waits as long as
        // the released one would have made it.
        assert_eq!(limit.acquire(&"a", after), Ok(()));
        assert_eq!(limit.acquire(&"a", after), Err(Duration::from_secs(60)));
        // A forgotten key starts afresh at once.
        limit.forget(&"a");
        assert_eq!(limit.acquire(&"a", after), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("address");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        let v4: IpAddr = "192.0.2.7".parse().expect("address");
        assert_eq!(ClientKey::from(mapped), ClientKey::from(v4));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(6001)), 7);
        assert_eq!(retry_after_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
