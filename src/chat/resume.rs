//! Sequence numbers and `resume`. After `auth`, every server frame carries `"seq": n` and is kept
//! in the socket's frame log (the last [`LOG_FRAMES`]). When the socket drops, its subscription
//! stays alive for [`RESUME_WINDOW`] in a detached task that keeps logging what arrives; a new
//! socket that sends `resume` with the session id, its token and the last `seq` it saw gets the
//! missed frames in order and carries on — or is told it cannot, and authenticates afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// How long a dropped session can be resumed.
pub const RESUME_WINDOW: Duration = Duration::from_secs(120);
/// Frames kept per session for replay.
pub const LOG_FRAMES: usize = 1000;

#[derive(Debug, Default)]
pub struct FrameLog {
    next_seq: u64,
    frames: VecDeque<(u64, Arc<str>)>,
}

impl FrameLog {
    /// Numbers a frame (a JSON object) and keeps it; returns the text to send.
    pub fn stamp(&mut self, text: &str) -> Arc<str> {
        self.next_seq += 1;
        let seq = self.next_seq;
        let stamped: Arc<str> = match text.strip_prefix('{') {
            Some(rest) => Arc::from(format!("{{\"seq\":{seq},{rest}")),
            None => Arc::from(text),
        };
        self.frames.push_back((seq, stamped.clone()));
        if self.frames.len() > LOG_FRAMES {
            self.frames.pop_front();
        }
        stamped
    }

    /// Every frame after `last_seq`, in order — or `None` if some of them are no longer kept
    /// (or `last_seq` is from the future).
    pub fn since(&self, last_seq: u64) -> Option<Vec<Arc<str>>> {
        if last_seq > self.next_seq {
            return None;
        }
        let oldest = self
            .frames
            .front()
            .map_or(self.next_seq + 1, |(seq, _)| *seq);
        if last_seq + 1 < oldest {
            return None;
        }
        Some(
            self.frames
                .iter()
                .filter(|(seq, _)| *seq > last_seq)
                .map(|(_, text)| text.clone())
                .collect(),
        )
    }
}

/// What a session hands from one socket to the next.
pub struct SessionState {
    pub account_id: i64,
    pub socket_id: u64,
    pub receiver: mpsc::Receiver<Arc<str>>,
    pub log: FrameLog,
}

type Takeover = oneshot::Sender<SessionState>;

/// Sessions whose socket dropped and that may still be resumed, on this node.
#[derive(Default)]
pub struct Sessions {
    detached: Mutex<HashMap<String, (i64, mpsc::Sender<Takeover>)>>,
}

impl Sessions {
    /// Keeps a dropped session alive: logs what its subscription receives until it is resumed
    /// or the window passes; then `expire` runs (unsubscribe, presence).
    pub fn detach(
        self: &Arc<Self>,
        session: String,
        mut state: SessionState,
        expire: impl FnOnce(i64, u64) + Send + 'static,
    ) {
        let (takeover, mut requests) = mpsc::channel::<Takeover>(1);
        self.lock()
            .insert(session.clone(), (state.account_id, takeover));
        let sessions = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + RESUME_WINDOW;
            loop {
                tokio::select! {
                    frame = state.receiver.recv() => match frame {
                        Some(text) => {
                            state.log.stamp(&text);
                        }
                        None => break,
                    },
                    request = requests.recv() => {
                        if let Some(reply) = request {
                            let _ = reply.send(state);
                            return;
                        }
                        break;
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            sessions.lock().remove(&session);
            expire(state.account_id, state.socket_id);
        });
    }

    /// Takes over a detached session of `account_id`, if it is still there.
    pub async fn resume(&self, session: &str, account_id: i64) -> Option<SessionState> {
        let (owner, takeover) = self.lock().remove(session)?;
        if owner != account_id {
            // Not yours: put it back untouched.
            self.lock().insert(session.to_string(), (owner, takeover));
            return None;
        }
        let (reply, answer) = oneshot::channel();
        takeover.send(reply).await.ok()?;
        answer.await.ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, mpsc::Sender<Takeover>)>> {
        self.detached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_numbered_and_replayed_from_any_kept_point() {
        let mut log = FrameLog::default();
        let first = log.stamp(r#"{"type":"a"}"#);
        assert_eq!(&*first, r#"{"seq":1,"type":"a"}"#);
        log.stamp(r#"{"type":"b"}"#);
        log.stamp(r#"{"type":"c"}"#);
        assert_eq!(log.since(1).map(|f| f.len()), Some(2));
        assert_eq!(log.since(3).map(|f| f.len()), Some(0));
        assert!(log.since(4).is_none());
        for _ in 0..LOG_FRAMES {
            log.stamp(r#"{"type":"x"}"#);
        }
        assert!(log.since(1).is_none(), "frame 2 is gone");
        assert!(log.since(LOG_FRAMES as u64).is_some());
    }
}
