//! Area D's knowledge search: documents `{id, title, body, tags, url}` and a synonym file,
//! searched with a Korean-aware embedded index.
//!
//! **Invariant**: the database is the truth, the index is a cache. Every write goes to the
//! database first, in one transaction that bumps `kb_state.revision`; the index under
//! `<data dir>/kb-index` records in each commit the revision (and the knowledge base's epoch)
//! it reflects. Before answering, `search` reads the revision (one primary-key read) and, if
//! the database moved — another node wrote, or `herald kb import` ran — catches up: the
//! documents written and deleted since its revision, or a full rebuild when the index is
//! missing, unreadable, of another schema or another database. So several nodes sharing one
//! PostgreSQL each keep their own index, and deleting the index directory loses nothing.
//!
//! Synonyms are expanded at query time (`synonyms.rs`), so a new synonym file needs no
//! reindex. Text is cut by `tokenizer.rs` (Hangul/CJK bigrams, lowercase words).

pub mod document;
pub mod http;
pub mod import;
mod index;
pub mod sample;
pub mod store;
pub mod synonyms;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::store::Db;
use document::{DocId, Document};
use index::{CommitMark, SearchIndex};
use store::{Change, StoredDocument};
use synonyms::{SynonymError, Synonyms};

/// One search result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    /// Plain text around the best match in the body (or its start).
    pub snippet: String,
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Locked(String),
    #[error("synonyms: {0}")]
    Synonyms(#[from] SynonymError),
    #[error("{0}")]
    Invalid(String),
    #[error("a search task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 50;
/// Documents read from the database and indexed per step of a catch-up.
const CATCH_UP_PAGE: i64 = 500;

/// The index as this process last brought it up to date.
struct View {
    epoch: String,
    /// The database revision the index reflects; -1 when unknown (rebuild).
    revision: i64,
    synonyms: Arc<Synonyms>,
    /// False until the synonyms were read from the database once.
    loaded: bool,
}

pub struct KnowledgeBase {
    index: Arc<SearchIndex>,
    view: RwLock<Arc<View>>,
    /// One catch-up at a time; searches that find the index current never take it.
    catching_up: tokio::sync::Mutex<()>,
}

impl KnowledgeBase {
    /// Opens (or makes) the index in `dir` and brings it up to date with the database,
    /// rebuilding it when it is missing, unreadable, or not this database's. When another
    /// process holds `dir` (two nodes given one data directory), this one keeps its index in
    /// memory instead, rebuilt from the database: slower to start, just as correct.
    pub async fn open(dir: &Path, db: &Db) -> Result<KnowledgeBase, KbError> {
        match Self::open_on_disk(dir, db).await {
            Err(KbError::Locked(reason)) => {
                tracing::warn!(
                    dir = %dir.display(),
                    %reason,
                    "the knowledge-base index directory is in use; keeping this node's index in memory"
                );
                let index = tokio::task::spawn_blocking(SearchIndex::in_memory).await??;
                Self::with_index(index, db).await
            }
            other => other,
        }
    }

    /// Like [`KnowledgeBase::open`], but fails with [`KbError::Locked`] when another process
    /// holds `dir` (what `herald kb import` wants to know).
    pub async fn open_on_disk(dir: &Path, db: &Db) -> Result<KnowledgeBase, KbError> {
        let path = dir.to_path_buf();
        let index = tokio::task::spawn_blocking(move || SearchIndex::open(&path)).await??;
        Self::with_index(index, db).await
    }

    async fn with_index(index: SearchIndex, db: &Db) -> Result<KnowledgeBase, KbError> {
        let mark = index.mark()?;
        let (epoch, revision) = match mark {
            Some(mark) => (mark.epoch, mark.revision),
            None => (String::new(), -1),
        };
        let kb = KnowledgeBase {
            index: Arc::new(index),
            view: RwLock::new(Arc::new(View {
                epoch,
                revision,
                synonyms: Arc::default(),
                loaded: false,
            })),
            catching_up: tokio::sync::Mutex::new(()),
        };
        kb.catch_up(db).await?;
        Ok(kb)
    }

    /// The best `limit` (at most [`MAX_LIMIT`]) documents for `query`, after catching up with
    /// the database if it changed.
    pub async fn search(&self, db: &Db, query: &str, limit: usize) -> Result<Vec<Hit>, KbError> {
        let started = std::time::Instant::now();
        let revision = store::revision(db).await?;
        let mut view = self.view();
        if !view.loaded || view.revision != revision {
            view = self.catch_up_view(db).await?;
        }
        let index = self.index.clone();
        let query = query.to_string();
        let limit = limit.min(MAX_LIMIT);
        let hits = tokio::task::spawn_blocking(move || index.search(&view.synonyms, &query, limit))
            .await??;
        metrics::histogram!("herald_kb_search_seconds").record(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// Inserts or replaces documents (all or none), then updates this node's index.
    pub async fn upsert(&self, db: &Db, documents: &[Document]) -> Result<i64, KbError> {
        let change = Change {
            documents,
            ..Change::default()
        };
        let revision = store::apply(db, change).await?.unwrap_or_default();
        self.catch_up(db).await?;
        Ok(revision)
    }

    /// Deletes a document; false when there is none with that id.
    pub async fn delete(&self, db: &Db, id: &DocId) -> Result<bool, KbError> {
        let deleted = store::delete(db, id).await?.is_some();
        if deleted {
            self.catch_up(db).await?;
        }
        Ok(deleted)
    }

    /// Replaces the synonym file; a file that does not parse changes nothing.
    pub async fn set_synonyms(&self, db: &Db, text: &str) -> Result<Synonyms, KbError> {
        let synonyms = Synonyms::parse(text)?;
        let change = Change {
            synonyms: Some(text),
            ..Change::default()
        };
        store::apply(db, change).await?;
        self.catch_up(db).await?;
        Ok(synonyms)
    }

    pub async fn document(&self, db: &Db, id: &DocId) -> Result<Option<StoredDocument>, KbError> {
        Ok(store::document(db, id).await?)
    }

    /// Documents in the index (for tests and logs).
    pub fn indexed_documents(&self) -> u64 {
        self.index.num_docs()
    }

    fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(view) => view.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Brings the index and the synonyms up to the database's revision.
    pub async fn catch_up(&self, db: &Db) -> Result<(), KbError> {
        self.catch_up_view(db).await.map(|_| ())
    }

    async fn catch_up_view(&self, db: &Db) -> Result<Arc<View>, KbError> {
        let _one_at_a_time = self.catching_up.lock().await;
        let state = store::state(db).await?;
        let current = self.view();
        if current.loaded && current.revision == state.revision && current.epoch == state.epoch {
            return Ok(current);
        }
        let rebuild = current.revision < 0
            || current.epoch != state.epoch
            || current.revision > state.revision;
        let synonyms_text = store::synonyms(db).await?;
        let synonyms = Synonyms::parse(&synonyms_text).unwrap_or_else(|error| {
            // Only checked files are stored; this would be a file written around herald.
            tracing::warn!(%error, "the stored synonym file does not parse; searching without synonyms");
            Synonyms::default()
        });
        if rebuild || current.revision != state.revision {
            let since = if rebuild { -1 } else { current.revision };
            let started = std::time::Instant::now();
            let mark = CommitMark::new(&state.epoch, state.revision);
            if let Err(error) = self.reindex(db, rebuild, since, mark).await {
                let index = self.index.clone();
                let _ = tokio::task::spawn_blocking(move || index.rollback()).await;
                return Err(error);
            }
            if rebuild {
                tracing::info!(
                    documents = self.index.num_docs(),
                    revision = state.revision,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "knowledge-base index rebuilt from the database"
                );
            }
        }
        let view = Arc::new(View {
            epoch: state.epoch,
            revision: state.revision,
            synonyms: Arc::new(synonyms),
            loaded: true,
        });
        match self.view.write() {
            Ok(mut slot) => *slot = view.clone(),
            Err(poisoned) => *poisoned.into_inner() = view.clone(),
        }
        Ok(view)
    }

    /// Applies what changed after revision `since` (everything, on a cleared index, when
    /// `rebuild`), then commits with `mark`. Documents written while this runs may be applied
    /// too; the next catch-up applies them again, which is harmless.
    async fn reindex(
        &self,
        db: &Db,
        rebuild: bool,
        since: i64,
        mark: CommitMark,
    ) -> Result<(), KbError> {
        let index = self.index.clone();
        if rebuild {
            tokio::task::spawn_blocking(move || index.clear()).await??;
        } else {
            let deleted = store::deleted_since(db, since).await?;
            if !deleted.is_empty() {
                tokio::task::spawn_blocking(move || index.delete(&deleted)).await??;
            }
        }
        let mut after = String::new();
        loop {
            let page = store::documents_since(db, since, &after, CATCH_UP_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            let full = page.len() as i64 == CATCH_UP_PAGE;
            let index = self.index.clone();
            tokio::task::spawn_blocking(move || index.upsert(&page)).await??;
            if !full {
                break;
            }
        }
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.commit(&mark)).await?
    }
}
