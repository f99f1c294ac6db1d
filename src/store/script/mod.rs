//! Several writes in one round trip.
//!
//! Every statement sent through sqlx is a round trip: to the connection's own thread on SQLite
//! (a thread wake-up each way, 25–100 µs on a busy two-core machine), over the socket on
//! PostgreSQL. A push that writes six tables therefore waited for six or more of them before it
//! could be acknowledged. A [`Script`] gathers statements — each written, as everywhere in
//! herald, with its own `$1…$k` — and their values, and sends them at once:
//!
//! - on SQLite as one multi-statement call: sqlx hands the whole text to the connection's thread,
//!   which runs the statements one after another (`$n` names are absolute in sqlx's SQLite
//!   binding, so each statement's placeholders are renumbered past the ones before it);
//! - on PostgreSQL as one statement whose earlier parts are data-modifying `WITH` queries. Such
//!   parts all run, to completion, on one snapshot; so a script's statements must not depend on
//!   one another's effects or touch the same row twice (the callers' statements write disjoint
//!   rows). A script with more values than one statement may carry is sent as several.
//!
//! A long script (more than 16 statements: a fan-out to thousands) is sent a statement at a
//! time instead, so that its many statements of one shape share one prepared statement.
//!
//! [`Script::commit`] makes the script atomic by itself: in one call, on SQLite it is wrapped in
//! `BEGIN IMMEDIATE … COMMIT` inside the same call, and on PostgreSQL a single statement is its
//! own transaction; in several, they run in a transaction. [`Script::run_in`] runs it inside a
//! transaction the caller holds.
//!
//! Values are only BIGINT and TEXT (the storage boundary), so a script keeps them as [`Value`]
//! (`value.rs`, with the [`Row`]s reads return); `scanner.rs` reads and rewrites the
//! placeholders of the statements' text and writes multi-row `VALUES` lists.

use sqlx::any::AnyArguments;
use sqlx::{Arguments, AssertSqlSafe};

use super::{Backend, Db, StoreError};

mod scanner;
mod value;

use scanner::{highest_placeholder, question_marks, renumber};
pub use scanner::{values_rows, values_rows_from};
pub use value::{FromValue, Row, Value};

/// The most values one PostgreSQL statement carries (the protocol's limit is 65,535).
const POSTGRES_MAX_PARAMS: usize = 30_000;

/// Scripts with more values than this run off the runtime's threads on SQLite (see
/// [`Script::commit_in_turn`]).
const LONG_VALUES: usize = 2_000;

/// Scripts longer than this are sent a statement at a time (see [`Script::calls`]).
const STATEMENTS_PER_CALL: usize = 16;

struct Statement {
    /// As written, with its own `$1…$params`.
    sql: String,
    params: usize,
    /// Index of its first value in `Script::values`.
    first: usize,
}

/// Statements and their values, sent together; see the module documentation.
pub struct Script {
    backend: Backend,
    statements: Vec<Statement>,
    values: Vec<Value>,
}

