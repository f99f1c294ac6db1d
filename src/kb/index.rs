//! The tantivy index under `<data dir>/kb-index`: schema, opening (or starting afresh when the
//! directory is missing or unreadable), applying changes, and searching. Everything here
//! blocks; `KnowledgeBase` calls it on `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::store::StoredDocument;
use super::synonyms::Synonyms;
use super::tokenizer::{BigramTokenizer, TOKENIZER_NAME, terms};
use super::{Hit, KbError};

/// Bumped whenever the schema or the tokenizer changes, so that old indexes are rebuilt.
const SCHEMA_VERSION: u32 = 1;
/// The writer's indexing memory; one thread (the machine has few cores, documents are small).
const WRITER_MEMORY: usize = 32 * 1024 * 1024;

/// How much a match counts per field: a title match says most about a document.
const TITLE_BOOST: f32 = 3.0;
const TAGS_BOOST: f32 = 1.5;
const BODY_BOOST: f32 = 1.0;
/// Snippet length in characters.
const SNIPPET_CHARS: usize = 160;

/// What the index holds, written into each commit's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMark {
    pub schema: u32,
    pub epoch: String,
    pub revision: i64,
}

impl CommitMark {
    pub fn new(epoch: &str, revision: i64) -> CommitMark {
        CommitMark {
            schema: SCHEMA_VERSION,
            epoch: epoch.to_string(),
            revision,
        }
    }
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    body: Field,
    tags: Field,
    url: Field,
}

