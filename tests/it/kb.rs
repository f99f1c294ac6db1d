//! Area D's knowledge search through the real app: the sample, synonyms (both kinds), CRUD,
//! bad input, the index as a cache of the database (restart, deletion, another node writing),
//! and `herald kb import`.

use std::path::Path;
use std::process::Stdio;

use herald::testkit::fake_smtp::FakeSmtp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, TestApp, TestEnv};

both_backends!(
    kb_sample_is_searchable_on_a_fresh_start,
    kb_synonyms_apply_at_query_time,
    kb_documents_are_upserted_and_deleted,
    kb_bad_input_gets_the_error_shape,
    kb_index_survives_restart_and_is_rebuilt_when_deleted,
    kb_nodes_sharing_a_database_catch_up,
    kb_cli_import_fills_the_database_and_the_index,
);

async fn search_as(app: &TestApp, token: Option<&str>, query: &str) -> (u16, Value) {
    let mut request = app
        .client
        .get(app.url("/api/v1/kb/search"))
        .query(&[("q", query)]);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("search");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The ids of the hits for `query`, best first.
async fn search(app: &TestApp, query: &str) -> Vec<String> {
    let (status, answer) = search_as(app, Some(ADMIN_TOKEN), query).await;
    assert_eq!(status, 200, "search {query:?}: {answer}");
    assert_eq!(answer["query"], json!(query));
    answer["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["id"].as_str().expect("id").to_string())
        .collect()
}

async fn post_documents(app: &TestApp, body: Value) -> (u16, Value) {
    app.admin(Method::POST, "/api/v1/kb/documents", Some(body))
        .await
}

async fn put_synonyms(app: &TestApp, text: &str) -> (u16, Value) {
    let response = app
        .client
        .put(app.url("/api/v1/kb/synonyms"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain; charset=utf-8")
        .body(text.to_string())
        .send()
        .await
        .expect("put synonyms");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

async fn kb_sample_is_searchable_on_a_fresh_start(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;

    // `연차` is a synonym of `휴가` in the sample; the Korean doc's title is `휴가 신청 방법`.
    let (status, answer) = search_as(&app, Some(ADMIN_TOKEN), "연차 신청").await;
    assert_eq!(status, 200, "{answer}");
    let best = &answer["hits"][0];
    assert_eq!(best["id"], json!("leave-request"), "{answer}");
    assert_eq!(best["title"], json!("휴가 신청 방법"));
    assert_eq!(
        best["url"],
        json!("https://wiki.example.com/hr/leave-request")
    );
    assert!(
        best["snippet"].as_str().is_some_and(|s| s.contains("휴가")),
        "{best}"
    );
    assert!(best["score"].as_f64().is_some_and(|s| s > 0.0), "{best}");

    let english = search(&app, "vacation request").await;
    assert_eq!(
        english.first().map(String::as_str),
        Some("leave-request-en"),
        "{english:?}"
    );
    // Mixed scripts in one query, and a particle on a Korean word.
    let mixed = search(&app, "VPN 접속이 안 돼요").await;
    assert!(
        mixed.iter().take(2).any(|id| id == "vpn-setup"),
        "{mixed:?}"
    );
    let particle = search(&app, "비밀번호를 잊었어요").await;
    assert_eq!(
        particle.first().map(String::as_str),
        Some("password-reset"),
        "{particle:?}"
    );
    let english_password = search(&app, "password reset").await;
    assert!(
        english_password.contains(&"password-reset-en".to_string()),
        "{english_password:?}"
    );
    assert!(
        english_password.contains(&"password-reset".to_string()),
        "{english_password:?}"
    );

    // Any signed-in account may search; only the operator may write; strangers get 401.
    let token =
        crate::accounts::sign_up(&app, &smtp, "kbreader", "kb@example.com", "correct horse").await;
    let (status, answer) = search_as(&app, Some(&token), "회의실").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["hits"][0]["id"], json!("meeting-room"), "{answer}");
    let (status, answer) = search_as(&app, None, "회의실").await;
    assert_error(status, &answer, 401, "unauthorized", "Authorization");
    let response = app
        .client
        .post(app.url("/api/v1/kb/documents"))
        .bearer_auth(&token)
        .json(&json!({"id": "x", "title": "x"}))
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        401,
        "unauthorized",
        "token",
    );
    app.stop().await;
    env.cleanup().await;
}

async fn kb_synonyms_apply_at_query_time(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let (status, answer) = post_documents(
        &app,
        json!([
            {"id": "laptop", "title": "Laptop 지급 절차", "body": "입사 첫날 IT팀이 지급합니다."},
            {"id": "bag", "title": "노트북 가방 신청", "body": "총무팀에 신청하세요."}
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["upserted"], json!(2));
    let before = search(&app, "노트북").await;
    assert!(
        before.contains(&"bag".to_string()) && !before.contains(&"laptop".to_string()),
        "{before:?}"
    );

    // One way: `노트북` is searched as `laptop` only; `laptop` is not searched as `노트북`.
    let (status, answer) = put_synonyms(
        &app,
        "# test synonyms\n휴가, 연차, 월차\n\n노트북 => laptop\n",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rules"], json!(2));
    assert_eq!(search(&app, "노트북").await, ["laptop"]);
    assert_eq!(search(&app, "laptop").await, ["laptop"]);
    // The equivalent group: `연차 신청` finds the sample's `휴가 신청 방법`.
    assert_eq!(
        search(&app, "연차 신청").await.first().map(String::as_str),
        Some("leave-request")
    );
    // The stored file is returned as uploaded.
    let response = app
        .client
        .get(app.url("/api/v1/kb/synonyms"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("get synonyms");
    assert_eq!(
        response.text().await.expect("text"),
        "# test synonyms\n휴가, 연차, 월차\n\n노트북 => laptop\n"
    );

    // A new file replaces the old one at once, with no reindexing: `연차` is just a word now.
    let (status, _) = put_synonyms(&app, "노트북, laptop\n").await;
    assert_eq!(status, 200);
    assert!(
        !search(&app, "연차 신청")
            .await
            .contains(&"leave-request".to_string())
    );
    let both = search(&app, "laptop").await;
    assert!(
        both.contains(&"laptop".to_string()) && both.contains(&"bag".to_string()),
        "{both:?}"
    );
    app.stop().await;
    env.cleanup().await;
}

async fn kb_documents_are_upserted_and_deleted(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let (status, answer) = post_documents(
        &app,
        json!({"id": "guide/kiosk", "title": "Kiosk quartz guide", "body": "Press the quartz button.",
               "tags": ["lobby"], "url": "https://wiki.example.com/kiosk"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(search(&app, "quartz").await, ["guide/kiosk"]);
    assert_eq!(search(&app, "lobby").await, ["guide/kiosk"]);
    let (status, document) = app
        .admin(Method::GET, "/api/v1/kb/documents/guide%2Fkiosk", None)
        .await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["title"], json!("Kiosk quartz guide"));
    assert_eq!(document["tags"], json!(["lobby"]));

    // Posting the same id replaces the document everywhere.
    let (status, answer) = post_documents(
        &app,
        json!([{"id": "guide/kiosk", "title": "Kiosk basalt guide", "body": "Press the basalt button."}]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(search(&app, "quartz").await.is_empty());
    assert!(search(&app, "lobby").await.is_empty());
    assert_eq!(search(&app, "basalt").await, ["guide/kiosk"]);

    let (status, _) = app
        .admin(Method::DELETE, "/api/v1/kb/documents/guide%2Fkiosk", None)
        .await;
    assert_eq!(status, 204);
    assert!(search(&app, "basalt").await.is_empty());
    let (status, answer) = app
        .admin(Method::DELETE, "/api/v1/kb/documents/guide%2Fkiosk", None)
        .await;
    assert_error(status, &answer, 404, "not_found", "guide/kiosk");
    let (status, answer) = app
        .admin(Method::GET, "/api/v1/kb/documents/guide%2Fkiosk", None)
        .await;
    assert_error(status, &answer, 404, "not_found", "guide/kiosk");

    // Deleted, then posted again: it comes back.
    let (status, _) =
        post_documents(&app, json!({"id": "guide/kiosk", "title": "Kiosk onyx"})).await;
    assert_eq!(status, 200);
    assert_eq!(search(&app, "onyx").await, ["guide/kiosk"]);
    app.stop().await;
    env.cleanup().await;
}

async fn kb_bad_input_gets_the_error_shape(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let response = app
        .client
        .post(app.url("/api/v1/kb/documents"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("[{\"id\": \"a\", \"title\": ")
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        400,
        "bad_request",
        "Failed to parse the request body as JSON",
    );

    // All or nothing: item 0 is fine, item 1 is not, so neither is stored.
    let (status, answer) = post_documents(
        &app,
        json!([{"id": "fine", "title": "Fine"}, {"id": "untitled", "body": "no title"}]),
    )
    .await;
    assert_error(
        status,
        &answer,
        422,
        "validation_failed",
        "item 1 (id \"untitled\"): missing field `title`",
    );
    let (status, _) = app
        .admin(Method::GET, "/api/v1/kb/documents/fine", None)
        .await;
    assert_eq!(status, 404);

    let cases = [
        (json!({"id": "a", "title": "  "}), "title must not be empty"),
        (json!({"id": "", "title": "t"}), "id must not be empty"),
        (
            json!({"id": "x".repeat(201), "title": "t"}),
            "id is 201 bytes",
        ),
        (
            json!({"id": "a", "title": "t", "body": "가".repeat(30_000)}),
            "body is 90000 bytes",
        ),
        (
            json!({"id": "a", "title": "t", "url": "javascript:alert(1)"}),
            "http:// or https://",
        ),
        (
            json!([{"id": "a", "title": "t"}, {"id": "a", "title": "u"}]),
            "same id",
        ),
        (json!(42), "expected a document"),
    ];
    for (body, mentions) in cases {
        let (status, answer) = post_documents(&app, body).await;
        assert_error(status, &answer, 422, "validation_failed", mentions);
    }

    // A synonym file that does not parse is refused whole, naming the line.
    let (status, answer) = put_synonyms(&app, "휴가, 연차\n# fine so far\n휴가 연차 월차\n").await;
    assert_error(status, &answer, 400, "bad_request", "line 3");
    let (status, answer) = put_synonyms(&app, "a => b => c\n").await;
    assert_error(status, &answer, 400, "bad_request", "line 1");
    // …and the old file is still in effect.
    assert_eq!(
        search(&app, "연차 신청").await.first().map(String::as_str),
        Some("leave-request")
    );

    // No token, wrong token.
    let response = app
        .client
        .post(app.url("/api/v1/kb/documents"))
        .json(&json!({"id": "a", "title": "t"}))
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        401,
        "unauthorized",
        "missing Authorization: Bearer <HERALD_ADMIN_TOKEN>",
    );
    let response = app
        .client
        .put(app.url("/api/v1/kb/synonyms"))
        .bearer_auth("wrong")
        .body("a, b")
        .send()
        .await
        .expect("put");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        401,
        "unauthorized",
        "wrong token",
    );
    let response = app
        .client
        .delete(app.url("/api/v1/kb/documents/vpn-setup"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 401);

    // Search needs a query and a sensible limit.
    let (status, answer) = search_as(&app, Some(ADMIN_TOKEN), "   ").await;
    assert_error(status, &answer, 422, "validation_failed", "q");
    let (status, answer) = app
        .admin(Method::GET, "/api/v1/kb/search?q=vpn&limit=0", None)
        .await;
    assert_error(status, &answer, 422, "validation_failed", "limit");
    let (status, answer) = app
        .admin(Method::GET, "/api/v1/kb/search?q=vpn&limit=many", None)
        .await;
    assert_error(status, &answer, 400, "bad_request", "limit");
    let (status, answer) = app
        .admin(Method::GET, "/api/v1/kb/search?q=vpn&limit=1", None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["hits"].as_array().map(Vec::len), Some(1));
    app.stop().await;
    env.cleanup().await;
}

async fn kb_index_survives_restart_and_is_rebuilt_when_deleted(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let (status, _) = post_documents(
        &app,
        json!({"id": "z", "title": "Zanzibar ferry timetable"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .admin(Method::DELETE, "/api/v1/kb/documents/vpn-setup", None)
        .await;
    assert_eq!(status, 204);
    let indexed = app.kb.indexed_documents();
    app.stop().await;

    // Restarted on the same data dir: the index is opened as it was.
    let app = env.spawn(&[]).await;
    assert_eq!(app.kb.indexed_documents(), indexed);
    assert_eq!(search(&app, "zanzibar").await, ["z"]);
    assert!(
        !search(&app, "VPN 접속")
            .await
            .contains(&"vpn-setup".to_string())
    );
    app.stop().await;

    // Without its index directory, herald rebuilds it from the database at start.
    let index_dir = env.data_dir.path().join("kb-index");
    std::fs::remove_dir_all(&index_dir).expect("remove the index");
    let app = env.spawn(&[]).await;
    assert!(index_dir.join("meta.json").exists());
    assert_eq!(app.kb.indexed_documents(), indexed);
    assert_eq!(search(&app, "zanzibar").await, ["z"]);
    assert_eq!(
        search(&app, "연차 신청").await.first().map(String::as_str),
        Some("leave-request")
    );
    assert!(
        !search(&app, "VPN 접속")
            .await
            .contains(&"vpn-setup".to_string())
    );
    app.stop().await;

    // A damaged index is rebuilt too.
    std::fs::write(index_dir.join("meta.json"), "{ not json").expect("damage the index");
    let app = env.spawn(&[]).await;
    assert_eq!(app.kb.indexed_documents(), indexed);
    assert_eq!(search(&app, "zanzibar").await, ["z"]);
    app.stop().await;
    env.cleanup().await;
}

async fn kb_nodes_sharing_a_database_catch_up(env: TestEnv) {
    let first = env.spawn(&[]).await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let second = crate::helpers::spawn_with(
        env.settings(&[("HERALD_DATA_DIR", &other_dir.path().display().to_string())]),
    )
    .await;
    // The sample is imported once, by whichever node started first.
    assert_eq!(
        first.count("SELECT COUNT(*) FROM kb_documents").await,
        herald::kb::sample::DOCUMENTS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as i64
    );

    let (status, _) = post_documents(&first, json!({"id": "m", "title": "Marmalade recipe"})).await;
    assert_eq!(status, 200);
    assert_eq!(search(&second, "marmalade").await, ["m"]);
    let (status, _) = second
        .admin(Method::DELETE, "/api/v1/kb/documents/m", None)
        .await;
    assert_eq!(status, 204);
    assert!(search(&first, "marmalade").await.is_empty());
    let (status, _) = put_synonyms(&second, "잼, marmalade\n").await;
    assert_eq!(status, 200);
    let (status, _) = post_documents(&second, json!({"id": "j2", "title": "잼 보관법"})).await;
    assert_eq!(status, 200);
    assert_eq!(search(&first, "marmalade").await, ["j2"]);

    // A third node given the first one's data directory cannot have its index directory; it
    // keeps its index in memory and answers all the same.
    let third = env.spawn(&[]).await;
    assert_eq!(search(&third, "marmalade").await, ["j2"]);
    let (status, _) = post_documents(&third, json!({"id": "t", "title": "Tangerine peel"})).await;
    assert_eq!(status, 200);
    assert_eq!(search(&first, "tangerine").await, ["t"]);
    third.stop().await;
    first.stop().await;
    second.stop().await;
    env.cleanup().await;
}

async fn run_import(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let settings = env.settings(&[]);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_DATA_DIR", env.data_dir.path())
        .env("HERALD_DATABASE_URL", &settings.database_url)
        .env("RUST_LOG", "warn")
        .current_dir(env.data_dir.path())
        .arg("kb")
        .arg("import")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run herald kb import");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a file");
    path.display().to_string()
}

async fn kb_cli_import_fills_the_database_and_the_index(env: TestEnv) {
    let files = tempfile::tempdir().expect("temp dir");
    let array = write(
        files.path(),
        "array.json",
        r#"[{"id": "a1", "title": "Aardvark care", "tags": ["animals"]},
            {"id": 2, "title": "개미핥기 먹이", "url": "https://zoo.example.com/2"}]"#,
    );
    let object = write(
        files.path(),
        "one.json",
        r#"{"id": "o1", "title": "Okapi facts"}"#,
    );
    let ndjson = write(
        files.path(),
        "more.ndjson",
        "{\"id\":\"n1\",\"title\":\"Narwhal tusks\"}\n\n{\"id\":\"n2\",\"title\":\"Numbat burrows\"}\n",
    );
    let synonyms = write(
        files.path(),
        "synonyms.txt",
        "개미핥기, anteater, aardvark\n",
    );
    let broken = write(
        files.path(),
        "broken.ndjson",
        "{\"id\":\"b1\",\"title\":\"ok\"}\n{\"id\":\"b2\"}\n",
    );

    // A bad file changes nothing and names the file and the line.
    let (ok, output) = run_import(&env, &[&array, &broken]).await;
    assert!(!ok, "{output}");
    assert!(
        output.contains("broken.ndjson: line 2 (id \"b2\"): missing field `title`"),
        "{output}"
    );

    // Before herald ever started: the documents go in, and the sample never will.
    let (ok, output) = run_import(&env, &[&array, &object, &ndjson, "--synonyms", &synonyms]).await;
    assert!(ok, "{output}");
    assert!(
        output.contains("imported 5 documents and 1 synonym rules"),
        "{output}"
    );
    assert!(output.contains("the search index has 5"), "{output}");

    let app = env.spawn(&[]).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM kb_documents").await, 5);
    let anteater = search(&app, "anteater").await;
    assert!(
        anteater.contains(&"a1".to_string()) && anteater.contains(&"2".to_string()),
        "{anteater:?}"
    );
    assert_eq!(search(&app, "okapi").await, ["o1"]);
    assert_eq!(search(&app, "numbat").await, ["n2"]);

    // While herald runs (and holds the index), an import still lands in the database and the
    // running node catches up at its next search.
    let replacement = write(
        files.path(),
        "replacement.json",
        r#"[{"id": "q1", "title": "Quokka smiles"}]"#,
    );
    let (ok, output) = run_import(&env, &["--replace", &replacement]).await;
    assert!(ok, "{output}");
    assert!(output.contains("held by a running herald"), "{output}");
    assert_eq!(search(&app, "quokka").await, ["q1"]);
    assert!(search(&app, "okapi").await.is_empty());
    assert_eq!(app.count("SELECT COUNT(*) FROM kb_documents").await, 1);
    app.stop().await;

    // The library function the command calls.
    let request = herald::kb::import::ImportRequest {
        files: vec![object.into()],
        synonyms: None,
        replace: false,
    };
    let report = herald::kb::import::import(&env.settings(&[]), &request)
        .await
        .expect("import");
    assert_eq!(report.documents, 1);
    assert_eq!(report.total_documents, 2);
    assert_eq!(report.indexed, Some(2));
    env.cleanup().await;
}
