-- Area D's knowledge base. Kept in step with migrations/sqlite/0006_kb.sql.
-- These tables are the truth; the search index under <data dir>/kb-index is a cache that any
-- node rebuilds or catches up from them (see src/kb/mod.rs).

-- updated_at: Unix ms of the last write; revision: the kb_state revision that wrote it, which is
-- what an index catching up asks for.
CREATE TABLE kb_documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    url TEXT,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX kb_documents_by_revision ON kb_documents (revision);

-- The ids of deleted documents and the revision that deleted them, so that an index catching
-- up drops them too. A document posted again leaves this table.
CREATE TABLE kb_deleted (
    id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL
);
CREATE INDEX kb_deleted_by_revision ON kb_deleted (revision);

-- The synonym file exactly as uploaded (one row).
CREATE TABLE kb_synonyms (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO kb_synonyms (id, body, updated_at) VALUES (1, '', 0);

-- One row. revision: bumped in the transaction of every change to documents or synonyms.
-- epoch: random, names this knowledge base, so an index built from another database is never
-- taken for this one's. initialised: 0 until the first import (the sample's or an operator's).
CREATE TABLE kb_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL,
    epoch TEXT NOT NULL,
    initialised BIGINT NOT NULL
);
INSERT INTO kb_state (id, revision, epoch, initialised) VALUES (1, 0, md5(random()::text || clock_timestamp()::text), 0);
