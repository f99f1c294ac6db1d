//! A digest as one message per channel: the announcements held by quiet hours first, then
//! every held push since the last digest, grouped per repository and branch with its commit
//! count and the commits' first lines (newest first), within each channel's limits (the same
//! limits as a single push, `notify::render`). E-mail gets an HTML part too
//! (`templates/mail/digest.html`).

use askama::Template;
use serde_json::{Value, json};

use super::{HeldCommit, HeldPush};
use crate::notify::render::{
    KAKAO_MAX_CHARS, MAX_COMMIT_LINES, TELEGRAM_MAX_CHARS, WEBEX_MAX_BYTES, escape_html,
};
use crate::text::{ellipsize_chars, prefix_chars};

/// One held push of a digest, in the order the pushes were accepted.
pub struct DigestEntry<'a> {
    pub repository: &'a str,
    pub branch: &'a str,
    pub push: &'a HeldPush,
}

/// Everything one contact's digest lists.
#[derive(Default)]
pub struct Digest<'a> {
    /// Scheduled announcements held by the contact's quiet time, in the order they fired.
    pub announcements: Vec<&'a str>,
    pub pushes: Vec<DigestEntry<'a>>,
}

impl<'a> Digest<'a> {
    pub fn of_pushes(pushes: Vec<DigestEntry<'a>>) -> Digest<'a> {
        Digest {
            announcements: Vec::new(),
            pushes,
        }
    }
}

/// How much of a message the head (head line and announcements) may take when pushes follow,
/// leaving room for at least a group header and the "… and K more commits" line.
const ROOM_FOR_PUSHES: usize = 200;

/// The announcements, each made by `format` from its text, `len` at most `budget` in all: a
/// long one is cut (with `…`) before it is formatted, so escaping never cuts an entity.
fn announcement_lines(
    announcements: &[&str],
    budget: usize,
    format: impl Fn(&str) -> String,
    len: impl Fn(&str) -> usize,
) -> Vec<String> {
    if announcements.is_empty() {
        return Vec::new();
    }
    let share = budget / announcements.len();
    announcements
        .iter()
        .map(|text| {
            let mut keep = text.chars().count();
            loop {
                let line = format(&ellipsize_chars(text, keep));
                let size = len(&line) + 1;
                if size <= share || keep == 0 {
                    return line;
                }
                keep = keep.saturating_sub((size - share).max(keep / 8).max(1));
            }
        })
        .collect()
}

/// The head line followed by the announcements, within `max` (less room for pushes when the
/// digest has some).
fn head_with_announcements(
    head: String,
    digest: &Digest,
    max: usize,
    format: impl Fn(&str) -> String,
    len: impl Fn(&str) -> usize,
) -> String {
    let mut budget = max.saturating_sub(len(&head));
    if !digest.pushes.is_empty() {
        budget = budget.saturating_sub(ROOM_FOR_PUSHES);
    }
    let mut out = head;
    for line in announcement_lines(&digest.announcements, budget, format, len) {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// The pushes to one branch of one repository.
struct Group<'a> {
    repository: &'a str,
    branch: &'a str,
    commits: usize,
    forced: bool,
    deleted: bool,
    /// Newest first.
    listed: Vec<&'a HeldCommit>,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn groups<'a>(entries: &[DigestEntry<'a>]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for entry in entries {
        let position = groups
            .iter()
            .position(|g| g.repository == entry.repository && g.branch == entry.branch);
        let group = match position {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    repository: entry.repository,
                    branch: entry.branch,
                    commits: 0,
                    forced: false,
                    deleted: false,
                    listed: Vec::new(),
                });
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        group.commits += entry.push.total;
        group.forced |= entry.push.forced;
        // A later push that recreates the branch makes it not deleted any more.
        group.deleted = entry.push.deleted;
        // Held commits are stored oldest first; the newest push's commits come first.
        let mut newer: Vec<&HeldCommit> = entry.push.commits.iter().rev().collect();
        newer.append(&mut group.listed);
        group.listed = newer;
    }
    groups
}

impl Group<'_> {
    fn status(&self) -> String {
        let mut status = plural(self.commits, "commit", "commits");
        if self.forced {
            status.push_str(" (force-pushed)");
        }
        if self.deleted {
            status.push_str(", branch deleted");
        }
        status
    }
}

fn headline(digest: &Digest) -> String {
    let mut parts = Vec::with_capacity(3);
    if !digest.announcements.is_empty() {
        parts.push(plural(
            digest.announcements.len(),
            "announcement",
            "announcements",
        ));
    }
    if !digest.pushes.is_empty() || digest.announcements.is_empty() {
        let commits: usize = digest.pushes.iter().map(|e| e.push.total).sum();
        parts.push(plural(digest.pushes.len(), "push", "pushes"));
        parts.push(plural(commits, "commit", "commits"));
    }
    parts.join(", ")
}

/// Lays out a head line, then each group's header and commit lines, while they fit in `max`
/// (measured by `len`); whatever does not fit is counted in a last "… and K more commits".
fn compose(
    head: String,
    sections: Vec<(String, Vec<String>, usize)>,
    max: usize,
    len: impl Fn(&str) -> usize,
) -> String {
    let more = |k: usize| format!("… and {}", plural(k, "more commit", "more commits"));
    let total: usize = sections.iter().map(|(_, l, hidden)| l.len() + hidden).sum();
    let reserve = len(&more(total)) + 1;
    let mut out = head;
    let mut hidden = 0;
    let mut full = false;
    for (header, lines, unlisted) in sections {
        hidden += unlisted;
        if full || len(&out) + 1 + len(&header) + reserve > max {
            full = true;
            hidden += lines.len();
            continue;
        }
        out.push('\n');
        out.push_str(&header);
        for line in lines {
            if full || len(&out) + 1 + len(&line) + reserve > max {
                full = true;
                hidden += 1;
                continue;
            }
            out.push('\n');
            out.push_str(&line);
        }
    }
    if hidden > 0 {
        out.push('\n');
        out.push_str(&more(hidden));
    }
    out
}

/// Each group's header and at most [`MAX_COMMIT_LINES`] commit lines, with how many of its
/// commits are not listed.
fn sections(
    groups: &[Group],
    header: impl Fn(&Group) -> String,
    line: impl Fn(&HeldCommit) -> String,
) -> Vec<(String, Vec<String>, usize)> {
    groups
        .iter()
        .map(|group| {
            let lines: Vec<String> = group
                .listed
                .iter()
                .take(MAX_COMMIT_LINES)
                .map(|commit| line(commit))
                .collect();
            let unlisted = group.commits.saturating_sub(lines.len());
            (header(group), lines, unlisted)
        })
        .collect()
}

pub fn telegram_html(digest: &Digest) -> Value {
    let groups = groups(&digest.pushes);
    let head = head_with_announcements(
        format!("<b>herald digest</b>: {}", escape_html(&headline(digest))),
        digest,
        TELEGRAM_MAX_CHARS,
        |text| format!("📢 {}", escape_html(text)),
        |s| s.chars().count(),
    );
    let sections = sections(
        &groups,
        |g| {
            format!(
                "<b>{}</b> · {}: {}",
                escape_html(g.repository),
                escape_html(g.branch),
                escape_html(&g.status())
            )
        },
        |c| {
            format!(
                "<code>{}</code> {} — <i>{}</i>",
                escape_html(c.short_sha()),
                escape_html(prefix_chars(&c.title, 200)),
                escape_html(prefix_chars(&c.author, 60))
            )
        },
    );
    let text = compose(head, sections, TELEGRAM_MAX_CHARS, |s| s.chars().count());
    json!({"text": text, "parse_mode": "HTML"})
}

pub fn plain_text(digest: &Digest, max_chars: usize) -> String {
    let groups = groups(&digest.pushes);
    let head = head_with_announcements(
        format!("herald digest: {}", headline(digest)),
        digest,
        max_chars,
        |text| format!("📢 {text}"),
        |s| s.chars().count(),
    );
    let sections = sections(
        &groups,
        |g| format!("[{}] {}: {}", g.repository, g.branch, g.status()),
        |c| {
            format!(
                "{} {} — {}",
                c.short_sha(),
                prefix_chars(&c.title, 200),
                prefix_chars(&c.author, 60)
            )
        },
    );
    compose(head, sections, max_chars, |s| s.chars().count())
}

pub fn webex_markdown(digest: &Digest) -> String {
    let groups = groups(&digest.pushes);
    let head = head_with_announcements(
        format!("**herald digest**: {}", headline(digest)),
        digest,
        WEBEX_MAX_BYTES,
        |text| format!("📢 {text}"),
        str::len,
    );
    let sections = sections(
        &groups,
        |g| format!("**{}** · {}: {}", g.repository, g.branch, g.status()),
        |c| {
            format!(
                "- `{}` {} — {}",
                c.short_sha(),
                prefix_chars(&c.title, 200),
                prefix_chars(&c.author, 60)
            )
        },
    );
    compose(head, sections, WEBEX_MAX_BYTES, str::len)
}

/// The longest plain-text part of a digest mail.
const EMAIL_MAX_CHARS: usize = 100_000;

/// A digest as the HTML part of its mail.
#[derive(Template)]
#[template(path = "mail/digest.html")]
struct DigestMail<'a> {
    subject: &'a str,
    headline: &'a str,
    /// Each announcement as paragraphs of lines.
    announcements: Vec<Vec<Vec<&'a str>>>,
    groups: Vec<MailGroup<'a>>,
    /// Groups not listed (past [`EMAIL_MAX_GROUPS`]) and their commits.
    more_groups: usize,
    more_groups_commits: usize,
}

