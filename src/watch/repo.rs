//! Repository addresses, parsed once at the boundary. A repository is any git remote; GitHub ones
//! are recognised so that they can be polled through the REST API instead of the git protocol.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKind {
    GitHub { owner: String, name: String },
    Git,
}

impl RepoKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RepoKind::GitHub { .. } => "github",
            RepoKind::Git => "git",
        }
    }
}

/// A validated repository address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// What identifies the repository, whatever spelling the user or a webhook used:
    /// lower-case host and path without `.git`, e.g. `github.com/octo/hello`.
    pub key: String,
    /// What `git` is pointed at.
    pub remote: String,
    /// The web page of the repository, for links, when known.
    pub web: Option<String>,
    pub kind: RepoKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoUrlError {
    #[error("the repository address is empty")]
    Empty,
    #[error("{0:?} is not a repository address (use owner/name, https://… or a local path)")]
    Unrecognised(String),
    #[error(
        "{0:?} is a local or private address; set HERALD_ALLOW_PRIVATE_TARGETS=true to watch it"
    )]
    PrivateTarget(String),
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.remote)
    }
}

fn is_name_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 100
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn github(owner: &str, name: &str) -> RepoUrl {
    let name = name.strip_suffix(".git").unwrap_or(name);
    RepoUrl {
        key: format!(
            "github.com/{}/{}",
            owner.to_lowercase(),
            name.to_lowercase()
        ),
        remote: format!("https://github.com/{owner}/{name}.git"),
        web: Some(format!("https://github.com/{owner}/{name}")),
        kind: RepoKind::GitHub {
            owner: owner.to_string(),
            name: name.to_string(),
        },
    }
}

impl RepoUrl {
    /// Parses `owner/name` (GitHub), `https://github.com/o/r`, `git@github.com:o/r.git`, any other
    /// `http(s)://` remote, and — only when `allow_local` — `file://` URLs and absolute paths.
    pub fn parse(input: &str, allow_local: bool) -> Result<RepoUrl, RepoUrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(RepoUrlError::Empty);
        }
        let unrecognised = || RepoUrlError::Unrecognised(input.to_string());
        if input.len() > 2000 || input.chars().any(char::is_control) {
            return Err(unrecognised());
        }

        if let Some(rest) = input.strip_prefix("git@github.com:") {
            let (owner, name) = rest.split_once('/').ok_or_else(unrecognised)?;
            if is_name_part(owner) && is_name_part(name.trim_end_matches(".git")) {
                return Ok(github(owner, name));
            }
            return Err(unrecognised());
        }

        if !input.contains("://") && !input.starts_with('/') {
            if let Some((owner, name)) = input.split_once('/')
                && is_name_part(owner)
                && is_name_part(name)
                && !name.contains('/')
            {
                return Ok(github(owner, name));
            }
            return Err(unrecognised());
        }

        if input.starts_with('/') || input.starts_with("file://") {
            let path = input.strip_prefix("file://").unwrap_or(input);
            if !Path::new(path).is_absolute() {
                return Err(unrecognised());
            }
            if !allow_local {
                return Err(RepoUrlError::PrivateTarget(input.to_string()));
            }
            let trimmed = path.trim_end_matches('/');
            let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
            return Ok(RepoUrl {
                key: format!("file:{}", trimmed.trim_end_matches(".git")),
                remote: trimmed.to_string(),
                web: None,
                kind: RepoKind::Git,
            });
        }

        let url = url::Url::parse(input).map_err(|_| unrecognised())?;
        if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
            return Err(unrecognised());
        }
        let host = url.host_str().ok_or_else(unrecognised)?.to_lowercase();
        let path = url.path().trim_matches('/');
        if path.is_empty() {
            return Err(unrecognised());
        }
        if host == "github.com" || host == "www.github.com" {
            let mut parts = path.split('/');
            if let (Some(owner), Some(name)) = (parts.next(), parts.next())
                && is_name_part(owner)
                && is_name_part(name.trim_end_matches(".git"))
            {
                return Ok(github(owner, name));
            }
            return Err(unrecognised());
        }
        if !allow_local
            && let Some(parsed_host) = url.host()
            && crate::netguard::refuse_literal(&parsed_host).is_err()
        {
            return Err(RepoUrlError::PrivateTarget(input.to_string()));
        }
        let key_path = path.trim_end_matches(".git").to_lowercase();
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        // What git is given is the URL as parsed (and checked), not the user's spelling of it:
        // `http://0x7f.1/` and `http://127.0.0.1/` must be the same host to both.
        let remote = url.as_str().trim_end_matches('/').to_string();
        let web = format!(
            "{}://{}{}/{}",
            url.scheme(),
            host,
            port,
            path.trim_end_matches(".git")
        );
        Ok(RepoUrl {
            key: format!("{host}{port}/{key_path}"),
            remote,
            web: Some(web),
            kind: RepoKind::Git,
        })
    }

    /// The `owner/name` or host/path shown to people.
    pub fn display_name(&self) -> String {
        match &self.kind {
            RepoKind::GitHub { owner, name } => format!("{owner}/{name}"),
            RepoKind::Git => {
                let key = self.key.trim_start_matches("file:");
                let mut parts: Vec<&str> = key.rsplitn(3, '/').collect();
                parts.truncate(2);
                parts.reverse();
                parts.join("/")
            }
        }
    }

    /// A link to one commit, when the repository has a web page.
    pub fn commit_url(&self, sha: &str) -> Option<String> {
        self.web.as_ref().map(|web| format!("{web}/commit/{sha}"))
    }

    pub fn compare_url(&self, before: &str, after: &str) -> Option<String> {
        let short = |sha: &str| sha.chars().take(12).collect::<String>();
        self.web
            .as_ref()
            .map(|web| format!("{web}/compare/{}...{}", short(before), short(after)))
    }
}

