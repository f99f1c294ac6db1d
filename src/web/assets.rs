//! The pages' files (`src/web/assets/`), embedded in the binary with rust-embed: served at
//! `/assets/{name}` with an ETag (`If-None-Match` gets 304), and cached for a year when asked
//! for with their `?v=` version (which changes with their content), revalidated otherwise.
//! The icon is also at `/favicon.ico`, where browsers look for it unasked.

use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "src/web/assets/"]
struct Assets;

const STYLESHEET: &str = "herald.css";
/// herald's icon, in the browser's tab (`favicon`).
const ICON: &str = "favicon.svg";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A file's version: the start of its SHA-256, as rust-embed computed it.
fn version(name: &str) -> Option<String> {
    Assets::get(name).map(|file| hex::encode(&file.metadata.sha256_hash()[..8]))
}

/// The style sheet's URL with its version, for the base template.
pub fn stylesheet_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match version(STYLESHEET) {
        Some(v) => format!("/assets/{STYLESHEET}?v={v}"),
        None => format!("/assets/{STYLESHEET}"),
    })
}

/// The icon's URL with its version, for the base template's `<link rel="icon">`.
pub fn icon_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match version(ICON) {
        Some(v) => format!("/assets/{ICON}?v={v}"),
        None => format!("/assets/{ICON}"),
    })
}

/// How long a browser may keep `/favicon.ico` without asking again: a week. Its URL carries no
/// version, so a changed icon must reach browsers in a while; pages name the versioned URL.
const FAVICON_CACHE: &str = "public, max-age=604800";

/// `GET /favicon.ico`: the icon, for browsers and tools that ask for it there without reading
/// the page's `<link rel="icon">`. An SVG: every current browser draws it whatever the name.
pub async fn favicon() -> Response {
    let Some(file) = Assets::get(ICON) else {
        tracing::error!("the embedded icon {ICON} is missing");
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(ICON)),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(FAVICON_CACHE),
            ),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

/// The chat page's script (`chat.js`) URL with its version.
pub fn chat_script_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match version("chat.js") {
        Some(v) => format!("/assets/chat.js?v={v}"),
        None => "/assets/chat.js".to_string(),
    })
}

#[derive(serde::Deserialize)]
pub struct AssetQuery {
    v: Option<String>,
}

pub async fn serve(
    Path(name): Path<String>,
    Query(query): Query<AssetQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(file) = Assets::get(&name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    // Only the versioned URL names this content for good; any other asks again each time.
    let cache = if query.v.is_some() && query.v == version(&name) {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    } else {
        HeaderValue::from_static("no-cache")
    };
    let etag_value = HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static(""));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&name)),
            ),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        file.data.into_owned(),
    )
        .into_response()
}
