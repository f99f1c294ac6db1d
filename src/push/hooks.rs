//! Inbound push webhooks: `POST /hooks/github`, `/hooks/gitea`, `/hooks/gitlab`.
//!
//! Each is verified against `HERALD_GIT_WEBHOOK_SECRET` (GitHub `X-Hub-Signature-256`, Gitea
//! `X-Gitea-Signature`: HMAC-SHA256 of the raw body; GitLab `X-Gitlab-Token`: the secret itself),
//! turned into a [`PushEvent`] and accepted durably before the answer, de-duplicated by the
//! sender's delivery id.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::PushState;
use super::ingest::{IngestOutcome, accept_push};
use crate::crypto::{constant_time_eq, hmac_sha256_hex};
use crate::http::error::ApiError;
use crate::http::routes::{Outside, Routes};
use crate::watch::event::{Commit, Person, PushEvent, Source, ZERO_SHA};
use crate::watch::repo::RepoUrl;

/// Push payloads can be large (GitHub caps them at 25 MB); herald accepts up to this much.
pub const MAX_HOOK_BODY: usize = 26 * 1024 * 1024;
const _: () = assert!(MAX_HOOK_BODY <= crate::http::LARGEST_BODY_LIMIT);

/// The forges' push webhooks, in each forge's own format: outside the OpenAPI document.
pub fn router(state: PushState) -> Routes<()> {
    Routes::new()
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/hooks/github",
            github,
        )
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/hooks/gitea",
            gitea,
        )
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/hooks/gitlab",
            gitlab,
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_HOOK_BODY))
        .with_state(state)
}

#[derive(Clone, Copy)]
enum Forge {
    GitHub,
    Gitea,
    GitLab,
}

impl Forge {
    fn source(self) -> Source {
        match self {
            Forge::GitHub => Source::GithubWebhook,
            Forge::Gitea => Source::GiteaWebhook,
            Forge::GitLab => Source::GitlabWebhook,
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn verify(forge: Forge, secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let expected_hex = || hmac_sha256_hex(secret.as_bytes(), body);
    let ok = match forge {
        Forge::GitHub => header(headers, "x-hub-signature-256")
            .and_then(|v| v.strip_prefix("sha256="))
            .is_some_and(|given| constant_time_eq(given.to_ascii_lowercase(), expected_hex())),
        Forge::Gitea => header(headers, "x-gitea-signature")
            .is_some_and(|given| constant_time_eq(given.to_ascii_lowercase(), expected_hex())),
        Forge::GitLab => {
            header(headers, "x-gitlab-token").is_some_and(|given| constant_time_eq(given, secret))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or wrong webhook signature".into(),
        ))
    }
}

async fn github(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    receive(state, Forge::GitHub, headers, body).await
}

async fn gitea(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    receive(state, Forge::Gitea, headers, body).await
}

async fn gitlab(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    receive(state, Forge::GitLab, headers, body).await
}

async fn receive(
    state: PushState,
    forge: Forge,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(secret) = &state.settings.git_webhook_secret else {
        return Err(ApiError::Unavailable(
            "inbound push webhooks are disabled: set HERALD_GIT_WEBHOOK_SECRET".into(),
        ));
    };
    verify(forge, secret.expose(), &headers, &body)?;

    let event_name = match forge {
        Forge::GitHub => header(&headers, "x-github-event"),
        Forge::Gitea => header(&headers, "x-gitea-event"),
        Forge::GitLab => header(&headers, "x-gitlab-event"),
    }
    .unwrap_or_default()
    .to_string();
    match (forge, event_name.as_str()) {
        (_, "ping") => return Ok((StatusCode::OK, Json(json!({"status": "pong"})))),
        (Forge::GitHub | Forge::Gitea, "push") | (Forge::GitLab, "Push Hook") => {}
        _ => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({"status": "ignored", "reason": format!("event {event_name:?} is not a push")}),
                ),
            ));
        }
    }

    let delivery_id = match forge {
        Forge::GitHub => header(&headers, "x-github-delivery"),
        Forge::Gitea => header(&headers, "x-gitea-delivery"),
        Forge::GitLab => {
            header(&headers, "x-gitlab-event-uuid").or(header(&headers, "idempotency-key"))
        }
    }
    .filter(|id| !id.is_empty() && id.len() <= 200)
    .map(str::to_string)
    // Without an id, the body itself identifies a redelivery.
    .unwrap_or_else(|| hex::encode(Sha256::digest(&body)));

    let (candidates, event) = match forge {
        Forge::GitHub | Forge::Gitea => parse_github_style(&body, forge.source())?,
        Forge::GitLab => parse_gitlab(&body)?,
    };
    let mut repository = None;
    for candidate in candidates.iter().filter(|c| !c.is_empty()) {
        if let Ok(url) = RepoUrl::parse(candidate, true)
            && let Some(found) = state.repositories.find(&state.db, &url.key).await?
        {
            repository = Some(found);
            break;
        }
    }
    let Some(repository) = repository else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "ignored", "reason": "no subscriber watches this repository"})),
        ));
    };
    let source = event.source.as_str();
    match accept_push(&state, &repository, event, Some((source, &delivery_id))).await? {
        IngestOutcome::Accepted {
            event_id,
            notifications,
        } => Ok((
            StatusCode::ACCEPTED,
            Json(
                json!({"status": "accepted", "event_id": event_id.to_string(), "notifications": notifications}),
            ),
        )),
        IngestOutcome::Duplicate => Ok((StatusCode::OK, Json(json!({"status": "duplicate"})))),
    }
}

