//! Git-protocol polling for any remote, through the `git` program.
//!
//! Why `git` and not gix: for local paths and `file://` remotes gix spawns `git-upload-pack`
//! anyway, so the process cost is the same; `git` speaks every transport and credential helper
//! the operator's own git is set up for; and it keeps ~2 minutes and a large dependency tree out
//! of every build. Each call is bounded by a timeout and never prompts for credentials.
//!
//! `ls_remote` asks only for `refs/heads/<branch>` (protocol v2 sends it as a ref prefix, one
//! small round trip). When a head moves, the branch is fetched into a bare cache under
//! `<data dir>/git-cache/<repository id>.git` and the commits are read from there.
//!
//! Every call that reaches a remote is checked first (`netguard`) unless private targets are
//! allowed: git is given the URL as parsed, only http(s) (local paths only when allowed), no
//! redirects, no proxy, and `http.curloptResolve` pins the name to the addresses that were
//! checked, so nothing is sent to an address the check did not see.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;

use super::event::{Commit, Person, ZERO_SHA};

pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
const LOG_FORMAT: &str =
    "--format=%x1e%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x1f";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {action} failed: {message}")]
    Failed {
        action: &'static str,
        message: String,
    },
    #[error("git {action} took longer than {seconds} s")]
    Timeout { action: &'static str, seconds: u64 },
    #[error("could not run git: {0}")]
    Spawn(String),
    /// The remote is not one herald may reach (`netguard`); nothing was sent.
    #[error("{0}")]
    Refused(String),
}

/// A remote as git is given it: the URL to use, and the settings that hold git to what was
/// checked.
struct Target {
    remote: String,
    config: Vec<String>,
    /// Proxies would resolve names themselves, past the check.
    without_proxy: bool,
}

const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

#[derive(Clone)]
pub struct GitRemotes {
    cache_root: PathBuf,
    locks: Arc<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
    allow_private: bool,
}

async fn run_git(
    action: &'static str,
    args: &[&str],
    dir: Option<&Path>,
) -> Result<String, GitError> {
    run_git_to(action, args, dir, None).await
}

