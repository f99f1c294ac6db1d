-- Area B: projects and their outgoing webhooks. Kept in step with
-- migrations/sqlite/0002_projects_webhooks.sql. Webhook deliveries live in the shared
-- `deliveries` outbox (channel 'webhook'), tied to their hook by `webhook_id`.

CREATE TABLE projects (
    id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    branches TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (owner, name)
);
CREATE INDEX projects_by_repository ON projects (repository_id);

CREATE TABLE webhooks (
    id BIGINT PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    payload_url TEXT NOT NULL,
    secret TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    failing_since BIGINT,
    rate_per_second BIGINT,
    max_concurrency BIGINT NOT NULL DEFAULT 8,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_by_project ON webhooks (project_id);

ALTER TABLE deliveries ADD COLUMN webhook_id BIGINT;
ALTER TABLE deliveries ADD COLUMN event_type TEXT;
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
