//! `herald kb import`: documents from JSON / NDJSON files (and optionally a synonym file) into
//! the database of the configured settings, then into this data directory's index.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::document::{DocId, Document, parse_file};
use super::store::{self, Change};
use super::synonyms::Synonyms;
use super::{KbError, KnowledgeBase};
use crate::config::Settings;

#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// JSON array, JSON object or NDJSON files of documents.
    pub files: Vec<PathBuf>,
    /// A synonym file replacing the stored one.
    pub synonyms: Option<PathBuf>,
    /// Delete every document that is not in `files`.
    pub replace: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Documents inserted or replaced.
    pub documents: usize,
    /// Rules in the new synonym file, if one was given.
    pub synonym_rules: Option<usize>,
    /// Documents in the knowledge base afterwards.
    pub total_documents: i64,
    pub revision: i64,
    /// Documents in this data directory's index afterwards; `None` when a running herald
    /// holds the index (it catches up at its next search).
    pub indexed: Option<u64>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "imported {} documents", self.documents)?;
        if let Some(rules) = self.synonym_rules {
            write!(f, " and {rules} synonym rules")?;
        }
        write!(
            f,
            "; the knowledge base now has {} documents (revision {})",
            self.total_documents, self.revision
        )?;
        match self.indexed {
            Some(indexed) => write!(f, "; the search index has {indexed}"),
            None => write!(
                f,
                "; the search index is held by a running herald, which catches up at its next search"
            ),
        }
    }
}

/// Reads and checks every file first, so a bad file changes nothing; then writes everything in
/// one transaction.
pub async fn import(settings: &Settings, request: &ImportRequest) -> anyhow::Result<ImportReport> {
    if request.files.is_empty() && request.synonyms.is_none() {
        bail!("nothing to import: name document files and/or --synonyms <file>");
    }
    if request.replace && request.files.is_empty() {
        bail!("--replace needs the document files that replace the knowledge base");
    }
    let mut documents: Vec<Document> = Vec::new();
    let mut seen: HashMap<DocId, PathBuf> = HashMap::new();
    for path in &request.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let parsed = parse_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for document in parsed {
            if let Some(first) = seen.insert(document.id.clone(), path.clone()) {
                bail!(
                    "document id {:?} is in both {} and {}",
                    document.id.as_str(),
                    first.display(),
                    path.display()
                );
            }
            documents.push(document);
        }
    }
    let synonyms = match &request.synonyms {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let parsed =
                Synonyms::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some((text, parsed.rules()))
        }
    };

    let db = crate::store::Db::open(&settings.database_url, settings.into()).await?;
    let change = Change {
        replace_all: request.replace,
        documents: &documents,
        synonyms: synonyms.as_ref().map(|(text, _)| text.as_str()),
        only_if_new: false,
    };
    let revision = store::apply(&db, change)
        .await
        .context("could not write the knowledge base")?
        .unwrap_or_default();
    let total_documents = store::count(&db).await?;
    let indexed = match KnowledgeBase::open_on_disk(&settings.data_dir.join("kb-index"), &db).await
    {
        Ok(kb) => Some(kb.indexed_documents()),
        Err(KbError::Locked(_)) => None,
        Err(error) => {
            db.close().await;
            return Err(error).context("the database is updated, but the search index is not");
        }
    };
    db.close().await;
    Ok(ImportReport {
        documents: documents.len(),
        synonym_rules: synonyms.map(|(_, rules)| rules),
        total_documents,
        revision,
        indexed,
    })
}
