//! The OpenAPI document: valid OpenAPI 3.1 (checked against the official schema), every route
//! of the router in it or registered outside the API with a reason, answers that match it, and
//! its page.

use std::collections::BTreeSet;

use herald::http::routes::Registration;
use herald::startup::Application;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, TestApp, TestEnv, run_app};

both_backends!(
    every_route_is_documented_or_outside_the_api,
    the_document_is_valid_openapi_3_1,
    answers_match_the_documented_schemas,
    the_docs_page_lists_every_operation,
);

/// The official OpenAPI 3.1 schema (tests/fixtures/openapi/README.md says where it is from).
const OPENAPI_31_SCHEMA: &str = include_str!("../fixtures/openapi/openapi-3.1-schema.json");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi.json");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    response.json().await.expect("the document is JSON")
}

/// The document's operations as `(METHOD, path)`.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// What is wrong between the router's registrations and the document: a route in neither the
/// document nor the outside registry, an operation no route serves, an `/api` route kept out.
fn mismatches(registrations: &[Registration], document: &Value) -> Vec<String> {
    let documented = operations(document);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for registration in registrations {
        let key = (registration.method.to_string(), registration.path.clone());
        if !seen.insert(key.clone()) {
            problems.push(format!("{} {} is registered twice", key.0, key.1));
        }
        match registration.outside {
            None if !documented.contains(&key) => {
                problems.push(format!("{} {} is not in the document", key.0, key.1))
            }
            Some(why) if registration.path == "/api" || registration.path.starts_with("/api/") => {
                problems.push(format!(
                    "{} {} is under /api but kept out of the document ({})",
                    key.0,
                    key.1,
                    why.reason()
                ))
            }
            _ => {}
        }
    }
    for key in documented {
        let served = registrations
            .iter()
            .any(|r| r.outside.is_none() && r.method.as_str() == key.0 && r.path == key.1);
        if !served {
            problems.push(format!("{} {} is documented but not served", key.0, key.1));
        }
    }
    problems
}

/// Starts the app, keeping the registrations of its router.
async fn spawn_with_routes(env: &TestEnv) -> (TestApp, Vec<Registration>) {
    let app = Application::build(env.settings(&[]))
        .await
        .expect("herald builds");
    let registrations = app.registered_routes();
    (run_app(app), registrations)
}

async fn every_route_is_documented_or_outside_the_api(env: TestEnv) {
    let (app, registrations) = spawn_with_routes(&env).await;
    let document = document(&app).await;
    assert_eq!(mismatches(&registrations, &document), Vec::<String>::new());

    // The comparison does catch a route that is missing from the document, or kept out of it
    // under /api.
    let mut extra = registrations.clone();
    extra.push(Registration {
        method: Method::GET,
        path: "/api/v1/undocumented".into(),
        outside: None,
    });
    extra.push(Registration {
        method: Method::POST,
        path: "/api/v1/hidden".into(),
        outside: Some(herald::http::routes::Outside::Page),
    });
    assert_eq!(
        mismatches(&extra, &document),
        vec![
            "GET /api/v1/undocumented is not in the document".to_string(),
            "POST /api/v1/hidden is under /api but kept out of the document (a page for people (HTML), not part of the JSON API)".to_string(),
        ]
    );

    // The registrations are what the router serves: each one is routed (the fallback answers
    // "no such route", a wrong method 405).
    for registration in &registrations {
        let path = registration
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x1"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let response = app
            .client
            .request(registration.method.clone(), app.url(&path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{} {path} is not routed", registration.method);
        // A route behind a secret (`/kakao/skill/{secret}`, `/kakao/plusfriend/{secret}/…`)
        // answers a wrong secret exactly as an unknown route, on purpose: it must not tell
        // that it exists.
        let hides_itself = registration.path.contains("{secret}");
        assert!(
            hides_itself || !body.contains("no such route"),
            "{} {path} is not routed: {status} {body}",
            registration.method
        );
    }
    app.stop().await;
    env.cleanup().await;
}

fn validation_errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft202012::new(schema).expect("the schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

async fn the_document_is_valid_openapi_3_1(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let document = document(&app).await;
    let schema: Value = serde_json::from_str(OPENAPI_31_SCHEMA).expect("the vendored schema");
    assert_eq!(validation_errors(&schema, &document), Vec::<String>::new());
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        document["openapi"]
    );
    // Each component schema is a valid JSON Schema (2020-12, OpenAPI 3.1's dialect base).
    for (name, component) in document["components"]["schemas"]
        .as_object()
        .expect("component schemas")
    {
        assert!(
            jsonschema::draft202012::meta::is_valid(component),
            "{name} is not a valid JSON Schema: {component}"
        );
    }
    // Security as the extractors check it.
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(
        schemes["operator_token"]["scheme"],
        json!("bearer"),
        "{schemes}"
    );
    assert_eq!(schemes["login_token"]["scheme"], json!("bearer"));
    assert_eq!(schemes["operator_cookie"]["in"], json!("cookie"));
    assert_eq!(schemes["operator_cookie"]["name"], json!("herald_admin"));
    let contacts = &document["paths"]["/api/v1/contacts"]["get"];
    assert_eq!(contacts["security"], json!([{"operator_token": []}]));
    assert_eq!(
        contacts["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/ErrorBody")
    );
    assert!(
        document["paths"]["/api/"]["post"]["security"].is_null(),
        "the reference API needs no token"
    );
    app.stop().await;
    env.cleanup().await;
}

/// Checks `body` against the schema the document gives for that answer.
fn assert_documented(document: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let response = &operation["responses"][status.to_string()];
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} documents no JSON body for {status}: {response}"
    );
    let mut root = schema.clone();
    root["components"] = document["components"].clone();
    assert_eq!(
        validation_errors(&root, body),
        Vec::<String>::new(),
        "{method} {path} {status}: {body}"
    );
}

