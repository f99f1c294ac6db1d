//! A fake GitHub REST API over real local git repositories. A test commits to a [`GitRepo`] and
//! then calls [`FakeGithub::push`], which is what pushing to GitHub would do: the fake's branch
//! heads move. Served like GitHub: `git/ref`, `git/matching-refs`, `compare`, `commits`, with
//! ETags and 304s, `x-ratelimit-*` headers, and scripted 403/429 rate-limit answers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::git_repo::{GitRepo, git};

/// A scripted rate-limit answer for the next request.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Secondary rate limit: 403 with `retry-after: <seconds>`.
    Secondary { retry_after: u64 },
    /// 429 with `retry-after`.
    TooMany { retry_after: u64 },
    /// Primary rate limit: 403, `x-ratelimit-remaining: 0`, reset `seconds` from now.
    Primary { reset_in: u64 },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub conditional: bool,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    repos: HashMap<String, PathBuf>,
    /// (owner/name lower-case, branch) → sha, as "GitHub" has it.
    heads: BTreeMap<(String, String), String>,
    script: VecDeque<Limit>,
    requests: Vec<Request>,
    record: bool,
    counts: Counts,
    /// Every answer waits this long (a slow GitHub).
    delay: std::time::Duration,
}

#[derive(Clone)]
pub struct FakeGithub {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

/// Running totals, cheap to read while a benchmark runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub requests: u64,
    pub not_modified: u64,
    pub rate_limited: u64,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let inner = Arc::new(Mutex::new(Inner {
            record: true,
            ..Inner::default()
        }));
        let router = axum::Router::new()
            .route(
                "/repos/{owner}/{name}/git/ref/heads/{*branch}",
                get(git_ref),
            )
            .route(
                "/repos/{owner}/{name}/git/matching-refs/heads/{*prefix}",
                get(matching_refs),
            )
            .route(
                "/repos/{owner}/{name}/git/matching-refs/heads/",
                get(matching_refs_all),
            )
            .route("/repos/{owner}/{name}/compare/{basehead}", get(compare))
            .route("/repos/{owner}/{name}/commits", get(commits))
            .route("/repos/{owner}/{name}", get(repository))
            .fallback(|| async { not_found() })
            .layer(axum::middleware::from_fn_with_state(
                inner.clone(),
                slow_down,
            ))
            .with_state(inner.clone());
        let address = super::serve(router).await;
        FakeGithub {
            base_url: format!("http://{address}"),
            inner,
        }
    }

    /// Makes every later answer wait `delay` first.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.inner.lock().expect("lock").delay = delay;
    }

    /// Publishes a repository as `full_name` and pushes all its branches.
    pub fn add_repo(&self, full_name: &str, repo: &GitRepo) {
        self.inner
            .lock()
            .expect("lock")
            .repos
            .insert(full_name.to_lowercase(), repo.path.clone());
        self.push(full_name, repo);
    }

    /// Makes the fake's branch heads match the repository's, like `git push --all --force`.
    pub fn push(&self, full_name: &str, repo: &GitRepo) {
        let refs = git(
            &repo.path,
            &[
                "for-each-ref",
                "--format=%(refname:strip=2) %(objectname)",
                "refs/heads",
            ],
        );
        let mut inner = self.inner.lock().expect("lock");
        let key = full_name.to_lowercase();
        inner.heads.retain(|(r, _), _| r != &key);
        for line in refs.lines() {
            if let Some((branch, sha)) = line.split_once(' ') {
                inner
                    .heads
                    .insert((key.clone(), branch.to_string()), sha.to_string());
            }
        }
    }

    /// Sets a head directly (for benchmarks with thousands of synthetic branches).
    pub fn set_head(&self, full_name: &str, branch: &str, sha: &str) {
        self.inner.lock().expect("lock").heads.insert(
            (full_name.to_lowercase(), branch.to_string()),
            sha.to_string(),
        );
    }

    pub fn script(&self, limits: impl IntoIterator<Item = Limit>) {
        self.inner.lock().expect("lock").script.extend(limits);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().expect("lock").requests.clone()
    }

    pub fn counts(&self) -> Counts {
        self.inner.lock().expect("lock").counts
    }

    /// Stops keeping a request log (benchmarks make millions of requests).
    pub fn stop_recording(&self) {
        self.inner.lock().expect("lock").record = false;
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn slow_down(
    State(inner): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let delay = inner.lock().expect("lock").delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    next.run(request).await
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})),
    )
        .into_response()
}

fn rate_headers(headers: &mut HeaderMap, remaining: u64, reset: i64) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("x-ratelimit-limit", "5000".into());
    put("x-ratelimit-remaining", remaining.to_string());
    put("x-ratelimit-reset", reset.to_string());
    put("x-ratelimit-used", (5000 - remaining).to_string());
    put("x-ratelimit-resource", "core".into());
}

