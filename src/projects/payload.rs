//! GitHub-compatible webhook payloads, so existing GitHub push consumers read herald's unchanged.

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

fn person(p: &Person) -> Value {
    let mut value = json!({"name": p.name, "email": p.email});
    if let Some(username) = &p.username {
        value["username"] = json!(username);
    }
    value
}

fn commit(c: &Commit) -> Value {
    json!({
        "id": c.id,
        "tree_id": Value::Null,
        "distinct": true,
        "message": c.message,
        "timestamp": rfc3339_timestamp(&c.timestamp),
        "url": c.url,
        "author": person(&c.author),
        "committer": person(&c.committer),
        "added": c.added,
        "removed": c.removed,
        "modified": c.modified,
    })
}

fn repository(project: &Project) -> Value {
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

/// The `push` payload: `ref` as a string, commits oldest first, `head_commit` the newest.
pub fn push(project: &Project, event: &PushEvent) -> Value {
    let commits: Vec<Value> = event.commits.iter().map(commit).collect();
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
        "repository": repository(project),
    })
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
