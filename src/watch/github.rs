//! The GitHub REST calls herald makes: branch heads with conditional requests (an unchanged
//! branch answers 304 and costs no rate limit), `compare/{base}...{head}` for the commits of a
//! push, and the commit list for `GET /api/`. Rate-limit answers pause every GitHub call until
//! GitHub says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, IF_NONE_MATCH, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;

use super::event::{Commit, Person};
use crate::config::Secret;
use crate::ids::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub rate limit reached; paused until {resume_at_ms} (Unix ms)")]
    RateLimited { resume_at_ms: i64 },
    #[error("not found on GitHub")]
    NotFound,
    #[error("GitHub answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("could not reach GitHub: {0}")]
    Transport(String),
    #[error("unexpected answer from GitHub: {0}")]
    Decode(String),
}

/// A conditional GET's result.
pub enum Conditional<T> {
    NotModified,
    Modified { value: T, etag: Option<String> },
}

#[derive(Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    api: String,
    token: Option<Secret>,
    paused_until_ms: Arc<AtomicI64>,
}

#[derive(Debug, Deserialize)]
struct GitRef {
    #[serde(rename = "ref")]
    ref_name: String,
    object: GitObject,
}

#[derive(Debug, Deserialize)]
struct GitObject {
    sha: String,
}

/// What `compare/{base}...{head}` tells herald.
#[derive(Debug)]
pub struct Comparison {
    /// `ahead`, `behind`, `diverged` or `identical`.
    pub status: String,
    pub commits: Vec<Commit>,
    pub files: Vec<String>,
    pub html_url: Option<String>,
}

impl GithubClient {
    pub fn new(http: reqwest::Client, api: &url::Url, token: Option<Secret>) -> GithubClient {
        GithubClient {
            http,
            api: api.as_str().trim_end_matches('/').to_string(),
            token,
            paused_until_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Whether GitHub asked us to wait; while it did, no call is made.
    pub fn paused_until(&self) -> Option<i64> {
        let until = self.paused_until_ms.load(Ordering::Relaxed);
        (until > now_ms()).then_some(until)
    }

    async fn get(&self, path: &str, etag: Option<&str>) -> Result<reqwest::Response, GithubError> {
        if let Some(resume_at_ms) = self.paused_until() {
            return Err(GithubError::RateLimited { resume_at_ms });
        }
        let mut request = self
            .http
            .get(format!("{}{path}", self.api))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GithubError::Transport(crate::outbox::channel::error_chain(&e)))?;
        self.observe_rate_limit(response.status(), response.headers());
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(GithubError::NotFound);
        }
        if let Some(resume_at_ms) = self.paused_until()
            && (status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS)
        {
            return Err(GithubError::RateLimited { resume_at_ms });
        }
        if status.is_client_error() || status.is_server_error() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(body);
            return Err(GithubError::Status {
                status: status.as_u16(),
                message: crate::text::prefix_bytes(&message, 300).to_string(),
            });
        }
        Ok(response)
    }

    /// Follows GitHub's rules: `retry-after` (seconds) wins; otherwise an exhausted
    /// `x-ratelimit-remaining` pauses until `x-ratelimit-reset` (Unix seconds).
    fn observe_rate_limit(&self, status: StatusCode, headers: &HeaderMap) {
        let header_i64 = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let limited = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        let resume_at = if let Some(seconds) = header_i64(RETRY_AFTER.as_str()).filter(|_| limited)
        {
            Some(now_ms() + seconds * 1000)
        } else if header_i64("x-ratelimit-remaining") == Some(0) {
            header_i64("x-ratelimit-reset")
                .map(|reset| reset * 1000)
                .or(limited.then(|| now_ms() + 60_000))
        } else if limited && headers.contains_key("x-ratelimit-limit") {
            // A secondary rate limit without retry-after: GitHub says to wait at least a minute.
            Some(now_ms() + 60_000)
        } else {
            None
        };
        if let Some(resume_at) = resume_at {
            self.paused_until_ms.fetch_max(resume_at, Ordering::Relaxed);
            tracing::warn!(
                resume_at_ms = resume_at,
                "GitHub rate limit: pausing GitHub calls"
            );
        }
    }

    /// Branch heads matching a pattern: one branch (`git/ref/heads/<b>`) or, for a glob, every
    /// branch under its literal prefix (`git/matching-refs/heads/<prefix>`).
    pub async fn branch_heads(
        &self,
        owner: &str,
        name: &str,
        pattern: &str,
        etag: Option<&str>,
    ) -> Result<Conditional<Vec<(String, String)>>, GithubError> {
        let glob = super::repo::is_glob(pattern);
        let path = if glob {
            let prefix: String = pattern
                .chars()
                .take_while(|c| !"*?[".contains(*c))
                .collect();
            format!(
                "/repos/{owner}/{name}/git/matching-refs/heads/{}",
                ref_path(&prefix)
            )
        } else {
            format!("/repos/{owner}/{name}/git/ref/heads/{}", ref_path(pattern))
        };
        let response = self.get(&path, etag).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let refs: Vec<GitRef> = if glob {
            response
                .json()
                .await
                .map_err(|e| GithubError::Decode(e.to_string()))?
        } else {
            vec![
                response
                    .json()
                    .await
                    .map_err(|e| GithubError::Decode(e.to_string()))?,
            ]
        };
        let heads = refs
            .into_iter()
            .filter_map(|r| {
                r.ref_name
                    .strip_prefix("refs/heads/")
                    .map(|branch| (branch.to_string(), r.object.sha))
            })
            .collect();
        Ok(Conditional::Modified { value: heads, etag })
    }

    pub async fn compare(
        &self,
        owner: &str,
        name: &str,
        base: &str,
        head: &str,
    ) -> Result<Comparison, GithubError> {
        let response = self
            .get(
                &format!(
                    "/repos/{owner}/{name}/compare/{}...{}",
                    segment(base),
                    segment(head)
                ),
                None,
            )
            .await?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| GithubError::Decode(e.to_string()))?;
        let commits = body
            .get("commits")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(commit_from_github).collect())
            .unwrap_or_default();
        let files = body
            .get("files")
            .and_then(Value::as_array)
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| {
                        f.get("filename")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Comparison {
            status: body
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("ahead")
                .to_string(),
            commits,
            files,
            html_url: body
                .get("html_url")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// The repository's default branch.
    pub async fn default_branch(&self, owner: &str, name: &str) -> Result<String, GithubError> {
        let body: Value = self
            .get(&format!("/repos/{owner}/{name}"), None)
            .await?
            .json()
            .await
            .map_err(|e| GithubError::Decode(e.to_string()))?;
        body.get("default_branch")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| GithubError::Decode("no default_branch".into()))
    }

    /// The branch's recent commits exactly as GitHub lists them.
    pub async fn list_commits(
        &self,
        owner: &str,
        name: &str,
        branch: &str,
        per_page: u32,
    ) -> Result<Vec<Value>, GithubError> {
        let branch = url::form_urlencoded::byte_serialize(branch.as_bytes()).collect::<String>();
        let response = self
            .get(
                &format!("/repos/{owner}/{name}/commits?sha={branch}&per_page={per_page}"),
                None,
            )
            .await?;
        response
            .json()
            .await
            .map_err(|e| GithubError::Decode(e.to_string()))
    }
}

