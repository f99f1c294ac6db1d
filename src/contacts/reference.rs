//! The reference system's API, kept exactly (SPEC §A, `reference/repo-alarm-bot.txt`):
//! `POST /api/` registers a contact and subscribes it; `GET /api/` lists a branch's commits in
//! GitHub's commit-list shape. Success is `{"code":200,"message":…}`; every failure, including a
//! malformed body, is HTTP 404 with `{"code":404,"message":<what is wrong>}`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::{ContactRef, Filters, SubscribeError, subscribe, validate_address};
use crate::http::routes::Routes;
use crate::state::AppState;
use crate::watch::repo::{RepoKind, RepoUrl, valid_branch_pattern};

/// Registration bodies are tiny; anything bigger is refused.
pub const MAX_BODY: usize = 64 * 1024;
const COMMITS_LISTED: usize = 30;

/// `/api/` and `/api` answer the same; each spelling is its own documented route.
pub fn router(state: AppState) -> Routes {
    Routes::new()
        .api(routes!(list_commits))
        .api(routes!(list_commits_api))
        .api(routes!(register))
        .api(routes!(register_api))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The reference's answer: `{"code": 200, …}` on success, `{"code": 404, …}` on any failure.
#[derive(Serialize, ToSchema)]
struct ReferenceAnswer {
    /// 200 or 404, the same as the HTTP status.
    code: u16,
    /// For people; Korean, with English in parentheses for most failures.
    message: String,
}

/// The reference's failure answer.
struct Failure(String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            StatusCode::NOT_FOUND,
            Json(ReferenceAnswer {
                code: 404,
                message: self.0,
            }),
        )
            .into_response()
    }
}

/// What `POST /api/` reads. [`register`] reads the fields from the JSON by hand, so that every
/// failure keeps the reference's message; this type only describes them.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RegistrationIn {
    /// The chat id (Telegram), user key (Kakao), room id (Webex) or address; a string or a
    /// number.
    id: String,
    /// A GitHub repository (`owner/name` or its URL) or any git remote URL.
    fav_repository: String,
    /// The channel: `telegram`, `kakao`, `webex`, `email` or `chat`.
    r#type: String,
    /// A branch name, or a glob such as `release/*`.
    branch: String,
    /// At most 100 characters are kept.
    nick_name: Option<String>,
}

/// What `GET /api/` reads; described here, read by hand in [`list_commits`].
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct CommitsQuery {
    /// A GitHub repository (`owner/name` or its URL) or any git remote URL.
    fav_repository: String,
    /// One branch (not a glob).
    branch: String,
    /// A channel name; only checked to be known.
    r#type: Option<String>,
}

impl From<SubscribeError> for Failure {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::Store(error) => {
                tracing::error!(%error, "POST /api/ failed in the database");
                Failure("서버 내부 오류입니다. (internal error)".into())
            }
            other => Failure(other.to_string()),
        }
    }
}

/// A field as text: the reference sent strings, but a numeric chat id is accepted too.
fn text_field(body: &Value, name: &str) -> Result<String, Failure> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Null) | None => Err(Failure(format!(
            "{name}은(는) 필수입니다. ({name} is required)"
        ))),
        Some(_) => Err(Failure(format!(
            "{name}은(는) 문자열이어야 합니다. ({name} must be a string)"
        ))),
    }
}

/// Registers a contact and subscribes it to a branch.
///
/// The reference system's `POST /api/`. The body is JSON whatever its content type.
#[utoipa::path(
    post,
    path = "/api/",
    tag = "reference",
    request_body = RegistrationIn,
    responses(
        (status = 200, description = "Registered: `{\"code\": 200, \"message\": \"정상적으로 api 호출 완료\"}`", body = ReferenceAnswer),
        (status = 404, description = "Any failure, malformed bodies included, with what is wrong", body = ReferenceAnswer),
    )
)]
async fn register(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReferenceAnswer>, Failure> {
    let body = body.map_err(|e| Failure(format!("요청 본문을 읽을 수 없습니다: {e}")))?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        Failure(format!(
            "요청 본문이 올바른 JSON이 아닙니다. (invalid JSON: {e})"
        ))
    })?;
    if !body.is_object() {
        return Err(Failure(
            "요청 본문은 JSON 객체여야 합니다. (expected a JSON object)".into(),
        ));
    }
    let id = text_field(&body, "id")?;
    let repository = text_field(&body, "fav_repository")?;
    let channel = text_field(&body, "type")?.to_lowercase();
    let branch = text_field(&body, "branch")?;
    let nick_name = match body.get("nick_name") {
        Some(Value::String(s)) => s.trim().chars().take(100).collect(),
        _ => String::new(),
    };
    if branch.is_empty() {
        return Err(Failure("브랜치명은 비어 있으면 안됩니다.".into()));
    }
    if repository.is_empty() {
        return Err(Failure(
            "레파지토리 주소는 비어 있으면 안됩니다. (fav_repository must not be empty)".into(),
        ));
    }
    let address = validate_address(&channel, &id).map_err(Failure)?;
    let contact = ContactRef::Upsert {
        channel: &channel,
        address: &address,
        nick_name: &nick_name,
    };
    subscribe(&state, contact, &repository, &branch, Filters::default()).await?;
    Ok(Json(ReferenceAnswer {
        code: 200,
        message: "정상적으로 api 호출 완료".into(),
    }))
}

