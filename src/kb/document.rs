//! Knowledge-base documents: what clients and import files send (`DocumentIn`), checked once
//! into a `Document`, and the batch and file formats around them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many bytes in an id.
pub const MAX_ID_BYTES: usize = 200;
/// At most this many characters in a title.
pub const MAX_TITLE_CHARS: usize = 500;
/// At most this many bytes in a body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_URL_BYTES: usize = 2048;
/// At most this many documents in one API request (import files have no limit).
pub const MAX_BATCH: usize = 1000;

/// A document id: 1..=200 bytes, no control characters, no surrounding whitespace. Ids are
/// the caller's (an Elasticsearch `_id`, a wiki page name); posting the same id again replaces
/// the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DocId(String);

impl DocId {
    pub fn parse(raw: &str) -> Result<DocId, String> {
        if raw.is_empty() {
            return Err("id must not be empty".into());
        }
        if raw.len() > MAX_ID_BYTES {
            return Err(format!(
                "id is {} bytes; at most {MAX_ID_BYTES} are allowed",
                raw.len()
            ));
        }
        if raw.trim() != raw {
            return Err("id must not start or end with whitespace".into());
        }
        if raw.chars().any(char::is_control) {
            return Err("id must not contain control characters".into());
        }
        Ok(DocId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document as an API client or an import file gives it. `id` may be a string or an
/// integer; `content` is accepted for `body`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DocumentIn {
    /// 1 to 200 bytes; posting the same id again replaces the document.
    pub id: IdIn,
    /// At most 500 characters.
    pub title: String,
    /// At most 64 KiB (`content` is accepted too).
    #[serde(default, alias = "content")]
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum IdIn {
    Text(String),
    Integer(i64),
}

/// A checked document, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: DocId,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub url: Option<url::Url>,
}

impl Document {
    pub fn parse(input: DocumentIn) -> Result<Document, String> {
        let id = match input.id {
            IdIn::Text(text) => DocId::parse(&text)?,
            IdIn::Integer(number) => DocId::parse(&number.to_string())?,
        };
        let title = input.title.trim().to_string();
        if title.is_empty() {
            return Err("title must not be empty".into());
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!("title is longer than {MAX_TITLE_CHARS} characters"));
        }
        if input.body.len() > MAX_BODY_BYTES {
            return Err(format!(
                "body is {} bytes; at most {MAX_BODY_BYTES} are allowed",
                input.body.len()
            ));
        }
        let mut tags: Vec<String> = Vec::new();
        for tag in input.tags {
            let tag = tag.trim();
            if tag.chars().count() > MAX_TAG_CHARS {
                return Err(format!(
                    "tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
                ));
            }
            if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(format!(
                "{} tags; at most {MAX_TAGS} are allowed",
                tags.len()
            ));
        }
        let url = match input.url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(parse_url(raw)?),
        };
        Ok(Document {
            id,
            title,
            body: input.body,
            tags,
            url,
        })
    }
}

fn parse_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("url is longer than {MAX_URL_BYTES} bytes"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("url {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "url {raw:?} must be an http:// or https:// address"
        ));
    }
    Ok(url)
}

/// Where a document came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The one document of a request or file.
    Single,
    /// The n-th element (from 0) of a JSON array.
    Item(usize),
    /// A line (from 1) of an NDJSON file.
    Line(usize),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Single => f.write_str("document"),
            Origin::Item(n) => write!(f, "item {n}"),
            Origin::Line(n) => write!(f, "line {n}"),
        }
    }
}

fn parse_one(value: Value, origin: Origin) -> Result<Document, String> {
    let id_hint = value
        .get("id")
        .map(|id| match id {
            Value::String(s) => format!(" (id {s:?})"),
            other => format!(" (id {other})"),
        })
        .unwrap_or_default();
    let input: DocumentIn = serde_json::from_value(value)
        .map_err(|e| format!("{origin}{id_hint}: {}", plain_serde_message(&e)))?;
    Document::parse(input).map_err(|e| format!("{origin}{id_hint}: {e}"))
}

/// serde's message without its " at line 1 column 2" tail, which means nothing for a value.
fn plain_serde_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn check_unique(documents: &[(Origin, Document)]) -> Result<(), String> {
    let mut seen: HashMap<&DocId, Origin> = HashMap::new();
    for (origin, document) in documents {
        if let Some(first) = seen.insert(&document.id, *origin) {
            return Err(format!(
                "{origin} has the same id {:?} as {first}",
                document.id.as_str()
            ));
        }
    }
    Ok(())
}

