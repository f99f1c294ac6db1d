//! `/`: the landing page for visitors, the dashboard for a signed-in account. The dashboard
//! reads each part from its owner: contacts and subscriptions (`contacts`), their latest
//! notifications (`outbox`, with the pushes from `push`), projects and hooks (`projects`),
//! friend requests and unread chats (`chat`).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::session::Visitor;
use super::{Layout, WebState, render, render_or_internal_error};
use crate::accounts::Account;
use crate::store::{Db, StoreError};

/// How many notifications the dashboard lists per contact.
const NOTIFICATIONS_PER_CONTACT: i64 = 5;

#[derive(Template)]
#[template(path = "web/landing.html")]
struct LandingPage {
    layout: Layout,
}

struct MessengerRow {
    channel: String,
    address: String,
    nick_name: String,
    muted: bool,
    blocked: bool,
}

struct SubscriptionRow {
    repository: String,
    branch: String,
    via: String,
    muted: bool,
}

struct NotificationRow {
    when: String,
    repository: String,
    branch: String,
    sha: String,
    channel: String,
    status: String,
}

/// Hooks are shown, not linked: the hook pages (`projects::pages`) take only the operator's
/// cookie so far, and have no CSRF token to take a session's.
struct HookRow {
    payload_url: String,
    active: bool,
    reason: String,
}

struct ProjectRow {
    owner: String,
    name: String,
    repository: String,
    hooks: Vec<HookRow>,
}

#[derive(Template)]
#[template(path = "web/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    name: String,
    messengers: Vec<MessengerRow>,
    subscriptions: Vec<SubscriptionRow>,
    notifications: Vec<NotificationRow>,
    projects: Vec<ProjectRow>,
    friend_requests: Vec<String>,
    unread: Vec<UnreadRow>,
}

/// A chat with unread messages, linking to its page.
struct UnreadRow {
    chat_id: i64,
    name: String,
    /// The count as shown: `99+` past the cap.
    count: String,
}

/// A time as pages show it: `2026-12-07 01:02 UTC`.
pub fn display_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

pub async fn index(State(state): State<WebState>, visitor: Visitor) -> Response {
    let Some(account) = visitor.account.clone() else {
        let t = visitor.lang.messages();
        return render(&LandingPage {
            layout: Layout::new(&visitor, t.landing_title),
        });
    };
    let built = dashboard(&state.db, &visitor, &account, state.chat.bot_account_id).await;
    render_or_internal_error(&visitor, StatusCode::OK, built)
}

async fn dashboard(
    db: &Db,
    visitor: &Visitor,
    account: &Account,
    bot_account_id: i64,
) -> Result<DashboardPage, StoreError> {
    let contacts = crate::contacts::contacts_of_account(db, account.id).await?;
    let mut subscriptions = Vec::new();
    let mut deliveries = Vec::new();
    for contact in &contacts {
        let via = if contact.nick_name.is_empty() {
            contact.channel.clone()
        } else {
            format!("{} ({})", contact.channel, contact.nick_name)
        };
        for subscription in crate::contacts::list_subscriptions(db, Some(contact.id)).await? {
            subscriptions.push(SubscriptionRow {
                repository: subscription.repository,
                branch: subscription.branch,
                via: via.clone(),
                muted: subscription.muted,
            });
        }
        deliveries.extend(
            crate::outbox::recent_to_contact(db, contact.id, NOTIFICATIONS_PER_CONTACT).await?,
        );
    }
    deliveries.sort_by_key(|d| std::cmp::Reverse(d.id));
    let event_ids: Vec<i64> = deliveries.iter().filter_map(|d| d.event_id).collect();
    let pushes = crate::push::push_summaries(db, &event_ids).await?;
    let notifications = deliveries
        .iter()
        .filter_map(|delivery| {
            let push = pushes.iter().find(|p| Some(p.id) == delivery.event_id)?;
            Some(NotificationRow {
                when: display_time(delivery.created_at),
                repository: push.repository.clone(),
                branch: push.branch.clone(),
                sha: push.after_sha.chars().take(7).collect(),
                channel: delivery.channel.clone(),
                status: delivery.status.clone(),
            })
        })
        .collect();
    let mut projects = Vec::new();
    for project in crate::projects::projects_of_account(db, account.id).await? {
        let hooks = crate::projects::list_webhooks(db, project.id)
            .await?
            .into_iter()
            .map(|hook| HookRow {
                payload_url: hook.payload_url,
                active: hook.active,
                reason: hook.disabled_reason.unwrap_or_default(),
            })
            .collect();
        projects.push(ProjectRow {
            owner: project.owner,
            name: project.name,
            repository: project.repository,
            hooks,
        });
    }
    let friend_requests = crate::chat::incoming_requests(db, account.id)
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    let unread = crate::chat::unread_chats(db, account.id, bot_account_id)
        .await?
        .into_iter()
        .map(|chat| UnreadRow {
            chat_id: chat.chat_id,
            name: chat.name,
            count: if chat.unread >= crate::chat::UNREAD_COUNT_CAP {
                format!("{}+", crate::chat::UNREAD_COUNT_CAP - 1)
            } else {
                chat.unread.to_string()
            },
        })
        .collect();
    Ok(DashboardPage {
        layout: Layout::new(visitor, visitor.lang.messages().dashboard_title),
        name: account.name.clone(),
        messengers: contacts
            .into_iter()
            .map(|c| MessengerRow {
                channel: c.channel,
                address: c.address,
                nick_name: c.nick_name,
                muted: c.muted,
                blocked: c.blocked,
            })
            .collect(),
        subscriptions,
        notifications,
        projects,
        friend_requests,
        unread,
    })
}