impl Script {
    pub fn new(backend: Backend) -> Script {
        Script {
            backend,
            statements: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Adds a statement written with `$1…$k`; bind its `k` values next, in order, with
    /// [`Script::bind`].
    pub fn push(&mut self, sql: impl Into<String>) -> &mut Self {
        self.check_bound();
        let sql = sql.into();
        let params = highest_placeholder(&sql);
        self.statements.push(Statement {
            sql,
            params,
            first: self.values.len(),
        });
        self
    }

    /// Binds the next value of the statement added last.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        self
    }

    /// Every statement got exactly its values (a programming error otherwise).
    fn check_bound(&self) {
        if let Some(last) = self.statements.last() {
            debug_assert_eq!(
                self.values.len(),
                last.first + last.params,
                "statement bound with the wrong number of values: {}",
                last.sql
            );
        }
    }

    /// The calls that run this script: SQL text and values for each. A long script (a fan-out
    /// to thousands) is sent a statement at a time, each in its own numbering: its many
    /// statements of one shape then reuse one prepared statement, where joined they would each
    /// be prepared anew (10,000 queued notifications took 497 ms joined, ~300 ms apart). Else,
    /// on SQLite one call; on PostgreSQL one per group of statements that fits in one
    /// statement's values.
    fn calls(&self) -> Vec<(String, AnyArguments)> {
        self.check_bound();
        if self.statements.len() > STATEMENTS_PER_CALL {
            return self
                .statements
                .iter()
                .map(|statement| {
                    let values = &self.values[statement.first..statement.first + statement.params];
                    (statement.sql.clone(), arguments(values))
                })
                .collect();
        }
        match self.backend {
            Backend::Sqlite => {
                let mut sql = String::new();
                for statement in &self.statements {
                    if !sql.is_empty() {
                        sql.push_str(";\n");
                    }
                    sql.push_str(&renumber(&statement.sql, statement.first));
                }
                vec![(sql, arguments(&self.values))]
            }
            Backend::Postgres => {
                let mut calls = Vec::new();
                let mut group: Vec<&Statement> = Vec::new();
                let mut params = 0;
                for statement in &self.statements {
                    if !group.is_empty() && params + statement.params > POSTGRES_MAX_PARAMS {
                        calls.push(self.postgres_call(&group));
                        group.clear();
                        params = 0;
                    }
                    params += statement.params;
                    group.push(statement);
                }
                if !group.is_empty() {
                    calls.push(self.postgres_call(&group));
                }
                calls
            }
        }
    }

    /// `WITH w1 AS (s1), … sN`: one statement, its values numbered from `$1`.
    fn postgres_call(&self, group: &[&Statement]) -> (String, AnyArguments) {
        let first = group[0].first;
        let last = group[group.len() - 1];
        let values = &self.values[first..last.first + last.params];
        let mut sql = String::new();
        for (i, statement) in group.iter().enumerate() {
            let text = renumber(&statement.sql, statement.first - first);
            if i + 1 == group.len() {
                sql.push_str(&text);
            } else {
                sql.push_str(if i == 0 { "WITH " } else { ", " });
                sql.push_str(&format!("w{i} AS ({text})"));
                if i + 2 == group.len() {
                    sql.push(' ');
                }
            }
        }
        (sql, arguments(values))
    }

    /// Runs the statements inside the transaction (or on the connection) the caller holds.
    pub async fn run_in(self, conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        for (sql, args) in self.calls() {
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Runs the statements as one transaction of their own, in one round trip when it fits:
    /// either all of them are durable when this returns, or none is.
    pub async fn commit(self, db: &Db) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        if db.direct.is_some() {
            return self.commit_in_turn(db, db.writer_turn().await?).await;
        }
        self.commit_through_sqlx(db).await
    }

    /// Like [`Script::commit`], in a turn at the writer the caller took (for a write decided by
    /// what was read in the same turn).
    pub async fn commit_in_turn(self, db: &Db, turn: WriterTurn) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        if let (Some(direct), Some(_writer)) = (&db.direct, &turn.0) {
            // Each statement with the range of its values in `values` (moved, not copied).
            let mut statements: Vec<(String, std::ops::Range<usize>)> =
                Vec::with_capacity(self.statements.len());
            for s in &self.statements {
                let range = s.first..s.first + s.params;
                if range.end > self.values.len() {
                    return Err(StoreError::Protocol(format!(
                        "statement bound with too few values: {}",
                        s.sql
                    )));
                }
                statements.push((question_marks(&s.sql), range));
            }
            let write = |direct: &super::direct::Direct,
                         statements: &[(String, std::ops::Range<usize>)],
                         values: &[Value]| {
                direct.write(
                    statements
                        .iter()
                        .map(|(sql, range)| (sql.as_str(), &values[range.clone()])),
                )
            };
            // A long script (a fan-out to thousands: ~300 ms for 10,000 rows) runs on a blocking
            // thread rather than hold up a runtime thread; the turn stays held meanwhile.
            let long = statements.len() > STATEMENTS_PER_CALL || self.values.len() > LONG_VALUES;
            let statements = std::sync::Arc::new(statements);
            let values = std::sync::Arc::new(self.values);
            super::direct::retry_while_busy_async(|| {
                let (direct, statements, values) =
                    (direct.clone(), statements.clone(), values.clone());
                async move {
                    if long {
                        tokio::task::spawn_blocking(move || write(&direct, &statements, &values))
                            .await
                            .unwrap_or_else(|failed| {
                                if failed.is_panic() {
                                    std::panic::resume_unwind(failed.into_panic())
                                }
                                // Only at the runtime's shutdown, before the write ran.
                                Err(rusqlite::Error::SqliteFailure(
                                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERRUPT),
                                    Some("the write was cancelled at shutdown".into()),
                                ))
                            })
                    } else {
                        write(&direct, &statements, &values)
                    }
                }
            })
            .await
            .map_err(super::direct::DirectError::from)?;
            return Ok(());
        }
        drop(turn);
        self.commit_through_sqlx(db).await
    }