/// An API body: one document object or an array of them, all checked (all or nothing).
pub fn parse_batch(body: Value) -> Result<Vec<Document>, String> {
    let documents = match body {
        Value::Array(items) => {
            if items.is_empty() {
                return Err("the array has no documents".into());
            }
            if items.len() > MAX_BATCH {
                return Err(format!(
                    "{} documents in one request; at most {MAX_BATCH} are allowed (split the batch, or use `herald kb import`)",
                    items.len()
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(n, item)| Ok((Origin::Item(n), parse_one(item, Origin::Item(n))?)))
                .collect::<Result<Vec<_>, String>>()?
        }
        object @ Value::Object(_) => vec![(Origin::Single, parse_one(object, Origin::Single)?)],
        _ => return Err("expected a document object or an array of them".into()),
    };
    check_unique(&documents)?;
    Ok(documents.into_iter().map(|(_, d)| d).collect())
}

/// An import file, recognised by its content: a JSON array of documents, one JSON document,
/// or NDJSON (one document per line; blank lines are skipped).
pub fn parse_file(text: &str) -> Result<Vec<Document>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    let documents = if trimmed.starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array: {e}"))?;
        items
            .into_iter()
            .enumerate()
            .map(|(n, item)| Ok((Origin::Item(n), parse_one(item, Origin::Item(n))?)))
            .collect::<Result<Vec<_>, String>>()?
    } else if let Ok(single @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
        vec![(Origin::Single, parse_one(single, Origin::Single)?)]
    } else {
        let mut documents = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let origin = Origin::Line(n + 1);
            let value: Value = serde_json::from_str(line)
                .map_err(|e| format!("{origin}: not a JSON document: {e}"))?;
            documents.push((origin, parse_one(value, origin)?));
        }
        documents
    };
    check_unique(&documents)?;
    Ok(documents.into_iter().map(|(_, d)| d).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_checked() {
        assert!(DocId::parse("vpn-setup").is_ok());
        assert!(DocId::parse("위키/휴가 신청").is_ok());
        for bad in ["", " padded", "tab\there", &"x".repeat(201)] {
            assert!(DocId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DocId::parse(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn a_document_is_checked_and_normalised() {
        let document = parse_batch(json!({
            "id": 7, "title": "  VPN 접속 ", "content": "본문",
            "tags": ["vpn", " vpn ", "", "network"], "url": "https://wiki.example.com/vpn"
        }))
        .expect("valid");
        assert_eq!(document[0].id.as_str(), "7");
        assert_eq!(document[0].title, "VPN 접속");
        assert_eq!(document[0].body, "본문");
        assert_eq!(document[0].tags, ["vpn", "network"]);
    }

    #[test]
    fn errors_name_the_item() {
        let cases = [
            (
                json!([{"id": "a", "title": "ok"}, {"id": "b"}]),
                "item 1 (id \"b\"): missing field `title`",
            ),
            (
                json!([{"id": "a", "title": "ok"}, {"id": "b", "title": " "}]),
                "item 1 (id \"b\"): title must not be empty",
            ),
            (
                json!({"id": "a", "title": "t", "url": "ftp://x"}),
                "document (id \"a\"): url \"ftp://x\" must be an http:// or https:// address",
            ),
            (
                json!({"id": "a", "title": "t", "url": "not a url"}),
                "not a URL",
            ),
            (
                json!({"id": "a", "title": "t", "body": "x".repeat(MAX_BODY_BYTES + 1)}),
                "body is 65537 bytes",
            ),
            (
                json!([{"id": "a", "title": "t"}, {"id": "a", "title": "u"}]),
                "item 1 has the same id \"a\" as item 0",
            ),
            (json!([]), "no documents"),
            (json!("text"), "expected a document"),
        ];
        for (body, expected) in cases {
            let error = parse_batch(body.clone()).expect_err(&body.to_string());
            assert!(error.contains(expected), "{error} ∌ {expected}");
        }
    }

    #[test]
    fn import_files_are_recognised_by_content() {
        let array = r#"[{"id":"a","title":"A"},{"id":"b","title":"B"}]"#;
        assert_eq!(parse_file(array).expect("array").len(), 2);
        let single = "{\n  \"id\": \"a\",\n  \"title\": \"A\"\n}\n";
        assert_eq!(parse_file(single).expect("object").len(), 1);
        let ndjson = "{\"id\":\"a\",\"title\":\"A\"}\n\n{\"id\":\"b\",\"title\":\"B\"}\n";
        assert_eq!(parse_file(ndjson).expect("ndjson").len(), 2);
        let broken = "{\"id\":\"a\",\"title\":\"A\"}\n{\"id\":\"b\",\n";
        assert!(
            parse_file(broken)
                .expect_err("broken")
                .starts_with("line 2: ")
        );
        let untitled = "{\"id\":\"a\",\"title\":\"A\"}\n{\"id\":\"b\",\"title\":\"\"}\n";
        assert_eq!(
            parse_file(untitled).expect_err("untitled"),
            "line 2 (id \"b\"): title must not be empty"
        );
    }
}