/// The most repository/branch groups a digest mail's HTML part lists.
const EMAIL_MAX_GROUPS: usize = 100;

struct MailGroup<'a> {
    repository: &'a str,
    branch: &'a str,
    status: String,
    commits: Vec<MailCommit<'a>>,
    /// Commits of the group not listed.
    more: usize,
}

struct MailCommit<'a> {
    sha: &'a str,
    title: &'a str,
    author: &'a str,
}

fn email_html(digest: &Digest, subject: &str, headline: &str) -> Option<String> {
    let groups = groups(&digest.pushes);
    let mail = DigestMail {
        subject,
        headline,
        announcements: digest
            .announcements
            .iter()
            .map(|text| crate::notify::mail::paragraphs(text))
            .collect(),
        more_groups: groups.len().saturating_sub(EMAIL_MAX_GROUPS),
        more_groups_commits: groups
            .iter()
            .skip(EMAIL_MAX_GROUPS)
            .map(|g| g.commits)
            .sum(),
        groups: groups
            .iter()
            .take(EMAIL_MAX_GROUPS)
            .map(|group| {
                let commits: Vec<MailCommit> = group
                    .listed
                    .iter()
                    .take(MAX_COMMIT_LINES)
                    .map(|c| MailCommit {
                        sha: c.short_sha(),
                        title: prefix_chars(&c.title, 200),
                        author: prefix_chars(&c.author, 60),
                    })
                    .collect();
                MailGroup {
                    repository: group.repository,
                    branch: group.branch,
                    status: group.status(),
                    more: group.commits.saturating_sub(commits.len()),
                    commits,
                }
            })
            .collect(),
    };
    crate::notify::mail::render(&mail)
}

