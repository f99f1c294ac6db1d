//! The operator's pages: `/operator` (the queue per channel, which channels are on and why
//! not, the latest failed attempts, the nodes) and `/operator/kb…` (the knowledge base's
//! documents and synonym list, edited through `kb`'s [`crate::kb::KnowledgeBase`], so a change
//! is searchable at once on `/kb`).
//!
//! The operator is whoever holds the operator token (`HERALD_ADMIN_TOKEN`): in the browser, the
//! `herald_admin` cookie that `/login` sets (`projects::pages`), checked once per page by the
//! [`Visitor`] extractor (so the header knows the operator too); accounts have no operator
//! flag. Anyone else gets a 403 page that points to `/login`. `POST /operator/signout` drops
//! the cookie. Forms carry the page's CSRF token
//! ([`CsrfForm`]) like every other form.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::csrf::{CsrfForm, NoFields};
use super::home::display_time;
use super::session::Visitor;
use super::{Layout, MessagePage, WebState, internal_error, render};
use crate::channels::{ChannelMode, ChannelStatus};
use crate::http::error::ApiError;
use crate::http::routes::{Outside, Routes};
use crate::kb::KbError;
use crate::kb::document::{DocId, Document, DocumentIn, IdIn};

/// What start-up decided that the operator's view shows: each channel's state (`startup`
/// builds the channels and records why one is off).
pub struct OperatorFacts {
    pub channels: Vec<ChannelStatus>,
}

/// Failed attempts the overview lists.
const FAILURES_SHOWN: i64 = 20;
/// Documents per page of the knowledge-base list.
const DOCUMENTS_PER_PAGE: i64 = 50;
/// A document's form: a body of up to 64 KiB, percent-encoded (a Hangul syllable is nine
/// bytes on the wire), with room for the rest. The synonym form shares it.
const KB_FORM_BYTES: usize = 1024 * 1024;

pub fn routes() -> Routes<WebState> {
    let kb_forms = Routes::new()
        .outside(Outside::Page, Method::POST, "/operator/kb/save", kb_save)
        .outside(
            Outside::Page,
            Method::POST,
            "/operator/kb/delete",
            kb_delete,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/operator/kb/synonyms",
            kb_synonyms,
        )
        .layer(DefaultBodyLimit::max(KB_FORM_BYTES));
    Routes::new()
        .outside(Outside::Page, Method::GET, "/operator", overview)
        .outside(Outside::Page, Method::POST, "/operator/signout", sign_out)
        .outside(Outside::Page, Method::GET, "/operator/kb", kb_page)
        .outside(
            Outside::Page,
            Method::GET,
            "/operator/kb/edit",
            kb_edit_page,
        )
        .merge(kb_forms)
}

/// A visitor who is the operator; anyone else is answered with a 403 page.
pub struct Operator(pub Visitor);

impl FromRequestParts<WebState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        if visitor.operator {
            return Ok(Operator(visitor));
        }
        // An address that guessed at the token too often.
        if let Some(wait) = visitor.operator_wait {
            return Err(ApiError::TooManyRequests(
                "too many wrong tokens from this address; try again later".into(),
                wait,
            )
            .into_response());
        }
        let op = visitor.lang.messages().op;
        Err(
            MessagePage::new(&visitor, op.forbidden_title, op.forbidden_text, "bad")
                .link("/login", op.sign_in)
                .with_status(StatusCode::FORBIDDEN),
        )
    }
}

/// `POST /operator/signout`: forgets the operator's cookie (an account session, if any, stays)
/// and goes to `/`. Anyone may drop their own cookie, so it is not the operator's alone.
async fn sign_out(State(state): State<WebState>, CsrfForm { .. }: CsrfForm<NoFields>) -> Response {
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        axum::http::header::SET_COOKIE,
        super::session::clear_operator_cookie(&state.app),
    );
    response
}

// --- the overview ---------------------------------------------------------------------------

struct ChannelRow {
    name: String,
    /// `on`, `off` or `spool`, as the badge's class and text key.
    state: &'static str,
    state_label: &'static str,
    detail: String,
    pending: i64,
    due: i64,
    in_flight: i64,
}

struct FailureRow {
    when: String,
    channel: String,
    destination: String,
    status: String,
    error: String,
}

struct NodeRow {
    worker_id: i64,
    this_node: bool,
    holder: String,
    started: String,
    version: String,
    lease_until: String,
}

