-- Forgotten passwords (accounts): a mailed link holds a random key, stored here as its SHA-256
-- hex; it works once and expires. Kept in step with migrations/postgres/0016_web_accounts.sql.

CREATE TABLE password_resets (
    key_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX password_resets_by_account ON password_resets (account_id);

-- The dashboard shows each contact's latest notifications (outbox's table, read through
-- outbox::recent_to_contact); only notifications have a contact.
CREATE INDEX deliveries_by_contact ON deliveries (contact_id, id) WHERE contact_id IS NOT NULL;