    async fn commit_through_sqlx(self, db: &Db) -> Result<(), StoreError> {
        let mut calls = self.calls();
        if calls.len() > 1 {
            let mut tx = db.writer().begin().await?;
            for (sql, args) in calls {
                sqlx::query_with(AssertSqlSafe(sql), args)
                    .execute(&mut *tx)
                    .await?;
            }
            return tx.commit().await;
        }
        let (sql, args) = calls.remove(0);
        match self.backend {
            Backend::Postgres => {
                sqlx::query_with(AssertSqlSafe(sql), args)
                    .execute(db.writer())
                    .await?;
                Ok(())
            }
            Backend::Sqlite => {
                let sql = format!("BEGIN IMMEDIATE;\n{sql};\nCOMMIT");
                let mut guard = OpenTransaction(Some(db.writer().acquire().await?));
                let conn = guard.0.as_mut().ok_or(StoreError::PoolClosed)?;
                let result = sqlx::query_with(AssertSqlSafe(sql), args)
                    .execute(&mut **conn)
                    .await;
                match result {
                    Ok(_) => {
                        guard.0.take();
                        Ok(())
                    }
                    Err(error) => {
                        // A statement failed after BEGIN (or COMMIT itself did): roll back what
                        // is open. "No transaction is active" means it ended already. If the
                        // rollback fails too, the guard closes the connection rather than
                        // leave a transaction open in the pool.
                        if let Some(conn) = guard.0.as_mut() {
                            match sqlx::query("ROLLBACK").execute(&mut **conn).await {
                                Ok(_) => drop(guard.0.take()),
                                Err(rollback) if no_transaction(&rollback) => drop(guard.0.take()),
                                Err(_) => {}
                            }
                        }
                        Err(error)
                    }
                }
            }
        }
    }
}

/// Runs several independent reads (each written with its own `$1…$k`, with its values) and
/// returns each one's rows, in order: on SQLite in one call to one reader connection; on
/// PostgreSQL at once, each on its own connection. Each read sees everything committed before
/// it started; they are not one snapshot.
pub async fn read_many(
    db: &Db,
    reads: Vec<(String, Vec<Value>)>,
) -> Result<Vec<Vec<Row>>, StoreError> {
    read_many_in(db, false, reads).await
}

/// Like [`read_many`], in a turn at the writer the caller holds: on SQLite in a file the reads
/// run on the writer connection (see `Direct::read_on_writer`); elsewhere as [`read_many`].
pub async fn read_many_in_turn(
    db: &Db,
    turn: &mut WriterTurn,
    reads: Vec<(String, Vec<Value>)>,
) -> Result<Vec<Vec<Row>>, StoreError> {
    read_many_in(db, turn.0.is_some(), reads).await
}

async fn read_many_in(
    db: &Db,
    on_writer: bool,
    reads: Vec<(String, Vec<Value>)>,
) -> Result<Vec<Vec<Row>>, StoreError> {
    use futures_util::TryStreamExt;
    use sqlx::Executor;
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    if on_writer && let Some(direct) = &db.direct {
        let statements: Vec<(String, &[Value])> = reads
            .iter()
            .map(|(sql, values)| (question_marks(sql), values.as_slice()))
            .collect();
        let rows = super::direct::retry_while_busy_async(|| async {
            direct.read_on_writer(
                statements
                    .iter()
                    .map(|(sql, values)| (sql.as_str(), *values)),
            )
        })
        .await;
        return Ok(rows.map_err(super::direct::DirectError::from)?);
    }
    match db.backend {
        Backend::Postgres => {
            futures_util::future::try_join_all(reads.into_iter().map(|(sql, values)| async move {
                let rows = sqlx::query_with(AssertSqlSafe(sql), arguments(&values))
                    .fetch_all(db.reader())
                    .await?;
                rows.iter()
                    .map(Row::from_any)
                    .collect::<Result<Vec<_>, _>>()
            }))
            .await
        }
        Backend::Sqlite => {
            let count = reads.len();
            let mut sql = String::new();
            let mut values = Vec::new();
            for (read, read_values) in reads {
                if !sql.is_empty() {
                    sql.push_str(";\n");
                }
                sql.push_str(&renumber(&read, values.len()));
                values.extend(read_values);
            }
            let query = sqlx::query_with(AssertSqlSafe(sql), arguments(&values));
            let mut stream = db.reader().fetch_many(query);
            // Each statement's rows come before the result that ends it.
            let mut sets = vec![Vec::new()];
            while let Some(item) = stream.try_next().await? {
                match item {
                    sqlx::Either::Left(_) => sets.push(Vec::new()),
                    sqlx::Either::Right(row) => {
                        if let Some(set) = sets.last_mut() {
                            set.push(Row::from_any(&row)?);
                        }
                    }
                }
            }
            sets.truncate(count);
            if sets.len() != count {
                return Err(StoreError::Protocol(format!(
                    "{count} reads returned {} result sets",
                    sets.len()
                )));
            }
            Ok(sets)
        }
    }
}

