//! TEMPORARY interface placeholder while the knowledge base is built on branch `kb`; replaced
//! by that branch's module at merge. Never lands on main.
use serde::Serialize;

use crate::store::Db;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KbError(String);

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub snippet: String,
    pub score: f32,
}

#[derive(Default)]
pub struct KnowledgeBase;

impl KnowledgeBase {
    pub async fn search(&self, _db: &Db, _query: &str, _limit: usize) -> Result<Vec<Hit>, KbError> {
        Ok(Vec::new())
    }
}