#[derive(Template)]
#[template(path = "web/operator.html")]
struct OverviewPage {
    layout: Layout,
    channels: Vec<ChannelRow>,
    total_pending: i64,
    failures: Vec<FailureRow>,
    nodes: Vec<NodeRow>,
}

async fn overview(State(state): State<WebState>, Operator(visitor): Operator) -> Response {
    let op = visitor.lang.messages().op;
    // The queue's own times are the system clock's (`outbox`), so its "due now" is too.
    let now = crate::ids::now_ms();
    let depths = match crate::outbox::overview::queue_depth(&state.db, now).await {
        Ok(depths) => depths,
        Err(error) => return internal_error(&visitor, &error),
    };
    let failures = match recent_failures(&state).await {
        Ok(failures) => failures,
        Err(error) => return internal_error(&visitor, &error),
    };
    let nodes = match nodes(&state).await {
        Ok(nodes) => nodes,
        Err(error) => return internal_error(&visitor, &error),
    };
    // Every channel start-up knows, then any other that still has rows waiting (a channel
    // turned off with deliveries queued for it is what the operator most needs to see).
    let mut channels: Vec<ChannelRow> = state
        .operator
        .channels
        .iter()
        .map(|status| channel_row(op, status))
        .collect();
    for depth in &depths {
        if !channels.iter().any(|c| c.name == depth.channel) {
            channels.push(ChannelRow {
                name: depth.channel.clone(),
                state: "off",
                state_label: op.channel_off,
                detail: String::new(),
                pending: 0,
                due: 0,
                in_flight: 0,
            });
        }
    }
    for row in &mut channels {
        if let Some(depth) = depths.iter().find(|d| d.channel == row.name) {
            row.pending = depth.pending;
            row.due = depth.due;
            row.in_flight = depth.in_flight;
        }
    }
    let page = OverviewPage {
        layout: Layout::new(&visitor, op.title),
        total_pending: depths.iter().map(|d| d.pending).sum(),
        channels,
        failures: failures
            .into_iter()
            .map(|f| FailureRow {
                when: display_time(f.attempted_at),
                channel: f.channel,
                destination: crate::text::ellipsize_chars(&f.destination, 120),
                status: f
                    .status_code
                    .map_or(op.no_answer.to_string(), |c| format!("HTTP {c}")),
                error: crate::text::ellipsize_chars(&f.error, 300),
            })
            .collect(),
        nodes,
    };
    render(&page)
}

/// The latest failed attempts; a webhook delivery's destination is its hook's id, shown as the
/// hook's payload URL (read through `projects`).
async fn recent_failures(
    state: &WebState,
) -> Result<Vec<crate::outbox::overview::FailedAttempt>, crate::store::StoreError> {
    let mut failures = crate::outbox::overview::recent_failures(&state.db, FAILURES_SHOWN).await?;
    let hook_ids: Vec<i64> = failures
        .iter()
        .filter(|f| f.channel == "webhook")
        .filter_map(|f| f.destination.parse().ok())
        .collect();
    if !hook_ids.is_empty() {
        let hooks = crate::projects::hook_targets(&state.db, &hook_ids).await?;
        for failure in failures.iter_mut().filter(|f| f.channel == "webhook") {
            if let Some(hook) = hooks
                .iter()
                .find(|h| failure.destination == h.id.to_string())
            {
                failure.destination = hook.payload_url.clone();
            }
        }
    }
    Ok(failures)
}

fn channel_row(
    op: &crate::web::i18n::operator::OperatorText,
    status: &ChannelStatus,
) -> ChannelRow {
    let (state, state_label, detail) = match &status.mode {
        ChannelMode::On => ("on", op.channel_on, String::new()),
        ChannelMode::Off { missing } => (
            "off",
            op.channel_off,
            format!("{} {}", op.channel_not_set, missing.join(", ")),
        ),
        ChannelMode::Spool { folder } => (
            "spool",
            op.channel_spool,
            format!("{} {}", op.channel_spool_detail, folder.display()),
        ),
    };
    ChannelRow {
        name: status.name.to_string(),
        state,
        state_label,
        detail,
        pending: 0,
        due: 0,
        in_flight: 0,
    }
}

