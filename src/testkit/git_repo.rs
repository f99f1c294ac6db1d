//! Real git repositories for tests, made and changed with the `git` program.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct GitRepo {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Runs git in `dir` and returns its trimmed stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_DATE", "")
        .env_remove("GIT_AUTHOR_DATE")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

impl GitRepo {
    /// A repository with one commit on `main`.
    pub fn new() -> GitRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("repo");
        std::fs::create_dir_all(&path).expect("mkdir");
        git(&path, &["init", "--quiet", "--initial-branch=main"]);
        git(&path, &["config", "user.name", "Test Author"]);
        git(&path, &["config", "user.email", "author@example.com"]);
        git(&path, &["config", "commit.gpgsign", "false"]);
        let repo = GitRepo { _dir: dir, path };
        repo.commit("README.md", "hello\n", "Initial commit");
        repo
    }

    /// Writes a file and commits it on the current branch; returns the new commit's SHA.
    pub fn commit(&self, file: &str, content: &str, message: &str) -> String {
        self.commit_as(file, content, message, "Test Author", "author@example.com")
    }

    pub fn commit_as(
        &self,
        file: &str,
        content: &str,
        message: &str,
        name: &str,
        email: &str,
    ) -> String {
        let target = self.path.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&target, content).expect("write file");
        git(&self.path, &["add", "--all"]);
        git(
            &self.path,
            &[
                "-c",
                &format!("user.name={name}"),
                "-c",
                &format!("user.email={email}"),
                "commit",
                "--quiet",
                "-m",
                message,
            ],
        );
        self.head("HEAD")
    }

    /// Makes several commits and moves the current branch to the last one in one ref update,
    /// so that a watcher sees them arrive together, as one push.
    pub fn push_commits(&self, commits: &[(&str, &str, &str)]) -> Vec<String> {
        let branch = git(&self.path, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(&self.path, &["checkout", "--quiet", "--detach"]);
        let shas = commits
            .iter()
            .map(|(file, content, message)| self.commit(file, content, message))
            .collect();
        git(&self.path, &["branch", "--force", &branch, "HEAD"]);
        git(&self.path, &["checkout", "--quiet", &branch]);
        shas
    }

    /// Replaces the current branch's last commit with a new one in one ref update, as a
    /// force-push would; returns the new head.
    pub fn force_push_replacing_last(&self, file: &str, content: &str, message: &str) -> String {
        let branch = git(&self.path, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(&self.path, &["checkout", "--quiet", "--detach", "HEAD~1"]);
        let sha = self.commit(file, content, message);
        git(&self.path, &["branch", "--force", &branch, "HEAD"]);
        git(&self.path, &["checkout", "--quiet", &branch]);
        sha
    }

    pub fn head(&self, reference: &str) -> String {
        git(&self.path, &["rev-parse", reference])
    }

    pub fn checkout_new_branch(&self, branch: &str) {
        git(&self.path, &["checkout", "--quiet", "-b", branch]);
    }

    pub fn checkout(&self, branch: &str) {
        git(&self.path, &["checkout", "--quiet", branch]);
    }

    /// Moves the current branch back `n` commits, as a force-push that drops commits would.
    pub fn reset_hard(&self, reference: &str) {
        git(&self.path, &["reset", "--quiet", "--hard", reference]);
    }

    pub fn url(&self) -> String {
        self.path.display().to_string()
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        GitRepo::new()
    }
}