/// Common handling: scripted limits, rate headers, conditional requests, the request log.
fn respond(
    inner: &Shared,
    path: &str,
    headers: &HeaderMap,
    etag: Option<String>,
    body: Option<Value>,
) -> Response {
    let reset = chrono::Utc::now().timestamp() + 3600;
    let conditional = headers.contains_key("if-none-match");
    let mut guard = inner.lock().expect("lock");
    let (status, mut response) = if let Some(limit) = guard.script.pop_front() {
        let mut out_headers = HeaderMap::new();
        let (status, message) = match limit {
            Limit::Secondary { retry_after } => {
                rate_headers(&mut out_headers, 4000, reset);
                out_headers.insert("retry-after", HeaderValue::from(retry_after));
                (
                    StatusCode::FORBIDDEN,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                )
            }
            Limit::TooMany { retry_after } => {
                rate_headers(&mut out_headers, 4000, reset);
                out_headers.insert("retry-after", HeaderValue::from(retry_after));
                (StatusCode::TOO_MANY_REQUESTS, "Too many requests")
            }
            Limit::Primary { reset_in } => {
                rate_headers(
                    &mut out_headers,
                    0,
                    chrono::Utc::now().timestamp() + reset_in as i64,
                );
                (
                    StatusCode::FORBIDDEN,
                    "API rate limit exceeded for 127.0.0.1.",
                )
            }
        };
        let body = Json(
            json!({"message": message, "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}),
        );
        (status, (status, out_headers, body).into_response())
    } else {
        match body {
            None => (StatusCode::NOT_FOUND, not_found()),
            Some(body) => {
                let given = headers.get("if-none-match").and_then(|v| v.to_str().ok());
                let mut out_headers = HeaderMap::new();
                rate_headers(&mut out_headers, 4999, reset);
                if let Some(etag) = &etag
                    && let Ok(value) = HeaderValue::from_str(etag)
                {
                    out_headers.insert("etag", value);
                }
                if etag.is_some() && given == etag.as_deref() {
                    (
                        StatusCode::NOT_MODIFIED,
                        (StatusCode::NOT_MODIFIED, out_headers).into_response(),
                    )
                } else {
                    (
                        StatusCode::OK,
                        (StatusCode::OK, out_headers, Json(body)).into_response(),
                    )
                }
            }
        }
    };
    guard.counts.requests += 1;
    match status {
        StatusCode::NOT_MODIFIED => guard.counts.not_modified += 1,
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => guard.counts.rate_limited += 1,
        _ => {}
    }
    if guard.record {
        guard.requests.push(Request {
            path: path.to_string(),
            conditional,
            status: status.as_u16(),
            at: Instant::now(),
        });
    }
    drop(guard);
    response
        .headers_mut()
        .insert("server", HeaderValue::from_static("fake-github"));
    response
}

fn ref_json(full_name: &str, branch: &str, sha: &str) -> Value {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "node_id": "REF_fake",
        "url": format!("https://api.github.com/repos/{full_name}/git/refs/heads/{branch}"),
        "object": {"sha": sha, "type": "commit", "url": format!("https://api.github.com/repos/{full_name}/git/commits/{sha}")}
    })
}

