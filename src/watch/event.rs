//! The normalized push event that every detection path (inbound webhook, GitHub REST polling, git
//! protocol polling) produces, and the commit record inside it.

use serde::{Deserialize, Serialize};

pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub id: String,
    pub message: String,
    /// RFC 3339, as git and GitHub write it.
    pub timestamp: String,
    #[serde(default)]
    pub url: Option<String>,
    pub author: Person,
    pub committer: Person,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
    #[serde(default)]
    pub parents: Vec<String>,
}

impl Commit {
    pub fn short_id(&self) -> &str {
        self.id.get(..7).unwrap_or(&self.id)
    }

    pub fn title(&self) -> &str {
        self.message.lines().next().unwrap_or_default().trim()
    }

    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.added
            .iter()
            .chain(self.removed.iter())
            .chain(self.modified.iter())
    }

    /// The commit in the shape of GitHub's `GET /repos/{o}/{r}/commits` list entries, which the
    /// reference `GET /api/` returned.
    pub fn to_github_commit_list_entry(&self, html_url: Option<&str>) -> serde_json::Value {
        let person = |p: &Person| serde_json::json!({"name": p.name, "email": p.email, "date": self.timestamp});
        let user = |p: &Person| match &p.username {
            Some(login) => serde_json::json!({"login": login}),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "sha": self.id,
            "commit": {
                "author": person(&self.author),
                "committer": person(&self.committer),
                "message": self.message,
            },
            "html_url": html_url.map(str::to_string).or_else(|| self.url.clone()),
            "author": user(&self.author),
            "committer": user(&self.committer),
            "parents": self.parents.iter().map(|sha| serde_json::json!({"sha": sha})).collect::<Vec<_>>(),
        })
    }
}

/// Where a push event was seen first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    GithubWebhook,
    GiteaWebhook,
    GitlabWebhook,
    GithubPoll,
    GitPoll,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::GithubWebhook => "github_webhook",
            Source::GiteaWebhook => "gitea_webhook",
            Source::GitlabWebhook => "gitlab_webhook",
            Source::GithubPoll => "github_poll",
            Source::GitPoll => "git_poll",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    /// Full ref, `refs/heads/<branch>`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub before: String,
    pub after: String,
    pub forced: bool,
    pub created: bool,
    pub deleted: bool,
    /// Oldest first, as git and GitHub list a push.
    pub commits: Vec<Commit>,
    /// Paths changed by the push as a whole, when the source knows them but not per commit.
    #[serde(default)]
    pub changed_paths: Vec<String>,
    pub pusher: Option<Person>,
    pub compare: Option<String>,
    pub source: Source,
}

impl PushEvent {
    pub fn branch(&self) -> &str {
        self.ref_name
            .strip_prefix("refs/heads/")
            .unwrap_or(&self.ref_name)
    }

    /// Every path the push touched, from commits or from the push as a whole.
    pub fn all_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self
            .commits
            .iter()
            .flat_map(|c| c.paths())
            .map(String::as_str)
            .chain(self.changed_paths.iter().map(String::as_str))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}
