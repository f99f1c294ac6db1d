-- herald's first schema. Kept in step with migrations/postgres/0001_foundation.sql: every column
-- is INTEGER or TEXT so that sqlx's Any driver decodes both backends the same way (timestamps are
-- Unix milliseconds, flags are 0/1, lists are JSON text).

CREATE TABLE node_leases (
    worker_id INTEGER PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    nick_name TEXT NOT NULL DEFAULT '',
    account_id INTEGER,
    muted INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (channel, address)
);

CREATE TABLE repositories (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    remote_url TEXT NOT NULL,
    web_url TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE watches (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    pattern TEXT NOT NULL,
    etag TEXT,
    next_check_at INTEGER NOT NULL,
    last_checked_at INTEGER,
    last_error TEXT,
    UNIQUE (repository_id, pattern)
);
CREATE INDEX watches_due ON watches (next_check_at);

CREATE TABLE branch_heads (
    repository_id INTEGER NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, branch)
);

CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    branch TEXT NOT NULL,
    paths TEXT NOT NULL DEFAULT '[]',
    exclude_authors TEXT NOT NULL DEFAULT '[]',
    muted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (contact_id, repository_id, branch)
);
CREATE INDEX subscriptions_by_repository ON subscriptions (repository_id);

CREATE TABLE inbound_deliveries (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
);

CREATE TABLE push_events (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL,
    ref TEXT NOT NULL,
    before_sha TEXT NOT NULL,
    after_sha TEXT NOT NULL,
    forced INTEGER NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX push_events_by_repository ON push_events (repository_id, id);

CREATE TABLE seen_commits (
    repository_id INTEGER NOT NULL,
    ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repository_id, ref, sha)
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_id INTEGER,
    contact_id INTEGER,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    status_code INTEGER,
    duration_ms INTEGER NOT NULL,
    response_body TEXT,
    error TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