/// What is percent-encoded in a URL path segment: everything but unreserved characters
/// (RFC 3986), so `/`, `%`, `?` and `#` in a value can never change the path.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A value as one URL path segment; a segment of only dots is encoded whole, so it cannot
/// climb (`%2e%2e` in a branch becomes `%252e%252e`, which GitHub reads back as itself).
fn segment(value: &str) -> String {
    if value == "." || value == ".." {
        return value.replace('.', "%2E");
    }
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// A branch (or a prefix of one) after `heads/`: its `/`-separated parts each as a segment
/// (GitHub reads `heads/release/1.0` as the ref `release/1.0`).
fn ref_path(branch: &str) -> String {
    branch.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// One entry of GitHub's commit list (as in `compare` and `commits`) as a herald commit.
pub fn commit_from_github(entry: &Value) -> Option<Commit> {
    let sha = entry.get("sha")?.as_str()?.to_string();
    let commit = entry.get("commit")?;
    let person = |git: Option<&Value>, user: Option<&Value>| Person {
        name: git
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        email: git
            .and_then(|v| v.get("email"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        username: user
            .and_then(|v| v.get("login"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    Some(Commit {
        message: commit
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        timestamp: commit
            .get("author")
            .and_then(|a| a.get("date"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        url: entry
            .get("html_url")
            .and_then(Value::as_str)
            .map(str::to_string),
        author: person(commit.get("author"), entry.get("author")),
        committer: person(commit.get("committer"), entry.get("committer")),
        parents: entry
            .get("parents")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("sha").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        id: sha,
        ..Commit::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_api_paths_stay_one_segment() {
        assert_eq!(ref_path("release/1.0"), "release/1.0");
        assert_eq!(
            ref_path("%2e%2e/%2e%2e/%2e%2e/user"),
            "%252e%252e/%252e%252e/%252e%252e/user"
        );
        assert_eq!(ref_path("a/../b"), "a/%2E%2E/b");
        assert_eq!(segment("x?y#z/w"), "x%3Fy%23z%2Fw");
        assert_eq!(segment("한"), "%ED%95%9C");
    }
}
