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
/// A key whose bucket has drained is the same as one never seen, so it is dropped: memory holds
/// only the keys that acted within the last window.
pub struct WindowLimit<K> {
    /// What one event adds to a bucket.
    cost: Duration,
    /// How full a bucket may be after an allowed event.
    capacity: Duration,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    /// When each key's bucket is empty again.
    empty_at: HashMap<K, Instant>,
    /// The size past which drained buckets are swept out; it follows the live size, so each
    /// sweep is paid for by as many insertions as it visits.
    sweep_at: usize,
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
            buckets: Mutex::new(Buckets {
                empty_at: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// Counts one event for `key` if the limit allows it; otherwise counts nothing and says how
    /// long until one more event would be allowed.
    pub fn acquire(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.lock();
        let empty_at = buckets
            .empty_at
            .get(key)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        let filled = empty_at + self.cost;
        let over = filled.saturating_duration_since(now);
        if over > self.capacity {
            return Err(over - self.capacity);
        }
        buckets.empty_at.insert(key.clone(), filled);
        if buckets.empty_at.len() >= buckets.sweep_at {
            buckets.empty_at.retain(|_, at| *at > now);
            buckets.sweep_at = (buckets.empty_at.len() * 2).max(MIN_SWEEP);
        }
        Ok(())
    }

    /// Takes back one event counted by [`acquire`](Self::acquire): what was tried succeeded, and
    /// only failures count.
    pub fn release(&self, key: &K) {
        let mut buckets = self.lock();
        if let Some(at) = buckets.empty_at.get_mut(key) {
            *at = at.checked_sub(self.cost).unwrap_or(*at);
        }
    }

    /// How many keys are held (for tests of the forgetting).
    pub fn len(&self) -> usize {
        self.lock().empty_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        // The map holds only instants: a panic elsewhere cannot leave it inconsistent.
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
            limit.release(&"a");
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
