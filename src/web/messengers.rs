//! `/messengers`: the messenger contacts linked to my account, a one-time link code with the
//! exact text to send to the bot, and unlinking. Codes are `bot::link`'s; contacts are
//! `contacts`'.

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::Response;

use super::csrf::{NoFields, SignedInForm};
use super::home::display_time;
use super::session::{SignedIn, Visitor};
use super::{
    Layout, PageResult, WebState, changed, not_found_page, or_internal_error, render,
    render_or_internal_error,
};
use crate::accounts::Account;

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/messengers", page)
        .outside(Outside::Page, Method::POST, "/messengers/code", new_code)
        .outside(
            Outside::Page,
            Method::POST,
            "/messengers/{id}/unlink",
            unlink,
        )
}

struct ContactRow {
    id: i64,
    channel: String,
    address: String,
    nick_name: String,
    muted: bool,
    blocked: bool,
}

#[derive(Template)]
#[template(path = "web/messengers.html")]
struct MessengersPage {
    layout: Layout,
    notice: Option<&'static str>,
    contacts: Vec<ContactRow>,
    /// The text to send to the bot (`link ABCD2345`), once a code was asked for.
    send_text: Option<String>,
    valid_until: String,
    bots: Vec<&'static str>,
}

/// The messengers whose bot this herald answers on.
fn bots(state: &WebState) -> Vec<&'static str> {
    let settings = &state.settings;
    let mut bots = Vec::new();
    if settings.telegram.bot_token.is_some() {
        bots.push("Telegram");
    }
    if settings.kakao.bot_id.is_some() {
        bots.push("KakaoTalk");
    }
    if settings.webex.bot_token.is_some() {
        bots.push("Webex");
    }
    bots
}

async fn build(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
) -> Result<MessengersPage, crate::store::StoreError> {
    let contacts = crate::contacts::contacts_of_account(&state.db, account.id)
        .await?
        .into_iter()
        .map(|c| ContactRow {
            id: c.id,
            channel: c.channel,
            address: c.address,
            nick_name: c.nick_name,
            muted: c.muted,
            blocked: c.blocked,
        })
        .collect();
    Ok(MessengersPage {
        layout: Layout::new(visitor, visitor.lang.messages().nav_messengers),
        notice: None,
        contacts,
        send_text: None,
        valid_until: String::new(),
        bots: bots(state),
    })
}

async fn page(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    let built = build(&state, &signed_in.visitor, &signed_in.account).await;
    render_or_internal_error(&signed_in.visitor, StatusCode::OK, built)
}

async fn new_code(
    State(state): State<WebState>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> PageResult {
    let issued = or_internal_error(
        &visitor,
        crate::bot::link::issue_code(&state.db, account.id).await,
    )?;
    let mut page = or_internal_error(&visitor, build(&state, &visitor, &account).await)?;
    page.send_text = Some(format!(
        "{} {}",
        visitor.lang.messages().link_command,
        issued.code
    ));
    page.valid_until = display_time(issued.expires_at);
    Ok(render(&page))
}

/// A contact that is not linked to my account (or not at all).
fn not_yours(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    not_found_page(
        visitor,
        t.not_yours,
        t.not_yours,
        "/messengers",
        t.nav_messengers,
    )
}

async fn unlink(
    State(state): State<WebState>,
    Path(id): Path<String>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> PageResult {
    let Ok(contact_id) = id.parse::<i64>() else {
        return Err(not_yours(&visitor));
    };
    let unlinked = crate::contacts::unlink_from_account(&state.db, contact_id, account.id).await;
    changed(&visitor, unlinked, not_yours)?;
    let mut page = or_internal_error(&visitor, build(&state, &visitor, &account).await)?;
    page.notice = Some(visitor.lang.messages().unlinked);
    Ok(render(&page))
}
