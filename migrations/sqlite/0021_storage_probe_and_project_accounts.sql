-- Kept in step with migrations/postgres/0021_storage_probe_and_project_accounts.sql.

-- store: one row that `/readyz` rewrites to prove the database still stores (store/storage.rs).
CREATE TABLE storage_probe (
    id INTEGER PRIMARY KEY,
    written_at INTEGER NOT NULL
);
INSERT INTO storage_probe (id, written_at) VALUES (1, 0);

-- projects: the account that manages a project. A project whose owner name was no account when
-- it was made stays the operator's (NULL) until the operator hands it to the account of that
-- name (`POST /api/v1/projects/{owner}/{project}/claim`): registering a name later gives
-- nothing. Projects made before this migration belong to the account of their owner name if
-- that account existed when the project was made.
ALTER TABLE projects ADD COLUMN owner_account_id INTEGER REFERENCES accounts (id);
UPDATE projects SET owner_account_id = (
    SELECT a.id FROM accounts a WHERE a.name = projects.owner AND a.created_at <= projects.created_at
);
