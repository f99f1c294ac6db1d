//! Turning a push into a message for each channel, within that channel's limits: Telegram HTML
//! (escaped, at most 4096 characters), Kakao text (1000 characters), Webex markdown (7439 bytes),
//! e-mail (subject and a plain-text part), native chat text.

use serde_json::{Value, json};

use crate::text::prefix_chars;
use crate::watch::event::{Commit, PushEvent};

/// How many commit lines a message lists before "and K more".
pub const MAX_COMMIT_LINES: usize = 10;
pub const TELEGRAM_MAX_CHARS: usize = 4096;
pub const KAKAO_MAX_CHARS: usize = 1000;
pub const WEBEX_MAX_BYTES: usize = 7439;

/// What a message is about, independent of channel.
pub struct PushSummary<'a> {
    pub repository: &'a str,
    pub event: &'a PushEvent,
    /// The commits this subscriber is told about (after its filters), oldest first.
    pub commits: &'a [&'a Commit],
}

impl PushSummary<'_> {
    fn headline(&self) -> String {
        let branch = self.event.branch();
        if self.event.deleted {
            return format!("branch {branch} was deleted");
        }
        let n = self.commits.len();
        let noun = if n == 1 { "commit" } else { "commits" };
        let mut line = if self.event.created {
            format!("new branch {branch} with {n} {noun}")
        } else {
            format!("{n} new {noun} on {branch}")
        };
        if self.event.forced {
            line.push_str(" (force-pushed)");
        }
        line
    }

    /// Newest first, the way people read a push notification.
    fn listed(&self) -> impl Iterator<Item = &Commit> {
        self.commits.iter().rev().take(MAX_COMMIT_LINES).copied()
    }

    fn hidden(&self) -> usize {
        self.commits.len().saturating_sub(MAX_COMMIT_LINES)
    }

    fn plain_lines(&self) -> Vec<String> {
        self.listed()
            .map(|c| format!("{} {} — {}", c.short_id(), c.title(), c.author.name))
            .collect()
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text for Telegram MarkdownV2, where every one of these characters must be escaped
/// outside of entities.
pub fn escape_markdown_v2(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "_*[]()~`>#+-=|{}.!\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Adds lines to a message until the next one would pass `max` (measured by `len`), then says
/// how many were left out.
fn fit_lines(
    head: String,
    lines: Vec<String>,
    tail: String,
    extra_hidden: usize,
    max: usize,
    len: impl Fn(&str) -> usize,
    more: impl Fn(usize) -> String,
) -> String {
    let total = lines.len() + extra_hidden;
    let mut out = head;
    let budget = max.saturating_sub(len(&tail) + len(&more(total)) + 2);
    let mut shown = 0;
    for line in lines {
        if len(&out) + len(&line) + 1 > budget {
            break;
        }
        out.push('\n');
        out.push_str(&line);
        shown += 1;
    }
    if total > shown {
        out.push('\n');
        out.push_str(&more(total - shown));
    }
    if !tail.is_empty() {
        out.push('\n');
        out.push_str(&tail);
    }
    out
}

pub fn telegram_html(summary: &PushSummary) -> Value {
    let head = format!(
        "<b>{}</b>\n{}",
        escape_html(summary.repository),
        escape_html(&summary.headline())
    );
    let lines = summary
        .listed()
        .map(|c| {
            let sha = escape_html(c.short_id());
            let sha = match &c.url {
                Some(url) => format!("<a href=\"{}\">{sha}</a>", escape_html(url)),
                None => format!("<code>{sha}</code>"),
            };
            format!(
                "{sha} {} — <i>{}</i>",
                escape_html(prefix_chars(c.title(), 200)),
                escape_html(prefix_chars(&c.author.name, 60))
            )
        })
        .collect();
    let tail = match &summary.event.compare {
        Some(url) => format!("<a href=\"{}\">Compare changes</a>", escape_html(url)),
        None => String::new(),
    };
    let text = fit_lines(
        head,
        lines,
        tail,
        summary.hidden(),
        TELEGRAM_MAX_CHARS,
        |s| s.chars().count(),
        |k| format!("… and {k} more"),
    );
    json!({"text": text, "parse_mode": "HTML"})
}

pub fn plain_text(summary: &PushSummary, max_chars: usize) -> String {
    let head = format!("[{}] {}", summary.repository, summary.headline());
    let tail = summary.event.compare.clone().unwrap_or_default();
    fit_lines(
        head,
        summary.plain_lines(),
        tail,
        summary.hidden(),
        max_chars,
        |s| s.chars().count(),
        |k| format!("… and {k} more"),
    )
}

pub fn webex_markdown(summary: &PushSummary) -> String {
    let head = format!("**{}** — {}", summary.repository, summary.headline());
    let lines = summary
        .listed()
        .map(|c| match &c.url {
            Some(url) => format!(
                "- [`{}`]({url}) {} — {}",
                c.short_id(),
                c.title(),
                c.author.name
            ),
            None => format!("- `{}` {} — {}", c.short_id(), c.title(), c.author.name),
        })
        .collect();
    let tail = match &summary.event.compare {
        Some(url) => format!("[Compare changes]({url})"),
        None => String::new(),
    };
    fit_lines(
        head,
        lines,
        tail,
        summary.hidden(),
        WEBEX_MAX_BYTES,
        str::len,
        |k| format!("… and {k} more"),
    )
}

pub fn email(summary: &PushSummary) -> Value {
    let subject = format!("[{}] {}", summary.repository, summary.headline());
    let mut text = plain_text(summary, 100_000);
    text.push_str("\n\n— herald\n");
    json!({"subject": subject, "text": text})
}

/// A plain text message (an announcement, a team's morning message) as the payload for one
/// channel, within that channel's limits; e-mail gets the first line as its subject and an
/// HTML part beside the text.
pub fn text_for_channel(channel: &str, text: &str) -> Value {
    match channel {
        "telegram" => json!({"text": crate::text::ellipsize_chars(text, TELEGRAM_MAX_CHARS)}),
        "kakao" => json!({"text": crate::text::ellipsize_chars(text, KAKAO_MAX_CHARS)}),
        "email" => {
            let first_line = text.lines().next().unwrap_or_default();
            let subject = format!("[herald] {}", crate::text::ellipsize_chars(first_line, 70));
            let mut payload = json!({
                "subject": subject,
                "text": format!("{text}\n\n— herald\n"),
            });
            if let Some(html) = super::mail::message_html(&subject, text) {
                payload["html"] = Value::String(html);
            }
            payload
        }
        _ => json!({"text": crate::text::ellipsize_chars(text, 4000)}),
    }
}

/// The payload stored in the outbox for one channel.
pub fn for_channel(channel: &str, summary: &PushSummary) -> Value {
    match channel {
        "telegram" => telegram_html(summary),
        "email" => email(summary),
        "kakao" => json!({"text": plain_text(summary, KAKAO_MAX_CHARS)}),
        "webex" => json!({"markdown": webex_markdown(summary)}),
        _ => json!({"text": plain_text(summary, 4000)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::event::{Person, Source};

    fn commit(i: usize, title: &str) -> Commit {
        Commit {
            id: format!("{i:07}abcdef"),
            message: format!("{title}\n\nbody"),
            timestamp: "2026-01-01T00:00:00Z".into(),
            author: Person {
                name: "Ana <dev>".into(),
                ..Person::default()
            },
            ..Commit::default()
        }
    }

    fn event(commits: Vec<Commit>) -> PushEvent {
        PushEvent {
            ref_name: "refs/heads/main".into(),
            before: "a".into(),
            after: "b".into(),
            forced: false,
            created: false,
            deleted: false,
            commits,
            changed_paths: vec![],
            pusher: None,
            compare: Some("https://x/compare?a&b".into()),
            source: Source::GitPoll,
        }
    }

    #[test]
    fn telegram_escapes_and_lists_newest_first() {
        let e = event(vec![commit(1, "first <b>"), commit(2, "second & more")]);
        let commits: Vec<&Commit> = e.commits.iter().collect();
        let payload = telegram_html(&PushSummary {
            repository: "o/r",
            event: &e,
            commits: &commits,
        });
        let text = payload["text"].as_str().expect("text");
        assert!(text.contains("first &lt;b&gt;"));
        assert!(text.contains("Ana &lt;dev&gt;"));
        assert!(text.contains("https://x/compare?a&amp;b"));
        assert!(text.find("second").expect("second") < text.find("first").expect("first"));
        assert!(text.contains("2 new commits on main"));
    }

    #[test]
    fn long_pushes_fit_every_channel() {
        let long = "x".repeat(900);
        let e = event((0..300).map(|i| commit(i, &long)).collect());
        let commits: Vec<&Commit> = e.commits.iter().collect();
        let summary = PushSummary {
            repository: "o/r",
            event: &e,
            commits: &commits,
        };
        let tg = telegram_html(&summary)["text"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(tg.chars().count() <= TELEGRAM_MAX_CHARS);
        assert!(tg.contains("more"));
        assert!(plain_text(&summary, KAKAO_MAX_CHARS).chars().count() <= KAKAO_MAX_CHARS);
        assert!(webex_markdown(&summary).len() <= WEBEX_MAX_BYTES);
    }

    #[test]
    fn markdown_v2_escapes_every_special_character() {
        assert_eq!(escape_markdown_v2("a_b*c.d!"), "a\\_b\\*c\\.d\\!");
    }
}
