//! Fresh PostgreSQL databases on a running server, one per test or benchmark run, so that no two
//! of them share tables.

use sqlx::{AssertSqlSafe, Connection};

/// The server the tests and the bench use unless told otherwise (trust auth on loopback).
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Creates the database `name` on the server at `server` (a URL of any database there) and
/// returns the URL that reaches it.
pub async fn create_database(server: &str, name: &str) -> String {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL at {server}: {e}"));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create the database {name}: {e}"));
    let _ = conn.close().await;
    let mut url = url::Url::parse(server).expect("the PostgreSQL server's URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Drops the database `name` if it exists, closing its connections; best effort, since it is
/// called to clean up after runs that may have left nothing behind.
pub async fn drop_database(server: &str, name: &str) {
    sqlx::any::install_default_drivers();
    if let Ok(mut conn) = sqlx::AnyConnection::connect(server).await {
        let _ = sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}
