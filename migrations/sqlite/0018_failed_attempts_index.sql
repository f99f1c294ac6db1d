-- The operator's view lists the latest failed attempts (outbox::overview::recent_failures).
-- Failed attempts are the ones with an error; most attempts succeed, so this partial index
-- holds only the few the view reads, and a success costs it nothing. Queries that want it
-- repeat its condition word for word. Twin of migrations/postgres/0018_failed_attempts_index.sql.
CREATE INDEX delivery_attempts_failed ON delivery_attempts (id) WHERE error IS NOT NULL;
