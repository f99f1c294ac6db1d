//! Reading a command out of what someone typed, in Korean or English: `구독 octo/hello main`,
//! `/subscribe@herald_bot octo/hello`, `검색:연차 신청`, `help`.

use super::reply::Lang;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Subscribe {
        repository: Option<String>,
        branch: Option<String>,
    },
    Unsubscribe {
        repository: Option<String>,
        branch: Option<String>,
    },
    List,
    Commits {
        repository: Option<String>,
        branch: Option<String>,
    },
    Search {
        query: Option<String>,
    },
    Mute,
    Unmute,
    Link {
        code: Option<String>,
    },
    Cancel,
    Language(Lang),
    /// `팀` (the teams I am in), `팀 <name>` (its members), `팀 추가|삭제 <name> <account>`.
    Team(TeamAction),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamAction {
    List,
    Members { team: String },
    Add { team: String, account: String },
    Remove { team: String, account: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Help,
    Subscribe,
    Unsubscribe,
    List,
    Commits,
    Search,
    Mute,
    Unmute,
    Link,
    Cancel,
    Korean,
    English,
    Team,
}

/// Every command word, with the language it is written in.
const WORDS: &[(&str, Kind, Lang)] = &[
    ("도움말", Kind::Help, Lang::Ko),
    ("도움", Kind::Help, Lang::Ko),
    ("시작", Kind::Help, Lang::Ko),
    ("구독", Kind::Subscribe, Lang::Ko),
    ("구독취소", Kind::Unsubscribe, Lang::Ko),
    ("구독해지", Kind::Unsubscribe, Lang::Ko),
    ("목록", Kind::List, Lang::Ko),
    ("커밋", Kind::Commits, Lang::Ko),
    ("검색", Kind::Search, Lang::Ko),
    ("알림끄기", Kind::Mute, Lang::Ko),
    ("알림켜기", Kind::Unmute, Lang::Ko),
    ("연결", Kind::Link, Lang::Ko),
    ("취소", Kind::Cancel, Lang::Ko),
    ("한국어", Kind::Korean, Lang::Ko),
    ("영어", Kind::English, Lang::Ko),
    ("팀", Kind::Team, Lang::Ko),
    ("help", Kind::Help, Lang::En),
    ("start", Kind::Help, Lang::En),
    ("?", Kind::Help, Lang::En),
    ("subscribe", Kind::Subscribe, Lang::En),
    ("sub", Kind::Subscribe, Lang::En),
    ("unsubscribe", Kind::Unsubscribe, Lang::En),
    ("unsub", Kind::Unsubscribe, Lang::En),
    ("list", Kind::List, Lang::En),
    ("commits", Kind::Commits, Lang::En),
    ("commit", Kind::Commits, Lang::En),
    ("log", Kind::Commits, Lang::En),
    ("search", Kind::Search, Lang::En),
    ("mute", Kind::Mute, Lang::En),
    ("unmute", Kind::Unmute, Lang::En),
    ("link", Kind::Link, Lang::En),
    ("cancel", Kind::Cancel, Lang::En),
    ("english", Kind::English, Lang::En),
    ("korean", Kind::Korean, Lang::En),
    ("team", Kind::Team, Lang::En),
    ("teams", Kind::Team, Lang::En),
];

/// What follows `팀`/`team`: nothing, a team's name, or `추가`/`add` or `삭제`/`remove` with a
/// team's name and an account name (the last word).
fn team_action(rest: &str) -> TeamAction {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let Some((first, tail)) = words.split_first() else {
        return TeamAction::List;
    };
    let add = matches!(first.to_lowercase().as_str(), "추가" | "add");
    let remove = matches!(first.to_lowercase().as_str(), "삭제" | "제거" | "remove");
    match tail.split_last() {
        Some((account, team)) if (add || remove) && !team.is_empty() => {
            let (team, account) = (team.join(" "), account.to_string());
            if add {
                TeamAction::Add { team, account }
            } else {
                TeamAction::Remove { team, account }
            }
        }
        _ => TeamAction::Members {
            team: words.join(" "),
        },
    }
}

/// A command and the language its word was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub lang: Lang,
}

fn lookup(word: &str) -> Option<(Kind, Lang)> {
    // Telegram: `/subscribe@herald_bot`.
    let word = word.strip_prefix('/').unwrap_or(word);
    let word = word.split('@').next().unwrap_or(word);
    let lower = word.to_lowercase();
    WORDS
        .iter()
        .find(|(w, _, _)| *w == lower)
        .map(|(_, kind, lang)| (*kind, *lang))
}