/// The same as `POST /api/`.
#[utoipa::path(
    post,
    path = "/api",
    tag = "reference",
    request_body = RegistrationIn,
    responses(
        (status = 200, description = "Registered: `{\"code\": 200, \"message\": \"정상적으로 api 호출 완료\"}`", body = ReferenceAnswer),
        (status = 404, description = "Any failure, malformed bodies included, with what is wrong", body = ReferenceAnswer),
    )
)]
async fn register_api(
    state: State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReferenceAnswer>, Failure> {
    register(state, body).await
}

/// The same as `GET /api/`.
#[utoipa::path(
    get,
    path = "/api",
    tag = "reference",
    params(CommitsQuery),
    responses(
        (status = 200, description = "The branch's recent commits (up to 30), newest first, in GitHub's commit-list shape", body = [Object]),
        (status = 404, description = "Any failure, with what is wrong", body = ReferenceAnswer),
    )
)]
async fn list_commits_api(
    state: State<AppState>,
    params: Query<HashMap<String, String>>,
) -> Result<Json<Value>, Failure> {
    list_commits(state, params).await
}

/// A branch's recent commits.
///
/// The reference system's `GET /api/`.
#[utoipa::path(
    get,
    path = "/api/",
    tag = "reference",
    params(CommitsQuery),
    responses(
        (status = 200, description = "The branch's recent commits (up to 30), newest first, in GitHub's commit-list shape", body = [Object]),
        (status = 404, description = "Any failure, with what is wrong", body = ReferenceAnswer),
    )
)]
async fn list_commits(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Failure> {
    let param = |name: &str| {
        params
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let repository = param("fav_repository");
    let branch = param("branch");
    let channel = param("type").to_lowercase();
    if repository.is_empty() {
        return Err(Failure(
            "fav_repository는 필수입니다. (fav_repository is required)".into(),
        ));
    }
    if branch.is_empty() {
        return Err(Failure("브랜치명은 비어 있으면 안됩니다.".into()));
    }
    if !channel.is_empty() && !super::CHANNELS.contains(&channel.as_str()) {
        return Err(Failure(format!("unknown type {channel:?}")));
    }
    valid_branch_pattern(&branch).map_err(Failure)?;
    if crate::watch::repo::is_glob(&branch) {
        return Err(Failure(
            "branch must be one branch here, not a pattern".into(),
        ));
    }
    let url = RepoUrl::parse(&repository, state.settings.allow_private_targets)
        .map_err(|e| Failure(e.to_string()))?;
    let commits = match &url.kind {
        RepoKind::GitHub { owner, name } => state
            .github
            .list_commits(owner, name, &branch, COMMITS_LISTED as u32)
            .await
            .map_err(|e| Failure(format!("깃 허브 API 호출시 문제가 발생 하였습니다. ({e})")))?,
        RepoKind::Git => {
            super::probe_heads(&state, &url, &branch).await?;
            let repository = crate::watch::upsert_repository(&state.db, &state.ids, &url)
                .await
                .map_err(SubscribeError::from)?;
            state
                .git
                .recent_commits(repository.id, &url.remote, &branch, COMMITS_LISTED)
                .await
                .map_err(|e| Failure(format!("저장소를 읽을 수 없습니다. ({e})")))?
                .iter()
                .map(|c| c.to_github_commit_list_entry(url.commit_url(&c.id).as_deref()))
                .collect()
        }
    };
    Ok(Json(Value::Array(commits)))
}
