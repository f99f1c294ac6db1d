//! The HTML part of herald's e-mails (announcements, team mornings, digests): small askama
//! templates in `templates/mail/`, which escape every value they are given, so nothing a
//! message or a commit says can become markup. The plain-text part is made separately and is
//! what every mail reader can fall back to.

use askama::Template;

/// A plain message (an announcement, a team's morning message) as HTML: its lines kept.
#[derive(Template)]
#[template(path = "mail/message.html")]
struct MessageMail<'a> {
    subject: &'a str,
    paragraphs: Vec<Vec<&'a str>>,
}

/// The lines of `text` grouped into paragraphs at blank lines.
pub fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `text` as the HTML part of a mail titled `subject`; `None` (the mail goes as plain text
/// only) if the template fails, which is logged.
pub fn message_html(subject: &str, text: &str) -> Option<String> {
    render(&MessageMail {
        subject,
        paragraphs: paragraphs(text),
    })
}

/// Renders a mail template; a failure is logged and leaves the mail without its HTML part.
pub fn render(template: &impl Template) -> Option<String> {
    template
        .render()
        .inspect_err(|error| {
            tracing::error!(%error, "an e-mail's HTML part could not be rendered; sent as plain text")
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_escaped_and_keeps_its_lines() {
        let html = message_html(
            "[herald] Deploy <now>",
            "Deploy <script>alert(1)</script> & \"go\"\nsecond line\n\nnext paragraph",
        )
        .expect("html");
        assert!(!html.contains("<now>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("alert(1)"), "{html}");
        assert!(html.contains("second line"), "{html}");
        assert_eq!(
            html.matches("<p>").count(),
            3,
            "two paragraphs and the signature: {html}"
        );
    }
}
