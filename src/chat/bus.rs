//! The bus carries server frames to every session of a user, wherever it is connected.
//!
//! A subscription is a session's log (`resume::SessionLog`): publishing appends the frame to it,
//! and the session's socket writes from there at its own pace. Nothing is queued in between, so
//! a frame is never dropped on the way; a socket that cannot keep up is closed by its own task
//! and its frames wait in the log for `resume` (the log's limits say how long).
//!
//! **Boundary**: sockets only ever `publish` to a user and read their own session's log; they
//! never look at another socket. The in-process bus is the single-node implementation; a Redis
//! one will sit behind the same trait for several nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::resume::SessionLog;

pub trait Bus: Send + Sync + 'static {
    /// Delivers a frame (JSON text) to every session of `user`.
    fn publish(&self, user: i64, frame: Arc<str>);
    /// A new session of `user`, whose frames go to `log`; returns the subscription's id.
    fn subscribe(&self, user: i64, log: Arc<SessionLog>) -> u64;
    fn unsubscribe(&self, user: i64, subscription: u64);
    /// A socket of `user` came (`+1`) or went (`-1`); returns how many are live now (`0` asks
    /// without changing). Detached sessions waiting for `resume` keep their subscription but
    /// are not live.
    fn live(&self, user: i64, change: i64) -> usize;
}

/// The sessions of one user on this node: (subscription id, its log).
type UserLogs = Vec<(u64, Arc<SessionLog>)>;

#[derive(Default)]
pub struct InProcessBus {
    next: AtomicU64,
    logs: Mutex<HashMap<i64, UserLogs>>,
    live: Mutex<HashMap<i64, usize>>,
}

impl Bus for InProcessBus {
    fn publish(&self, user: i64, frame: Arc<str>) {
        // Appended under the lock, so that all sessions of a user see frames in one order;
        // trimming the node's total runs after it, since it locks other logs.
        let mut over_budget = None;
        {
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            for (_, log) in logs.get(&user).into_iter().flatten() {
                if log.append(frame.clone()) {
                    over_budget = Some(log.clone());
                }
            }
        }
        if let Some(log) = over_budget {
            log.trim_budget();
        }
    }

    fn subscribe(&self, user: i64, log: Arc<SessionLog>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user)
            .or_default()
            .push((id, log));
        id
    }

    fn unsubscribe(&self, user: i64, subscription: u64) {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = logs.get_mut(&user) {
            list.retain(|(id, _)| *id != subscription);
            if list.is_empty() {
                logs.remove(&user);
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
