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
use axum::routing::get;
use serde_json::{Value, json};

use super::{ContactRef, Filters, SubscribeError, subscribe, validate_address};
use crate::state::AppState;
use crate::watch::repo::{RepoKind, RepoUrl, valid_branch_pattern};

/// Registration bodies are tiny; anything bigger is refused.
pub const MAX_BODY: usize = 64 * 1024;
const COMMITS_LISTED: usize = 30;

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/", get(list_commits).post(register))
        .route("/api", get(list_commits).post(register))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The reference's failure answer.
struct Failure(String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"code": 404, "message": self.0})),
        )
            .into_response()
    }
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

async fn register(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Failure> {
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
    Ok(Json(
        json!({"code": 200, "message": "정상적으로 api 호출 완료"}),
    ))
}

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
