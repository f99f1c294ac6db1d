-- Twin of migrations/sqlite/0012_without_rowid.sql, which rebuilds two tables without SQLite's
-- rowid. PostgreSQL tables have none: nothing to change here; the file keeps the two
-- migration histories numbered alike.
SELECT 1;