/// The nodes to list: every registered node (`node::list`: live, or lapsed and not yet taken
/// over by another), this one marked.
async fn nodes(state: &WebState) -> Result<Vec<NodeRow>, crate::store::StoreError> {
    let this_node = state.node.id();
    Ok(crate::node::list(&state.db)
        .await?
        .into_iter()
        .map(|node| NodeRow {
            worker_id: node.worker_id,
            this_node: node.node_id == this_node,
            holder: if node.address.is_empty() {
                node.holder
            } else {
                format!("{} ({})", node.holder, node.address)
            },
            started: display_time(node.started_at),
            version: node.version,
            lease_until: display_time(node.expires_at),
        })
        .collect())
}

// --- the knowledge base ---------------------------------------------------------------------

/// A form field as shown again: what was typed and, when refused, `kb`'s words for why.
#[derive(Default, Clone)]
struct KbField {
    value: String,
    error: Option<String>,
}

impl KbField {
    fn typed(value: &str) -> KbField {
        KbField {
            value: value.to_string(),
            error: None,
        }
    }
}

struct DocumentRow {
    id: String,
    /// The id, percent-encoded for the edit link's query.
    id_query: String,
    title: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "web/operator_kb.html")]
struct KbPage {
    layout: Layout,
    notice: Option<&'static str>,
    documents: Vec<DocumentRow>,
    /// The next page's link, when this one is full.
    next: Option<String>,
    synonyms: KbField,
}

#[derive(Deserialize, Default)]
struct KbListQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    done: String,
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn kb_page_for(
    state: &WebState,
    visitor: &Visitor,
    after: &str,
    synonyms: Option<KbField>,
) -> Result<KbPage, crate::store::StoreError> {
    let op = visitor.lang.messages().op;
    let documents = crate::kb::store::document_list(&state.db, after, DOCUMENTS_PER_PAGE).await?;
    let next = if documents.len() as i64 == DOCUMENTS_PER_PAGE {
        documents
            .last()
            .map(|last| format!("/operator/kb?after={}", encode(&last.id)))
    } else {
        None
    };
    let synonyms = match synonyms {
        Some(typed) => typed,
        None => KbField::typed(&crate::kb::store::synonyms(&state.db).await?),
    };
    Ok(KbPage {
        layout: Layout::new(visitor, op.kb_title),
        notice: None,
        documents: documents
            .into_iter()
            .map(|d| DocumentRow {
                id_query: encode(&d.id),
                id: d.id,
                title: d.title,
                updated: display_time(d.updated_at),
            })
            .collect(),
        next,
        synonyms,
    })
}

async fn kb_page(
    State(state): State<WebState>,
    Operator(visitor): Operator,
    query: Result<Query<KbListQuery>, QueryRejection>,
) -> Response {
    // A query that does not parse is the first page.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let op = visitor.lang.messages().op;
    match kb_page_for(&state, &visitor, &query.after, None).await {
        Ok(mut page) => {
            page.notice = match query.done.as_str() {
                "saved" => Some(op.kb_saved),
                "deleted" => Some(op.kb_deleted),
                "synonyms" => Some(op.kb_synonyms_saved),
                _ => None,
            };
            render(&page)
        }
        Err(error) => internal_error(&visitor, &error),
    }
}

#[derive(Template)]
#[template(path = "web/operator_kb_edit.html")]
struct KbEditPage {
    layout: Layout,
    /// Editing a stored document (its id is fixed) rather than writing a new one.
    existing: bool,
    /// A refusal that names no one field.
    error: Option<String>,
    doc_id: KbField,
    title: KbField,
    body: KbField,
    tags: KbField,
    url: KbField,
}

impl KbEditPage {
    fn blank(visitor: &Visitor, existing: bool) -> KbEditPage {
        let op = visitor.lang.messages().op;
        KbEditPage {
            layout: Layout::new(
                visitor,
                if existing {
                    op.kb_edit_title
                } else {
                    op.kb_new
                },
            ),
            existing,
            error: None,
            doc_id: KbField::default(),
            title: KbField::default(),
            body: KbField::default(),
            tags: KbField::default(),
            url: KbField::default(),
        }
    }
}

#[derive(Deserialize, Default)]
struct KbEditQuery {
    #[serde(default)]
    id: String,
}

fn kb_not_found(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    let (title, text) = (t.not_found_title, t.op.kb_not_found);
    super::not_found_page(visitor, title, text, "/operator/kb", t.op.kb_title)
}

