//! What one socket still has to send, and the task that writes it.
//!
//! Before `auth` a socket's frames (heartbeat echoes, errors) are unnumbered and queued here;
//! after it, its session's log is the queue (`resume.rs`). The connection's own task never waits
//! for the client to read: it only queues, so it always reads the client's frames — heartbeats
//! included — on time. The writer task alone waits on the client, and a client that falls
//! behind is reported to the connection task, which closes the socket as too slow
//! ([`CLOSE_TOO_SLOW`]):
//!
//! - its frames not yet written take more than [`ChatLimits::backlog_bytes`];
//! - one frame could not be written within the heartbeat timeout (the client is not reading);
//! - its next frame was dropped from the session's log at a memory limit (a gap).
//!
//! Closing never writes frames after the decision: the ones not written stay in the session's
//! log for `resume`.
//!
//! [`ChatLimits::backlog_bytes`]: super::resume::ChatLimits::backlog_bytes

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::resume::{SessionLog, Unsent, stamped};

/// The close code of a socket too slow to take its frames: resume to get the rest.
pub const CLOSE_TOO_SLOW: u16 = 4001;

/// Why the writer gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The client does not take its frames fast enough.
    TooSlow,
    /// The connection failed under the writer.
    Broken,
}

/// A close the connection task decided on.
#[derive(Debug, Clone)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
    /// Whether what is still queued is dropped, and a write under way given up, rather than
    /// written first: the client is too slow or silent, and the close frame should not wait.
    pub abandon: bool,
}

pub struct Outbound {
    state: Mutex<State>,
    /// Wakes the writer: a frame was queued or logged, or the socket is closing.
    wake: Arc<Notify>,
    backlog_limit: usize,
}

#[derive(Default)]
struct State {
    queued: VecDeque<String>,
    queued_bytes: usize,
    /// After `auth`: the session's log and this socket's token in it.
    log: Option<(Arc<SessionLog>, u64)>,
    /// `Some(None)`: end without a close frame of our own (the client closed, or is gone).
    close: Option<Option<Close>>,
}

enum Next {
    Queued(String),
    Logged { seq: u64, text: String },
    Close(Option<Close>),
    TooSlow,
    Idle,
}

impl Outbound {
    pub fn new(backlog_limit: usize) -> Arc<Outbound> {
        Arc::new(Outbound {
            state: Mutex::default(),
            wake: Arc::new(Notify::new()),
            backlog_limit,
        })
    }

    /// What a session log notifies when it has a frame for this socket.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Queues an unnumbered frame (before `auth`).
    pub fn queue(&self, text: String) {
        let mut state = self.lock();
        state.queued_bytes += text.len();
        state.queued.push_back(text);
        drop(state);
        self.wake.notify_one();
    }

    /// From now on this socket sends `log`'s frames, as socket `token`.
    pub fn follow(&self, log: Arc<SessionLog>, token: u64) {
        self.lock().log = Some((log, token));
        self.wake.notify_one();
    }

    /// Ends the socket: with `close`'s frame, or (`None`) without one of our own.
    pub fn close(&self, close: Option<Close>) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some(close);
        }
        drop(state);
        self.wake.notify_one();
    }

    fn next(&self) -> Next {
        let mut state = self.lock();
        if let Some(close) = state.close.clone() {
            let send_queued = close.as_ref().is_some_and(|c| !c.abandon);
            return match state.queued.pop_front() {
                Some(text) if send_queued => {
                    state.queued_bytes -= text.len();
                    Next::Queued(text)
                }
                _ => Next::Close(close),
            };
        }
        let (unsent, logged) = match &state.log {
            Some((log, token)) => log.next_unsent(*token),
            None => (Unsent::Nothing, 0),
        };
        if state.queued_bytes + logged > self.backlog_limit {
            return Next::TooSlow;
        }
        if let Some(text) = state.queued.pop_front() {
            state.queued_bytes -= text.len();
            return Next::Queued(text);
        }
        match unsent {
            Unsent::Frame { seq, frame } => Next::Logged {
                seq,
                text: stamped(seq, &frame),
            },
            Unsent::Gap => Next::TooSlow,
            Unsent::Nothing => Next::Idle,
        }
    }

    fn sent(&self, seq: u64) {
        if let Some((log, token)) = &self.lock().log {
            log.sent(*token, seq);
        }
    }

    /// Whether the socket is closing without waiting for what is being written.
    fn abandoning(&self) -> bool {
        matches!(
            &self.lock().close,
            Some(None) | Some(Some(Close { abandon: true, .. }))
        )
    }

    fn closing(&self) -> bool {
        self.lock().close.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes the socket's frames until it closes. A write may take at most `write_timeout`;
/// trouble is reported once on `trouble`, after which the writer only waits to close. The close
/// itself is bounded by the connection task, which ends this task when its grace time is over.
pub async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    outbound: Arc<Outbound>,
    write_timeout: Duration,
    trouble: oneshot::Sender<Trouble>,
) {
    let mut trouble = Some(trouble);
    let mut report = |what: Trouble| {
        if let Some(sender) = trouble.take() {
            let _ = sender.send(what);
        }
    };
    let mut stalled = false;
    loop {
        if stalled && !outbound.closing() {
            // Reported as too slow: nothing more is written until the close.
            outbound.wake.notified().await;
            continue;
        }
        let next = outbound.next();
        let (text, seq) = match next {
            Next::Queued(text) => (text, None),
            Next::Logged { seq, text } => (text, Some(seq)),
            Next::Idle => {
                outbound.wake.notified().await;
                continue;
            }
            Next::TooSlow => {
                report(Trouble::TooSlow);
                stalled = true;
                continue;
            }
            Next::Close(close) => {
                let message = match close {
                    Some(close) => Message::Close(Some(CloseFrame {
                        code: close.code,
                        reason: close.reason.into(),
                    })),
                    // The client closed: tungstenite answers it; this flushes the answer.
                    None => {
                        if let Err(error) = sink.close().await {
                            tracing::debug!(%error, "a chat socket's closing handshake failed");
                        }
                        return;
                    }
                };
                if let Err(error) = sink.send(message).await {
                    tracing::debug!(%error, "a chat socket's close frame could not be written");
                }
                return;
            }
        };
        let send = sink.send(Message::Text(text.into()));
        tokio::pin!(send);
        let deadline = Instant::now() + write_timeout;
        loop {
            tokio::select! {
                written = &mut send => {
                    match written {
                        Ok(()) => if let Some(seq) = seq {
                            outbound.sent(seq);
                        },
                        Err(error) => {
                            tracing::debug!(%error, "a chat socket failed while writing");
                            report(Trouble::Broken);
                            return;
                        }
                    }
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    report(Trouble::TooSlow);
                    stalled = true;
                    break;
                }
                _ = outbound.wake.notified() => {
                    // A frame came in or the socket is closing: was that one too many?
                    if outbound.abandoning() {
                        break;
                    }
                    if outbound.over_backlog() {
                        report(Trouble::TooSlow);
                        stalled = true;
                        break;
                    }
                }
            }
        }
    }
}

impl Outbound {
    /// Whether the frames waiting (the one being written included) are over the backlog limit.
    fn over_backlog(&self) -> bool {
        let state = self.lock();
        let logged = match &state.log {
            Some((log, token)) => log.next_unsent(*token).1,
            None => 0,
        };
        state.queued_bytes + logged > self.backlog_limit
    }
}
