-- The per-hook delivery log's index holds a delivery once it has been tried or has left the
-- queue, not from the moment it is queued. Keyed by hook, its entries for one push land on as
-- many leaf pages as the push has hooks: written at enqueue, that was ~13 of the ~30 pages a
-- push's commit writes to the log (SQLite's WAL), on the path every delivery waits for. Now the
-- attempt recorder adds them, after the sends. Deliveries still waiting for a first try are
-- found through deliveries_due (status 'pending'); see projects::api::hook_deliveries.
-- Queries that want this index repeat its condition word for word. Twin of
-- migrations/postgres/0010_hook_log_index.sql.
DROP INDEX deliveries_by_webhook;
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id)
    WHERE webhook_id IS NOT NULL AND (status <> 'pending' OR attempts > 0);