async fn kb_edit_page(
    State(state): State<WebState>,
    Operator(visitor): Operator,
    query: Result<Query<KbEditQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    if query.id.is_empty() {
        return render(&KbEditPage::blank(&visitor, false));
    }
    let Ok(id) = DocId::parse(&query.id) else {
        return kb_not_found(&visitor);
    };
    match state.kb.document(&state.db, &id).await {
        Ok(Some(document)) => {
            let mut page = KbEditPage::blank(&visitor, true);
            page.doc_id = KbField::typed(&document.id);
            page.title = KbField::typed(&document.title);
            page.body = KbField::typed(&document.body);
            page.tags = KbField::typed(&document.tags.join(", "));
            page.url = KbField::typed(document.url.as_deref().unwrap_or_default());
            render(&page)
        }
        Ok(None) => kb_not_found(&visitor),
        Err(error) => internal_error(&visitor, &error),
    }
}

#[derive(Deserialize)]
struct DocumentForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    url: String,
    /// "1" when the form edits a stored document.
    #[serde(default)]
    existing: String,
}

/// The answer to a knowledge-base write that `kb` could not do: busy index or internal error.
fn kb_failed(visitor: &Visitor, error: KbError) -> Response {
    match error {
        KbError::Locked(reason) => {
            tracing::warn!(%reason, "a knowledge-base write from the operator's page found the index busy");
            let t = visitor.lang.messages();
            MessagePage::new(visitor, t.op.kb_title, t.op.kb_busy, "bad")
                .link("/operator/kb", t.op.kb_title)
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
        }
        other => internal_error(visitor, &other),
    }
}

async fn kb_save(
    State(state): State<WebState>,
    Operator(_): Operator,
    CsrfForm { visitor, form }: CsrfForm<DocumentForm>,
) -> Response {
    let input = DocumentIn {
        id: IdIn::Text(form.id.clone()),
        title: form.title.clone(),
        body: form.body.clone(),
        tags: form
            .tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        url: Some(form.url.clone()),
    };
    let document = match Document::parse(input) {
        Ok(document) => document,
        Err(message) => {
            let mut page = KbEditPage::blank(&visitor, form.existing == "1");
            page.doc_id = KbField::typed(&form.id);
            page.title = KbField::typed(&form.title);
            page.body = KbField::typed(&form.body);
            page.tags = KbField::typed(&form.tags);
            page.url = KbField::typed(&form.url);
            // `kb`'s messages start with what they are about.
            let field = if message.starts_with("id") {
                &mut page.doc_id
            } else if message.starts_with("title") {
                &mut page.title
            } else if message.starts_with("body") {
                &mut page.body
            } else if message.starts_with("tag") || message.contains(" tags") {
                &mut page.tags
            } else if message.starts_with("url") {
                &mut page.url
            } else {
                page.error = Some(message);
                return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
            };
            field.error = Some(message);
            return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
        }
    };
    match state.kb.upsert(&state.db, &[document]).await {
        Ok(_) => Redirect::to("/operator/kb?done=saved").into_response(),
        Err(error) => kb_failed(&visitor, error),
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    id: String,
}

async fn kb_delete(
    State(state): State<WebState>,
    Operator(_): Operator,
    CsrfForm { visitor, form }: CsrfForm<DeleteForm>,
) -> Response {
    let Ok(id) = DocId::parse(&form.id) else {
        return kb_not_found(&visitor);
    };
    match state.kb.delete(&state.db, &id).await {
        Ok(true) => Redirect::to("/operator/kb?done=deleted").into_response(),
        Ok(false) => kb_not_found(&visitor),
        Err(error) => kb_failed(&visitor, error),
    }
}

#[derive(Deserialize)]
struct SynonymsForm {
    #[serde(default)]
    synonyms: String,
}

async fn kb_synonyms(
    State(state): State<WebState>,
    Operator(_): Operator,
    CsrfForm { visitor, form }: CsrfForm<SynonymsForm>,
) -> Response {
    // Browsers send text areas with CRLF line ends; the file is stored as typed otherwise.
    let text = form.synonyms.replace("\r\n", "\n");
    match state.kb.set_synonyms(&state.db, &text).await {
        Ok(_) => Redirect::to("/operator/kb?done=synonyms").into_response(),
        Err(KbError::Synonyms(error)) => {
            let typed = KbField {
                value: text,
                error: Some(error.to_string()),
            };
            match kb_page_for(&state, &visitor, "", Some(typed)).await {
                Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response(),
                Err(error) => internal_error(&visitor, &error),
            }
        }
        Err(error) => kb_failed(&visitor, error),
    }
}
