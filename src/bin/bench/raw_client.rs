//! The load generators' own HTTP/1.1 and WebSocket client, written by hand over tokio's TCP
//! streams.
//!
//! It is hand-written on purpose. The load generator, the fakes and herald share the same two
//! cores, so every microsecond the generator spends per request is taken from herald and shows
//! up in herald's figures. This client does only what the scenarios need: requests are built
//! (and signed) before the clock starts and written whole to a keep-alive socket, a response is
//! read as a status line, a `Content-Length` and a body to skip, and a WebSocket frame is read
//! as a header and a payload searched for a byte pattern instead of parsed as JSON. The clients
//! it replaced measured the generator along with herald: with reqwest building each push after
//! the clock had started, part of every delivery's latency was the generator's own work, and
//! thousands of tungstenite clients parsing every frame could not offer the chat scenario's
//! rate on these cores (the figures are in docs/benchmarks-log.md). A general client such as
//! hyper's or tokio-tungstenite's would put that per-request work back in, and the figures would
//! no longer compare with the earlier ones. (The scenarios that measure something else — set-up,
//! search, one push at a time — use reqwest and tokio-tungstenite.)

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status code.
pub async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<u16> {
    use tokio::io::AsyncReadExt;
    let broken = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response");
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).map_err(|_| broken())?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(broken)?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())
                        .flatten()
                })
                .ok_or_else(broken)?;
            let total = end + 4 + length;
            while buffer.len() < total {
                let mut chunk = [0u8; 16 * 1024];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(broken());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(broken());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Closed-loop load: each connection sends its next request as soon as the last answer is in.
/// Returns (answers with status 200, other answers or errors, latencies).
pub async fn http_load(
    address: std::net::SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    duration: Duration,
) -> (u64, u64, Vec<Duration>) {
    use tokio::io::AsyncWriteExt;
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
                return (0, 1, latencies);
            };
            let _ = stream.set_nodelay(true);
            let mut buffer = Vec::with_capacity(16 * 1024);
            let mut i = c;
            while Instant::now() < deadline {
                let request = &requests[i % requests.len()];
                i += connections;
                let started = Instant::now();
                if stream.write_all(request).await.is_err() {
                    failed += 1;
                    break;
                }
                match read_response(&mut stream, &mut buffer).await {
                    Ok(200) => {
                        ok += 1;
                        latencies.push(started.elapsed());
                    }
                    Ok(_) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        break;
                    }
                }
            }
            (ok, failed, latencies)
        }));
    }
    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        if let Ok((o, f, l)) = task.await {
            ok += o;
            failed += f;
            latencies.extend(l);
        }
    }
    (ok, failed, latencies)
}

/// A minimal WebSocket client over a raw TCP stream: the upgrade, masked text frames out
/// (with a zero mask, which the protocol allows), unmasked frames in. It does only what the
/// latency benchmark needs, so that the generator's CPU goes to moving bytes.
pub struct RawWs(tokio::net::TcpStream);

impl RawWs {
    /// Connects, upgrades, and sends heartbeat and auth; returns once `auth` is answered.
    pub async fn open(address: std::net::SocketAddr, token: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("upgrade");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.expect("upgrade answer");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        let mut ws = RawWs(stream);
        RawWs::write_text(&mut ws.0, r#"{"type":"heartbeat","payload":0}"#)
            .await
            .expect("heartbeat");
        let auth = format!(r#"{{"type":"auth","payload":{{"auth":"{token}"}}}}"#);
        RawWs::write_text(&mut ws.0, &auth).await.expect("auth");
        loop {
            let frame = read_frame(&mut ws.0).await.expect("auth answer");
            const AUTH: &[u8] = br#""type":"auth""#;
            if frame.windows(AUTH.len()).any(|w| w == AUTH) {
                return ws;
            }
        }
    }

    pub fn into_split(
        self,
    ) -> (
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        self.0.into_split()
    }

    pub async fn write_text<W: tokio::io::AsyncWrite + Unpin>(
        writer: &mut W,
        text: &str,
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut frame = Vec::with_capacity(text.len() + 8);
        frame.push(0x81);
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        writer.write_all(&frame).await
    }
}

/// Reads one server frame's payload (servers do not mask).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await?;
    let length = match head[1] & 0x7f {
        126 => reader.read_u16().await? as usize,
        127 => reader.read_u64().await? as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Reads frames until the socket closes; with `samples`, records the latency of every frame
/// whose content is `t=<nanoseconds since epoch>`.
pub async fn read_frames(
    reader: tokio::net::tcp::OwnedReadHalf,
    samples: Option<Arc<std::sync::Mutex<Vec<Duration>>>>,
    epoch: Instant,
) {
    let mut reader = tokio::io::BufReader::with_capacity(4096, reader);
    const MARK: &[u8] = br#""content":"t="#;
    while let Ok(frame) = read_frame(&mut reader).await {
        let Some(samples) = &samples else { continue };
        let Some(at) = frame.windows(MARK.len()).position(|w| w == MARK) else {
            continue;
        };
        let digits = frame[at + MARK.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        let latency = epoch.elapsed().saturating_sub(Duration::from_nanos(digits));
        samples.lock().expect("lock").push(latency);
    }
}
