//! The bus carries server frames to every socket of a user, wherever it is connected.
//!
//! **Boundary**: sockets only ever `publish` to a user and read their own subscription; they
//! never look at another socket. The in-process bus is the single-node implementation; a Redis
//! one will sit behind the same trait for several nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Frames queued for one socket before it counts as too slow and stops receiving.
pub const SOCKET_BUFFER: usize = 256;

pub trait Bus: Send + Sync + 'static {
    /// Delivers a frame (JSON text) to every socket of `user`.
    fn publish(&self, user: i64, frame: Arc<str>);
    /// A new socket of `user`: its id and its frames.
    fn subscribe(&self, user: i64) -> (u64, mpsc::Receiver<Arc<str>>);
    fn unsubscribe(&self, user: i64, socket: u64);
    /// A socket of `user` came (`+1`) or went (`-1`); returns how many are live now. Detached
    /// sessions waiting for `resume` keep their subscription but are not live.
    fn live(&self, user: i64, change: i64) -> usize;
}

/// The sockets of one user on this node: (socket id, its frames).
type UserSockets = Vec<(u64, mpsc::Sender<Arc<str>>)>;

#[derive(Default)]
pub struct InProcessBus {
    next: AtomicU64,
    sockets: Mutex<HashMap<i64, UserSockets>>,
    live: Mutex<HashMap<i64, usize>>,
}

impl Bus for InProcessBus {
    fn publish(&self, user: i64, frame: Arc<str>) {
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = sockets.get(&user) {
            for (id, sender) in list {
                if sender.try_send(frame.clone()).is_err() {
                    // A socket this far behind is closed by its own task when it sees the gap.
                    tracing::warn!(user, socket = id, "chat socket too slow; frame dropped");
                }
            }
        }
    }

    fn subscribe(&self, user: i64) -> (u64, mpsc::Receiver<Arc<str>>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(SOCKET_BUFFER);
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user)
            .or_default()
            .push((id, sender));
        (id, receiver)
    }

    fn unsubscribe(&self, user: i64, socket: u64) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = sockets.get_mut(&user) {
            list.retain(|(id, _)| *id != socket);
            if list.is_empty() {
                sockets.remove(&user);
            }
        }
    }

    fn live(&self, user: i64, change: i64) -> usize {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let count = live.entry(user).or_default();
        *count = (*count as i64 + change).max(0) as usize;
        let now = *count;
        if now == 0 {
            live.remove(&user);
        }
        now
    }
}
