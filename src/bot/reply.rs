//! What the engine answers, independent of any platform: text, quick-reply buttons, links and an
//! optional image. Each connector turns this into its platform's format and limits.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Ko,
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Ko => "ko",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "ko" => Some(Lang::Ko),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Picks the Korean or the English text.
    pub fn pick<'a>(self, ko: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ko => ko,
            Lang::En => en,
        }
    }
}

/// A quick reply: pressing it sends `send` back as if the user had typed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Button {
    pub label: String,
    pub send: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub url: String,
    pub alt: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub text: String,
    pub buttons: Vec<Button>,
    pub links: Vec<Link>,
    pub image: Option<Image>,
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ..Reply::default()
        }
    }

    pub fn button(mut self, label: impl Into<String>, send: impl Into<String>) -> Reply {
        self.buttons.push(Button {
            label: label.into(),
            send: send.into(),
        });
        self
    }

    pub fn link(mut self, label: impl Into<String>, url: impl Into<String>) -> Reply {
        self.links.push(Link {
            label: label.into(),
            url: url.into(),
        });
        self
    }

    /// The reply as plain text for platforms without buttons: links and button commands are
    /// listed under the text.
    pub fn as_plain_text(&self, lang: Lang) -> String {
        let mut out = self.text.clone();
        for link in &self.links {
            out.push_str(&format!("\n🔗 {}: {}", link.label, link.url));
        }
        if !self.buttons.is_empty() {
            out.push_str(lang.pick("\n\n이렇게 답할 수 있어요: ", "\n\nYou can answer: "));
            let options: Vec<String> = self
                .buttons
                .iter()
                .map(|b| format!("\u{201c}{}\u{201d}", b.send))
                .collect();
            out.push_str(&options.join(", "));
        }
        out
    }
}
