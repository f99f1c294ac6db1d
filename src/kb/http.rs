//! The knowledge base's JSON API under `/api/v1/kb/`. Writes are the operator's; any signed-in
//! account may search.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::document::{DocId, DocumentIn, parse_batch};
use super::store::StoredDocument;
use super::{Hit, KbError};
use crate::accounts::auth::Actor;
use crate::http::auth::Admin;
use crate::http::error::{ApiError, ApiJson, ErrorBody};
use crate::http::openapi::{JsonBodyErrors, TokenErrors};
use crate::http::routes::Routes;
use crate::state::AppState;

/// A batch of up to `MAX_BATCH` documents may be larger than the API's default body limit.
const DOCUMENTS_BODY_LIMIT: usize = 16 * 1024 * 1024;
const _: () = assert!(DOCUMENTS_BODY_LIMIT <= crate::http::LARGEST_BODY_LIMIT);
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

pub fn router(state: KbState) -> Routes {
    let (schemas, paths, upsert) = routes!(documents_upsert);
    Routes::new()
        .api((
            schemas,
            paths,
            upsert.layer(DefaultBodyLimit::max(DOCUMENTS_BODY_LIMIT)),
        ))
        .api(routes!(document_get))
        .api(routes!(document_delete))
        .api(routes!(synonyms_put))
        .api(routes!(synonyms_get))
        .api(routes!(search))
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

#[derive(Serialize, ToSchema)]
struct DocumentOut {
    id: String,
    title: String,
    body: String,
    tags: Vec<String>,
    url: Option<String>,
    /// RFC 3339.
    updated_at: String,
}

/// What `POST /api/v1/kb/documents` reads (`document::parse_batch` reads it from the JSON, so
/// that a bad item is named by its position; this type only describes it).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DocumentBatchIn {
    One(DocumentIn),
    /// 1 to 1000 documents with distinct ids.
    Many(Vec<DocumentIn>),
}

#[derive(Serialize, ToSchema)]
struct Upserted {
    /// How many documents were stored.
    upserted: usize,
    ids: Vec<String>,
    /// The knowledge base's revision after the write.
    revision: i64,
}

#[derive(Serialize, ToSchema)]
struct SynonymsSet {
    /// Rules read from the file.
    rules: usize,
    /// Distinct terms that have synonyms.
    terms: usize,
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

/// Adds or replaces documents: one document object or an array of them.
///
/// All are checked before any is stored; posting an id again replaces that document.
#[utoipa::path(
    post,
    path = "/api/v1/kb/documents",
    tag = "kb",
    security(("operator_token" = [])),
    request_body = DocumentBatchIn,
    responses(
        (status = 200, description = "Stored", body = Upserted),
        (status = 503, description = "The search index is busy (another process holds it)", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn documents_upsert(
    _: Admin,
    State(state): State<KbState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Upserted>, ApiError> {
    let documents = parse_batch(body).map_err(ApiError::Validation)?;
    let revision = state.kb.upsert(&state.db, &documents).await?;
    Ok(Json(Upserted {
        upserted: documents.len(),
        ids: documents
            .iter()
            .map(|d| d.id.as_str().to_string())
            .collect(),
        revision,
    }))
}

fn path_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw).map_err(|_| ApiError::NotFound(format!("no document with id {raw:?}")))
}

/// One document.
#[utoipa::path(
    get,
    path = "/api/v1/kb/documents/{id}",
    tag = "kb",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The document's id")),
    responses(
        (status = 200, description = "The document", body = DocumentOut),
        (status = 404, description = "No such document", body = ErrorBody),
        TokenErrors,
    )
)]
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

/// Deletes a document.
#[utoipa::path(
    delete,
    path = "/api/v1/kb/documents/{id}",
    tag = "kb",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The document's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such document", body = ErrorBody),
        TokenErrors,
    )
)]
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

/// Replaces the synonym list.
///
/// The body is the synonym file itself, in Solr's format (`a, b, c` or `a => b` per line), with
/// any content type.
#[utoipa::path(
    put,
    path = "/api/v1/kb/synonyms",
    tag = "kb",
    security(("operator_token" = [])),
    request_body(content = String, content_type = "text/plain", description = "The synonym file"),
    responses(
        (status = 200, description = "Stored", body = SynonymsSet),
        (status = 400, description = "Not UTF-8, or a line is malformed", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        TokenErrors,
    )
)]
async fn synonyms_put(
    _: Admin,
    State(state): State<KbState>,
    body: Bytes,
) -> Result<Json<SynonymsSet>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the synonym file must be UTF-8 text".into()))?;
    let synonyms = state.kb.set_synonyms(&state.db, text).await?;
    Ok(Json(SynonymsSet {
        rules: synonyms.rules(),
        terms: synonyms.terms(),
    }))
}

/// The synonym file as last stored.
#[utoipa::path(
    get,
    path = "/api/v1/kb/synonyms",
    tag = "kb",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The synonym file", body = String, content_type = "text/plain"),
        TokenErrors,
    )
)]
async fn synonyms_get(_: Admin, State(state): State<KbState>) -> Result<String, ApiError> {
    Ok(super::store::synonyms(&state.db).await?)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// The search text (required; at most 1000 bytes).
    #[serde(default)]
    q: String,
    /// 1 to 50 [10].
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
struct SearchOut {
    /// The search text as searched (trimmed).
    query: String,
    /// Best first.
    hits: Vec<Hit>,
}

/// Searches the knowledge base, synonyms included.
#[utoipa::path(
    get,
    path = "/api/v1/kb/search",
    tag = "kb",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "The hits", body = SearchOut),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 422, description = "`q` is missing or too long, or `limit` is out of range", body = ErrorBody),
        TokenErrors,
    )
)]
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
