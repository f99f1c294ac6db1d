-- Area B: projects and their outgoing webhooks. Kept in step with
-- migrations/postgres/0002_projects_webhooks.sql. Webhook deliveries live in the shared
-- `deliveries` outbox (channel 'webhook'), tied to their hook by `webhook_id`.

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    branches TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (owner, name)
);
CREATE INDEX projects_by_repository ON projects (repository_id);

CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    payload_url TEXT NOT NULL,
    secret TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    failing_since INTEGER,
    rate_per_second INTEGER,
    max_concurrency INTEGER NOT NULL DEFAULT 8,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_project ON webhooks (project_id);

ALTER TABLE deliveries ADD COLUMN webhook_id INTEGER;
ALTER TABLE deliveries ADD COLUMN event_type TEXT;
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
