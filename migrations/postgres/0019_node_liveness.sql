-- Node liveness and takeover (issue 23). Kept in step with migrations/sqlite/0019_node_liveness.sql.
--
-- `nodes`: one row per running herald process (an incarnation: a restarted process is a new
-- node), renewed every HERALD_NODE_RENEW_INTERVAL and lapsing HERALD_NODE_LEASE after its last
-- renewal. A row whose lease lapsed is deleted by whichever live node notices first, in the
-- transaction that frees that node's claims; a node that stops gracefully deletes its own row
-- (its goodbye). Snowflake worker ids stay leased in `node_leases`.
CREATE TABLE nodes (
    node_id BIGINT PRIMARY KEY,
    worker_id BIGINT NOT NULL,
    holder TEXT NOT NULL,
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Which node holds a delivery's lease (`locked_until`); 0 = none recorded. Freed at once when
-- that node's row lapses or is deleted. Served by `deliveries_due` (status first): only
-- pending rows are ever looked up by it.
ALTER TABLE deliveries ADD COLUMN locked_by BIGINT NOT NULL DEFAULT 0;

-- Which node claimed a watch's current check; a lapsed node's recent checks are made due again.
ALTER TABLE watches ADD COLUMN claimed_by BIGINT NOT NULL DEFAULT 0;
