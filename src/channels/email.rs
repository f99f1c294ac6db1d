//! E-mail over SMTP (`HERALD_SMTP_URL`), or, when no SMTP server is configured, into a spool
//! folder under the data dir with a log line — so a laptop install still shows what it would send.
//!
//! A stored payload is `{"subject", "text", "html"?}`: with `html` the mail is
//! `multipart/alternative` (the plain text first, as RFC 2046 orders them: a reader shows the
//! last part it can), without it plain text only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use crate::config::Settings;
use crate::outbox::channel::OutgoingMessage;
use crate::outbox::{Attempt, Channel, Verdict};

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Spool(PathBuf),
}

pub struct EmailChannel {
    from: Mailbox,
    transport: Transport,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("setting HERALD_MAIL_FROM: {0}")]
    From(String),
    #[error("setting HERALD_SMTP_URL: {0}")]
    Smtp(String),
}

/// An e-mail message, as the outbox stores it.
pub struct OutgoingMail<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    /// The same message as HTML, sent beside the text as an alternative.
    pub html: Option<&'a str>,
}

impl EmailChannel {
    pub fn new(settings: &Settings) -> Result<Arc<EmailChannel>, EmailSetupError> {
        let from: Mailbox = settings
            .mail_from
            .parse()
            .map_err(|e: lettre::address::AddressError| EmailSetupError::From(e.to_string()))?;
        let transport = match &settings.smtp_url {
            Some(url) => {
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| EmailSetupError::Smtp(e.to_string()))?;
                Transport::Smtp(builder.timeout(Some(Duration::from_secs(30))).build())
            }
            None => Transport::Spool(settings.data_dir.join("mail")),
        };
        Ok(Arc::new(EmailChannel { from, transport }))
    }

    pub fn is_spool(&self) -> bool {
        matches!(self.transport, Transport::Spool(_))
    }

    pub async fn send_mail(&self, mail: OutgoingMail<'_>) -> Attempt {
        let to: Mailbox = match mail.to.parse() {
            Ok(to) => to,
            Err(e) => {
                return Attempt::failed(
                    Verdict::Permanent,
                    None,
                    None,
                    format!("bad address: {e}"),
                );
            }
        };
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject);
        let built = match mail.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                mail.text.to_string(),
                html.to_string(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(mail.text.to_string()),
        };
        let message = match built {
            Ok(message) => message,
            Err(e) => return Attempt::failed(Verdict::Permanent, None, None, e.to_string()),
        };
        match &self.transport {
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(response) => Attempt::delivered(
                    Some(response.code().into()),
                    Some(response.message().collect::<Vec<_>>().join("\n")),
                ),
                Err(e) if e.is_permanent() => Attempt::failed(
                    Verdict::Permanent,
                    e.status().map(u16::from),
                    None,
                    e.to_string(),
                ),
                Err(e) => Attempt::failed(
                    Verdict::Retry { after: None },
                    e.status().map(u16::from),
                    None,
                    crate::outbox::channel::error_chain(&e),
                ),
            },
            Transport::Spool(dir) => {
                let name = format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                    mail.to.replace(['/', '\\'], "_")
                );
                let path = dir.join(&name);
                // Written under a temporary name and renamed, so that whoever reads the spool
                // (a person, a test, a script) never sees half a mail.
                let partial = dir.join(format!(".{name}.partial"));
                let write = async {
                    tokio::fs::create_dir_all(dir).await?;
                    tokio::fs::write(&partial, message.formatted()).await?;
                    tokio::fs::rename(&partial, &path).await
                };
                match write.await {
                    Ok(()) => {
                        tracing::info!(to = mail.to, subject = mail.subject, path = %path.display(),
                            "no HERALD_SMTP_URL set: mail written to the spool instead of sent");
                        Attempt::delivered(None, Some(path.display().to_string()))
                    }
                    Err(e) => Attempt::failed(
                        Verdict::Retry { after: None },
                        None,
                        None,
                        format!("could not write {}: {e}", path.display()),
                    ),
                }
            }
        }
    }
}

impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let destination = message.destination;
            let Ok(payload) = serde_json::from_str::<Value>(message.payload) else {
                return Attempt::failed(
                    Verdict::Permanent,
                    None,
                    None,
                    "stored payload is not JSON",
                );
            };
            let subject = payload
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or("herald");
            let Some(text) = payload.get("text").and_then(Value::as_str) else {
                return Attempt::failed(Verdict::Permanent, None, None, "payload has no text");
            };
            self.send_mail(OutgoingMail {
                to: destination,
                subject,
                text,
                html: payload.get("html").and_then(Value::as_str),
            })
            .await
        })
    }
}
