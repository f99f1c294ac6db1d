//! GitHub-compatible webhook payloads, so existing GitHub push consumers read herald's unchanged.

use serde::Serialize;
use serde_json::{Value, json};

use super::Project;
use crate::watch::event::{Commit, Person, PushEvent};

/// Any timestamp git, GitHub, Gitea or GitLab wrote, as RFC 3339 (the reference system sent
/// `+0900` offsets without a colon, which RFC 3339 parsers reject).
pub fn rfc3339_timestamp(raw: &str) -> String {
    if let Ok(parsed) = chrono::DateTime::parse_from_rfc3339(raw) {
        return parsed.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    }
    for format in ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S %z"] {
        if let Ok(parsed) = chrono::DateTime::parse_from_str(raw, format) {
            return parsed.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        }
    }
    raw.to_string()
}

// The push payload is written straight from these borrowing structs (it is rendered for every
// push inside the writer's turn; a `serde_json::Value` tree of it, with a copy of the newest
// commit for `head_commit`, cost ~75 µs a push). Fields are in alphabetical order, the order a
// `Value` object prints its keys in, so the bytes are what the `Value` form gave.

#[derive(Serialize)]
struct PersonJson<'a> {
    email: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
}

impl<'a> From<&'a Person> for PersonJson<'a> {
    fn from(p: &'a Person) -> Self {
        PersonJson {
            email: &p.email,
            name: &p.name,
            username: p.username.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct CommitJson<'a> {
    added: &'a [String],
    author: PersonJson<'a>,
    committer: PersonJson<'a>,
    distinct: bool,
    id: &'a str,
    message: &'a str,
    modified: &'a [String],
    removed: &'a [String],
    timestamp: String,
    tree_id: (),
    url: Option<&'a str>,
}

impl<'a> From<&'a Commit> for CommitJson<'a> {
    fn from(c: &'a Commit) -> Self {
        CommitJson {
            added: &c.added,
            author: (&c.author).into(),
            committer: (&c.committer).into(),
            distinct: true,
            id: &c.id,
            message: &c.message,
            modified: &c.modified,
            removed: &c.removed,
            timestamp: rfc3339_timestamp(&c.timestamp),
            tree_id: (),
            url: c.url.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct OwnerJson<'a> {
    login: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct RepositoryJson<'a> {
    clone_url: &'a str,
    full_name: String,
    html_url: Option<&'a str>,
    id: i64,
    name: &'a str,
    owner: OwnerJson<'a>,
    private: bool,
    url: Option<&'a str>,
}

impl<'a> From<&'a Project> for RepositoryJson<'a> {
    fn from(project: &'a Project) -> Self {
        RepositoryJson {
            clone_url: &project.repository,
            full_name: format!("{}/{}", project.owner, project.name),
            html_url: project.web_url.as_deref(),
            id: project.id,
            name: &project.name,
            owner: OwnerJson {
                login: &project.owner,
                name: &project.owner,
            },
            private: false,
            url: project.web_url.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct PusherJson<'a> {
    email: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct SenderJson<'a> {
    login: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct PushJson<'a> {
    after: &'a str,
    base_ref: (),
    before: &'a str,
    commits: &'a [CommitJson<'a>],
    compare: Option<&'a str>,
    created: bool,
    deleted: bool,
    forced: bool,
    head_commit: Option<&'a CommitJson<'a>>,
    pusher: PusherJson<'a>,
    #[serde(rename = "ref")]
    ref_name: &'a str,
    repository: RepositoryJson<'a>,
    sender: SenderJson<'a>,
}

fn repository(project: &Project) -> Value {
    serde_json::to_value(RepositoryJson::from(project)).unwrap_or(Value::Null)
}

/// The `push` payload: `ref` as a string, commits oldest first, `head_commit` the newest.
pub fn push(project: &Project, event: &PushEvent) -> String {
    let commits: Vec<CommitJson> = event.commits.iter().map(CommitJson::from).collect();
    let (pusher_name, pusher_email, login) = match &event.pusher {
        Some(p) => (
            p.name.as_str(),
            p.email.as_str(),
            p.username.as_deref().unwrap_or(&p.name),
        ),
        None => (project.owner.as_str(), "", project.owner.as_str()),
    };
    let payload = PushJson {
        after: &event.after,
        base_ref: (),
        before: &event.before,
        commits: &commits,
        compare: event.compare.as_deref(),
        created: event.created,
        deleted: event.deleted,
        forced: event.forced,
        head_commit: commits.last(),
        pusher: PusherJson {
            email: pusher_email,
            name: pusher_name,
        },
        ref_name: &event.ref_name,
        repository: project.into(),
        sender: SenderJson {
            login,
            kind: "User",
        },
    };
    // Serializing plain structs of strings, numbers and bools into a `String` cannot fail.
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The `ping` payload sent when a hook is created.
pub fn ping(project: &Project, hook_id: i64, url: &str) -> Value {
    json!({
        "zen": "Anything added dilutes everything else.",
        "hook_id": hook_id,
        "hook": {
            "type": "Repository",
            "id": hook_id,
            "active": true,
            "events": ["push"],
            "config": {"content_type": "json", "url": url, "insecure_ssl": "0"},
        },
        "repository": repository(project),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The form the push payload had before it was written from structs: the bytes must match.
    fn old_person(p: &Person) -> Value {
        let mut value = json!({"name": p.name, "email": p.email});
        if let Some(username) = &p.username {
            value["username"] = json!(username);
        }
        value
    }

    fn old_commit(c: &Commit) -> Value {
        json!({
            "id": c.id,
            "tree_id": Value::Null,
            "distinct": true,
            "message": c.message,
            "timestamp": rfc3339_timestamp(&c.timestamp),
            "url": c.url,
            "author": old_person(&c.author),
            "committer": old_person(&c.committer),
            "added": c.added,
            "removed": c.removed,
            "modified": c.modified,
        })
    }

    fn old_repository(project: &Project) -> Value {
        json!({
            "id": project.id,
            "name": project.name,
            "full_name": format!("{}/{}", project.owner, project.name),
            "owner": {"name": project.owner, "login": project.owner},
            "private": false,
            "html_url": project.web_url,
            "url": project.web_url,
            "clone_url": project.repository,
        })
    }

    fn old_push(project: &Project, event: &PushEvent) -> Value {
        let commits: Vec<Value> = event.commits.iter().map(old_commit).collect();
        let pusher = event.pusher.clone().unwrap_or_else(|| Person {
            name: project.owner.clone(),
            ..Person::default()
        });
        json!({
            "ref": event.ref_name,
            "before": event.before,
            "after": event.after,
            "created": event.created,
            "deleted": event.deleted,
            "forced": event.forced,
            "base_ref": Value::Null,
            "compare": event.compare,
            "head_commit": commits.last().cloned().unwrap_or(Value::Null),
            "commits": commits,
            "pusher": {"name": pusher.name, "email": pusher.email},
            "sender": {"login": pusher.username.unwrap_or(pusher.name), "type": "User"},
            "repository": old_repository(project),
        })
    }

    fn sample() -> (Project, PushEvent) {
        let person = |name: &str, username: Option<&str>| Person {
            name: name.into(),
            email: format!("{name}@example.com"),
            username: username.map(str::to_string),
        };
        let commit = |id: &str, url: Option<&str>| Commit {
            id: id.into(),
            message: "Fix the \"quoted\" thing\n\nand more".into(),
            timestamp: "2015-06-12T04:41:21+0900".into(),
            url: url.map(str::to_string),
            author: person("ann", Some("ann-gh")),
            committer: person("bob", None),
            added: vec!["a.txt".into()],
            removed: vec![],
            modified: vec!["src/main.rs".into(), "README.md".into()],
            parents: vec![],
        };
        let project = Project {
            id: 7,
            owner: "octo".into(),
            name: "site".into(),
            repository: "https://github.com/octo/site.git".into(),
            branches: "main".into(),
            repository_id: 3,
            web_url: Some("https://github.com/octo/site".into()),
            owner_account: None,
        };
        let event = PushEvent {
            ref_name: "refs/heads/main".into(),
            before: "1".repeat(40),
            after: "2".repeat(40),
            forced: false,
            created: false,
            deleted: false,
            commits: vec![
                commit(
                    &"a".repeat(40),
                    Some("https://github.com/octo/site/commit/a"),
                ),
                commit(&"b".repeat(40), None),
            ],
            changed_paths: vec![],
            pusher: Some(person("ann", Some("ann-gh"))),
            compare: Some("https://github.com/octo/site/compare/1...2".into()),
            source: crate::watch::event::Source::GithubWebhook,
        };
        (project, event)
    }

    #[test]
    fn the_push_payload_is_byte_for_byte_what_the_value_form_gave() {
        let (mut project, mut event) = sample();
        assert_eq!(
            push(&project, &event),
            old_push(&project, &event).to_string()
        );
        // No pusher, no web URL, no commits (a branch deletion), no compare link.
        event.pusher = None;
        event.commits.clear();
        event.compare = None;
        event.deleted = true;
        project.web_url = None;
        assert_eq!(
            push(&project, &event),
            old_push(&project, &event).to_string()
        );
    }

    #[test]
    fn timestamps_become_rfc3339() {
        assert_eq!(
            rfc3339_timestamp("2015-06-12T04:41:21+0900"),
            "2015-06-12T04:41:21+09:00"
        );
        assert_eq!(
            rfc3339_timestamp("2026-11-22T10:00:00Z"),
            "2026-11-22T10:00:00Z"
        );
        assert_eq!(
            rfc3339_timestamp("2026-11-22T10:00:00+09:00"),
            "2026-11-22T10:00:00+09:00"
        );
    }
}
