//! `/kb`: the knowledge-base search for every signed-in account, through `kb`'s
//! [`crate::kb::KnowledgeBase::search`] (the same index, synonyms and limits as the bot and
//! `/api/v1/kb/search`). Editing documents and synonyms stays with the operator's API: the
//! pages have no operator identity yet.

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::SignedIn;
use super::{Field, Layout, WebState, internal_error, render};

/// How many hits the page lists.
const HITS: usize = 10;
/// The longest search text taken (as the API's `q`).
const MAX_QUERY_BYTES: usize = 1000;

pub fn routes() -> Routes<WebState> {
    Routes::new().outside(Outside::Page, Method::GET, "/kb", page)
}

struct HitRow {
    title: String,
    url: Option<String>,
    snippet: String,
}

#[derive(Template)]
#[template(path = "web/kb.html")]
struct KbPage {
    layout: Layout,
    q: Field,
    searched: bool,
    hits: Vec<HitRow>,
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn page(
    State(state): State<WebState>,
    signed_in: SignedIn,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let visitor = &signed_in.visitor;
    let t = visitor.lang.messages();
    // A query string that does not parse is a search for nothing: the empty form.
    let raw = query.map(|Query(q)| q.q).unwrap_or_default();
    let mut page = KbPage {
        layout: Layout::new(visitor, t.kb_title),
        q: Field::typed(&raw),
        searched: false,
        hits: Vec::new(),
    };
    let q = raw.trim();
    if q.is_empty() {
        return render(&page);
    }
    if q.len() > MAX_QUERY_BYTES {
        page.q.error = Some(t.kb_err_too_long);
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    match state.kb.search(&state.db, q, HITS).await {
        Ok(hits) => {
            page.searched = true;
            page.hits = hits
                .into_iter()
                .map(|hit| HitRow {
                    title: hit.title,
                    url: hit.url,
                    snippet: hit.snippet,
                })
                .collect();
            render(&page)
        }
        Err(error) => internal_error(visitor, &error),
    }
}