async fn answers_match_the_documented_schemas(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let document = document(&app).await;
    let call = |method: Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = app.client.request(method, app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let (status, body) = call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert_documented(&document, "get", "/healthz", status, &body);
    let (status, body) = call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    assert_documented(&document, "get", "/readyz", status, &body);

    let (status, body) = call(Method::GET, "/api/v1/contacts", None, None).await;
    assert_eq!(status, 401);
    assert_documented(&document, "get", "/api/v1/contacts", status, &body);
    let contact = json!({"channel": "telegram", "address": "12345", "nick_name": "kim"});
    let (status, body) = call(
        Method::POST,
        "/api/v1/contacts",
        Some(ADMIN_TOKEN),
        Some(contact),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_documented(&document, "post", "/api/v1/contacts", status, &body);
    let (status, body) = call(
        Method::POST,
        "/api/v1/contacts",
        Some(ADMIN_TOKEN),
        Some(json!({"channel": "pigeon", "address": "x"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_documented(&document, "post", "/api/v1/contacts", status, &body);
    let (status, body) = call(Method::GET, "/api/v1/contacts", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["contacts"][0]["address"], json!("12345"));
    assert_documented(&document, "get", "/api/v1/contacts", status, &body);
    let (status, body) = call(Method::GET, "/api/v1/contacts/1", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404);
    assert_documented(&document, "get", "/api/v1/contacts/{id}", status, &body);
    let (status, body) = call(
        Method::GET,
        "/api/v1/subscriptions",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_documented(&document, "get", "/api/v1/subscriptions", status, &body);
    let (status, body) = call(Method::GET, "/api/v1/projects", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_documented(&document, "get", "/api/v1/projects", status, &body);

    let (status, body) = app.post_reference(r#"{"id": "1"}"#).await;
    assert_eq!(status, 404);
    assert_documented(&document, "post", "/api/", status, &body);

    let (status, body) = call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "nobody@example.com", "password": "wrong password"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_documented(&document, "post", "/api/v1/auth/login", status, &body);

    let (status, body) = call(
        Method::GET,
        "/api/v1/kb/search?q=vacation",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_documented(&document, "get", "/api/v1/kb/search", status, &body);
    app.stop().await;
    env.cleanup().await;
}

async fn the_docs_page_lists_every_operation(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let document = document(&app).await;
    let response = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .expect("docs page");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html")),
        "{:?}",
        response.headers()
    );
    let page = response.text().await.expect("text");
    assert!(!page.contains("<script"), "the page needs no script");
    for (method, path) in operations(&document) {
        let anchor = format!(
            "id=\"{}-{}\"",
            method.to_lowercase(),
            path.replace('&', "&amp;")
        );
        assert!(page.contains(&anchor), "{method} {path} is not on the page");
    }
    for name in document["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        assert!(
            page.contains(&format!("id=\"schema-{name}\"")),
            "schema {name} is not on the page"
        );
    }
    // Parameters and security are shown with each operation.
    assert!(page.contains("<code>delivery_id</code>"), "path parameters");
    assert!(page.contains("<code>contact_id</code>"), "query parameters");
    assert!(page.contains("href=\"#security-operator_token\""));
    app.stop().await;
    env.cleanup().await;
}

both_backends!(team_and_schedule_answers_match_their_schemas);

/// The teams' and schedules' answers are typed (not plain objects) and match their schemas.
async fn team_and_schedule_answers_match_their_schemas(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let document = document(&app).await;
    let schema_of = |method: &str, path: &str, status: &str| {
        document["paths"][path][method]["responses"][status]["content"]["application/json"]
            ["schema"]
            .clone()
    };
    for (method, path, status) in [
        ("get", "/api/v1/teams", "200"),
        ("post", "/api/v1/teams", "201"),
        ("get", "/api/v1/teams/{id}", "200"),
        ("get", "/api/v1/teams/{id}/members", "200"),
        ("post", "/api/v1/teams/{id}/members", "201"),
        ("get", "/api/v1/teams/{id}/days", "200"),
        ("post", "/api/v1/teams/{id}/days", "201"),
        ("get", "/api/v1/schedules/preview", "200"),
        ("get", "/api/v1/schedules", "200"),
        ("post", "/api/v1/schedules", "201"),
        ("get", "/api/v1/schedules/{id}", "200"),
        ("patch", "/api/v1/schedules/{id}", "200"),
        ("get", "/api/v1/schedules/{id}/runs", "200"),
    ] {
        let schema = schema_of(method, path, status);
        assert!(
            schema["$ref"]
                .as_str()
                .is_some_and(|r| r.starts_with("#/components/schemas/")),
            "{method} {path} {status} is described as {schema}, not a named type"
        );
    }

    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "email", "address": "desk@example.com", "nick_name": "Desk"})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let (status, team) = app
        .admin(Method::POST, "/api/v1/teams", Some(json!({"name": "ops"})))
        .await;
    assert_eq!(status, 201, "{team}");
    assert_documented(&document, "post", "/api/v1/teams", status, &team);
    let team_id = team["id"].as_str().expect("team id").to_string();
    let (status, member) = app
        .admin(
            Method::POST,
            &format!("/api/v1/teams/{team_id}/members"),
            Some(json!({"contact_id": contact["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{member}");
    assert_eq!(member["account_id"], Value::Null, "{member}");
    assert_documented(
        &document,
        "post",
        "/api/v1/teams/{id}/members",
        status,
        &member,
    );
    let (status, day) = app
        .admin(
            Method::POST,
            &format!("/api/v1/teams/{team_id}/days"),
            Some(json!({"member_id": member["id"], "from": "2026-12-24", "kind": "off"})),
        )
        .await;
    assert_eq!(status, 201, "{day}");
    assert_eq!(day["to"], json!("2026-12-24"), "{day}");
    assert_documented(&document, "post", "/api/v1/teams/{id}/days", status, &day);
    for (path, documented) in [
        ("/api/v1/teams".to_string(), "/api/v1/teams"),
        (format!("/api/v1/teams/{team_id}"), "/api/v1/teams/{id}"),
        (
            format!("/api/v1/teams/{team_id}/members"),
            "/api/v1/teams/{id}/members",
        ),
        (
            format!("/api/v1/teams/{team_id}/days"),
            "/api/v1/teams/{id}/days",
        ),
    ] {
        let (status, body) = app.admin(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_documented(&document, "get", documented, status, &body);
    }
    let (status, team_view) = app
        .admin(Method::GET, &format!("/api/v1/teams/{team_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(team_view["members"][0]["id"], member["id"], "{team_view}");

    let (status, schedule) = app
        .admin(
            Method::POST,
            "/api/v1/schedules",
            Some(json!({
                "cron": "0 9 * * MON-FRI",
                "time_zone": "Asia/Seoul",
                "message": "stand-up",
                "audience": {"team_id": team_id},
            })),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    assert_eq!(schedule["audience"], json!({"team_id": team_id}));
    assert_eq!(
        schedule["next"].as_array().map(Vec::len),
        Some(5),
        "{schedule}"
    );
    assert_documented(&document, "post", "/api/v1/schedules", status, &schedule);
    let schedule_id = schedule["id"].as_str().expect("schedule id").to_string();
    let (status, list) = app.admin(Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(status, 200);
    assert!(
        list["schedules"][0].get("next").is_none(),
        "a list leaves `next` out: {list}"
    );
    assert_documented(&document, "get", "/api/v1/schedules", status, &list);
    let path = format!("/api/v1/schedules/{schedule_id}");
    let (status, one) = app.admin(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_documented(&document, "get", "/api/v1/schedules/{id}", status, &one);
    let (status, changed) = app
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"audience": {"contact_ids": [contact["id"]]}, "enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["audience"], json!({"contact_ids": [contact["id"]]}));
    assert_eq!(changed["next_due_at"], Value::Null, "{changed}");
    assert_documented(
        &document,
        "patch",
        "/api/v1/schedules/{id}",
        status,
        &changed,
    );
    let (status, runs) = app.admin(Method::GET, &format!("{path}/runs"), None).await;
    assert_eq!(status, 200);
    assert_eq!(runs, json!({"runs": []}));
    assert_documented(
        &document,
        "get",
        "/api/v1/schedules/{id}/runs",
        status,
        &runs,
    );
    let response = app
        .client
        .get(app.url("/api/v1/schedules/preview"))
        .bearer_auth(ADMIN_TOKEN)
        .query(&[("cron", "30 2 * * *"), ("time_zone", "UTC"), ("count", "2")])
        .send()
        .await
        .expect("preview");
    assert_eq!(response.status().as_u16(), 200);
    let preview: Value = response.json().await.expect("json");
    assert_eq!(
        preview["next"].as_array().map(Vec::len),
        Some(2),
        "{preview}"
    );
    assert_documented(&document, "get", "/api/v1/schedules/preview", 200, &preview);
    app.stop().await;
    env.cleanup().await;
}
