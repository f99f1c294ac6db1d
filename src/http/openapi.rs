//! The OpenAPI 3.1 document of the JSON API, served at `GET /api/v1/openapi.json`, and a page
//! that shows it to people at `GET /api/v1/docs`.
//!
//! The document is not written by hand: each documented route's handler carries a
//! `#[utoipa::path]` attribute and is registered with `Routes::api(routes!(handler))`
//! (`http::routes`), so its path item comes with it. [`base`] adds what belongs to no route:
//! the title, the security schemes and the error shape. `startup::Features::routes` builds the
//! document once with the router and [`Published::publish`]es it for the two handlers here.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_axum::routes;

use super::error::{ErrorBody, ErrorCode, ErrorDetail};
use super::routes::Routes;

/// Security scheme: `Authorization: Bearer <HERALD_ADMIN_TOKEN>`.
pub const OPERATOR_TOKEN: &str = "operator_token";
/// Security scheme: `Authorization: Bearer <token from POST /api/v1/auth/login>`.
pub const LOGIN_TOKEN: &str = "login_token";
/// Security scheme: the `herald_admin` cookie the `/login` page sets.
pub const OPERATOR_COOKIE: &str = "operator_cookie";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "herald's JSON API: contacts and subscriptions, accounts, projects and \
                       their webhooks with the delivery log, the knowledge base, and the \
                       reference system's `/api/`. Errors of `/api/v1` have one shape \
                       (`ErrorBody`); the reference-compatible routes (`/api/`, \
                       `/api/v1/auth/register|email_verify|login|logout|me`) keep the shapes \
                       of the systems they replace."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    tags(
        (name = "contacts", description = "Contacts (a chat on a messenger) and their subscriptions to repository branches; the operator's"),
        (name = "reference", description = "The reference system's API (`repo-alarm-bot`), kept exactly"),
        (name = "accounts", description = "Sign-up, e-mail verification, login; the reference shapes of `rewind-chat-backend`"),
        (name = "link", description = "Linking messenger contacts to an account"),
        (name = "projects", description = "Projects, their outgoing webhooks and the delivery log"),
        (name = "kb", description = "The knowledge base: documents, synonyms, search"),
        (name = "meta", description = "This document, its page, and the health of the process"),
    )
)]
struct ApiDoc;

/// The document's parts that belong to no route.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            OPERATOR_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token, HERALD_ADMIN_TOKEN: every right. Wrong tokens are \
                         limited per client address (429 with Retry-After).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            LOGIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An account's login token, from POST /api/v1/auth/login; it acts as \
                         that account (its own projects, link codes, search).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            OPERATOR_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::auth::ADMIN_COOKIE,
                "The operator token held in a cookie by the /login page, for a browser.",
            ))),
        );
    }
}

/// The answers every route that needs a token can give besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum TokenErrors {
    /// The token is missing or wrong (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// This client address sent too many wrong tokens (`too_many_requests`, `Retry-After`).
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// herald failed (`internal`); the cause is in its log.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// The answers a route reading a JSON body can give besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum JsonBodyErrors {
    /// The body is not JSON (`bad_request`).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The body is larger than the route allows (`payload_too_large`).
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not `application/json` (`unsupported_media_type`).
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// A field is missing, of the wrong type or not acceptable (`validation_failed`).
    #[response(status = 422)]
    ValidationFailed(ErrorBody),
}

/// The document, once the router that it describes is built.
#[derive(Clone, Default)]
pub struct Published(Arc<OnceLock<Rendered>>);

struct Rendered {
    json: String,
    page: String,
}

impl Published {
    /// Serves `document` from now on; the first call wins.
    pub fn publish(&self, document: &utoipa::openapi::OpenApi) {
        let value = serde_json::to_value(document).unwrap_or_else(|error| {
            tracing::error!(%error, "the OpenAPI document does not serialise");
            Value::Null
        });
        let _ = self.0.set(Rendered {
            json: value.to_string(),
            page: render_page(&value),
        });
    }

    fn get(&self) -> Option<&Rendered> {
        let rendered = self.0.get();
        if rendered.is_none() {
            tracing::error!("the OpenAPI document was asked for before it was published");
        }
        rendered
    }
}

