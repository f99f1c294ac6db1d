//! The bot: one command engine behind every messenger. A connector hands it (platform, sender,
//! text); it finds or creates the contact, continues the contact's conversation, and returns a
//! [`Reply`] that the connector renders in its platform's format. Nothing here knows a platform.
//!
//! Commands (SPEC §D) in Korean and English: help, subscribe (asking for the repository and
//! offering its branches as buttons when not given), unsubscribe, list, commits, search (the
//! knowledge base), mute/unmute, link (a contact to an account). Anything else gets a knowledge
//! base answer when one fits, and a helpful hint otherwise — never an error page.

pub mod commands;
pub mod deliver;
pub mod link;
pub mod reply;
pub mod session;

use crate::contacts::{Contact, ContactRef, Filters, SubscribeError, Subscription};
use crate::state::AppState;
use crate::store::StoreError;
use crate::watch::repo::{RepoKind, RepoUrl};
use commands::{Command, TeamAction, detect_lang};
pub use reply::{Button, Lang, Link, Reply};
use session::{Pending, Session};

/// Longer messages are not commands anyone types; they get a polite refusal.
pub const MAX_INPUT_CHARS: usize = 2000;
/// Button payloads longer than this are offered as `#n` (Telegram's `callback_data` limit).
pub const SHORT_PAYLOAD_BYTES: usize = 64;
/// At most this many branches are offered as buttons (Kakao allows ten quick replies).
const BRANCH_BUTTONS: usize = 9;
const COMMITS_SHOWN: usize = 5;
const SEARCH_HITS: usize = 3;

/// What the engine works with: the shared infrastructure, the conversations between messages
/// and the knowledge base. Connectors and the chat hold one and hand it to [`converse`].
#[derive(Clone)]
pub struct Bot {
    pub app: AppState,
    sessions: std::sync::Arc<session::SessionCache>,
    kb: std::sync::Arc<crate::kb::KnowledgeBase>,
}

crate::feature_state!(Bot);

impl Bot {
    pub fn new(app: AppState, kb: std::sync::Arc<crate::kb::KnowledgeBase>) -> Bot {
        let sessions = std::sync::Arc::new(session::SessionCache::new(
            app.db.backend == crate::store::Backend::Sqlite,
        ));
        Bot { app, sessions, kb }
    }
}

/// A message that reached the bot.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub channel: &'a str,
    /// The contact's address on that channel (a Kakao user id, a Telegram chat id, …).
    pub address: &'a str,
    pub nick_name: &'a str,
    pub text: &'a str,
}

/// The engine's answer and who it is for.
#[derive(Debug, Clone)]
pub struct Answer {
    pub reply: Reply,
    pub lang: Lang,
    pub contact: Contact,
}

/// Handles one message: the contact is created on first contact (and un-blocked if it had
/// blocked the bot and came back), the conversation state is read and, if it changed, stored.
pub async fn converse(state: &Bot, incoming: Incoming<'_>) -> Result<Answer, StoreError> {
    let db = &state.db;
    let cached = state.sessions.get(incoming.channel, incoming.address);
    // Whether the cache must learn this conversation afresh after the message.
    let mut refresh = cached.is_none();
    let found = match cached {
        Some(found) => Some(found),
        None => session::load(db, incoming.channel, incoming.address).await?,
    };
    let (contact, mut session) = match found {
        Some((contact, session)) if !contact.blocked => (contact, session),
        found => {
            refresh = true;
            let contact = crate::contacts::upsert_contact(
                db,
                &state.ids,
                incoming.channel,
                incoming.address,
                incoming.nick_name,
            )
            .await?;
            (contact, found.map(|(_, s)| s).unwrap_or_default())
        }
    };
    let mut text = incoming.text.trim().to_string();
    // A short button payload `#n` stands for the n-th command offered last.
    if let Some(command) = text
        .strip_prefix('#')
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| session.offered.get(n))
    {
        text = command.clone();
    }
    let mut engine = Engine {
        state,
        contact: &contact,
        session: &mut session,
        lang: Lang::Ko,
        contact_changed: false,
    };
    let reply = engine.respond(&text).await;
    let (lang, contact_changed) = (engine.lang, engine.contact_changed);
    let long_buttons = reply
        .buttons
        .iter()
        .any(|b| b.send.len() > SHORT_PAYLOAD_BYTES);
    session.set_offered(if long_buttons {
        reply.buttons.iter().map(|b| b.send.clone()).collect()
    } else {
        Vec::new()
    });
    let changed = session.dirty;
    if let Err(error) = session::save(db, contact.id, &session).await {
        // The contact may have been deleted meanwhile: read it again next time.
        state.sessions.forget(incoming.channel, incoming.address);
        return Err(error);
    }
    session.dirty = false;
    if contact_changed {
        // Muted or unmuted: the cached contact is stale; read it again next time.
        state.sessions.forget(incoming.channel, incoming.address);
    } else if refresh || changed {
        state
            .sessions
            .put(incoming.channel, incoming.address, &contact, &session);
    }
    Ok(Answer {
        reply,
        lang,
        contact,
    })
}