fn nonempty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The command in `text`, or `None` when it is not one (an answer to a question, or chatter).
pub fn parse(text: &str) -> Option<Parsed> {
    let text = text.trim();
    let first_end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (mut word, mut rest) = (&text[..first_end], &text[first_end..]);
    // `검색:연차` — the reference bot's prefix form.
    if lookup(word).is_none()
        && let Some((head, tail)) = text.split_once([':', '：'])
        && lookup(head.trim()).is_some()
    {
        word = head.trim();
        rest = tail;
    }
    let (kind, lang) = lookup(word)?;
    let rest = rest.trim();
    let mut args = rest.split_whitespace();
    let repository = args.next().map(str::to_string);
    let branch = args.next().map(str::to_string);
    let command = match kind {
        Kind::Help => Command::Help,
        Kind::Subscribe => Command::Subscribe { repository, branch },
        Kind::Unsubscribe => Command::Unsubscribe { repository, branch },
        Kind::List => Command::List,
        Kind::Commits => Command::Commits { repository, branch },
        Kind::Search => Command::Search {
            query: nonempty(rest),
        },
        Kind::Mute => Command::Mute,
        Kind::Unmute => Command::Unmute,
        Kind::Link => Command::Link {
            code: nonempty(rest),
        },
        Kind::Cancel => Command::Cancel,
        Kind::Korean => Command::Language(Lang::Ko),
        Kind::English => Command::Language(Lang::En),
        Kind::Team => Command::Team(team_action(rest)),
    };
    Some(Parsed { command, lang })
}

/// The language a free-text message is written in, if it tells: Hangul means Korean, Latin
/// letters without Hangul mean English.
pub fn detect_lang(text: &str) -> Option<Lang> {
    let mut latin = false;
    for c in text.chars() {
        if ('\u{AC00}'..='\u{D7A3}').contains(&c) || ('\u{3131}'..='\u{318E}').contains(&c) {
            return Some(Lang::Ko);
        }
        latin |= c.is_ascii_alphabetic();
    }
    latin.then_some(Lang::En)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> Option<Command> {
        parse(text).map(|p| p.command)
    }

    #[test]
    fn korean_and_english_words_with_arguments() {
        assert_eq!(
            command("구독 octo/hello main"),
            Some(Command::Subscribe {
                repository: Some("octo/hello".into()),
                branch: Some("main".into())
            })
        );
        assert_eq!(
            parse("Subscribe octo/hello").map(|p| p.lang),
            Some(Lang::En)
        );
        assert_eq!(
            command("/subscribe@herald_bot octo/hello"),
            Some(Command::Subscribe {
                repository: Some("octo/hello".into()),
                branch: None
            })
        );
        assert_eq!(
            command("구독취소"),
            Some(Command::Unsubscribe {
                repository: None,
                branch: None
            })
        );
        assert_eq!(command("/start"), Some(Command::Help));
        assert_eq!(command("  목록  "), Some(Command::List));
    }

    #[test]
    fn search_keeps_the_whole_query_in_both_forms() {
        for text in ["검색 연차 신청", "검색:연차 신청", "검색: 연차 신청"] {
            assert_eq!(
                command(text),
                Some(Command::Search {
                    query: Some("연차 신청".into())
                }),
                "{text}"
            );
        }
        assert_eq!(command("검색"), Some(Command::Search { query: None }));
    }

    #[test]
    fn team_commands_in_both_languages() {
        assert_eq!(command("팀"), Some(Command::Team(TeamAction::List)));
        assert_eq!(
            command("team platform ops"),
            Some(Command::Team(TeamAction::Members {
                team: "platform ops".into()
            }))
        );
        assert_eq!(
            command("팀 추가 ops dana"),
            Some(Command::Team(TeamAction::Add {
                team: "ops".into(),
                account: "dana".into()
            }))
        );
        assert_eq!(
            command("/team@herald_bot remove ops dana"),
            Some(Command::Team(TeamAction::Remove {
                team: "ops".into(),
                account: "dana".into()
            }))
        );
    }

    #[test]
    fn chatter_is_not_a_command() {
        assert_eq!(command("안녕하세요"), None);
        assert_eq!(command("octo/hello"), None);
        assert_eq!(command(""), None);
        assert_eq!(command("🎉🎉"), None);
    }

    #[test]
    fn language_detection() {
        assert_eq!(detect_lang("연차 신청"), Some(Lang::Ko));
        assert_eq!(detect_lang("vacation 연차"), Some(Lang::Ko));
        assert_eq!(detect_lang("vacation"), Some(Lang::En));
        assert_eq!(detect_lang("123 🎉"), None);
    }
}