fn not_published() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
}

/// `GET /api/v1/openapi.json` and `GET /api/v1/docs`.
pub fn router(published: Published) -> Routes {
    Routes::new()
        .api(routes!(openapi_json))
        .api(routes!(docs_page))
        .with_state(published)
}

/// This document.
///
/// herald's JSON API as OpenAPI 3.1, built from the routes themselves.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
async fn openapi_json(State(published): State<Published>) -> Response {
    match published.get() {
        Some(rendered) => (
            [(header::CONTENT_TYPE, "application/json")],
            rendered.json.clone(),
        )
            .into_response(),
        None => not_published(),
    }
}

/// This document as a page for people.
///
/// Every operation with its parameters, bodies, answers and security, and every schema.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    tag = "meta",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String))
)]
async fn docs_page(State(published): State<Published>) -> Response {
    match published.get() {
        Some(rendered) => Html(rendered.page.clone()).into_response(),
        None => not_published(),
    }
}

fn escape(text: &str) -> String {
    crate::notify::render::escape_html(text)
}

fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A schema in a few words: `Contact`, `array of string`, `string | null`, linked to the
/// schemas section.
fn schema_label(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!(
            "<a href=\"#schema-{id}\">{name}</a>",
            id = escape(name),
            name = escape(name)
        );
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
            let joiner = if combinator == "allOf" { " & " } else { " | " };
            return parts
                .iter()
                .map(schema_label)
                .collect::<Vec<_>>()
                .join(joiner);
        }
    }
    let types: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let mut labels: Vec<String> = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!(
                "array of {}",
                schema.get("items").map_or("any".to_string(), schema_label)
            ),
            other => {
                let format = text(schema, "format");
                if format.is_empty() {
                    escape(other)
                } else {
                    format!("{} ({})", escape(other), escape(format))
                }
            }
        })
        .collect();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        labels.push(format!(
            "one of {}",
            values
                .iter()
                .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if labels.is_empty() {
        "any".to_string()
    } else {
        labels.join(" | ")
    }
}

fn content_labels(content: Option<&Value>) -> String {
    let Some(content) = content.and_then(Value::as_object) else {
        return "—".to_string();
    };
    content
        .iter()
        .map(|(media_type, media)| {
            format!(
                "<code>{}</code> {}",
                escape(media_type),
                media.get("schema").map_or(String::new(), schema_label)
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Resolves `#/components/responses/…` and `#/components/requestBodies/…` references.
fn resolve<'v>(document: &'v Value, value: &'v Value) -> &'v Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| document.pointer(pointer))
            .unwrap_or(value),
        None => value,
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn render_operation(out: &mut String, document: &Value, path: &str, method: &str, op: &Value) {
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{id}\"><h3><span class=\"method\">{m}</span> <code>{path}</code></h3>",
        id = escape(&format!("{method}-{path}")),
        m = escape(&method.to_uppercase()),
        path = escape(path)
    );
    for key in ["summary", "description"] {
        let value = text(op, key);
        if !value.is_empty() {
            let _ = write!(out, "<p>{}</p>", escape(value));
        }
    }
    match op.get("security").and_then(Value::as_array) {
        Some(requirements) if !requirements.is_empty() => {
            let names: Vec<String> = requirements
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|r| r.keys())
                .map(|name| format!("<a href=\"#security-{0}\">{0}</a>", escape(name)))
                .collect();
            let _ = write!(out, "<p>Security: {}</p>", names.join(" or "));
        }
        _ => out.push_str("<p>Security: none</p>"),
    }
    if let Some(parameters) = op.get("parameters").and_then(Value::as_array)
        && !parameters.is_empty()
    {
        out.push_str("<table><caption>Parameters</caption><tr><th>name</th><th>in</th><th>required</th><th>type</th><th>description</th></tr>");
        for parameter in parameters {
            let parameter = resolve(document, parameter);
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(text(parameter, "name")),
                escape(text(parameter, "in")),
                if parameter.get("required") == Some(&Value::Bool(true)) {
                    "yes"
                } else {
                    "no"
                },
                parameter
                    .get("schema")
                    .map_or_else(|| "any".to_string(), schema_label),
                escape(text(parameter, "description"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let body = resolve(document, body);
        let _ = write!(
            out,
            "<p>Request body{}: {}</p>",
            if body.get("required") == Some(&Value::Bool(true)) {
                " (required)"
            } else {
                ""
            },
            content_labels(body.get("content"))
        );
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str("<table><caption>Responses</caption><tr><th>status</th><th>description</th><th>body</th></tr>");
        for (status, response) in responses {
            let response = resolve(document, response);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                escape(text(response, "description")),
                content_labels(response.get("content"))
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        out,
        "<section class=\"schema\" id=\"schema-{id}\"><h3>{name}</h3>",
        id = escape(name),
        name = escape(name)
    );
    let description = text(schema, "description");
    if !description.is_empty() {
        let _ = write!(out, "<p>{}</p>", escape(description));
    }
    match schema.get("properties").and_then(Value::as_object) {
        Some(properties) => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push_str(
                "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
            );
            for (field, property) in properties {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(field),
                    schema_label(property),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    escape(text(property, "description"))
                );
            }
            out.push_str("</table>");
        }
        None => {
            let _ = write!(out, "<p>Type: {}</p>", schema_label(schema));
        }
    }
    out.push_str("</section>");
}

/// The whole page, from the document as JSON: no script, no outside asset.
fn render_page(document: &Value) -> String {
    let info = document.get("info").unwrap_or(&Value::Null);
    let title = format!("{} {} API", text(info, "title"), text(info, "version"));
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;line-height:1.4}}\
         table{{border-collapse:collapse;width:100%;margin:.5rem 0}}caption{{text-align:left;font-weight:600}}\
         td,th{{border-bottom:1px solid #ccc;padding:.3rem;text-align:left;vertical-align:top}}\
         .op,.schema{{border-top:2px solid #444;margin-top:1.5rem}}.method{{font-family:monospace;background:#1d4ed8;color:#fff;padding:0 .4rem;border-radius:.2rem}}\
         nav li{{font-family:monospace}}</style></head><body><h1>{title}</h1><p>{description}</p>\
         <p>The machine-readable document: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a> (OpenAPI {version}).</p>",
        title = escape(&title),
        description = escape(text(info, "description")),
        version = escape(text(document, "openapi")),
    );
    let paths = document.get("paths").and_then(Value::as_object);
    out.push_str("<nav><h2>Operations</h2><ul>");
    for (path, item) in paths.into_iter().flatten() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let _ = write!(
                    out,
                    "<li><a href=\"#{id}\">{m} {path}</a> {summary}</li>",
                    id = escape(&format!("{method}-{path}")),
                    m = escape(&method.to_uppercase()),
                    path = escape(path),
                    summary = escape(text(op, "summary"))
                );
            }
        }
    }
    out.push_str("</ul></nav>");
    let components = document.get("components").unwrap_or(&Value::Null);
    if let Some(schemes) = components.get("securitySchemes").and_then(Value::as_object) {
        out.push_str("<h2>Security</h2><dl>");
        for (name, scheme) in schemes {
            let _ = write!(
                out,
                "<dt id=\"security-{id}\"><code>{name}</code> ({kind})</dt><dd>{description}</dd>",
                id = escape(name),
                name = escape(name),
                kind = escape(&format!(
                    "{} {}{}",
                    text(scheme, "type"),
                    text(scheme, "scheme"),
                    text(scheme, "in")
                )),
                description = escape(text(scheme, "description"))
            );
        }
        out.push_str("</dl>");
    }
    out.push_str("<h2>Operations in detail</h2>");
    for (path, item) in paths.into_iter().flatten() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                render_operation(&mut out, document, path, method, op);
            }
        }
    }
    if let Some(schemas) = components.get("schemas").and_then(Value::as_object) {
        out.push_str("<h2>Schemas</h2>");
        for (name, schema) in schemas {
            render_schema(&mut out, name, schema);
        }
    }
    out.push_str("</body></html>");
    out
}