/// What a button sends on a platform with short payloads: the command itself when it fits,
/// else `#n`, its place in the list the session remembers.
pub fn short_payload(index: usize, button: &Button) -> String {
    if button.send.len() <= SHORT_PAYLOAD_BYTES {
        button.send.clone()
    } else {
        format!("#{index}")
    }
}

struct Engine<'a> {
    state: &'a Bot,
    contact: &'a Contact,
    session: &'a mut Session,
    lang: Lang,
    /// The command changed the contact's own row (mute/unmute).
    contact_changed: bool,
}

impl Engine<'_> {
    fn t<'s>(&self, ko: &'s str, en: &'s str) -> &'s str {
        self.lang.pick(ko, en)
    }

    async fn respond(&mut self, text: &str) -> Reply {
        let parsed = commands::parse(text);
        self.lang = match &parsed {
            Some(parsed) => parsed.lang,
            None => self
                .session
                .lang
                .or_else(|| detect_lang(text))
                .unwrap_or(Lang::Ko),
        };
        if text.is_empty() {
            return self.help();
        }
        if text.chars().count() > MAX_INPUT_CHARS {
            return Reply::text(format!(
                "{} ({MAX_INPUT_CHARS})",
                self.t(
                    "메시지가 너무 길어요. 명령어는 짧게 보내 주세요.",
                    "That message is too long for a command. Please send something shorter."
                )
            ));
        }
        let result = match parsed {
            Some(parsed) => {
                // A command word sets the language the bot keeps answering in.
                self.session.set_lang(parsed.lang);
                // A new command ends any question still open.
                self.session.set_pending(None);
                self.command(parsed.command).await
            }
            None => self.answer(text).await,
        };
        result.unwrap_or_else(|error| {
            tracing::error!(%error, contact = self.contact.id, "the bot could not answer");
            Reply::text(self.t(
                "죄송해요, 지금은 처리할 수 없어요. 잠시 후 다시 시도해 주세요.",
                "Sorry, I can't do that right now. Please try again in a moment.",
            ))
        })
    }

    async fn command(&mut self, command: Command) -> Result<Reply, StoreError> {
        match command {
            Command::Help => Ok(self.help()),
            Command::Subscribe { repository, branch } => {
                self.subscribe(repository.as_deref(), branch.as_deref())
                    .await
            }
            Command::Unsubscribe { repository, branch } => {
                self.unsubscribe(repository.as_deref(), branch.as_deref())
                    .await
            }
            Command::List => self.list().await,
            Command::Commits { repository, branch } => {
                self.commits(repository.as_deref(), branch.as_deref()).await
            }
            Command::Search { query: None } => {
                self.session.set_pending(Some(Pending::SearchQuery));
                Ok(
                    Reply::text(self.t("무엇을 찾아 드릴까요?", "What should I look for?"))
                        .button(self.t("취소", "cancel"), self.t("취소", "cancel")),
                )
            }
            Command::Search { query: Some(query) } => self.search(&query).await,
            Command::Mute | Command::Unmute => {
                let mute = command == Command::Mute;
                crate::contacts::set_contact_muted(&self.state.db, self.contact.id, mute).await?;
                self.contact_changed = true;
                Ok(if mute {
                    Reply::text(self.t(
                        "🔕 알림을 껐어요. 다시 받으려면 \u{201c}알림켜기\u{201d}라고 보내 주세요.",
                        "🔕 Notifications are off. Send \u{201c}unmute\u{201d} to turn them on again.",
                    ))
                    .button(self.t("알림켜기", "unmute"), self.t("알림켜기", "unmute"))
                } else {
                    Reply::text(self.t("🔔 알림을 켰어요.", "🔔 Notifications are on."))
                })
            }
            Command::Link { code: None } => {
                self.session.set_pending(Some(Pending::LinkCode));
                Ok(Reply::text(self.t(
                    "herald 웹에서 받은 연결 코드를 보내 주세요.",
                    "Send me the link code herald showed you on the web.",
                )))
            }
            Command::Link { code: Some(code) } => self.link(&code).await,
            Command::Cancel => Ok(Reply::text(self.t("취소했어요.", "Cancelled."))),
            Command::Team(action) => self.team(action).await,
            Command::Language(lang) => {
                self.lang = lang;
                self.session.set_lang(lang);
                Ok(Reply::text(self.t(
                    "이제 한국어로 답할게요.",
                    "I'll answer in English from now on.",
                )))
            }
        }
    }

    /// Free text: the answer to the question the bot asked, or else a guess.
    async fn answer(&mut self, text: &str) -> Result<Reply, StoreError> {
        let first_word = text.split_whitespace().next().unwrap_or_default();
        match self.session.pending_now().cloned() {
            Some(Pending::SubscribeRepository) => {
                self.session.set_pending(None);
                return self.subscribe(Some(first_word), None).await;
            }
            Some(Pending::SubscribeBranch { repository }) => {
                self.session.set_pending(None);
                return self.subscribe(Some(&repository), Some(first_word)).await;
            }
            Some(Pending::SearchQuery) => {
                self.session.set_pending(None);
                return self.search(text).await;
            }
            Some(Pending::LinkCode) => {
                self.session.set_pending(None);
                return self.link(first_word).await;
            }
            None => {}
        }
        // A repository address on its own: offer to subscribe.
        if !text.contains(char::is_whitespace)
            && text.contains('/')
            && RepoUrl::parse(text, self.state.settings.allow_private_targets).is_ok()
        {
            let label = self.t("구독하기", "subscribe").to_string();
            let send = format!("{} {text}", self.t("구독", "subscribe"));
            return Ok(Reply::text(self.t(
                "이 저장소를 구독할까요?",
                "Shall I subscribe you to this repository?",
            ))
            .button(label, send));
        }
        // Otherwise the knowledge base may know.
        if let Some(reply) = self.search_hits(text).await? {
            return Ok(reply);
        }
        Ok(Reply::text(self.t(
            "무슨 말씀인지 잘 모르겠어요. \u{201c}도움말\u{201d}이라고 보내면 할 수 있는 일을 알려 드려요.",
            "I didn't understand that. Send \u{201c}help\u{201d} to see what I can do.",
        ))
        .button(self.t("도움말", "help"), self.t("도움말", "help")))
    }

    fn help(&self) -> Reply {
        let text = match self.lang {
            Lang::Ko => {
                "안녕하세요, herald 봇이에요. 이렇게 말씀해 주세요:\n\
                 • 구독 <저장소> [브랜치] — 새 커밋이 올라오면 알려 드려요\n\
                 • 구독취소 <저장소> [브랜치]\n\
                 • 목록 — 구독 중인 저장소\n\
                 • 커밋 <저장소> [브랜치] — 최근 커밋\n\
                 • 검색 <질문> — 지식베이스 검색\n\
                 • 알림끄기 / 알림켜기\n\
                 • 연결 <코드> — herald 계정과 연결\n\
                 저장소는 octo/hello 나 https://… 주소로 적어 주세요. (English: \u{201c}help\u{201d})"
            }
            Lang::En => {
                "Hi, I'm the herald bot. You can say:\n\
                 • subscribe <repository> [branch] — I'll tell you about new commits\n\
                 • unsubscribe <repository> [branch]\n\
                 • list — your subscriptions\n\
                 • commits <repository> [branch] — recent commits\n\
                 • search <question> — search the knowledge base\n\
                 • mute / unmute\n\
                 • link <code> — link this chat to your herald account\n\
                 Write a repository as octo/hello or an https://… address. (한국어: \u{201c}도움말\u{201d})"
            }
        };
        let words: &[&str] = match self.lang {
            Lang::Ko => &["구독", "목록", "검색"],
            Lang::En => &["subscribe", "list", "search"],
        };
        words
            .iter()
            .fold(Reply::text(text), |reply, word| reply.button(*word, *word))
    }

    async fn subscribe(
        &mut self,
        repository: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Reply, StoreError> {
        let Some(repository) = repository else {
            self.session.set_pending(Some(Pending::SubscribeRepository));
            return Ok(Reply::text(self.t(
                "어떤 저장소를 구독할까요? 예: octo/hello 또는 https://github.com/octo/hello",
                "Which repository? For example octo/hello or https://github.com/octo/hello",
            ))
            .button(self.t("취소", "cancel"), self.t("취소", "cancel")));
        };
        let Some(branch) = branch else {
            return self.ask_branch(repository).await;
        };
        match crate::contacts::subscribe(
            self.state,
            ContactRef::Existing(self.contact),
            repository,
            branch,
            Filters::default(),
        )
        .await
        {
            Ok((repo, subscription, _)) => {
                let name = repo.url.display_name();
                let text = match self.lang {
                    Lang::Ko => format!(
                        "✅ {name} ({}) 구독했어요. 새 커밋이 올라오면 알려 드릴게요.",
                        subscription.branch
                    ),
                    Lang::En => format!(
                        "✅ Subscribed to {name} ({}). I'll tell you about new commits.",
                        subscription.branch
                    ),
                };
                let commits = format!(
                    "{} {} {}",
                    self.t("커밋", "commits"),
                    repository,
                    subscription.branch
                );
                Ok(Reply::text(text)
                    .button(self.t("목록", "list"), self.t("목록", "list"))
                    .button(self.t("최근 커밋", "recent commits"), commits))
            }
            Err(SubscribeError::Store(error)) => Err(error),
            Err(error) => Ok(self.subscribe_error(&error)),
        }
    }

    fn subscribe_error(&self, error: &SubscribeError) -> Reply {
        Reply::text(format!(
            "{} {error}",
            self.t("구독하지 못했어요:", "Could not subscribe:")
        ))
    }

    /// `구독 <repository>` without a branch: offer the repository's branches, default first.
    async fn ask_branch(&mut self, repository: &str) -> Result<Reply, StoreError> {
        let url = match RepoUrl::parse(repository, self.state.settings.allow_private_targets) {
            Ok(url) => url,
            Err(error) => return Ok(self.subscribe_error(&SubscribeError::Repository(error))),
        };
        // `**`: every branch, `feature/x` too (`*` stops at a slash, as in subscriptions).
        let heads = match crate::contacts::probe_heads(self.state, &url, "**").await {
            Ok(heads) => heads,
            Err(SubscribeError::Store(error)) => return Err(error),
            Err(error) => return Ok(self.subscribe_error(&error)),
        };
        if heads.is_empty() {
            return Ok(Reply::text(self.t(
                "이 저장소에는 아직 브랜치가 없어요.",
                "This repository has no branches yet.",
            )));
        }
        let default = self.default_branch(&url).await;
        let mut branches: Vec<String> = heads.into_iter().map(|(branch, _)| branch).collect();
        let rank = |b: &String| {
            if Some(b) == default.as_ref() {
                0
            } else {
                match b.as_str() {
                    "main" => 1,
                    "master" => 2,
                    "develop" => 3,
                    _ => 4,
                }
            }
        };
        branches.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        let total = branches.len();
        self.session.set_pending(Some(Pending::SubscribeBranch {
            repository: repository.to_string(),
        }));
        let mut text = match self.lang {
            Lang::Ko => format!(
                "{}의 어느 브랜치를 구독할까요? 버튼을 누르거나 브랜치 이름(또는 release/* 같은 패턴)을 보내 주세요.",
                url.display_name()
            ),
            Lang::En => format!(
                "Which branch of {}? Press a button, or send a branch name (or a pattern like release/*).",
                url.display_name()
            ),
        };
        if total > BRANCH_BUTTONS {
            text.push_str(&match self.lang {
                Lang::Ko => format!(" (브랜치 {total}개 중 {BRANCH_BUTTONS}개를 보여 드려요)"),
                Lang::En => format!(" (showing {BRANCH_BUTTONS} of {total} branches)"),
            });
        }
        let word = self.t("구독", "subscribe").to_string();
        Ok(branches
            .iter()
            .take(BRANCH_BUTTONS)
            .fold(Reply::text(text), |reply, branch| {
                reply.button(branch.clone(), format!("{word} {repository} {branch}"))
            })
            .button(self.t("취소", "cancel"), self.t("취소", "cancel")))
    }

    async fn default_branch(&self, url: &RepoUrl) -> Option<String> {
        match &url.kind {
            RepoKind::GitHub { owner, name } => {
                self.state.github.default_branch(owner, name).await.ok()
            }
            RepoKind::Git => self
                .state
                .git
                .default_branch(&url.remote)
                .await
                .ok()
                .flatten(),
        }
    }

    async fn subscriptions(&self) -> Result<Vec<(Subscription, String)>, StoreError> {
        let list =
            crate::contacts::list_subscriptions(&self.state.db, Some(self.contact.id)).await?;
        Ok(list
            .into_iter()
            .map(|s| {
                let name = RepoUrl::parse(&s.repository, true)
                    .map(|u| u.display_name())
                    .unwrap_or_else(|_| s.repository.clone());
                (s, name)
            })
            .collect())
    }

    async fn unsubscribe(
        &mut self,
        repository: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Reply, StoreError> {
        let subscriptions = self.subscriptions().await?;
        if subscriptions.is_empty() {
            return Ok(Reply::text(
                self.t("구독 중인 저장소가 없어요.", "You have no subscriptions."),
            ));
        }
        let word = self.t("구독취소", "unsubscribe").to_string();
        let Some(repository) = repository else {
            let reply = Reply::text(self.t(
                "어느 구독을 취소할까요?",
                "Which subscription should I cancel?",
            ));
            return Ok(subscriptions.iter().take(BRANCH_BUTTONS).fold(
                reply,
                |reply, (s, name)| {
                    reply.button(
                        format!("{name} ({})", s.branch),
                        format!("{word} {} {}", s.repository, s.branch),
                    )
                },
            ));
        };
        let key = RepoUrl::parse(repository, true).map(|u| u.key).ok();
        let matching: Vec<&(Subscription, String)> = subscriptions
            .iter()
            .filter(|(s, _)| {
                RepoUrl::parse(&s.repository, true).map(|u| u.key).ok() == key
                    && branch.is_none_or(|b| b == s.branch)
            })
            .collect();
        match matching.as_slice() {
            [] => Ok(Reply::text(match self.lang {
                Lang::Ko => format!(
                    "{repository} 구독을 찾지 못했어요. \u{201c}목록\u{201d}으로 확인해 보세요."
                ),
                Lang::En => format!(
                    "No subscription to {repository}. Send \u{201c}list\u{201d} to see yours."
                ),
            })),
            [(subscription, name)] => {
                crate::contacts::unsubscribe(&self.state.db, subscription.id).await?;
                Ok(Reply::text(match self.lang {
                    Lang::Ko => format!("🗑️ {name} ({}) 구독을 취소했어요.", subscription.branch),
                    Lang::En => format!("🗑️ Unsubscribed from {name} ({}).", subscription.branch),
                }))
            }
            several => Ok(several.iter().fold(
                Reply::text(self.t("어느 브랜치의 구독을 취소할까요?", "Which branch?")),
                |reply, (s, name)| {
                    reply.button(
                        format!("{name} ({})", s.branch),
                        format!("{word} {} {}", s.repository, s.branch),
                    )
                },
            )),
        }
    }

    async fn list(&mut self) -> Result<Reply, StoreError> {
        let subscriptions = self.subscriptions().await?;
        if subscriptions.is_empty() {
            return Ok(Reply::text(self.t(
                "구독 중인 저장소가 없어요. \u{201c}구독\u{201d}으로 시작해 보세요.",
                "You have no subscriptions yet. Start with \u{201c}subscribe\u{201d}.",
            ))
            .button(self.t("구독", "subscribe"), self.t("구독", "subscribe")));
        }
        let mut text = self
            .t("📋 구독 중인 저장소:", "📋 Your subscriptions:")
            .to_string();
        for (i, (s, name)) in subscriptions.iter().enumerate() {
            text.push_str(&format!("\n{}. {name} — {}", i + 1, s.branch));
            if s.muted {
                text.push_str(self.t(" (알림 꺼짐)", " (muted)"));
            }
        }
        if self.contact.muted {
            text.push_str(self.t(
                "\n\n🔕 지금은 모든 알림이 꺼져 있어요.",
                "\n\n🔕 All your notifications are muted.",
            ));
        }
        Ok(Reply::text(text)
            .button(self.t("구독", "subscribe"), self.t("구독", "subscribe"))
            .button(
                self.t("구독취소", "unsubscribe"),
                self.t("구독취소", "unsubscribe"),
            ))
    }

    /// `팀`: the contact's teams, a team's members, and adding or removing an account for the
    /// team's admins (the contact, or the account it is linked to, is an admin).
    async fn team(&mut self, action: TeamAction) -> Result<Reply, StoreError> {
        let teams = crate::teams::teams_of_contact(&self.state.db, self.contact.id).await?;
        let wanted = match &action {
            TeamAction::List => None,
            TeamAction::Members { team }
            | TeamAction::Add { team, .. }
            | TeamAction::Remove { team, .. } => Some(team.clone()),
        };
        let Some(wanted) = wanted else {
            if teams.is_empty() {
                return Ok(Reply::text(self.t(
                    "속한 팀이 없어요. 팀 관리자에게 추가해 달라고 하세요.",
                    "You are not in any team yet. Ask a team admin to add you.",
                )));
            }
            let mut text = self.t("👥 내 팀:", "👥 Your teams:").to_string();
            for t in &teams {
                text.push_str(&format!(
                    "\n• {} ({} {}){}",
                    t.team.name,
                    t.members,
                    self.t("명", "members"),
                    if t.admin {
                        self.t(" — 관리자", " — admin")
                    } else {
                        ""
                    }
                ));
            }
            return Ok(Reply::text(text));
        };
        let Some(found) = teams
            .iter()
            .find(|t| t.team.name.to_lowercase() == wanted.to_lowercase())
        else {
            return Ok(Reply::text(format!(
                "{} \u{201c}{wanted}\u{201d}",
                self.t("그런 팀에 속해 있지 않아요:", "You are not in a team named")
            )));
        };
        let (account, add) = match &action {
            TeamAction::Add { account, .. } => (account.clone(), true),
            TeamAction::Remove { account, .. } => (account.clone(), false),
            _ => {
                let members = crate::teams::member_names(&self.state.db, found.team.id).await?;
                let mut text = format!("👥 {}", found.team.name);
                for (name, admin) in members {
                    text.push_str(&format!(
                        "\n• {name}{}",
                        if admin {
                            self.t(" (관리자)", " (admin)")
                        } else {
                            ""
                        }
                    ));
                }
                return Ok(Reply::text(text));
            }
        };
        if !found.admin {
            return Ok(Reply::text(self.t(
                "팀 관리자만 멤버를 추가하거나 뺄 수 있어요.",
                "Only the team's admins can add or remove members.",
            )));
        }
        let Some(target) = crate::accounts::find_by_name(&self.state.db, &account).await? else {
            return Ok(Reply::text(format!(
                "{} \u{201c}{account}\u{201d}",
                self.t("그런 계정이 없어요:", "There is no account named")
            )));
        };
        let team = &found.team.name;
        if add {
            match crate::teams::add_member(
                &self.state.db,
                &self.state.ids,
                found.team.id,
                Some(target.id),
                None,
                false,
            )
            .await
            {
                Ok(_) => Ok(Reply::text(match self.lang {
                    Lang::Ko => format!("✅ {account} 님을 {team} 팀에 추가했어요."),
                    Lang::En => format!("✅ Added {account} to {team}."),
                })),
                Err(crate::teams::AddMemberError::Store(e)) => Err(e),
                Err(_) => Ok(Reply::text(match self.lang {
                    Lang::Ko => format!("{account} 님은 이미 {team} 팀에 있어요."),
                    Lang::En => format!("{account} is already in {team}."),
                })),
            }
        } else if crate::teams::remove_account_member(&self.state.db, found.team.id, target.id)
            .await?
        {
            Ok(Reply::text(match self.lang {
                Lang::Ko => format!("✅ {account} 님을 {team} 팀에서 뺐어요."),
                Lang::En => format!("✅ Removed {account} from {team}."),
            }))
        } else {
            Ok(Reply::text(match self.lang {
                Lang::Ko => format!("{account} 님은 {team} 팀에 없어요."),
                Lang::En => format!("{account} is not in {team}."),
            }))
        }
    }

    async fn commits(
        &mut self,
        repository: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Reply, StoreError> {
        let word = self.t("커밋", "commits").to_string();
        let (repository, branch) = match repository {
            Some(repository) => (repository.to_string(), branch.map(str::to_string)),
            None => {
                let subscriptions = self.subscriptions().await?;
                match subscriptions.as_slice() {
                    [(s, _)] => (s.repository.clone(), Some(s.branch.clone())),
                    [] => {
                        return Ok(Reply::text(self.t(
                            "어느 저장소의 커밋을 볼까요? 예: 커밋 octo/hello main",
                            "Which repository? For example: commits octo/hello main",
                        )));
                    }
                    several => {
                        return Ok(several.iter().take(BRANCH_BUTTONS).fold(
                            Reply::text(self.t(
                                "어느 저장소의 커밋을 볼까요?",
                                "Commits of which repository?",
                            )),
                            |reply, (s, name)| {
                                reply.button(
                                    format!("{name} ({})", s.branch),
                                    format!("{word} {} {}", s.repository, s.branch),
                                )
                            },
                        ));
                    }
                }
            }
        };
        let url = match RepoUrl::parse(&repository, self.state.settings.allow_private_targets) {
            Ok(url) => url,
            Err(error) => return Ok(Reply::text(error.to_string())),
        };
        let branch = match branch.filter(|b| !crate::watch::repo::is_glob(b)) {
            Some(branch) => branch,
            None => match self.default_branch(&url).await {
                Some(branch) => branch,
                None => {
                    return Ok(Reply::text(self.t(
                        "브랜치를 알려 주세요. 예: 커밋 octo/hello main",
                        "Which branch? For example: commits octo/hello main",
                    )));
                }
            },
        };
        let commits = match self.recent_commits(&url, &branch).await {
            Ok(commits) => commits,
            Err(RecentError::Store(error)) => return Err(error),
            Err(RecentError::Other(message)) => {
                return Ok(Reply::text(format!(
                    "{} {message}",
                    self.t("커밋을 읽지 못했어요:", "Could not read the commits:")
                )));
            }
        };
        let name = url.display_name();
        if commits.is_empty() {
            return Ok(Reply::text(match self.lang {
                Lang::Ko => format!("{name} ({branch})에 커밋이 없어요."),
                Lang::En => format!("{name} ({branch}) has no commits."),
            }));
        }
        let mut text = match self.lang {
            Lang::Ko => format!("📝 {name} ({branch}) 최근 커밋:"),
            Lang::En => format!("📝 Recent commits on {name} ({branch}):"),
        };
        for commit in &commits {
            let date = commit.timestamp.get(..10).unwrap_or(&commit.timestamp);
            text.push_str(&format!(
                "\n• {} {} — {} ({date})",
                commit.short_id(),
                crate::text::ellipsize_chars(commit.title(), 80),
                commit.author.name
            ));
        }
        let mut reply = Reply::text(text);
        if let Some(first) = commits.first()
            && let Some(link) = first.url.clone().or_else(|| url.commit_url(&first.id))
        {
            reply = reply.link(self.t("최신 커밋 보기", "Latest commit"), link);
        }
        Ok(reply)
    }

    async fn recent_commits(
        &self,
        url: &RepoUrl,
        branch: &str,
    ) -> Result<Vec<crate::watch::event::Commit>, RecentError> {
        match &url.kind {
            RepoKind::GitHub { owner, name } => {
                let entries = self
                    .state
                    .github
                    .list_commits(owner, name, branch, COMMITS_SHOWN as u32)
                    .await
                    .map_err(|e| RecentError::Other(e.to_string()))?;
                Ok(entries
                    .iter()
                    .filter_map(crate::watch::github::commit_from_github)
                    .collect())
            }
            RepoKind::Git => {
                crate::contacts::probe_heads(self.state, url, branch)
                    .await
                    .map_err(|e| match e {
                        SubscribeError::Store(e) => RecentError::Store(e),
                        other => RecentError::Other(other.to_string()),
                    })?;
                let repository =
                    crate::watch::upsert_repository(&self.state.db, &self.state.ids, url).await?;
                self.state
                    .git
                    .recent_commits(repository.id, &url.remote, branch, COMMITS_SHOWN)
                    .await
                    .map_err(|e| RecentError::Other(e.to_string()))
            }
        }
    }

    async fn search(&mut self, query: &str) -> Result<Reply, StoreError> {
        Ok(match self.search_hits(query).await? {
            Some(reply) => reply,
            None => Reply::text(match self.lang {
                Lang::Ko => format!("\u{201c}{query}\u{201d}에 대한 검색 결과가 없어요."),
                Lang::En => format!("Nothing found for \u{201c}{query}\u{201d}."),
            }),
        })
    }

    /// The top knowledge base hits for `query` as a reply, or `None` when nothing matches.
    async fn search_hits(&self, query: &str) -> Result<Option<Reply>, StoreError> {
        let hits = match self
            .state
            .kb
            .search(&self.state.db, query, SEARCH_HITS)
            .await
        {
            Ok(hits) => hits,
            Err(error) => {
                tracing::warn!(%error, "knowledge base search failed");
                return Ok(None);
            }
        };
        if hits.is_empty() {
            return Ok(None);
        }
        let mut text = match self.lang {
            Lang::Ko => format!("🔎 \u{201c}{query}\u{201d} 검색 결과:"),
            Lang::En => format!("🔎 Results for \u{201c}{query}\u{201d}:"),
        };
        let mut reply = Reply::default();
        for (i, hit) in hits.iter().enumerate() {
            text.push_str(&format!("\n{}. {}", i + 1, hit.title));
            let snippet = hit.snippet.trim();
            if !snippet.is_empty() {
                text.push_str(&format!(
                    " — {}",
                    crate::text::ellipsize_chars(snippet, 120)
                ));
            }
            if let Some(url) = &hit.url {
                reply = reply.link(hit.title.clone(), url.clone());
            }
        }
        reply.text = text;
        Ok(Some(reply))
    }

    async fn link(&mut self, code: &str) -> Result<Reply, StoreError> {
        Ok(
            match link::redeem(&self.state.db, self.contact.id, code).await? {
                Some(account_name) => Reply::text(match self.lang {
                    Lang::Ko => format!(
                        "🔗 herald 계정 {account_name}에 연결했어요. 이제 웹에서 이 대화의 구독을 관리할 수 있어요."
                    ),
                    Lang::En => format!(
                        "🔗 Linked to the herald account {account_name}. You can manage this chat's subscriptions on the web now."
                    ),
                }),
                None => Reply::text(self.t(
                    "코드가 맞지 않거나 만료됐어요. herald 웹에서 새 코드를 받아 주세요.",
                    "That code is wrong or has expired. Get a new one from herald on the web.",
                )),
            },
        )
    }
}

enum RecentError {
    Store(StoreError),
    Other(String),
}

impl From<StoreError> for RecentError {
    fn from(error: StoreError) -> Self {
        RecentError::Store(error)
    }
}