async fn git_ref(
    State(inner): State<Shared>,
    Path((owner, name, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let full_name = format!("{owner}/{name}").to_lowercase();
    let sha = inner
        .lock()
        .expect("lock")
        .heads
        .get(&(full_name.clone(), branch.clone()))
        .cloned();
    let path = format!("/repos/{full_name}/git/ref/heads/{branch}");
    match sha {
        Some(sha) => {
            let etag = format!("\"{sha}\"");
            respond(
                &inner,
                &path,
                &headers,
                Some(etag),
                Some(ref_json(&full_name, &branch, &sha)),
            )
        }
        None => respond(&inner, &path, &headers, None, None),
    }
}

fn matching(
    inner: &Shared,
    owner: &str,
    name: &str,
    prefix: &str,
    headers: &HeaderMap,
) -> Response {
    let full_name = format!("{owner}/{name}").to_lowercase();
    let (known, refs): (bool, Vec<(String, String)>) = {
        let guard = inner.lock().expect("lock");
        let known = guard.repos.contains_key(&full_name)
            || guard.heads.keys().any(|(r, _)| r == &full_name);
        let refs = guard
            .heads
            .iter()
            .filter(|((r, b), _)| r == &full_name && b.starts_with(prefix))
            .map(|((_, b), s)| (b.clone(), s.clone()))
            .collect();
        (known, refs)
    };
    let path = format!("/repos/{full_name}/git/matching-refs/heads/{prefix}");
    if !known {
        return respond(inner, &path, headers, None, None);
    }
    let etag = format!(
        "\"{:x}\"",
        refs.iter().fold(0u64, |h, (b, s)| {
            b.bytes()
                .chain(s.bytes())
                .fold(h, |h, c| h.wrapping_mul(31).wrapping_add(u64::from(c)))
        })
    );
    let body = Value::Array(
        refs.iter()
            .map(|(b, s)| ref_json(&full_name, b, s))
            .collect(),
    );
    respond(inner, &path, headers, Some(etag), Some(body))
}

async fn matching_refs(
    State(inner): State<Shared>,
    Path((owner, name, prefix)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    matching(&inner, &owner, &name, &prefix, &headers)
}

async fn matching_refs_all(
    State(inner): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    matching(&inner, &owner, &name, "", &headers)
}

const FORMAT: &str = "--format=%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%T%x1f%B%x1e";

fn commit_entries(full_name: &str, log: &str) -> Vec<Value> {
    log.split('\u{1e}')
        .filter(|r| !r.trim().is_empty())
        .filter_map(|record| {
            let f: Vec<&str> = record.trim_start_matches('\n').splitn(10, '\u{1f}').collect();
            if f.len() < 10 {
                return None;
            }
            let sha = f[0];
            let html = format!("https://github.com/{full_name}/commit/{sha}");
            Some(json!({
                "sha": sha,
                "node_id": "C_fake",
                "commit": {
                    "author": {"name": f[2], "email": f[3], "date": f[4]},
                    "committer": {"name": f[5], "email": f[6], "date": f[7]},
                    "message": f[9].trim_end(),
                    "tree": {"sha": f[8], "url": format!("https://api.github.com/repos/{full_name}/git/trees/{}", f[8])},
                    "url": format!("https://api.github.com/repos/{full_name}/git/commits/{sha}"),
                    "comment_count": 0,
                    "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null}
                },
                "url": format!("https://api.github.com/repos/{full_name}/commits/{sha}"),
                "html_url": html,
                "comments_url": format!("https://api.github.com/repos/{full_name}/commits/{sha}/comments"),
                "author": {"login": f[2].to_lowercase().replace(' ', "-"), "type": "User", "site_admin": false},
                "committer": {"login": f[5].to_lowercase().replace(' ', "-"), "type": "User", "site_admin": false},
                "parents": f[1].split_whitespace().map(|p| json!({
                    "sha": p,
                    "url": format!("https://api.github.com/repos/{full_name}/commits/{p}"),
                    "html_url": format!("https://github.com/{full_name}/commit/{p}"),
                })).collect::<Vec<_>>(),
            }))
        })
        .collect()
}

fn try_git(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn compare(
    State(inner): State<Shared>,
    Path((owner, name, basehead)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let full_name = format!("{owner}/{name}").to_lowercase();
    let path = format!("/repos/{full_name}/compare/{basehead}");
    let repo = inner.lock().expect("lock").repos.get(&full_name).cloned();
    let body = (|| {
        let repo = repo?;
        let (base, head) = basehead.split_once("...")?;
        try_git(&repo, &["cat-file", "-e", &format!("{base}^{{commit}}")])?;
        try_git(&repo, &["cat-file", "-e", &format!("{head}^{{commit}}")])?;
        let ahead = try_git(&repo, &["merge-base", "--is-ancestor", base, head]).is_some();
        let behind = try_git(&repo, &["merge-base", "--is-ancestor", head, base]).is_some();
        let status = match (ahead, behind) {
            (true, true) => "identical",
            (true, false) => "ahead",
            (false, true) => "behind",
            (false, false) => "diverged",
        };
        let log = try_git(
            &repo,
            &["log", "--reverse", FORMAT, &format!("{base}..{head}")],
        )?;
        let commits = commit_entries(&full_name, &log);
        let files: Vec<Value> =
            try_git(&repo, &["diff", "--name-only", &format!("{base}...{head}")])?
                .lines()
                .map(|f| json!({"filename": f, "status": "modified"}))
                .collect();
        Some(json!({
            "url": format!("https://api.github.com/repos/{full_name}/compare/{basehead}"),
            "html_url": format!("https://github.com/{full_name}/compare/{basehead}"),
            "status": status,
            "ahead_by": commits.len(),
            "total_commits": commits.len(),
            "commits": commits,
            "files": files,
        }))
    })();
    respond(&inner, &path, &headers, None, body)
}

async fn repository(
    State(inner): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let full_name = format!("{owner}/{name}").to_lowercase();
    let known = inner.lock().expect("lock").repos.contains_key(&full_name);
    let body = known.then(|| {
        json!({
            "id": 1, "name": name, "full_name": format!("{owner}/{name}"), "private": false,
            "html_url": format!("https://github.com/{owner}/{name}"), "default_branch": "main"
        })
    });
    respond(&inner, &format!("/repos/{full_name}"), &headers, None, body)
}

async fn commits(
    State(inner): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let full_name = format!("{owner}/{name}").to_lowercase();
    let path = format!("/repos/{full_name}/commits");
    let (repo, head) = {
        let guard = inner.lock().expect("lock");
        let branch = query.get("sha").cloned().unwrap_or_else(|| "main".into());
        (
            guard.repos.get(&full_name).cloned(),
            guard.heads.get(&(full_name.clone(), branch)).cloned(),
        )
    };
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(30)
        .min(100);
    let body = (|| {
        let log = try_git(
            &repo?,
            &["log", "-n", &per_page.to_string(), FORMAT, &head?],
        )?;
        Some(Value::Array(commit_entries(&full_name, &log)))
    })();
    respond(&inner, &path, &headers, None, body)
}
