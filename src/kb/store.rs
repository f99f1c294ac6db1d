//! The knowledge base's tables (`migrations/*/0006_kb.sql`): documents, tombstones of deleted
//! ones, the synonym file and the revision counter. Every change bumps the revision in its own
//! transaction, so an index that knows its revision can ask for exactly what changed since.

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::document::{DocId, Document};
use crate::ids::now_ms;
use crate::store::{Db, ROWS_PER_STATEMENT, StoreError};

/// The knowledge base's identity and version, as the database has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbState {
    pub revision: i64,
    pub epoch: String,
}

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    pub id: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub url: Option<String>,
    pub updated_at: i64,
}

impl StoredDocument {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredDocument, StoreError> {
        let tags: String = row.try_get("tags")?;
        Ok(StoredDocument {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            body: row.try_get("body")?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            url: row.try_get("url")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// One indexed primary-key read: what every search asks first.
pub async fn revision(db: &Db) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1")
        .fetch_one(db.reader())
        .await
}

pub async fn state(db: &Db) -> Result<KbState, StoreError> {
    let row = sqlx::query("SELECT revision, epoch FROM kb_state WHERE id = 1")
        .fetch_one(db.reader())
        .await?;
    Ok(KbState {
        revision: row.try_get("revision")?,
        epoch: row.try_get("epoch")?,
    })
}

pub async fn synonyms(db: &Db) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT body FROM kb_synonyms WHERE id = 1")
        .fetch_one(db.reader())
        .await
}

pub async fn document(db: &Db, id: &DocId) -> Result<Option<StoredDocument>, StoreError> {
    let row = sqlx::query(
        "SELECT id, title, body, tags, url, updated_at FROM kb_documents WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(db.reader())
    .await?;
    row.as_ref().map(StoredDocument::from_row).transpose()
}

pub async fn count(db: &Db) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM kb_documents")
        .fetch_one(db.reader())
        .await
}

/// Documents written after revision `since` (all of them for `since = -1`), in id order,
/// `limit` at a time starting after `after_id`.
pub async fn documents_since(
    db: &Db,
    since: i64,
    after_id: &str,
    limit: i64,
) -> Result<Vec<StoredDocument>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, title, body, tags, url, updated_at FROM kb_documents \
         WHERE revision > $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(since)
    .bind(after_id)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(StoredDocument::from_row).collect()
}

/// A document in a list: what the operator's page shows of it without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSummary {
    pub id: String,
    pub title: String,
    pub updated_at: i64,
}

/// Up to `limit` documents in id order after `after_id` (`""`: from the first), without their
/// bodies: a keyset page on the primary key.
pub async fn document_list(
    db: &Db,
    after_id: &str,
    limit: i64,
) -> Result<Vec<DocumentSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, title, updated_at FROM kb_documents WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DocumentSummary {
                id: row.try_get(0)?,
                title: row.try_get(1)?,
                updated_at: row.try_get(2)?,
            })
        })
        .collect()
}

/// Ids deleted after revision `since`.
pub async fn deleted_since(db: &Db, since: i64) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT id FROM kb_deleted WHERE revision > $1")
        .bind(since)
        .fetch_all(db.reader())
        .await
}

/// What one write does, in one transaction.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// Remove every document not in `documents` first.
    pub replace_all: bool,
    /// Insert or replace these (by id).
    pub documents: &'a [Document],
    /// Replace the synonym file (already checked by the caller).
    pub synonyms: Option<&'a str>,
    /// Do nothing unless the knowledge base was never written (the sample's first import).
    pub only_if_new: bool,
}