/// A turn at the writer, taken before a read whose answer decides a write and given up with
/// that write ([`Script::commit_in_turn`]). On SQLite in a file it holds the writer pool's one
/// connection, so nothing else commits in between and the read runs on the writer connection,
/// whose page cache stays warm (a reader's is dropped whenever another connection commits). On
/// PostgreSQL (and SQLite in memory) it holds nothing.
pub struct WriterTurn(Option<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Db {
    pub async fn writer_turn(&self) -> Result<WriterTurn, StoreError> {
        Ok(WriterTurn(match self.direct {
            Some(_) => Some(self.writer().acquire().await?),
            None => None,
        }))
    }
}

/// Holds the writer connection while a script's own transaction may be open; if the call is
/// abandoned midway (its future dropped), the connection is closed rather than returned to the
/// pool with a transaction still open.
struct OpenTransaction(Option<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

fn no_transaction(error: &StoreError) -> bool {
    error.to_string().contains("no transaction is active")
}

fn arguments(values: &[Value]) -> AnyArguments {
    let mut args = AnyArguments::default();
    for value in values {
        // Encoding an integer or a string for `Any` cannot fail.
        let _ = match value {
            Value::Int(v) => args.add(*v),
            Value::Text(v) => args.add(v.clone()),
        };
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(backend: Backend) -> Script {
        let mut script = Script::new(backend);
        script
            .push("INSERT INTO a (x, y) VALUES ($1, $2)")
            .bind(1_i64)
            .bind("one");
        script.push("UPDATE b SET z = 'fixed'");
        script.push("DELETE FROM c WHERE k = $1").bind(Some(3_i64));
        script
    }

    #[test]
    fn sqlite_runs_statements_in_one_call_with_absolute_numbers() {
        let calls = script(Backend::Sqlite).calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].0,
            "INSERT INTO a (x, y) VALUES ($1, $2);\nUPDATE b SET z = 'fixed';\nDELETE FROM c WHERE k = $3"
        );
        assert_eq!(calls[0].1.len(), 3);
    }

    #[test]
    fn postgres_runs_statements_as_one_with_query() {
        let calls = script(Backend::Postgres).calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].0,
            "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)), w1 AS (UPDATE b SET z = 'fixed') \
             DELETE FROM c WHERE k = $3"
        );
    }

    fn rows(backend: Backend, statements: usize, values: usize) -> Script {
        let mut script = Script::new(backend);
        let row_sql = crate::store::placeholders(1, values);
        for _ in 0..statements {
            script.push(format!("INSERT INTO t VALUES ({row_sql})"));
            for n in 0..values {
                script.bind(n as i64);
            }
        }
        script
    }

    #[test]
    fn postgres_splits_scripts_with_too_many_values() {
        let calls = rows(Backend::Postgres, 5, 10_000).calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].1.len(), 30_000);
        assert_eq!(calls[1].1.len(), 20_000);
        assert!(
            calls[1]
                .0
                .starts_with("WITH w0 AS (INSERT INTO t VALUES ($1, ")
        );
    }

    #[test]
    fn long_scripts_go_a_statement_at_a_time_in_their_own_numbering() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let calls = rows(backend, STATEMENTS_PER_CALL + 1, 3).calls();
            assert_eq!(calls.len(), STATEMENTS_PER_CALL + 1);
            assert!(
                calls.iter().all(
                    |(sql, args)| sql == "INSERT INTO t VALUES ($1, $2, $3)" && args.len() == 3
                )
            );
        }
    }
}
