//! The knowledge base's JSON API under `/api/v1/kb/`. Writes are the operator's; any signed-in
//! account may search.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::document::{DocId, parse_batch};
use super::store::StoredDocument;
use super::{Hit, KbError};
use crate::accounts::auth::Actor;
use crate::http::auth::Admin;
use crate::http::error::{ApiError, ApiJson};
use crate::state::AppState;

/// A batch of up to `MAX_BATCH` documents may be larger than the API's default body limit.
const DOCUMENTS_BODY_LIMIT: usize = 16 * 1024 * 1024;
const DEFAULT_LIMIT: usize = 10;
/// At most this many bytes in a query.
const MAX_QUERY_BYTES: usize = 1000;

/// The knowledge-base routes' state: this node's index beside the shared infrastructure.
#[derive(Clone)]
pub struct KbState {
    pub app: AppState,
    pub kb: std::sync::Arc<super::KnowledgeBase>,
}

crate::feature_state!(KbState);

pub fn router(state: KbState) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/kb/documents",
            post(documents_upsert).layer(DefaultBodyLimit::max(DOCUMENTS_BODY_LIMIT)),
        )
        .route(
            "/api/v1/kb/documents/{id}",
            get(document_get).delete(document_delete),
        )
        .route("/api/v1/kb/synonyms", put(synonyms_put).get(synonyms_get))
        .route("/api/v1/kb/search", get(search))
        .with_state(state)
}

impl From<KbError> for ApiError {
    fn from(error: KbError) -> Self {
        match error {
            KbError::Database(e) => e.into(),
            KbError::Synonyms(e) => ApiError::BadRequest(e.to_string()),
            KbError::Locked(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(anyhow::Error::new(other).context("knowledge base")),
        }
    }
}

#[derive(Serialize)]
struct DocumentOut {
    id: String,
    title: String,
    body: String,
    tags: Vec<String>,
    url: Option<String>,
    updated_at: String,
}

impl From<StoredDocument> for DocumentOut {
    fn from(document: StoredDocument) -> Self {
        DocumentOut {
            id: document.id,
            title: document.title,
            body: document.body,
            tags: document.tags,
            url: document.url,
            updated_at: crate::ids::rfc3339(document.updated_at),
        }
    }
}

/// One document object or an array of them; all are checked before any is stored.
async fn documents_upsert(
    _: Admin,
    State(state): State<KbState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let documents = parse_batch(body).map_err(ApiError::Validation)?;
    let revision = state.kb.upsert(&state.db, &documents).await?;
    Ok(Json(json!({
        "upserted": documents.len(),
        "ids": documents.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        "revision": revision,
    })))
}

fn path_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw).map_err(|_| ApiError::NotFound(format!("no document with id {raw:?}")))
}

async fn document_get(
    _: Actor,
    State(state): State<KbState>,
    Path(id): Path<String>,
) -> Result<Json<DocumentOut>, ApiError> {
    let id = path_id(&id)?;
    match state.kb.document(&state.db, &id).await? {
        Some(document) => Ok(Json(document.into())),
        None => Err(ApiError::NotFound(format!(
            "no document with id {:?}",
            id.as_str()
        ))),
    }
}

async fn document_delete(
    _: Admin,
    State(state): State<KbState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    if state.kb.delete(&state.db, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no document with id {:?}",
            id.as_str()
        )))
    }
}

/// The body is the synonym file itself (any content type), as in Elasticsearch/Solr.
async fn synonyms_put(
    _: Admin,
    State(state): State<KbState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the synonym file must be UTF-8 text".into()))?;
    let synonyms = state.kb.set_synonyms(&state.db, text).await?;
    Ok(Json(
        json!({"rules": synonyms.rules(), "terms": synonyms.terms()}),
    ))
}

async fn synonyms_get(_: Admin, State(state): State<KbState>) -> Result<String, ApiError> {
    Ok(super::store::synonyms(&state.db).await?)
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct SearchOut {
    query: String,
    hits: Vec<Hit>,
}

async fn search(
    _: Actor,
    State(state): State<KbState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchOut>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let q = query.q.trim();
    if q.is_empty() {
        return Err(ApiError::Validation(
            "q (the search text) is required".into(),
        ));
    }
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::Validation(format!(
            "q is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=super::MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::Validation(format!(
                "limit must be between 1 and {}",
                super::MAX_LIMIT
            )));
        }
    };
    let hits = state.kb.search(&state.db, q, limit).await?;
    Ok(Json(SearchOut {
        query: q.to_string(),
        hits,
    }))
}