fn schema() -> (Schema, Fields) {
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqs);
    let stored_text = TextOptions::default()
        .set_indexing_options(indexing.clone())
        .set_stored();
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        title: builder.add_text_field("title", stored_text.clone()),
        body: builder.add_text_field("body", stored_text),
        tags: builder.add_text_field(
            "tags",
            TextOptions::default().set_indexing_options(indexing),
        ),
        url: builder.add_text_field("url", STORED),
    };
    (builder.build(), fields)
}

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    /// The process's one writer (tantivy allows one per directory; it holds a lock file).
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl SearchIndex {
    /// Opens the index in `dir`; when it is missing, unreadable or of another schema, the
    /// directory is emptied and a new empty index made (its mark is then `None`). Fails only
    /// when the directory cannot be written or another process holds the index.
    pub fn open(dir: &Path) -> Result<SearchIndex, KbError> {
        let io = |source| KbError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (expected_schema, fields) = schema();
        match Self::open_existing(dir, &expected_schema, fields) {
            Ok(index) => return Ok(index),
            Err(KbError::Locked(message)) => return Err(KbError::Locked(message)),
            Err(error) => {
                if dir.join("meta.json").exists() {
                    tracing::warn!(
                        dir = %dir.display(),
                        error = %error,
                        "the knowledge-base index cannot be used; rebuilding it from the database"
                    );
                }
            }
        }
        empty_dir(dir).map_err(io)?;
        let index = Index::create_in_dir(dir, expected_schema)?;
        Self::from_index(index, fields)
    }

    /// A new empty index in memory, for a process that cannot have the directory.
    pub fn in_memory() -> Result<SearchIndex, KbError> {
        let (schema, fields) = schema();
        Self::from_index(Index::create_in_ram(schema), fields)
    }

    fn open_existing(
        dir: &Path,
        expected: &Schema,
        fields: Fields,
    ) -> Result<SearchIndex, KbError> {
        let index = Index::open_in_dir(dir)?;
        let same_schema = index.schema() == *expected;
        // The writer first: its lock tells whether another process uses this directory, which
        // must then be left alone.
        let opened = Self::from_index(index, fields)?;
        if !same_schema {
            return Err(KbError::Invalid("the index has another schema".into()));
        }
        match opened.mark()? {
            Some(mark) if mark.schema == SCHEMA_VERSION => Ok(opened),
            _ => Err(KbError::Invalid(
                "the index has no mark of this version".into(),
            )),
        }
    }

    fn from_index(index: Index, fields: Fields) -> Result<SearchIndex, KbError> {
        index.tokenizers().register(TOKENIZER_NAME, BigramTokenizer);
        let writer = match index.writer_with_num_threads(1, WRITER_MEMORY) {
            Ok(writer) => writer,
            Err(tantivy::TantivyError::LockFailure(_, _)) => {
                return Err(KbError::Locked(
                    "another herald using the same data directory holds the knowledge-base index"
                        .into(),
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    /// The mark of the last commit, if it was herald's.
    pub fn mark(&self) -> Result<Option<CommitMark>, KbError> {
        let metas = self.index.load_metas()?;
        Ok(metas
            .payload
            .as_deref()
            .and_then(|payload| serde_json::from_str(payload).ok()))
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, KbError> {
        self.writer
            .lock()
            .map_err(|_| KbError::Invalid("the index writer was poisoned by a panic".into()))
    }

    /// Removes every document (before a rebuild); takes effect at `commit`.
    pub fn clear(&self) -> Result<(), KbError> {
        self.writer()?.delete_all_documents()?;
        Ok(())
    }

    pub fn delete(&self, ids: &[String]) -> Result<(), KbError> {
        let writer = self.writer()?;
        for id in ids {
            writer.delete_term(Term::from_field_text(self.fields.id, id));
        }
        Ok(())
    }

    /// Adds documents, replacing any with the same id.
    pub fn upsert(&self, documents: &[StoredDocument]) -> Result<(), KbError> {
        let writer = self.writer()?;
        let f = self.fields;
        for document in documents {
            writer.delete_term(Term::from_field_text(f.id, &document.id));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.id, &document.id);
            doc.add_text(f.title, &document.title);
            doc.add_text(f.body, &document.body);
            for tag in &document.tags {
                doc.add_text(f.tags, tag);
            }
            if let Some(url) = &document.url {
                doc.add_text(f.url, url);
            }
            writer.add_document(doc)?;
        }
        Ok(())
    }

    /// Makes everything since the last commit durable and searchable, recording `mark`.
    pub fn commit(&self, mark: &CommitMark) -> Result<(), KbError> {
        let payload = serde_json::to_string(mark)
            .map_err(|e| KbError::Invalid(format!("commit mark: {e}")))?;
        let mut writer = self.writer()?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Drops everything since the last commit (after a failed catch-up).
    pub fn rollback(&self) -> Result<(), KbError> {
        self.writer()?.rollback()?;
        Ok(())
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The best `limit` documents for `query`: every query word must match (each through any
    /// of its synonyms); when no document has them all, any word may.
    pub fn search(
        &self,
        synonyms: &Synonyms,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, KbError> {
        let words: Vec<Vec<Vec<String>>> = synonyms
            .expand(query)
            .into_iter()
            .map(|alternatives| {
                alternatives
                    .iter()
                    .map(|alternative| terms(alternative))
                    .filter(|terms| !terms.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|alternatives| !alternatives.is_empty())
            .collect();
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let collector = TopDocs::with_limit(limit).order_by_score();
        let mut query = self.build_query(&words, Occur::Must);
        let mut top = searcher.search(&*query, &collector)?;
        if top.is_empty() && words.len() > 1 {
            query = self.build_query(&words, Occur::Should);
            top = searcher.search(&*query, &collector)?;
        }
        if top.is_empty() {
            return Ok(Vec::new());
        }
        let mut snippets = SnippetGenerator::create(&searcher, &*query, self.fields.body)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|value| value.as_str())
                    .map(str::to_string)
            };
            let body = text(self.fields.body).unwrap_or_default();
            let fragment = snippets.snippet(&body);
            let snippet = if fragment.fragment().trim().is_empty() {
                leading_text(&body, SNIPPET_CHARS)
            } else {
                fragment.fragment().trim().to_string()
            };
            hits.push(Hit {
                id: text(self.fields.id).unwrap_or_default(),
                title: text(self.fields.title).unwrap_or_default(),
                url: text(self.fields.url),
                snippet,
                score,
            });
        }
        Ok(hits)
    }

    /// `words[w][a]` are the terms of alternative `a` of query word `w`. An alternative matches
    /// a field holding all of its terms; the title counts most.
    fn build_query(&self, words: &[Vec<Vec<String>>], between_words: Occur) -> Box<dyn Query> {
        let fields = [
            (self.fields.title, TITLE_BOOST),
            (self.fields.tags, TAGS_BOOST),
            (self.fields.body, BODY_BOOST),
        ];
        let word_queries: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|alternatives| {
                let mut per_alternative: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for terms in alternatives {
                    for (field, boost) in fields {
                        let all_terms: Box<dyn Query> = match terms.as_slice() {
                            [one] => term_query(field, one),
                            many => Box::new(BooleanQuery::new(
                                many.iter()
                                    .map(|term| (Occur::Must, term_query(field, term)))
                                    .collect(),
                            )),
                        };
                        per_alternative
                            .push((Occur::Should, Box::new(BoostQuery::new(all_terms, boost))));
                    }
                }
                let word: Box<dyn Query> = Box::new(BooleanQuery::new(per_alternative));
                (between_words, word)
            })
            .collect();
        Box::new(BooleanQuery::new(word_queries))
    }
}

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    ))
}

/// The first `chars` characters of `text` on one line, with `…` when cut.
fn leading_text(text: &str, chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// Removes everything inside `dir` (not `dir` itself, which may be a mount point).
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path: PathBuf = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(id: &str, title: &str, body: &str, tags: &[&str]) -> StoredDocument {
        StoredDocument {
            id: id.into(),
            title: title.into(),
            body: body.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            url: Some(format!("https://wiki.example.com/{id}")),
            updated_at: 0,
        }
    }

    fn index_with(documents: &[StoredDocument]) -> (tempfile::TempDir, SearchIndex) {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = SearchIndex::open(&dir.path().join("kb-index")).expect("open");
        index.upsert(documents).expect("upsert");
        index.commit(&CommitMark::new("e", 1)).expect("commit");
        (dir, index)
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn synonyms_bigrams_and_title_boost() {
        let (_dir, index) = index_with(&[
            document(
                "leave",
                "휴가 신청 방법",
                "그룹웨어에서 휴가를 신청합니다.",
                &["인사"],
            ),
            document(
                "vpn",
                "VPN 접속 방법",
                "사내 VPN에 접속하려면 클라이언트를 설치합니다.",
                &[],
            ),
            document(
                "other",
                "회의실 예약",
                "회의실 예약 시 휴가 중인 사람은 제외합니다.",
                &[],
            ),
        ]);
        let synonyms = Synonyms::parse("휴가, 연차, 월차\n").expect("synonyms");
        let hits = index.search(&synonyms, "연차 신청", 10).expect("search");
        assert_eq!(ids(&hits), ["leave"]);
        assert!(hits[0].snippet.contains("휴가"), "{:?}", hits[0].snippet);
        // A title match outranks a body match.
        let hits = index.search(&synonyms, "휴가", 10).expect("search");
        assert_eq!(ids(&hits), ["leave", "other"]);
        // A particle on the query word.
        let hits = index.search(&synonyms, "연차를", 10).expect("search");
        assert_eq!(ids(&hits)[0], "leave");
        let hits = index.search(&synonyms, "vpn접속", 10).expect("search");
        assert_eq!(ids(&hits), ["vpn"]);
    }

    #[test]
    fn no_document_with_every_word_falls_back_to_any_word() {
        let (_dir, index) = index_with(&[document("vpn", "VPN setup", "Install the client.", &[])]);
        let hits = index
            .search(&Synonyms::default(), "vpn printer", 10)
            .expect("search");
        assert_eq!(ids(&hits), ["vpn"]);
        assert!(
            index
                .search(&Synonyms::default(), "printer", 10)
                .expect("search")
                .is_empty()
        );
        assert!(
            index
                .search(&Synonyms::default(), "?!", 10)
                .expect("search")
                .is_empty()
        );
    }

    #[test]
    fn upsert_replaces_and_delete_removes() {
        let (_dir, index) = index_with(&[document("a", "old title", "", &[])]);
        index
            .upsert(&[document("a", "new title", "", &[])])
            .expect("upsert");
        index.commit(&CommitMark::new("e", 2)).expect("commit");
        let none = Synonyms::default();
        assert!(index.search(&none, "old", 10).expect("search").is_empty());
        assert_eq!(ids(&index.search(&none, "new", 10).expect("search")), ["a"]);
        assert_eq!(index.num_docs(), 1);
        index.delete(&["a".into()]).expect("delete");
        index.commit(&CommitMark::new("e", 3)).expect("commit");
        assert_eq!(index.num_docs(), 0);
        assert_eq!(index.mark().expect("mark"), Some(CommitMark::new("e", 3)));
    }

    #[test]
    fn an_unreadable_directory_is_started_afresh() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kb-index");
        {
            let index = SearchIndex::open(&path).expect("open");
            index
                .upsert(&[document("a", "title", "", &[])])
                .expect("upsert");
            index.commit(&CommitMark::new("e", 1)).expect("commit");
        }
        let index = SearchIndex::open(&path).expect("reopen");
        assert_eq!(index.mark().expect("mark"), Some(CommitMark::new("e", 1)));
        assert_eq!(index.num_docs(), 1);
        drop(index);
        std::fs::write(path.join("meta.json"), "garbage").expect("write");
        let index = SearchIndex::open(&path).expect("open after damage");
        assert_eq!(index.mark().expect("mark"), None);
        assert_eq!(index.num_docs(), 0);
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _first = SearchIndex::open(dir.path()).expect("open");
        assert!(matches!(
            SearchIndex::open(dir.path()),
            Err(KbError::Locked(_))
        ));
    }

    #[test]
    fn an_index_in_memory_works_alike() {
        let index = SearchIndex::in_memory().expect("in memory");
        assert_eq!(index.mark().expect("mark"), None);
        index
            .upsert(&[document("a", "휴가 신청", "", &[])])
            .expect("upsert");
        index.commit(&CommitMark::new("e", 1)).expect("commit");
        let hits = index
            .search(&Synonyms::default(), "휴가", 10)
            .expect("search");
        assert_eq!(ids(&hits), ["a"]);
    }

    #[test]
    fn leading_text_cuts_on_characters() {
        assert_eq!(leading_text("가나다라", 2), "가나…");
        assert_eq!(leading_text(" a\n b ", 10), "a b");
    }
}