/// Applies `change` and returns the new revision, or `None` when `only_if_new` found the
/// knowledge base already initialised.
pub async fn apply(db: &Db, change: Change<'_>) -> Result<Option<i64>, StoreError> {
    let mut tx = db.writer().begin().await?;
    let guard = if change.only_if_new {
        " AND initialised = 0"
    } else {
        ""
    };
    let revision: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "UPDATE kb_state SET revision = revision + 1, initialised = 1 WHERE id = 1{guard} \
         RETURNING revision"
    )))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(revision) = revision else {
        tx.rollback().await?;
        return Ok(None);
    };
    let now = now_ms();
    if change.replace_all {
        // `WHERE TRUE` lets SQLite tell the upsert's ON CONFLICT from a join's ON.
        sqlx::query(
            "INSERT INTO kb_deleted (id, revision) SELECT id, $1 FROM kb_documents WHERE TRUE \
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision",
        )
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM kb_documents")
            .execute(&mut *tx)
            .await?;
    }
    upsert_documents(&mut tx, change.documents, revision, now).await?;
    if let Some(text) = change.synonyms {
        sqlx::query("UPDATE kb_synonyms SET body = $1, updated_at = $2 WHERE id = 1")
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some(revision))
}

/// `documents` cut into runs of at most `ROWS_PER_STATEMENT` rows and about
/// [`crate::store::STATEMENT_TEXT_BYTES`] of text (a single larger document is a run of its own).
fn upsert_chunks(documents: &[Document]) -> Vec<&[Document]> {
    crate::store::statement_chunks(
        documents,
        ROWS_PER_STATEMENT,
        crate::store::STATEMENT_TEXT_BYTES,
        |document| {
            document.id.as_str().len()
                + document.title.len()
                + document.body.len()
                + document.tags.iter().map(|t| t.len() + 3).sum::<usize>()
                + document.url.as_ref().map_or(0, |u| u.as_str().len())
        },
    )
}

async fn upsert_documents(
    conn: &mut AnyConnection,
    documents: &[Document],
    revision: i64,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in upsert_chunks(documents) {
        // $1 and $2 are the time and revision, shared by every row; each row has five more.
        let mut sql = format!(
            "INSERT INTO kb_documents (id, title, body, tags, url, updated_at, revision) VALUES {}",
            crate::store::values_rows_from(chunk.len(), "($3, $4, $5, $6, $7, $1, $2)", 2)
        );
        sql.push_str(
            " ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, \
             tags = excluded.tags, url = excluded.url, updated_at = excluded.updated_at, \
             revision = excluded.revision",
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(revision);
        for document in chunk {
            query = query
                .bind(document.id.as_str().to_string())
                .bind(document.title.clone())
                .bind(document.body.clone())
                .bind(serde_json::to_string(&document.tags).unwrap_or_else(|_| "[]".into()))
                .bind(document.url.as_ref().map(|u| u.to_string()));
        }
        query.execute(&mut *conn).await?;

        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM kb_deleted WHERE id IN ({})",
            placeholders.join(", ")
        )));
        for document in chunk {
            query = query.bind(document.id.as_str().to_string());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes a document; `None` when there was none with that id. The revision row is taken
/// first, as in [`apply`], so two writers always lock in the same order.
pub async fn delete(db: &Db, id: &DocId) -> Result<Option<i64>, StoreError> {
    let mut tx = db.writer().begin().await?;
    let revision: i64 = sqlx::query_scalar(
        "UPDATE kb_state SET revision = revision + 1, initialised = 1 WHERE id = 1 \
         RETURNING revision",
    )
    .fetch_one(&mut *tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM kb_documents WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO kb_deleted (id, revision) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET revision = excluded.revision",
    )
    .bind(id.as_str())
    .bind(revision)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::document::parse_batch;

    fn documents(sizes: &[usize]) -> Vec<Document> {
        let items: Vec<serde_json::Value> = sizes
            .iter()
            .enumerate()
            .map(|(n, size)| serde_json::json!({"id": n.to_string(), "title": "t", "body": "x".repeat(*size)}))
            .collect();
        parse_batch(serde_json::Value::Array(items)).expect("valid")
    }

    #[test]
    fn upserts_are_cut_by_rows_and_by_bytes() {
        let lengths = |docs: &[Document]| {
            upsert_chunks(docs)
                .iter()
                .map(|c| c.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(lengths(&documents(&[10; 150])), [64, 64, 22]);
        assert_eq!(
            lengths(&documents(&[20_000, 5_000, 100, 60_000, 10])),
            [1, 2, 1, 1]
        );
        assert!(lengths(&[]).is_empty());
    }
}