#[derive(Deserialize)]
struct GithubPush {
    #[serde(rename = "ref")]
    ref_name: String,
    before: String,
    after: String,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    #[serde(default)]
    compare: Option<String>,
    #[serde(default)]
    commits: Vec<GithubCommit>,
    #[serde(default)]
    pusher: Option<GithubPerson>,
    repository: GithubRepository,
}

#[derive(Deserialize)]
struct GithubRepository {
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct GithubPerson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

impl GithubPerson {
    fn into_person(self) -> Person {
        Person {
            name: self.name.unwrap_or_default(),
            email: self.email.unwrap_or_default(),
            username: self.username,
        }
    }
}

#[derive(Deserialize)]
struct GithubCommit {
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    author: Option<GithubPerson>,
    #[serde(default)]
    committer: Option<GithubPerson>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

impl GithubCommit {
    fn into_commit(self) -> Commit {
        Commit {
            id: self.id,
            message: self.message,
            timestamp: self.timestamp,
            url: self.url,
            author: self.author.unwrap_or_default().into_person(),
            committer: self.committer.unwrap_or_default().into_person(),
            added: self.added,
            removed: self.removed,
            modified: self.modified,
            parents: Vec::new(),
        }
    }
}

fn bad_payload(error: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("not a push payload: {error}"))
}

fn check_sha(sha: &str) -> Result<(), ApiError> {
    if sha.len() >= 7 && sha.len() <= 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{sha:?} is not a commit SHA")))
    }
}

fn check_ref(ref_name: &str) -> Result<(), ApiError> {
    match ref_name.strip_prefix("refs/heads/") {
        Some(branch) if crate::watch::repo::valid_branch_pattern(branch).is_ok() => Ok(()),
        _ => Err(ApiError::BadRequest(format!(
            "{ref_name:?} is not a branch ref"
        ))),
    }
}

fn parse_github_style(body: &[u8], source: Source) -> Result<(Vec<String>, PushEvent), ApiError> {
    let push: GithubPush = serde_json::from_slice(body).map_err(bad_payload)?;
    check_sha(&push.before)?;
    check_sha(&push.after)?;
    check_ref(&push.ref_name)?;
    let mut candidates: Vec<String> = [push.repository.html_url, push.repository.clone_url]
        .into_iter()
        .flatten()
        .collect();
    if source == Source::GithubWebhook
        && let Some(full_name) = push.repository.full_name
    {
        candidates.push(full_name);
    }
    let event = PushEvent {
        ref_name: push.ref_name,
        created: push.created || push.before == ZERO_SHA,
        deleted: push.deleted || push.after == ZERO_SHA,
        forced: push.forced,
        before: push.before,
        after: push.after,
        commits: push
            .commits
            .into_iter()
            .map(GithubCommit::into_commit)
            .collect(),
        changed_paths: Vec::new(),
        pusher: push.pusher.map(GithubPerson::into_person),
        compare: push.compare.filter(|c| !c.is_empty()),
        source,
    };
    Ok((candidates, event))
}

#[derive(Deserialize)]
struct GitlabPush {
    #[serde(rename = "ref")]
    ref_name: String,
    before: String,
    after: String,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    user_email: Option<String>,
    #[serde(default)]
    user_username: Option<String>,
    #[serde(default)]
    commits: Vec<GithubCommit>,
    project: GitlabProject,
}

#[derive(Deserialize)]
struct GitlabProject {
    #[serde(default)]
    web_url: Option<String>,
    #[serde(default)]
    git_http_url: Option<String>,
}

fn parse_gitlab(body: &[u8]) -> Result<(Vec<String>, PushEvent), ApiError> {
    let push: GitlabPush = serde_json::from_slice(body).map_err(bad_payload)?;
    check_sha(&push.before)?;
    check_sha(&push.after)?;
    check_ref(&push.ref_name)?;
    let candidates = [push.project.web_url, push.project.git_http_url]
        .into_iter()
        .flatten()
        .collect();
    let event = PushEvent {
        ref_name: push.ref_name,
        created: push.before == ZERO_SHA,
        deleted: push.after == ZERO_SHA,
        // GitLab does not say; a force-push shows up as commits herald has not seen.
        forced: false,
        before: push.before,
        after: push.after,
        commits: push
            .commits
            .into_iter()
            .map(GithubCommit::into_commit)
            .collect(),
        changed_paths: Vec::new(),
        pusher: Some(Person {
            name: push.user_name.unwrap_or_default(),
            email: push.user_email.unwrap_or_default(),
            username: push.user_username,
        }),
        compare: None,
        source: Source::GitlabWebhook,
    };
    Ok((candidates, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_signature() {
        // GitHub's example from "Validating webhook deliveries".
        assert_eq!(
            hmac_sha256_hex(b"It's a Secret to Everybody", b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
