//! Gathering sends that can share one platform call: the first send of a group waits a short
//! window (or until the group is full), then makes one call for every member and hands each
//! member its own result. Kakao's Event API takes up to 100 users per call, and a push's
//! fan-out to many Kakao contacts reaches the channel as many concurrent deliveries with the
//! same text; this turns them into a few calls while each delivery keeps its own attempt,
//! retries and log.
//!
//! Members are keyed: only sends with the same key (the same message) share a call, and a
//! destination appears at most once per call (a second send to it goes alone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

struct Group<T> {
    destinations: Vec<String>,
    /// One per member after the first (the leader, who sends).
    waiting: Vec<Option<oneshot::Sender<T>>>,
    full: Arc<Notify>,
}

type Shared<T> = Arc<Mutex<Group<T>>>;

pub struct Coalescer<T> {
    open: Mutex<HashMap<String, Shared<T>>>,
    window: Duration,
    max: usize,
}

enum Role<T> {
    Leader(Shared<T>, Arc<Notify>),
    Follower(oneshot::Receiver<T>),
    Alone,
}

/// Takes an open group out of the map if the leader goes away before sending (its send timed
/// out, say), so that no one joins a group that will never be sent; its members are told by
/// their dropped senders.
struct LeaderGuard<'a, T> {
    open: &'a Mutex<HashMap<String, Shared<T>>>,
    key: &'a str,
    group: Option<Shared<T>>,
}

impl<T> Drop for LeaderGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.get(self.key).is_some_and(|g| Arc::ptr_eq(g, &group)) {
                open.remove(self.key);
            }
        }
    }
}

impl<T: Send + 'static> Coalescer<T> {
    pub fn new(window: Duration, max: usize) -> Coalescer<T> {
        Coalescer {
            open: Mutex::default(),
            window,
            max: max.max(1),
        }
    }

    /// Sends `destination`'s message with whichever other sends of `key` arrive within the
    /// window. `send` gets the group's destinations (this one first or later) and must return
    /// one result per destination, in order; `abandoned` is this member's result when the
    /// group's sender went away before answering.
    pub async fn send<F, Fut>(
        &self,
        key: &str,
        destination: &str,
        send: F,
        abandoned: impl FnOnce() -> T,
    ) -> T
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Vec<T>>,
    {
        match self.join(key, destination) {
            Role::Follower(answer) => answer.await.unwrap_or_else(|_| abandoned()),
            Role::Alone => send(vec![destination.to_string()])
                .await
                .into_iter()
                .next()
                .unwrap_or_else(abandoned),
            Role::Leader(group, full) => {
                let mut guard = LeaderGuard {
                    open: &self.open,
                    key,
                    group: Some(group.clone()),
                };
                tokio::select! {
                    _ = tokio::time::sleep(self.window) => {}
                    _ = full.notified() => {}
                }
                // Closed: no one joins from here on.
                drop(guard.group.take());
                {
                    let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                    if open.get(key).is_some_and(|g| Arc::ptr_eq(g, &group)) {
                        open.remove(key);
                    }
                }
                let (destinations, waiting) = {
                    let mut group = group.lock().unwrap_or_else(|p| p.into_inner());
                    (
                        std::mem::take(&mut group.destinations),
                        std::mem::take(&mut group.waiting),
                    )
                };
                let mut results = send(destinations).await.into_iter();
                let mine = results.next();
                for (waiter, result) in waiting.into_iter().zip(results) {
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(result);
                    }
                }
                mine.unwrap_or_else(abandoned)
            }
        }
    }

    fn join(&self, key: &str, destination: &str) -> Role<T> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = open.get(key) {
            let mut group = shared.lock().unwrap_or_else(|p| p.into_inner());
            if group.destinations.iter().any(|d| d == destination) {
                return Role::Alone;
            }
            let (sender, receiver) = oneshot::channel();
            group.destinations.push(destination.to_string());
            group.waiting.push(Some(sender));
            if group.destinations.len() >= self.max {
                group.full.notify_one();
                drop(group);
                open.remove(key);
            }
            return Role::Follower(receiver);
        }
        if self.max == 1 {
            return Role::Alone;
        }
        let full = Arc::new(Notify::new());
        let group = Arc::new(Mutex::new(Group {
            destinations: vec![destination.to_string()],
            waiting: Vec::new(),
            full: full.clone(),
        }));
        open.insert(key.to_string(), group.clone());
        Role::Leader(group, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_sends_of_one_message_share_calls_of_at_most_max() {
        let coalescer = Arc::new(Coalescer::<String>::new(Duration::from_millis(50), 3));
        let calls = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let tasks: Vec<_> = (0..7)
            .map(|n| {
                let coalescer = coalescer.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    coalescer
                        .send(
                            "hello",
                            &format!("user{n}"),
                            |group| async move {
                                calls.lock().expect("lock").push(group.clone());
                                group.iter().map(|d| format!("sent to {d}")).collect()
                            },
                            || "abandoned".to_string(),
                        )
                        .await
                })
            })
            .collect();
        for (n, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.expect("no panic"), format!("sent to user{n}"));
        }
        let calls = calls.lock().expect("lock");
        let mut sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 3, 3], "7 sends with max 3: {calls:?}");
    }

    #[tokio::test]
    async fn a_destination_twice_and_another_message_go_separately() {
        let coalescer = Arc::new(Coalescer::<usize>::new(Duration::from_millis(50), 100));
        let calls = Arc::new(AtomicUsize::new(0));
        let send = |key: &'static str, destination: &'static str| {
            let coalescer = coalescer.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                coalescer
                    .send(
                        key,
                        destination,
                        |group| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            vec![group.len(); group.len()]
                        },
                        || 0,
                    )
                    .await
            })
        };
        let a = send("one", "alice");
        tokio::task::yield_now().await;
        let b = send("one", "bob");
        let a_again = send("one", "alice");
        let c = send("two", "carol");
        assert_eq!(a.await.expect("a"), 2);
        assert_eq!(b.await.expect("b"), 2);
        assert_eq!(a_again.await.expect("a again"), 1);
        assert_eq!(c.await.expect("c"), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
