//! The reference `POST /api/` and `GET /api/`: every bad input is a 404 with
//! `{"code":404,"message":…}` and changes nothing.

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestEnv;

both_backends!(reference_api_refuses_bad_input_and_stores_nothing);

async fn reference_api_refuses_bad_input_and_stores_nothing(env: TestEnv) {
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = env
        .spawn(&[("HERALD_GITHUB_API", github.base_url.as_str())])
        .await;
    let good = json!({"id": "42", "fav_repository": repo.url(), "nick_name": "n", "type": "telegram", "branch": "main"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body.to_string()
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().expect("object").remove(key);
        body.to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        ("bad JSON", "{not json".into()),
        ("not an object", "[1,2]".into()),
        ("empty object", "{}".into()),
        ("missing branch", without("branch")),
        ("missing id", without("id")),
        ("missing type", without("type")),
        ("missing repository", without("fav_repository")),
        ("empty branch", with("branch", json!(""))),
        ("blank id", with("id", json!("   "))),
        ("unknown type", with("type", json!("pigeon"))),
        ("branch of the wrong type", with("branch", json!({"a": 1}))),
        ("bad telegram id", with("id", json!("not-a-chat"))),
        (
            "missing repository path",
            with("fav_repository", json!("/no/such/repository")),
        ),
        (
            "nonsense repository",
            with("fav_repository", json!("just words")),
        ),
        (
            "unknown GitHub repository",
            with("fav_repository", json!("octo/missing")),
        ),
        (
            "missing branch in repository",
            with("branch", json!("no-such-branch")),
        ),
        (
            "missing branch on GitHub",
            with("fav_repository", json!("octo/hello")).replace("\"main\"", "\"nope\""),
        ),
        ("invalid branch name", with("branch", json!("a..b"))),
    ];
    for (what, body) in cases {
        let (status, answer) = app.post_reference(body).await;
        assert_eq!(status, 404, "{what}: {answer}");
        assert_eq!(answer["code"], json!(404), "{what}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {answer}"
        );
    }
    let (_, contacts) = app.admin(Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(
        contacts["contacts"],
        json!([]),
        "failed registrations must not leave contacts"
    );
    let (_, subscriptions) = app.admin(Method::GET, "/api/v1/subscriptions", None).await;
    assert_eq!(subscriptions["subscriptions"], json!([]));

    // The empty-branch message is the reference's own.
    let (_, answer) = app.post_reference(with("branch", json!(""))).await;
    assert_eq!(answer["message"], json!("브랜치명은 비어 있으면 안됩니다."));

    // GET /api/ with missing or bad parameters.
    for params in [
        vec![("branch", "main")],
        vec![("fav_repository", "octo/hello")],
        vec![("fav_repository", "octo/missing"), ("branch", "main")],
        vec![
            ("fav_repository", "octo/hello"),
            ("branch", "main"),
            ("type", "pigeon"),
        ],
    ] {
        let (status, answer) = app.get_reference(&params).await;
        assert_eq!(status, 404, "{params:?}: {answer}");
        assert_eq!(answer["code"], json!(404));
    }

    // And the good registration still works, twice without harm.
    let (status, answer) = app.post_reference(good.to_string()).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (200, json!(200)),
        "{answer}"
    );
    let (status, _) = app.post_reference(good.to_string()).await;
    assert_eq!(status, 200);
    let (_, subscriptions) = app.admin(Method::GET, "/api/v1/subscriptions", None).await;
    assert_eq!(
        subscriptions["subscriptions"].as_array().map(Vec::len),
        Some(1)
    );

    app.stop().await;
    env.cleanup().await;
}
