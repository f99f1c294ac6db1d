//! The sample knowledge base shipped in `kb/sample/`, imported the first time herald starts on a
//! database whose knowledge base was never written, so that search works out of the box.
//! `herald kb import --replace` (or the API) replaces it.

use super::KbError;
use super::document::parse_file;
use super::store::{self, Change};
use super::synonyms::Synonyms;
use crate::store::Db;

pub const DOCUMENTS: &str = include_str!("../../kb/sample/documents.ndjson");
pub const SYNONYMS: &str = include_str!("../../kb/sample/synonyms.txt");

/// Imports the sample unless the knowledge base was ever written (by anyone, on any node);
/// returns how many documents it imported.
pub async fn import_if_new(db: &Db) -> Result<Option<usize>, KbError> {
    let documents = parse_file(DOCUMENTS).map_err(KbError::Invalid)?;
    Synonyms::parse(SYNONYMS)?;
    let change = Change {
        documents: &documents,
        synonyms: Some(SYNONYMS),
        only_if_new: true,
        ..Change::default()
    };
    Ok(store::apply(db, change).await?.map(|_| documents.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_parses() {
        let documents = parse_file(DOCUMENTS).expect("sample documents");
        assert!(documents.len() >= 15, "{}", documents.len());
        let synonyms = Synonyms::parse(SYNONYMS).expect("sample synonyms");
        assert!(synonyms.rules() >= 5);
    }
}
