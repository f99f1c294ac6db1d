//! Issue 25, name squatting: a project the operator made for an owner name that was no account
//! stays the operator's; registering that name later gives the newcomer nothing, until the
//! operator hands the project over explicitly.

use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::sign_up;
use crate::both_backends;
use crate::helpers::{TestApp, TestEnv};

both_backends!(a_name_registered_later_does_not_get_the_operators_project);

async fn as_account(app: &TestApp, token: &str, method: Method, path: &str) -> (u16, Value) {
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    list["projects"]
        .as_array()
        .expect("a project list")
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["owner"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn a_name_registered_later_does_not_get_the_operators_project(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let repo = GitRepo::new();
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;

    // The operator makes projects for a name nobody has, and for an existing account.
    let erin = sign_up(&app, &smtp, "erin", "erin@example.com", "erin's password").await;
    for owner in ["futureuser", "erin"] {
        let (status, project) = app
            .admin(
                Method::POST,
                "/api/v1/projects",
                Some(json!({"owner": owner, "name": "ops", "repository": repo.url(), "branches": "main"})),
            )
            .await;
        assert_eq!(status, 201, "{project}");
    }

    // Whoever registers the name later does not manage the operator's project.
    let squatter = sign_up(
        &app,
        &smtp,
        "futureuser",
        "future@example.com",
        "a squatter's pw",
    )
    .await;
    let (status, _) = as_account(
        &app,
        &squatter,
        Method::GET,
        "/api/v1/projects/futureuser/ops",
    )
    .await;
    assert_eq!(
        status, 404,
        "a project named after an account is not that account's"
    );
    let (status, _) = as_account(
        &app,
        &squatter,
        Method::GET,
        "/api/v1/projects/futureuser/ops/webhooks",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = as_account(
        &app,
        &squatter,
        Method::DELETE,
        "/api/v1/projects/futureuser/ops",
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = as_account(&app, &squatter, Method::GET, "/api/v1/projects").await;
    assert_eq!(names(&list), Vec::<String>::new());
    let (status, list) = app.admin(Method::GET, "/api/v1/projects", None).await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["futureuser/ops", "erin/ops"]);

    // The operator's project for an existing account is that account's at once.
    let (status, project) = as_account(&app, &erin, Method::GET, "/api/v1/projects/erin/ops").await;
    assert_eq!((status, project["owner"].clone()), (200, json!("erin")));

    // Only the operator hands a project over; then it is the account's.
    let (status, answer) = as_account(
        &app,
        &squatter,
        Method::POST,
        "/api/v1/projects/futureuser/ops/claim",
    )
    .await;
    assert_eq!(status, 401, "an account cannot claim: {answer}");
    let (status, answer) = app
        .admin(Method::POST, "/api/v1/projects/nobody/ops/claim", None)
        .await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = app
        .admin(Method::POST, "/api/v1/projects/futureuser/ops/claim", None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["owner"], json!("futureuser"));
    let (status, answer) = app
        .admin(Method::POST, "/api/v1/projects/futureuser/ops/claim", None)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let (status, _) = as_account(
        &app,
        &squatter,
        Method::GET,
        "/api/v1/projects/futureuser/ops",
    )
    .await;
    assert_eq!(status, 200, "claimed: now the account's");
    let (_, list) = as_account(&app, &squatter, Method::GET, "/api/v1/projects").await;
    assert_eq!(names(&list), ["futureuser/ops"]);
    // And erin still sees only her own.
    let (_, list) = as_account(&app, &erin, Method::GET, "/api/v1/projects").await;
    assert_eq!(names(&list), ["erin/ops"]);

    app.stop().await;
    env.cleanup().await;
}
