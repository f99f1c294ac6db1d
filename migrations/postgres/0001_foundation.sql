-- herald's first schema. Kept in step with migrations/sqlite/0001_foundation.sql: every column
-- is BIGINT or TEXT so that sqlx's Any driver decodes both backends the same way (timestamps are
-- Unix milliseconds, flags are 0/1, lists are JSON text).

CREATE TABLE node_leases (
    worker_id BIGINT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE contacts (
    id BIGINT PRIMARY KEY,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    nick_name TEXT NOT NULL DEFAULT '',
    account_id BIGINT,
    muted BIGINT NOT NULL DEFAULT 0,
    blocked BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (channel, address)
);

CREATE TABLE repositories (
    id BIGINT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    remote_url TEXT NOT NULL,
    web_url TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE watches (
    id BIGINT PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    pattern TEXT NOT NULL,
    etag TEXT,
    next_check_at BIGINT NOT NULL,
    last_checked_at BIGINT,
    last_error TEXT,
    UNIQUE (repository_id, pattern)
);
CREATE INDEX watches_due ON watches (next_check_at);

CREATE TABLE branch_heads (
    repository_id BIGINT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, branch)
);

CREATE TABLE subscriptions (
    id BIGINT PRIMARY KEY,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    branch TEXT NOT NULL,
    paths TEXT NOT NULL DEFAULT '[]',
    exclude_authors TEXT NOT NULL DEFAULT '[]',
    muted BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (contact_id, repository_id, branch)
);
CREATE INDEX subscriptions_by_repository ON subscriptions (repository_id);

CREATE TABLE inbound_deliveries (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source, delivery_id)
);

CREATE TABLE push_events (
    id BIGINT PRIMARY KEY,
    repository_id BIGINT NOT NULL,
    ref TEXT NOT NULL,
    before_sha TEXT NOT NULL,
    after_sha TEXT NOT NULL,
    forced BIGINT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_events_by_repository ON push_events (repository_id, id);

CREATE TABLE seen_commits (
    repository_id BIGINT NOT NULL,
    ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repository_id, ref, sha)
);

CREATE TABLE deliveries (
    id BIGINT PRIMARY KEY,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_id BIGINT,
    contact_id BIGINT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

CREATE TABLE delivery_attempts (
    id BIGINT PRIMARY KEY,
    delivery_id BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code BIGINT,
    duration_ms BIGINT NOT NULL,
    response_body TEXT,
    error TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