/// Whether a host name or literal address is loopback, private, reserved or a local name
/// (`netguard`). Names are checked literally here; resolved addresses are checked by
/// `netguard::resolve_public` where a connection is made.
pub fn is_private_host(host: &str) -> bool {
    crate::netguard::refuse_literal_str(host).is_err()
}

pub fn is_private_ip(ip: IpAddr) -> bool {
    !crate::netguard::is_public_ip(ip)
}

/// Refuses a host that is, or resolves to, a loopback, private or reserved address (a
/// public-looking name can point inside the network), without saying what it resolved to.
pub async fn check_public_host(host: &str, port: u16) -> Result<(), String> {
    crate::netguard::resolve_public(host, port)
        .await
        .map(|_| ())
        .map_err(|refused| refused.to_string())
}

/// A branch name as git allows it (`git check-ref-format --branch`, in short).
pub fn valid_branch_pattern(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("브랜치명은 비어 있으면 안됩니다. (the branch must not be empty)".into());
    }
    let bad = name.len() > 255
        || name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '\\'));
    if bad {
        return Err(format!("{name:?} is not a valid branch name"));
    }
    Ok(())
}

/// Whether a branch pattern has glob characters (`release/*`).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_spellings_share_one_key() {
        let keys: Vec<String> = [
            "Octo/Hello",
            "https://github.com/octo/hello",
            "https://github.com/octo/hello.git",
            "git@github.com:octo/hello.git",
            "https://github.com/octo/hello/",
        ]
        .iter()
        .map(|s| RepoUrl::parse(s, false).expect(s).key)
        .collect();
        assert!(
            keys.iter().all(|k| k == "github.com/octo/hello"),
            "{keys:?}"
        );
    }

    #[test]
    fn local_and_private_need_permission() {
        assert!(matches!(
            RepoUrl::parse("/tmp/repo", false),
            Err(RepoUrlError::PrivateTarget(_))
        ));
        assert!(RepoUrl::parse("file:///tmp/repo", true).is_ok());
        assert!(matches!(
            RepoUrl::parse("http://127.0.0.1/x.git", false),
            Err(RepoUrlError::PrivateTarget(_))
        ));
        assert!(matches!(
            RepoUrl::parse("https://10.1.2.3/x.git", false),
            Err(RepoUrlError::PrivateTarget(_))
        ));
        assert_eq!(
            RepoUrl::parse("https://git.example.org/team/app.git", false)
                .expect("public")
                .key,
            "git.example.org/team/app"
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "   ",
            "hello",
            "ftp://x/y",
            "relative/path/too/deep",
            "a/b c",
        ] {
            assert!(RepoUrl::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn branch_names() {
        assert!(valid_branch_pattern("main").is_ok());
        assert!(valid_branch_pattern("release/*").is_ok());
        assert!(valid_branch_pattern("").is_err());
        assert!(valid_branch_pattern("a..b").is_err());
        assert!(valid_branch_pattern("bad name").is_err());
    }
}