pub fn email(digest: &Digest) -> Value {
    let headline = headline(digest);
    let subject = format!("herald digest: {headline}");
    let mut text = plain_text(digest, EMAIL_MAX_CHARS);
    text.push_str("\n\n— herald\n");
    let mut payload = json!({"subject": subject, "text": text});
    if let Some(html) = email_html(digest, &subject, &headline) {
        payload["html"] = Value::String(html);
    }
    payload
}

/// The payload stored in the outbox for one channel (the shapes of `notify::render`).
pub fn for_channel(channel: &str, digest: &Digest) -> Value {
    match channel {
        "telegram" => telegram_html(digest),
        "email" => email(digest),
        "kakao" => json!({"text": plain_text(digest, KAKAO_MAX_CHARS)}),
        "webex" => json!({"markdown": webex_markdown(digest)}),
        _ => json!({"text": plain_text(digest, 4000)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(commits: &[(&str, &str)], total: usize) -> HeldPush {
        HeldPush {
            total,
            commits: commits
                .iter()
                .map(|(sha, title)| HeldCommit {
                    sha: sha.to_string(),
                    title: title.to_string(),
                    author: "Ana <dev>".into(),
                })
                .collect(),
            forced: false,
            created: false,
            deleted: false,
        }
    }

    #[test]
    fn pushes_are_grouped_per_repository_and_branch_newest_first() {
        let a = push(&[("aaaaaaa111", "first")], 1);
        let b = push(&[("bbbbbbb222", "second <b>")], 1);
        let c = push(&[("ccccccc333", "elsewhere")], 1);
        let entries = [
            DigestEntry {
                repository: "o/r",
                branch: "main",
                push: &a,
            },
            DigestEntry {
                repository: "o/other",
                branch: "dev",
                push: &c,
            },
            DigestEntry {
                repository: "o/r",
                branch: "main",
                push: &b,
            },
        ];
        let digest = Digest::of_pushes(entries.into());
        assert_eq!(
            plain_text(&digest, 4000),
            "herald digest: 3 pushes, 3 commits\n\
             [o/r] main: 2 commits\n\
             bbbbbbb second <b> — Ana <dev>\n\
             aaaaaaa first — Ana <dev>\n\
             [o/other] dev: 1 commit\n\
             ccccccc elsewhere — Ana <dev>"
        );
        let html = telegram_html(&digest);
        assert_eq!(
            html["text"].as_str().expect("text").lines().nth(2),
            Some("<code>bbbbbbb</code> second &lt;b&gt; — <i>Ana &lt;dev&gt;</i>")
        );
    }

    #[test]
    fn long_digests_fit_every_channel_and_say_what_was_left_out() {
        let long = "x".repeat(300);
        let shas: Vec<String> = (0..10).map(|i| format!("{i:07}abc")).collect();
        let commits: Vec<(&str, &str)> = shas.iter().map(|s| (s.as_str(), long.as_str())).collect();
        let pushes: Vec<HeldPush> = (0..40).map(|_| push(&commits, 25)).collect();
        let names: Vec<String> = (0..40).map(|i| format!("o/r{i}")).collect();
        let entries: Vec<DigestEntry> = pushes
            .iter()
            .zip(&names)
            .map(|(push, name)| DigestEntry {
                repository: name,
                branch: "main",
                push,
            })
            .collect();
        let digest = Digest::of_pushes(entries);
        let tg = telegram_html(&digest)["text"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(tg.chars().count() <= TELEGRAM_MAX_CHARS, "{}", tg.len());
        assert!(tg.ends_with("more commits"), "{tg}");
        let kakao = plain_text(&digest, KAKAO_MAX_CHARS);
        assert!(kakao.chars().count() <= KAKAO_MAX_CHARS);
        assert!(kakao.starts_with("herald digest: 40 pushes, 1000 commits"));
        assert!(webex_markdown(&digest).len() <= WEBEX_MAX_BYTES);
    }

    #[test]
    fn held_announcements_come_first_and_fit_with_the_pushes() {
        let a = push(&[("aaaaaaa111", "first")], 1);
        let long = "y".repeat(9_000);
        let digest = Digest {
            announcements: vec!["Standup <now> & here", long.as_str()],
            pushes: vec![DigestEntry {
                repository: "o/r",
                branch: "main",
                push: &a,
            }],
        };
        let tg = telegram_html(&digest)["text"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(tg.chars().count() <= TELEGRAM_MAX_CHARS, "{}", tg.len());
        let lines: Vec<&str> = tg.lines().collect();
        assert_eq!(
            lines[0],
            "<b>herald digest</b>: 2 announcements, 1 push, 1 commit"
        );
        assert_eq!(lines[1], "📢 Standup &lt;now&gt; &amp; here");
        assert!(lines[2].starts_with("📢 yyy") && lines[2].ends_with('…'));
        assert_eq!(lines[3], "<b>o/r</b> · main: 1 commit");
        let only = Digest {
            announcements: vec!["Standup"],
            pushes: Vec::new(),
        };
        assert_eq!(
            plain_text(&only, 4000),
            "herald digest: 1 announcement\n📢 Standup"
        );
        let mail = email(&only);
        assert_eq!(mail["subject"], "herald digest: 1 announcement");
        let html = mail["html"].as_str().expect("an HTML part");
        assert!(html.contains("<p>Standup</p>"), "{html}");
    }

    #[test]
    fn the_mail_html_escapes_what_pushes_say() {
        let a = push(&[("aaaaaaa111", "<script>alert(1)</script>")], 1);
        let digest = Digest::of_pushes(vec![DigestEntry {
            repository: "o/<r>",
            branch: "main",
            push: &a,
        }]);
        let mail = email(&digest);
        let html = mail["html"].as_str().expect("an HTML part");
        assert!(
            !html.contains("<script>") && !html.contains("<r>"),
            "{html}"
        );
        assert!(html.contains("<code>aaaaaaa</code>"), "{html}");
        assert!(
            mail["text"]
                .as_str()
                .expect("text")
                .contains("<script>alert(1)</script>")
        );
    }
}
