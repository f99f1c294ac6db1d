//! A minimal SMTP server (RFC 5321: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
//! that keeps every message it accepts, so tests exercise herald's real SMTP client.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent in DATA (headers and body), dot-unstuffed.
    pub data: String,
}

/// One part of a mail as a reader sees it.
#[derive(Debug, Clone)]
pub struct MailPart {
    /// The media type, lower case, without parameters (`text/plain`, `text/html`).
    pub content_type: String,
    /// The body, its transfer encoding (quoted-printable, base64) undone.
    pub text: String,
}

impl Mail {
    /// The parts of the mail: each part of a `multipart/*` body, else the one body.
    pub fn parts(&self) -> Vec<MailPart> {
        let (headers, body) = split_entity(&self.data);
        let content_type = header_value(&headers, "content-type").unwrap_or_default();
        if !content_type.to_ascii_lowercase().starts_with("multipart/") {
            return vec![MailPart {
                content_type: media_type(&content_type),
                text: decode_body(&headers, body),
            }];
        }
        let Some(boundary) = parameter(&content_type, "boundary") else {
            return Vec::new();
        };
        let delimiter = format!("--{boundary}");
        body.split(delimiter.as_str())
            .skip(1)
            .take_while(|part| !part.starts_with("--"))
            .map(|part| {
                let part = part.strip_prefix("\r\n").unwrap_or(part);
                let (headers, body) = split_entity(part);
                let body = body
                    .strip_suffix("\r\n")
                    .or_else(|| body.strip_suffix('\n'))
                    .unwrap_or(body);
                MailPart {
                    content_type: media_type(
                        &header_value(&headers, "content-type").unwrap_or_default(),
                    ),
                    text: decode_body(&headers, body),
                }
            })
            .collect()
    }

    /// The body as a reader sees it: the plain-text part of a multipart mail, transfer
    /// encoding undone.
    pub fn body_text(&self) -> String {
        let parts = self.parts();
        parts
            .iter()
            .find(|p| p.content_type == "text/plain")
            .or(parts.first())
            .map(|p| p.text.clone())
            .unwrap_or_default()
    }

    /// The HTML part, if the mail has one.
    pub fn html(&self) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type == "text/html")
            .map(|p| p.text)
    }
}

/// Headers (folded lines joined) and body of a message or a part.
fn split_entity(data: &str) -> (String, &str) {
    let (headers, body) = data
        .split_once("\r\n\r\n")
        .or_else(|| data.split_once("\n\n"))
        .unwrap_or(("", data));
    let unfolded = headers
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .replace("\n ", " ");
    (unfolded, body)
}

fn header_value(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn parameter(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

fn decode_body(headers: &str, body: &str) -> String {
    let encoding = header_value(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            use base64::Engine;
            let joined: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(joined)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_else(|_| body.to_string())
        }
        _ => body.to_string(),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && joined.is_char_boundary(i + 3)
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone)]
pub struct FakeSmtp {
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl FakeSmtp {
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(socket, store).await;
                });
            }
        });
        FakeSmtp {
            url: format!("smtp://{address}"),
            mails,
        }
    }

    /// The newest mail to `address`, without copying the others.
    pub fn last_mail_to(&self, address: &str) -> Option<Mail> {
        self.mails
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|m| m.to.iter().any(|t| t == address))
            .cloned()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-fake-smtp\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 fake-smtp\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().trim_matches(['<', '>']).to_string();
            to.clear();
            write.write_all(b"250 2.1.0 Ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(command[8..].trim().trim_matches(['<', '>']).to_string());
            write.write_all(b"250 2.1.5 Ok\r\n").await?;
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            store.lock().expect("lock").push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            write.write_all(b"250 2.0.0 Ok: queued\r\n").await?;
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 2.0.0 Ok\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            write
                .write_all(b"502 5.5.2 Command not recognized\r\n")
                .await?;
        }
    }
}
