//! What a node must have besides its database to take traffic: links that can fail while the
//! process goes on (the chat bus's Redis link). `/readyz` answers 503 with their reasons while
//! any of them is down, so that a load balancer sends no one to a node that would serve them
//! half (a node that publishes to the other nodes but no longer hears them).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The links of this node that are down now, each with the reason.
#[derive(Default)]
pub struct Readiness {
    down: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// `link` is down for `reason`; it stays so until [`up`](Self::up).
    pub fn down(&self, link: &'static str, reason: impl Into<String>) {
        self.lock().insert(link, reason.into());
    }

    pub fn up(&self, link: &'static str) {
        self.lock().remove(link);
    }

    /// The reasons of every link that is down, in a stable order; empty when all are up.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(link, reason)| format!("{link}: {reason}"))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_a_problem_until_it_is_up_again() {
        let readiness = Readiness::default();
        assert!(readiness.problems().is_empty());
        readiness.down("chat bus", "connection refused");
        assert_eq!(readiness.problems(), ["chat bus: connection refused"]);
        readiness.up("chat bus");
        assert!(readiness.problems().is_empty());
    }
}