/// Runs git; with a `target`, under the settings that hold it to that checked remote.
async fn run_git_to(
    action: &'static str,
    args: &[&str],
    dir: Option<&Path>,
    target: Option<&Target>,
) -> Result<String, GitError> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    if let Some(target) = target {
        for setting in &target.config {
            command.arg("-c").arg(setting);
        }
        if target.without_proxy {
            for name in PROXY_VARIABLES {
                command.env_remove(name);
            }
        }
    }
    command
        .args([
            "-c",
            "protocol.version=2",
            "-c",
            "core.quotepath=off",
            "-c",
            "credential.interactive=never",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .map_err(|_| GitError::Timeout {
            action,
            seconds: COMMAND_TIMEOUT.as_secs(),
        })?
        .map_err(|e| GitError::Spawn(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(GitError::Failed {
            action,
            message: stderr
                .trim()
                .lines()
                .last()
                .unwrap_or("unknown error")
                .to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl GitRemotes {
    /// `allow_private`: `HERALD_ALLOW_PRIVATE_TARGETS` (local paths and private hosts).
    pub fn new(data_dir: &Path, allow_private: bool) -> GitRemotes {
        GitRemotes {
            cache_root: data_dir.join("git-cache"),
            locks: Arc::default(),
            allow_private,
        }
    }

    /// Checks a remote before git is pointed at it (see the module docs).
    async fn target(&self, remote: &str) -> Result<Target, GitError> {
        let mut config: Vec<String> = [
            "protocol.allow=never",
            "protocol.https.allow=always",
            "protocol.http.allow=always",
            "http.followRedirects=false",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        let local = remote.starts_with('/') || remote.starts_with("file://");
        if local {
            if !self.allow_private {
                return Err(GitError::Refused(format!(
                    "{remote} is a local path; {}",
                    crate::netguard::PRIVATE_REFUSAL
                )));
            }
            config.push("protocol.file.allow=always".into());
            return Ok(Target {
                remote: remote.to_string(),
                config,
                without_proxy: false,
            });
        }
        let url = url::Url::parse(remote)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| GitError::Refused(format!("{remote:?} is not an http(s) remote")))?;
        if self.allow_private {
            return Ok(Target {
                remote: url.as_str().to_string(),
                config,
                without_proxy: false,
            });
        }
        let addresses = crate::netguard::addresses_for(&url, false)
            .await
            .map_err(|refused| GitError::Refused(refused.to_string()))?;
        if let Some(url::Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let list: Vec<String> = addresses
                .iter()
                .map(|a| match a.ip() {
                    std::net::IpAddr::V4(ip) => ip.to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                })
                .collect();
            config.push(format!(
                "http.curloptResolve={name}:{port}:{}",
                list.join(",")
            ));
        }
        Ok(Target {
            remote: url.as_str().to_string(),
            config,
            without_proxy: true,
        })
    }

    fn lock_for(&self, repository_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(repository_id).or_default().clone()
    }

    /// Branch heads on the remote matching `pattern` (one branch, or a glob over all heads).
    pub async fn ls_remote(
        &self,
        remote: &str,
        pattern: &str,
    ) -> Result<Vec<(String, String)>, GitError> {
        let target = self.target(remote).await?;
        let glob = super::repo::is_glob(pattern);
        let wanted = format!("refs/heads/{pattern}");
        let mut args = vec!["ls-remote", "--heads", target.remote.as_str()];
        if !glob {
            args.push(&wanted);
        }
        let out = run_git_to("ls-remote", &args, None, Some(&target)).await?;
        let matcher = glob.then(|| super::subscription_glob(pattern));
        Ok(out
            .lines()
            .filter_map(|line| {
                let (sha, name) = line.split_once('\t')?;
                let branch = name.strip_prefix("refs/heads/")?;
                let keep = match &matcher {
                    Some(Some(m)) => m.is_match(branch),
                    Some(None) => false,
                    None => name == wanted,
                };
                keep.then(|| (branch.to_string(), sha.to_string()))
            })
            .collect())
    }

    /// The branch the remote's HEAD points at (its default branch), if it says.
    pub async fn default_branch(&self, remote: &str) -> Result<Option<String>, GitError> {
        let target = self.target(remote).await?;
        let out = run_git_to(
            "ls-remote",
            &["ls-remote", "--symref", target.remote.as_str(), "HEAD"],
            None,
            Some(&target),
        )
        .await?;
        Ok(out.lines().find_map(|line| {
            line.strip_prefix("ref: refs/heads/")
                .and_then(|rest| rest.split('\t').next())
                .map(str::to_string)
        }))
    }

    async fn ensure_cache(&self, repository_id: i64) -> Result<PathBuf, GitError> {
        let dir = self.cache_root.join(format!("{repository_id}.git"));
        if !dir.join("HEAD").exists() {
            tokio::fs::create_dir_all(&self.cache_root)
                .await
                .map_err(|e| GitError::Spawn(e.to_string()))?;
            let dir_text = dir.display().to_string();
            run_git("init", &["init", "--bare", "--quiet", &dir_text], None).await?;
        }
        Ok(dir)
    }

    async fn fetch_branch(
        &self,
        repository_id: i64,
        remote: &str,
        branch: &str,
    ) -> Result<PathBuf, GitError> {
        let target = self.target(remote).await?;
        let dir = self.ensure_cache(repository_id).await?;
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        run_git_to(
            "fetch",
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                target.remote.as_str(),
                &refspec,
            ],
            Some(&dir),
            Some(&target),
        )
        .await?;
        Ok(dir)
    }

    /// Fetches the branch and describes the move `before` → `after`: the new commits (oldest
    /// first) and whether it was a force-push (`before` is not an ancestor of `after`).
    pub async fn describe_push(
        &self,
        repository_id: i64,
        remote: &str,
        branch: &str,
        before: &str,
        after: &str,
    ) -> Result<(Vec<Commit>, bool), GitError> {
        let lock = self.lock_for(repository_id);
        let _guard = lock.lock().await;
        let dir = self.fetch_branch(repository_id, remote, branch).await?;
        let before_known = before != ZERO_SHA
            && run_git(
                "cat-file",
                &["cat-file", "-e", &format!("{before}^{{commit}}")],
                Some(&dir),
            )
            .await
            .is_ok();
        // If `before` were an ancestor of `after`, fetching `after` would have brought it.
        let forced = before != ZERO_SHA
            && (!before_known
                || run_git(
                    "merge-base",
                    &["merge-base", "--is-ancestor", before, after],
                    Some(&dir),
                )
                .await
                .is_err());
        let range = format!("{before}..{after}");
        let args: Vec<&str> = if before_known {
            vec![
                "log",
                "--reverse",
                "--name-status",
                "--no-renames",
                LOG_FORMAT,
                &range,
                "--",
            ]
        } else {
            vec![
                "log",
                "--reverse",
                "--name-status",
                "--no-renames",
                "-n",
                "20",
                LOG_FORMAT,
                after,
                "--",
            ]
        };
        let out = run_git("log", &args, Some(&dir)).await?;
        Ok((parse_log(&out), forced))
    }

    /// The branch's most recent commits, newest first, for `GET /api/`.
    pub async fn recent_commits(
        &self,
        repository_id: i64,
        remote: &str,
        branch: &str,
        count: usize,
    ) -> Result<Vec<Commit>, GitError> {
        let lock = self.lock_for(repository_id);
        let _guard = lock.lock().await;
        let dir = self.fetch_branch(repository_id, remote, branch).await?;
        let count = count.to_string();
        let reference = format!("refs/heads/{branch}");
        let out = run_git(
            "log",
            &[
                "log",
                "--no-renames",
                "-n",
                &count,
                LOG_FORMAT,
                &reference,
                "--",
            ],
            Some(&dir),
        )
        .await?;
        Ok(parse_log(&out))
    }
}

/// Parses `git log` with [`LOG_FORMAT`] and optionally `--name-status`.
fn parse_log(out: &str) -> Vec<Commit> {
    out.split(RECORD)
        .filter(|record| !record.trim().is_empty())
        .filter_map(|record| {
            let fields: Vec<&str> = record.splitn(10, FIELD).collect();
            if fields.len() < 9 {
                return None;
            }
            let mut commit = Commit {
                id: fields[0].trim().to_string(),
                parents: fields[1].split_whitespace().map(str::to_string).collect(),
                author: Person {
                    name: fields[2].to_string(),
                    email: fields[3].to_string(),
                    username: None,
                },
                timestamp: fields[4].to_string(),
                committer: Person {
                    name: fields[5].to_string(),
                    email: fields[6].to_string(),
                    username: None,
                },
                message: fields[8].trim_end().to_string(),
                ..Commit::default()
            };
            for line in fields.get(9).copied().unwrap_or_default().lines() {
                let Some((status, path)) = line.split_once('\t') else {
                    continue;
                };
                let path = path.to_string();
                match status.chars().next() {
                    Some('A') => commit.added.push(path),
                    Some('D') => commit.removed.push(path),
                    Some(_) => commit.modified.push(path),
                    None => {}
                }
            }
            Some(commit)
        })
        .collect()
}
